"""Measured data end to end: reconstruct a CXI scan, diagnose it, and check the advice.

On simulated data the payoff of advice is measured against the truth (:mod:`.loop.payoff`).
A beamline's scan has no truth, so here the payoff is truth-free: the scan is reconstructed
again with the advice applied (:func:`ptychobench.loop.advice.apply_advice`, the same joint
rules), and the two runs are compared by what a scientist can check without a truth:

* the final data-fit loss (pty-chi LSQML's data error in its last epoch; lower is better);
* the half-data FRC: each run is repeated on two halves of the scan (even and odd
  positions), and the Fourier ring correlation of the two halves gives a resolution
  (:func:`ptychobench.diagnose.measure.frc`, near-field data past their low-frequency gap).

The shipped example is the PETRA III P25 near-field scan (``beamline_data/p25_near_field.cxi``,
CC BY 4.0, ``beamline_data/LICENSE-DATA.md``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import DatasetError
from .files import write_atomic
from .sim.cxi import Measured, read_cxi, reconstruct_measured
from .sim.recon import ReconParams, ReconResult

SHIPPED = {"p25": Path(__file__).parent / "beamline_data" / "p25_near_field.cxi"}
#: the P25 scan's reconstruction in docs/diagnose.md: LSQML with 2 probe modes
P25_PARAMS = ReconParams(n_epochs=200, batch_size=40, n_probe_modes=2)


def resolve(data: str | Path) -> Path:
    """A CXI path, or the name of a shipped scan (``p25``)."""
    if str(data) in SHIPPED:
        return SHIPPED[str(data)]
    p = Path(data).expanduser()
    if not p.is_file():
        raise DatasetError(f"{p}: no such CXI file (or shipped scan: {', '.join(SHIPPED)})")
    return p


def halves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd positions: two interleaved halves of the same field."""
    idx = np.arange(n)
    return idx[0::2], idx[1::2]


def lit_box(obj: np.ndarray) -> tuple[slice, slice]:
    """Where the object is not the constant the unlit buffer keeps (its corner value)."""
    from .diagnose.io import trim_unscanned

    a = obj
    out, _ = trim_unscanned(a)
    if out.shape == a.shape:
        return slice(0, a.shape[0]), slice(0, a.shape[1])
    # locate the trimmed window in the original: the first row/column that is not the fill
    fill = a[0, 0]
    rows = np.flatnonzero(~np.all(a == fill, axis=1))
    cols = np.flatnonzero(~np.all(a == fill, axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _intersect(boxes: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    y0, y1 = max(b[0].start for b in boxes), min(b[0].stop for b in boxes)
    x0, x1 = max(b[1].start for b in boxes), min(b[1].stop for b in boxes)
    return slice(y0, y1), slice(x0, x1)


def _save(path: Path, res: ReconResult, box: tuple[slice, slice] | None = None) -> Path:
    import io

    import h5py

    obj = res.obj[0] if res.obj.ndim == 3 and res.obj.shape[0] == 1 else res.obj
    if box is not None:
        obj = obj[..., box[0], box[1]]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["object"] = obj.astype(np.complex64)
        f["probe"] = res.probe.astype(np.complex64)
        f["positions_px"] = res.positions
        f["loss"] = np.asarray(res.loss, np.float64)
    return write_atomic(path, buf.getvalue())


def params_file(m: Measured, params: ReconParams, res: ReconResult) -> dict[str, Any]:
    """What ``diagnose --params`` reads: the run's parameters and its facts."""
    return {
        **params.to_dict(),
        "instrument": "PETRA III P25" if "p25" in m.name.lower() else "not given",
        "scan": f"{len(m.patterns)} positions",
        "n_positions": len(m.patterns),
        "detector_px": int(m.patterns.shape[-1]),
        "near_field": m.near_field,
        "loss": [round(float(v), 6) for v in res.loss],
    }


def run(
    data: str | Path,
    out: Path,
    params: ReconParams,
    *,
    near_field: bool | None = None,
    focus_to_sample_m: float | None = None,
    with_halves: bool = True,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Reconstruct ``data`` with ``params`` into ``out``: ``object.h5`` (the whole object as
    pty-chi keeps it, unlit border included), ``params.yaml`` (for ``diagnose --params``)
    and, ``with_halves``, ``half1.h5``/``half2.h5`` cropped to their common lit region
    (for ``diagnose half1.h5 --half half2.h5``). Returns a summary (``summary.json``)."""
    import yaml

    say = progress or (lambda _: None)
    m = read_cxi(resolve(data), near_field, focus_to_sample_m)
    out.mkdir(parents=True, exist_ok=True)
    say("; ".join(m.geometry_lines()))
    say(f"reconstructing all {len(m.patterns)} positions, {params.n_epochs} epochs")
    full = reconstruct_measured(m, params, seed)
    _save(out / "object.h5", full)
    write_atomic(out / "params.yaml", yaml.safe_dump(params_file(m, params, full), sort_keys=False))
    summary: dict[str, Any] = {
        "data": str(data),
        "geometry": m.geometry_lines(),
        "params": params.to_dict(),
        "final_loss": float(full.loss[-1]),
        "seconds": round(full.seconds, 1),
    }
    if with_halves:
        parts = []
        for i, idx in enumerate(halves(len(m.patterns)), 1):
            say(f"reconstructing half {i} ({len(idx)} positions)")
            parts.append(reconstruct_measured(m.subset(idx), params, seed))
        box = _intersect([lit_box(r.obj[0]) for r in (full, *parts)])
        for i, r in enumerate(parts, 1):
            _save(out / f"half{i}.h5", r, box)
        summary["frc_resolution_px"] = half_frc(parts[0], parts[1], box, m.near_field)
        summary["seconds_halves"] = round(sum(r.seconds for r in parts), 1)
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def half_frc(a: ReconResult, b: ReconResult, box: tuple[slice, slice], near_field: bool) -> float:
    """Half-bit FRC resolution (px) of two half-data reconstructions over ``box``."""
    from .diagnose.io import to_recon
    from .diagnose.measure import frc

    ra = to_recon(a.obj[0][box], "half1")
    rb = to_recon(b.obj[0][box], "half2")
    if ra.shape != rb.shape:  # a constant line left in one half only
        n0, n1 = min(ra.shape[0], rb.shape[0]), min(ra.shape[1], rb.shape[1])
        ra.data, rb.data = ra.data[:n0, :n1], rb.data[:n0, :n1]
    return float(frc(ra, rb, near_field).resolution_px)


def _finished(folder: Path, params: ReconParams) -> dict[str, Any] | None:
    """The summary of a finished run with halves in ``folder`` with these parameters."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    same = summary.get("params") == params.to_dict() and "frc_resolution_px" in summary
    return summary if same else None


def advice_payoff(
    data: str | Path,
    out: Path,
    params: ReconParams,
    letters: list[str],
    *,
    near_field: bool | None = None,
    focus_to_sample_m: float | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The truth-free payoff of ``letters`` on ``data``: the current and the advised
    parameters, each reconstructed in full and in two halves (in ``out/current`` and
    ``out/advised``; a finished run there with the same parameters is reused); the final
    loss and the half-data FRC resolution of each (``payoff.json`` in ``out``)."""
    from .loop.advice import apply_advice

    m = read_cxi(resolve(data), near_field, focus_to_sample_m)
    adv = apply_advice(frozenset(letters), params, len(m.patterns))
    if not adv.changes:
        raise DatasetError(f"advice {', '.join(letters) or '(none)'} changes nothing in these parameters")
    advised = adv.variants[0]
    rows = {}
    for name, p in (("current", params), ("advised", advised)):
        done = _finished(out / name, p)
        if done is not None:  # a run folder of these parameters (e.g. the one diagnosed): reused
            rows[name] = done
            continue
        (progress or (lambda _: None))(f"{name} parameters")
        rows[name] = run(data, out / name, p, near_field=m.near_field, focus_to_sample_m=m.focus_to_sample_m, seed=seed)
    result = {
        "letters": sorted(letters),
        **adv.summary(),
        "current": asdict(params),
        "advised": asdict(advised),
        "final_loss": {k: v["final_loss"] for k, v in rows.items()},
        "frc_resolution_px": {k: v.get("frc_resolution_px") for k, v in rows.items()},
        "seconds": {k: v["seconds"] + v.get("seconds_halves", 0) for k, v in rows.items()},
    }
    write_atomic(out / "payoff.json", json.dumps(result, indent=1))
    return result
