"""One experiment end to end: acquire, reconstruct, measure, and (for the text task)
try every applicable option on the same data."""

from __future__ import annotations

import time

import numpy as np

from .defects import Acquisition, Experiment, acquire, centre_of_mass_offset, instrument_for, prepare
from .labels import artifact_labels
from .measure import centre_crop, metrics, project, upsample
from .recon import ReconParams, reconstruct
from .render import render_phase
from .verify import verify_options


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


def field(obj: np.ndarray, exp: Experiment, factor: int) -> np.ndarray:
    """The reconstructed field a user looks at: the scanned region (``roi``) of the
    reconstruction, on the simulation grid. Knowing where one scanned is not the truth."""
    return centre_crop(upsample(project(obj), factor), exp.geometry.roi)


def image_of(obj: np.ndarray, exp: Experiment, factor: int) -> np.ndarray:
    """The rendered image of a reconstruction, through the one truth-free viewer."""
    return render_phase(field(obj, exp, factor), size=exp.geometry.render_size)


def run_experiment(exp: Experiment, trials: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    """Returns (JSON-able record, rendered 8-bit phase image, reconstructed object)."""
    t0 = time.perf_counter()
    acq = acquire(exp)
    base = run_recon(exp, acq, exp.params)
    image = image_of(base["result"].obj, exp, base["factor"])
    m = base["metrics"]
    rec = {
        "experiment": exp.to_dict(),
        "n_positions": len(acq.positions),
        "scan_fov_px": exp.geometry.scan_fov,
        "com_offset_px": [round(v, 2) for v in centre_of_mass_offset(acq.patterns)],
        "mean_counts": float(acq.patterns.sum((1, 2)).mean()),
        "metrics": m,
        "artifact_labels": sorted(artifact_labels(m)),
        "loss": _loss_summary(base["loss"]),
        "recon_seconds": round(base["seconds"], 2),
        "bin_factor": base["factor"],
    }
    if "position_update_rms_px" in base:
        rec["position_update_rms_px"] = round(base["position_update_rms_px"], 2)
    if trials:
        seconds: list[float] = []

        def recon(params: ReconParams, k: int) -> dict:
            if k == 0 and params == exp.params:
                r = base
            else:
                r = run_recon(exp, acq, params, seed_index=k)
                seconds.append(r["seconds"])
            return {"error": r["metrics"]["error"], "final_loss": float(r["loss"][-1])}

        v = verify_options(exp.params, len(acq.positions), tuple(rec["com_offset_px"]), recon)
        rec["base_errors"] = v["base_errors"]
        rec["seed_spread"] = v["seed_spread"]
        rec["trials"] = v["trials"]
        rec["n_trial_reconstructions"] = len(seconds)
    rec["unit_seconds"] = round(time.perf_counter() - t0, 2)
    return rec, image, base["result"].obj.astype(np.complex64)


def remeasure(exp: Experiment, rec: dict, obj: np.ndarray) -> tuple[dict, np.ndarray]:
    """Metrics and image again from a stored reconstruction (no reconstruction needed)."""
    acq = acquire(exp)
    g = exp.geometry
    factor = rec.get("bin_factor", 1)
    inst = instrument_for(exp)
    m = metrics(obj, acq.true_object, g.roi, inst.step_px, exp.scan, factor)
    return m, image_of(obj, exp, factor)
