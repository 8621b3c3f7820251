"""Reconstructions cached on disk, one JSON per (experiment, params, seed index).

The key is the content of the experiment recipe, the canonical params dict and the repeat
index, so cells that give the same advice share a reconstruction, a rerun costs nothing
and a killed run resumes: each entry is written whole (``files.write_atomic``) when its
reconstruction ends. The cache lives under the run folder the user named, never outside.
Reconstructions run in worker processes (spawn, one OpenMP thread each): pty-chi on the
CPU scales by processes, not threads, on a shared 2-core machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Iterable

from ..files import write_atomic
from ..sim.defects import Acquisition, Experiment, acquire, centre_of_mass_offset
from ..sim.recon import ReconParams

CACHE_DIR = "payoff-cache"

Job = tuple[Experiment, ReconParams, int]


def job_key(exp: Experiment, params: ReconParams, seed_index: int) -> str:
    """Content hash of what determines a reconstruction: the experiment's data recipe
    (its current params left out, so an experiment whose params the loop changed shares
    entries with the original), the params reconstructed with, and the repeat index."""
    recipe = {k: v for k, v in exp.to_dict().items() if k != "params"}
    blob = json.dumps({"experiment": recipe, "params": params.to_dict(), "seed_index": seed_index}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _acquisition(exp_json: str) -> Acquisition:
    d = json.loads(exp_json)
    return acquire(Experiment.from_dict({**d, "params": ReconParams().to_dict()}))


def acquisition(exp: Experiment) -> Acquisition:
    """The experiment's measured data, regenerated from its seed (kept for the next job)."""
    recipe = {k: v for k, v in exp.to_dict().items() if k != "params"}
    return _acquisition(json.dumps(recipe, sort_keys=True))


def scan_facts(exp: Experiment) -> tuple[int, tuple[float, float]]:
    """Number of scan positions and the patterns' centre-of-mass offset (what options need)."""
    acq = acquisition(exp)
    return len(acq.positions), centre_of_mass_offset(acq.patterns)


def _num(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    return f if math.isfinite(f) else None


def reconstruct_entry(exp_d: dict, params_d: dict, seed_index: int) -> dict[str, Any]:
    """One reconstruction measured against the truth, as a JSON-able entry."""
    from ..sim.pipeline import run_recon

    exp = Experiment.from_dict(exp_d)
    acq = acquisition(exp)
    params = ReconParams(**params_d)
    try:
        r = run_recon(exp, acq, params, seed_index=seed_index)
    except Exception as e:  # noqa: BLE001 - pty-chi refuses some combinations; recorded as failed
        return {"error": None, "failed": f"{type(e).__name__}: {str(e)[:200]}", "params": params_d}
    loss = [_num(v) for v in r["loss"]]
    out = {
        "error": float(r["metrics"]["error"]),
        "final_loss": loss[-1] if loss else None,
        "loss": [None if v is None else round(v, 6) for v in loss],
        "metrics": {k: _num(v) for k, v in r["metrics"].items()},
        "seconds": round(float(r["seconds"]), 3),
        "params": params_d,
        "seed_index": seed_index,
        "n_positions": len(acq.positions),
        "com_offset_px": [round(float(v), 2) for v in centre_of_mass_offset(acq.patterns)],
        "mean_counts": float(acq.patterns.sum((1, 2)).mean()),
    }
    if "position_update_rms_px" in r:
        out["position_update_rms_px"] = round(float(r["position_update_rms_px"]), 2)
    return out


def _work(exp_d: dict, params_d: dict, seed_index: int, path: str) -> str:
    write_atomic(path, json.dumps(reconstruct_entry(exp_d, params_d, seed_index), sort_keys=True))
    return path


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover - torch is a dependency of ptychi
        pass


class ReconCache:
    """Cached reconstructions under ``root`` (a folder inside the run folder)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.hits = 0
        self.computed = 0
        self.seconds = 0.0

    def path(self, exp: Experiment, params: ReconParams, seed_index: int) -> Path:
        k = job_key(exp, params, seed_index)
        return self.root / k[:2] / f"{k}.json"

    def get(self, exp: Experiment, params: ReconParams, seed_index: int) -> dict[str, Any] | None:
        p = self.path(exp, params, seed_index)
        if not p.is_file():
            return None
        return json.loads(p.read_text())

    def ensure(self, jobs: Iterable[Job], workers: int = 1, progress: Callable[[int, int], None] | None = None) -> int:
        """Reconstruct every job not yet cached; returns how many were computed now."""
        import time

        seen: dict[str, Job] = {}
        for exp, params, k in jobs:
            seen.setdefault(job_key(exp, params, k), (exp, params, k))
        todo = [j for j in seen.values() if not self.path(*j).is_file()]
        self.hits += len(seen) - len(todo)
        total = len(todo)
        if progress:
            progress(0, total)
        t0 = time.perf_counter()
        args = []
        for exp, params, k in todo:
            p = self.path(exp, params, k)
            p.parent.mkdir(parents=True, exist_ok=True)
            args.append((exp.to_dict(), params.to_dict(), k, str(p)))
        if workers <= 1 or len(args) <= 1:
            for i, a in enumerate(args):
                _work(*a)
                if progress:
                    progress(i + 1, total)
        else:
            import multiprocessing as mp

            with ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_init_worker
            ) as pool:
                futs = [pool.submit(_work, *a) for a in args]
                for i, f in enumerate(as_completed(futs)):
                    f.result()
                    if progress:
                        progress(i + 1, total)
        self.computed += total
        self.seconds += time.perf_counter() - t0
        return total

    def best_variant(self, exp: Experiment, variants: list[ReconParams], seed_index: int) -> dict[str, Any] | None:
        """The cached entry of the variant with the lowest final data loss (Q's rule)."""
        entries = [e for e in (self.get(exp, v, seed_index) for v in variants) if e is not None]
        ok = [e for e in entries if e.get("error") is not None and e.get("final_loss") is not None]
        if not ok:
            return entries[0] if entries else None
        return min(ok, key=lambda e: e["final_loss"])
