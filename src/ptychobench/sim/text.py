"""The text a parameter-recommendation sample carries: what a scientist would write or a
workflow would log about one reconstruction. It never names the injected defect; the
task appends the question and the 24 options itself."""

from __future__ import annotations

import numpy as np

from .defects import Experiment, instrument_for

BATCHING = {"random": "random", "compact": "compact", "uniform": "sparse (uniform)"}


def _onoff(b: bool) -> str:
    return "on" if b else "off"


def describe_params(p: dict, n_pos: int, det_px: int) -> list[str]:
    nb = -(-n_pos // max(1, min(p["batch_size"], n_pos)))
    lines = [
        f"algorithm: LSQML (Pty-Chi), {p['n_epochs']} iterations",
        f"batch size: {min(p['batch_size'], n_pos)} ({nb} batch{'es' if nb > 1 else ''} per iteration), "
        f"{BATCHING[p['batching']]} batch selection",
        f"momentum acceleration: {_onoff(p['momentum'])}",
        f"probe modes: {p['n_probe_modes']}, multimodal update: {_onoff(p['multimodal_update'])}",
        f"variable probe correction (OPR modes): {p['n_opr_modes']}",
        "position correction: "
        + (
            ("on, with affine constraint" if p["affine_constraint"] else "on, no affine constraint")
            if p["position_correction"]
            else "off"
        ),
        f"noise model: {p['noise_model']}",
        "regularization: "
        + (f"object smoothness, alpha = {p['regularization']:g}" if p["regularization"] > 0 else "none"),
        "object model: " + ("multislice (2 slices)" if p["multislice"] else "single slice"),
        f"diffraction patterns: {det_px // p['bin_factor']} x {det_px // p['bin_factor']} px, "
        f"orientation {p['orientation']}, recentred: {'yes' if p['recenter'] else 'no'}",
    ]
    return lines


def recent_drop(loss: list[float]) -> tuple[float, int] | None:
    """(relative fall of the loss over the last quarter of the iterations, that many
    iterations); None below 4 iterations. A quarter, not a fixed count: if the loss falls
    as a power of the iteration count, the fall over the last quarter is the same for
    every run length, so a long and a short run are judged alike (and "more iterations"
    doubles them). The trend line of the texts and diagnose's convergence rule both read it."""
    if len(loss) < 4:
        return None
    q = max(1, len(loss) // 4)
    first, last = float(loss[-q - 1]), float(loss[-1])
    return (first - last) / max(abs(first), 1e-12), q


def _trend(loss: list[float]) -> str:
    drop = recent_drop(loss)
    if drop is None:
        return "too few iterations to judge"
    rel, q = drop
    last = np.asarray(loss[-q - 1 :])
    wiggle = np.abs(np.diff(np.sign(np.diff(last)))).sum() / 2 if len(last) > 2 else 0
    if rel > 0.02:
        return f"still decreasing ({100 * rel:.1f}% over the last {q} iterations)"
    if rel < -0.02:
        return f"increasing ({-100 * rel:.1f}% over the last {q} iterations)"
    if wiggle >= max(2, q // 2):
        return "fluctuating without clear progress"
    return f"flat (changed {100 * abs(rel):.1f}% over the last {q} iterations)"


def _loss_points(loss: list[float]) -> str:
    n = len(loss)
    idx = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    return ", ".join(f"iter {i + 1}: {loss[i]:.4g}" for i in idx if 0 <= i < n)


def params_text(rec: dict, visible: list[str], style: int) -> str:
    exp = rec["experiment"]
    inst = instrument_for(Experiment.from_dict(exp))
    p = exp["params"]
    n_pos = rec["n_positions"]
    step_nm = inst.step_px * inst.pixel_size_nm
    scan = "raster grid" if exp["scan"] == "raster" else "Fermat spiral"
    art = ", ".join(visible) if visible else "no obvious artifacts"
    loss = rec["loss"]
    com = rec["com_offset_px"]
    diag = [
        f"data error (MSE of sqrt intensities) - {_loss_points(loss)}; trend: {_trend(loss)}",
        f"mean diffraction pattern centre of mass offset from detector centre: "
        f"({com[0]:+.1f}, {com[1]:+.1f}) px (y, x)",
        f"mean counts per diffraction pattern: {rec['mean_counts']:.3g}",
    ]
    if "position_update_rms_px" in rec:
        diag.append(f"rms position update from nominal: {rec['position_update_rms_px']:.2f} px")
    setup = (
        f"{inst.beam}, {inst.energy_kev:g} keV, far-field detector cropped to "
        f"{inst.detector_px} x {inst.detector_px} px, object pixel {inst.pixel_size_nm:g} nm"
    )
    geom = (
        f"{scan}, {n_pos} points, step about {step_nm:.0f} nm, scanned field "
        f"about {rec['scan_fov_px'] * inst.pixel_size_nm / 1000:.2f} um"
    )
    params = describe_params(p, n_pos, inst.detector_px)
    if style % 2 == 0:
        out = [
            f"Reconstruction log, sample {rec['sample_id']}",
            f"Instrument: {setup}.",
            f"Sample type: {exp['sample_type']}.",
            f"Scan: {geom}.",
            "Current reconstruction parameters:",
            *[f"  - {x}" for x in params],
            f"Visible artifacts in the reconstructed phase: {art}.",
            "Convergence diagnostics:",
            *[f"  - {x}" for x in diag],
        ]
    else:
        out = [
            f"We measured a {exp['sample_type']} specimen with a {setup}. The scan was a {geom}.",
            "The reconstruction was run with these settings: " + "; ".join(params) + ".",
            f"Looking at the reconstructed phase we see: {art}.",
            "Diagnostics from the run: " + "; ".join(diag) + ".",
        ]
    return "\n".join(out)
