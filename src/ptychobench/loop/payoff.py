"""The payoff of parameter advice: apply it, reconstruct, compare with the truth.

Protocol (the dataset's option verification, repeated over seeds): for each test sample a
cell answered, the experiment is rebuilt from its recipe, the advice is applied jointly
(:mod:`.advice`), and the reconstruction is repeated with ``seed_index`` 0..n-1 for both
the current and the advised params. The error change is the mean over seeds of
(advised - current), relative to the mean current error; negative is better. A sample is
*improved* when the gain passes the dataset's noise margin (relative ``GAIN_MARGIN`` and
absolute ``MIN_ABS_GAIN``, the rule that verified the labels) and *harmed* when the loss
passes it. The payoff is the cell's total gain as a fraction of the oracle's, the best
verified single option's stored gain (``metadata["option_gains"]``, 0 when none helps).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..data import Dataset, Sample
from ..errors import PtychoBenchError
from ..sim.defects import Experiment
from ..sim.labels import GAIN_MARGIN, MIN_ABS_GAIN
from ..sim.recon import ReconParams
from .advice import Advice, apply_advice
from .cache import CACHE_DIR, Job, ReconCache, scan_facts

#: the reference policies reported beside the cells
NO_CHANGE, ALWAYS_K, GOLD = "ref: no change", "ref: always increase iterations (K)", "ref: gold labels jointly"
_ID = re.compile(r"exp(\d+)$")


def dataset_scale(ds: Dataset) -> str:
    """The simulation scale a dataset was built at (the quick build is smaller)."""
    cfg = (ds.manifest.get("generator") or {}).get("config") or {}
    return str(cfg.get("scale") or ("quick" if cfg.get("quick") else "full"))


def experiment_of(sample: Sample, scale: str = "full") -> Experiment | None:
    """The simulated experiment behind a params sample, or None when it was not simulated.

    sim-v2 stores the recipe (``metadata["experiment"]``); sim-v1 stores its parts (seed,
    sample type, instrument, scan, defects, params; the index is the id's number)."""
    m = sample.metadata or {}
    if isinstance(m.get("experiment"), dict):
        return Experiment.from_dict(m["experiment"])
    need = ("seed", "sample_type", "instrument", "scan", "defects", "reconstruction_parameters")
    hit = _ID.search(sample.id)
    if hit is None or not all(k in m for k in need) or not isinstance(m["instrument"], dict):
        return None
    return Experiment(
        index=int(hit.group(1)),
        seed=int(m["seed"]),
        sample_type=m["sample_type"],
        instrument=m["instrument"]["name"],
        scan=m["scan"],
        defects=m["defects"],
        params=ReconParams(**m["reconstruction_parameters"]),
        scale=scale,
    )


def oracle_gain(sample: Sample) -> float:
    """The best verified single option's stored relative gain (0 when none helps)."""
    gains = [g for g in (sample.metadata.get("option_gains") or {}).values() if g is not None]
    return max([0.0, *gains])


@dataclass
class Plan:
    """One (cell, sample): the experiment and the advice to score."""

    config: str
    sample: Sample
    exp: Experiment
    advice: Advice

    def jobs(self, seeds: int) -> list[Job]:
        out: list[Job] = []
        for k in range(seeds):
            out.append((self.exp, self.exp.params, k))
            out.extend((self.exp, v, k) for v in self.advice.variants)
        return out


def plan(config: str, sample: Sample, exp: Experiment, letters: Iterable[str]) -> Plan:
    n_pos, com = scan_facts(exp)
    return Plan(config, sample, exp, apply_advice(frozenset(letters), exp.params, n_pos, com))


def outcome(p: Plan, cache: ReconCache, seeds: int) -> dict[str, Any]:
    """The scored advice of one plan, from cached reconstructions."""
    cur, adv, failed = [], [], False
    for k in range(seeds):
        base = cache.get(p.exp, p.exp.params, k)
        if base is None or base.get("error") is None:
            raise RuntimeError(f"{p.sample.id}: the current params did not reconstruct (seed {k})")
        best = cache.best_variant(p.exp, p.advice.variants, k)
        cur.append(base["error"])
        if best is None or best.get("error") is None:
            failed = True  # the advised params cannot be run: it changes nothing
            adv.append(base["error"])
        else:
            adv.append(best["error"])
    e0, e1 = float(np.mean(cur)), float(np.mean(adv))
    change = (e1 - e0) / max(e0, 1e-12)
    og = oracle_gain(p.sample)
    return {
        "config": p.config,
        "sample_id": p.sample.id,
        **p.advice.summary(),
        "current_error": round(e0, 6),
        "advised_error": round(e1, 6),
        "change": round(change, 6),
        "improved": bool(-change >= GAIN_MARGIN and e0 - e1 >= MIN_ABS_GAIN),
        "harmed": bool(change >= GAIN_MARGIN and e1 - e0 >= MIN_ABS_GAIN),
        "oracle_gain": og,
        "failed": failed,
    }


def _ci(values: np.ndarray, seed: int = 0) -> tuple[float | None, float | None]:
    if len(values) < 2 or np.ptp(values) == 0:
        v = float(values.mean()) if len(values) else None
        return v, v
    from scipy.stats import bootstrap

    r = bootstrap((values,), np.mean, n_resamples=2000, method="percentile", random_state=seed)
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def summarize(config: str, rows: Sequence[dict[str, Any]], seed: int = 0) -> dict[str, Any]:
    """A cell's (or reference policy's) payoff over its samples."""
    ch = np.array([r["change"] for r in rows], dtype=float)
    og = np.array([r["oracle_gain"] for r in rows], dtype=float)
    lo, hi = _ci(ch, seed)
    return {
        "config": config,
        "n": len(rows),
        "mean_change": float(ch.mean()) if len(ch) else None,
        "ci_lo": lo,
        "ci_hi": hi,
        "improved": float(np.mean([r["improved"] for r in rows])) if rows else None,
        "harmed": float(np.mean([r["harmed"] for r in rows])) if rows else None,
        "payoff": float(-ch.sum() / og.sum()) if og.sum() > 0 else None,
        "contradictory": sum(bool(r["contradictory"]) for r in rows),
        "not_applicable": sum(bool(r["not_applicable"]) for r in rows),
        "failed": sum(r["failed"] for r in rows),
    }


def paired(
    a: str, b: str, rows: dict[str, dict[str, dict]], seed: int = 0, n_boot: int = 2000
) -> dict[str, Any] | None:
    """Paired bootstrap of the difference in mean gain (A - B) over the samples both cells
    answered; p is the two-sided share of resamples on the other side of zero."""
    ids = sorted(set(rows[a]) & set(rows[b]))
    if len(ids) < 2:
        return None
    d = np.array([rows[b][i]["change"] - rows[a][i]["change"] for i in ids])  # gain_a - gain_b
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(1)
    p = float(min(1.0, 2 * min((boot <= 0).mean(), (boot >= 0).mean())))
    return {
        "a": a,
        "b": b,
        "n": len(ids),
        "gain_diff": float(d.mean()),
        "ci": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
        "p": p,
    }


class NotSimulated(PtychoBenchError):
    """The dataset's params samples carry no experiment recipe."""


def compute_payoff(
    records: Sequence[dict[str, Any]],
    ds: Dataset,
    cache_root: Path,
    seeds: int = 3,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Payoff of every params-task cell in ``records`` plus the reference policies."""
    scale = dataset_scale(ds)
    test = {s.id: s for s in ds.samples("params", "test")} if ("params", "test") in ds.splits else {}
    exps = {sid: experiment_of(s, scale) for sid, s in test.items()}
    if not test or not any(exps.values()):
        raise NotSimulated(
            f"{ds.root}: dataset {ds.name!r} is not simulated (no experiment recipe in its params samples)"
        )
    from ..eval.compare import by_config

    cells = {c: r for c, r in by_config([r for r in records if r.get("task") == "params"]).items()}
    plans: list[Plan] = []
    for config, recs in sorted(cells.items()):
        for sid, r in sorted(recs.items()):
            exp = exps.get(sid)
            if exp is None or r.get("error"):
                continue
            plans.append(plan(config, test[sid], exp, r.get("labels", [])))
    answered = {p.sample.id for p in plans}  # references on the samples the cells answered (a ``limit`` run)
    for sid, s in sorted(test.items()):
        exp = exps[sid]
        if exp is None or (plans and sid not in answered):
            continue
        plans.append(plan(NO_CHANGE, s, exp, []))
        plans.append(plan(ALWAYS_K, s, exp, ["K"]))
        plans.append(plan(GOLD, s, exp, sorted(s.labels)))
    cache = ReconCache(cache_root)
    cache.ensure((j for p in plans for j in p.jobs(seeds)), workers=workers, progress=progress)
    rows = [outcome(p, cache, seeds) for p in plans]
    by_cell: dict[str, dict[str, dict]] = {}
    for r in rows:
        by_cell.setdefault(r["config"], {})[r["sample_id"]] = r
    refs = (NO_CHANGE, ALWAYS_K, GOLD)
    names = [c for c in by_cell if c not in refs]
    summaries = [summarize(c, list(by_cell[c].values())) for c in names]
    f1 = _micro_f1(records)
    for summary in summaries:
        summary["micro_f1"] = f1.get(summary["config"])
    comps = [c for a in names for b in names if a < b if (c := paired(a, b, by_cell))]
    comps += [c for a in names if (c := paired(a, GOLD, by_cell))]
    return {
        "seeds": seeds,
        "gain_margin": GAIN_MARGIN,
        "min_abs_gain": MIN_ABS_GAIN,
        "cells": summaries,
        "references": [summarize(c, list(by_cell[c].values())) for c in refs if c in by_cell],
        "comparisons": comps,
        "samples": rows,
        "reconstructions": {"computed": cache.computed, "cache_hits": cache.hits, "seconds": round(cache.seconds, 2)},
    }


def _micro_f1(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    from ..eval.score import score_records

    return {
        c.config: float(c.scores.micro_f1)
        for c in score_records([r for r in records if r.get("task") == "params"], ci=False)
    }


def write_payoff(run_dir: Path, result: dict[str, Any]) -> tuple[Path, Path]:
    """``payoff.json`` (everything) and ``payoff.csv`` (one row per cell and reference)."""
    import pandas as pd

    from ..files import write_atomic

    js = write_atomic(run_dir / "payoff.json", json.dumps(result, indent=1))
    frame = pd.DataFrame(result["cells"] + result["references"])
    csv = write_atomic(run_dir / "payoff.csv", frame.to_csv(index=False))
    return js, csv


def cache_root(run_dir: Path) -> Path:
    return Path(run_dir) / CACHE_DIR
