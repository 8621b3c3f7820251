"""One experiment end to end: acquire, reconstruct, measure, and (for the text task)
try every applicable option on the same data."""

from __future__ import annotations

import time

import numpy as np

from ..tasks import PARAM_OPTIONS
from .defects import Acquisition, Experiment, acquire, centre_of_mass_offset, prepare
from .measure import metrics, render_phase
from .options import candidates
from .recon import ReconParams, reconstruct


def recon_seed(exp: Experiment, seed_index: int = 0) -> int:
    """The reconstruction seed of repeat ``seed_index`` of an experiment: repeat 0 is the
    dataset's own reconstruction; repeats 1, 2, ... measure seed-to-seed spread (random
    batching and initial probe modes) on the same measured data."""
    return (exp.seed + 7919 * seed_index) % (2**31)


def run_recon(exp: Experiment, acq: Acquisition, params: ReconParams, seed_index: int = 0) -> dict:
    """Reconstruct ``acq`` with ``params`` (repeat ``seed_index``) and measure it against
    the truth; the result dict holds ``metrics`` (``error`` first among them), ``loss``,
    ``seconds``, ``result`` and the binning ``factor``."""
    pats, pos, probe0, binning = prepare(acq, params)
    factor = int(binning)  # a whole-pixel binning factor
    g = exp.geometry
    res = reconstruct(
        pats,
        pos,
        probe0,
        g.n_obj // factor,
        params,
        acq.wavelength_m,
        acq.pixel_m * factor,
        acq.slice_spacing_m,
        seed=recon_seed(exp, seed_index),
    )
    m = metrics(res.obj, acq.true_object, g.roi, acq.step_px, exp.scan, factor)
    out = {"metrics": m, "loss": res.loss, "seconds": res.seconds, "result": res, "factor": factor}
    if params.position_correction:
        moved = res.positions * factor - acq.positions
        out["position_update_rms_px"] = float(np.sqrt((moved**2).sum(1).mean()))
    return out


def _loss_summary(loss: list[float]) -> list[float]:
    return [round(float(v), 5) for v in loss]


def run_experiment(exp: Experiment, trials: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """Returns (JSON-able record, rendered 8-bit phase image, reconstructed object)."""
    t0 = time.perf_counter()
    acq = acquire(exp)
    base = run_recon(exp, acq, exp.params)
    image = render_phase(base["result"].obj, acq.true_object, exp.geometry.roi, base["factor"])
    rec = {
        "experiment": exp.to_dict(),
        "n_positions": len(acq.positions),
        "scan_fov_px": exp.geometry.scan_fov,
        "com_offset_px": [round(v, 2) for v in centre_of_mass_offset(acq.patterns)],
        "mean_counts": float(acq.patterns.sum((1, 2)).mean()),
        "metrics": base["metrics"],
        "loss": _loss_summary(base["loss"]),
        "recon_seconds": round(base["seconds"], 2),
        "bin_factor": base["factor"],
    }
    if "position_update_rms_px" in base:
        rec["position_update_rms_px"] = round(base["position_update_rms_px"], 2)
    if trials:
        rec["trials"] = {}
        n_pos = len(acq.positions)
        for letter in PARAM_OPTIONS:
            if letter == "L":
                continue
            cands = candidates(letter, exp.params, n_pos, tuple(rec["com_offset_px"]))
            if not cands:
                continue
            runs, failures = [], []
            for c in cands:
                # ptychi can refuse a combination (e.g. half-size patterns with the affine
                # position constraint); that option then simply does not help here
                try:
                    runs.append((c, run_recon(exp, acq, c)))
                except Exception as e:  # noqa: BLE001 - recorded, never silently dropped
                    failures.append(f"{c.to_dict()}: {type(e).__name__}: {str(e)[:160]}")
            if not runs:
                rec["trials"][letter] = {
                    "params": cands[0].to_dict(),
                    "error": None,
                    "failed": failures,
                    "seconds": 0.0,
                }
                continue
            best = min(
                range(len(runs)),
                key=lambda i: runs[i][1]["loss"][-1] if np.isfinite(runs[i][1]["loss"][-1]) else np.inf,
            )
            c, r = runs[best]
            rec["trials"][letter] = {
                "params": c.to_dict(),
                "error": r["metrics"]["error"],
                "final_loss": float(r["loss"][-1]),
                "metrics": r["metrics"],
                "seconds": round(sum(x[1]["seconds"] for x in runs), 2),
            }
            if failures:
                rec["trials"][letter]["failed"] = failures
    rec["unit_seconds"] = round(time.perf_counter() - t0, 2)
    return rec, image, base["result"].obj.astype(np.complex64)


def remeasure(exp: Experiment, rec: dict, obj: np.ndarray) -> tuple[dict, np.ndarray]:
    """Metrics and image again from a stored reconstruction (no reconstruction needed)."""
    acq = acquire(exp)
    g = exp.geometry
    factor = rec.get("bin_factor", 1)
    m = metrics(obj, acq.true_object, g.roi, acq.step_px, exp.scan, factor)
    return m, render_phase(obj, acq.true_object, g.roi, factor)
