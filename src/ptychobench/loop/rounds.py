"""Several rounds of advice: recommend, apply, reconstruct, rewrite the text, ask again.

Each round the advisor sees the sample's text as the dataset would have written it for the
current reconstruction (parameters, visible artifacts measured against the truth, loss
curve and diagnostics: ``sim.text.params_text`` on a record built from the cached
reconstruction). A sample leaves the loop when the advice is "No changes needed", changes
nothing, or R rounds pass. Two policies run beside it on the same experiments: an oracle
that each round greedily takes the single option with the lowest truth error (when it
passes the noise margin; otherwise it stops), and a fixed policy that always doubles the
iterations (K). Errors are the mean over the repeated seeds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from ..data import Sample
from ..sim.defects import Experiment
from ..sim.labels import GAIN_MARGIN, MIN_ABS_GAIN
from ..sim.options import candidates
from ..sim.recon import ReconParams
from ..tasks import NO_ARTIFACTS, PARAM_OPTIONS
from .advice import NO_CHANGE, apply_advice
from .cache import ReconCache, scan_facts

Advisor = Callable[[Sequence[Sample]], list[frozenset[str]]]
#: why a trajectory stopped when its next parameters did not reconstruct (pty-chi refused or
#: diverged): the scientist keeps the last good reconstruction, and the stop is counted
FAILED = "failed to reconstruct"


def mean_error(
    cache: ReconCache, exp: Experiment, variants: list[ReconParams], seeds: int
) -> tuple[float, ReconParams]:
    """Mean truth error over seeds of the variant chosen by lowest final loss at seed 0."""
    first = cache.best_variant(exp, variants, 0)
    if first is None or first.get("error") is None:
        return float("inf"), variants[0]
    chosen = ReconParams(**first["params"])
    errs = [(cache.get(exp, chosen, k) or {}).get("error") for k in range(seeds)]
    vals = [float(e) for e in errs if e is not None]
    if len(vals) < seeds:
        return float("inf"), chosen
    return float(np.mean(vals)), chosen


def sample_text(cache: ReconCache, exp: Experiment, sample_id: str) -> str:
    """The params-task text of ``exp`` as reconstructed now (seed 0), as the dataset writes it."""
    from ..sim.labels import artifact_labels
    from ..sim.text import params_text
    from ..tasks import ARTIFACT_LABELS

    e = cache.get(exp, exp.params, 0)
    if e is None or e.get("error") is None:
        raise RuntimeError(f"{sample_id}: no reconstruction of the current params to describe")
    rec = {
        "experiment": exp.to_dict(),
        "sample_id": sample_id,
        "n_positions": e["n_positions"],
        "scan_fov_px": exp.geometry.scan_fov,
        "com_offset_px": e["com_offset_px"],
        "mean_counts": e["mean_counts"],
        "loss": [v for v in e["loss"] if v is not None],
    }
    if "position_update_rms_px" in e:
        rec["position_update_rms_px"] = e["position_update_rms_px"]
    labs = artifact_labels(e["metrics"])
    visible = [x for x in ARTIFACT_LABELS if x in labs and x != NO_ARTIFACTS]
    return params_text(rec, visible, style=exp.seed)


def _with_params(exp: Experiment, p: ReconParams) -> Experiment:
    return replace(exp, params=p)


def _passes(e0: float, e1: float) -> bool:
    return (e0 - e1) / max(e0, 1e-12) >= GAIN_MARGIN and e0 - e1 >= MIN_ABS_GAIN


def run_loop(
    samples: Sequence[tuple[Sample, Experiment]],
    advisor: Advisor,
    cache: ReconCache,
    rounds: int = 3,
    seeds: int = 1,
    workers: int = 1,
    policies: Sequence[str] = ("oracle", "fixed"),
) -> dict[str, Any]:
    """Run the loop for every (sample, experiment); returns per-sample trajectories and the
    mean error after each round for the advisor and each policy."""
    cur = {s.id: (s, exp) for s, exp in samples}
    traj: dict[str, dict[str, list]] = {s.id: {"advisor": [], "oracle": [], "fixed": []} for s, _ in samples}
    cache.ensure([(e, e.params, k) for _, e in samples for k in range(seeds)], workers=workers)
    for sid, (s, e) in cur.items():
        e0, _ = mean_error(cache, e, [e.params], seeds)
        for key in traj[sid]:
            traj[sid][key].append({"round": 0, "error": e0, "letters": [], "applied": []})
    active = dict(cur)
    for r in range(1, rounds + 1):
        if not active:
            break
        ids = sorted(active)
        answers = advisor([active[i][0] for i in ids])
        jobs, steps = [], {}
        for sid, letters in zip(ids, answers):
            s, e = active[sid]
            n_pos, com = scan_facts(e)
            adv = apply_advice(letters, e.params, n_pos, com)
            steps[sid] = adv
            if not adv.changes:
                continue
            jobs += [(e, v, k) for v in adv.variants for k in range(seeds)]
        cache.ensure(jobs, workers=workers)
        # seed 0 chose the variant; its other seeds may still be missing
        more = []
        for sid, adv in steps.items():
            e = active[sid][1]
            if adv.changes:
                _, p = mean_error(cache, e, adv.variants, 1)
                more += [(e, p, k) for k in range(seeds)]
        cache.ensure(more, workers=workers)
        for sid, adv in steps.items():
            s, e = active[sid]
            step = {"round": r, "letters": sorted(adv.letters), **adv.summary()}
            if not adv.changes:
                step["error"] = traj[sid]["advisor"][-1]["error"]
                step["stopped"] = "no changes needed" if set(adv.letters) <= {NO_CHANGE} else "nothing applicable"
                traj[sid]["advisor"].append(step)
                del active[sid]
                continue
            err, p = mean_error(cache, e, adv.variants, seeds)
            if not np.isfinite(err):  # pty-chi refused the advised params: nothing changes
                step["error"] = traj[sid]["advisor"][-1]["error"]
                step["stopped"] = FAILED
                traj[sid]["advisor"].append(step)
                del active[sid]
                continue
            ne = _with_params(e, p)
            step["error"] = err
            traj[sid]["advisor"].append(step)
            new = replace(s, text=sample_text(cache, ne, s.id))
            active[sid] = (new, ne)
    if "oracle" in policies:
        _oracle(cur, traj, cache, rounds, seeds, workers)
    if "fixed" in policies:
        _fixed(cur, traj, cache, rounds, seeds, workers)
    ran = _policies_that_ran(traj)
    failed = {k: sum(any(x.get("stopped") == FAILED for x in t[k]) for t in traj.values()) for k in ran}
    return {"rounds": rounds, "seeds": seeds, "samples": traj, "mean_error": _means(traj, rounds), "failed": failed}


def _policies_that_ran(traj: dict[str, dict[str, list]]) -> list[str]:
    """The policies that ran (the advisor always; a policy only when it made a step)."""
    return [k for k in ("advisor", "oracle", "fixed") if k == "advisor" or any(len(t[k]) > 1 for t in traj.values())]


def _oracle(cur, traj, cache: ReconCache, rounds: int, seeds: int, workers: int) -> None:
    state = {sid: e for sid, (_, e) in cur.items()}
    for r in range(1, rounds + 1):
        opts: dict[str, list[tuple[str, list[ReconParams]]]] = {}
        jobs = []
        for sid, e in state.items():
            n_pos, com = scan_facts(e)
            opts[sid] = []
            for letter in PARAM_OPTIONS:
                c = [] if letter == NO_CHANGE else candidates(letter, e.params, n_pos, com)
                if c:
                    opts[sid].append((letter, c))
                    jobs += [(e, v, k) for v in c for k in range(seeds)]
        cache.ensure(jobs, workers=workers)
        nxt = {}
        for sid, e in state.items():
            e0 = traj[sid]["oracle"][-1]["error"]
            tried = [(*mean_error(cache, e, c, seeds), letter) for letter, c in opts[sid]]
            scored = [t for t in tried if np.isfinite(t[0])]
            if not scored:
                continue
            err, p, letter = min(scored, key=lambda t: t[0])
            if not _passes(e0, err):
                traj[sid]["oracle"].append({"round": r, "error": e0, "letters": [], "stopped": "no option helps"})
                continue
            traj[sid]["oracle"].append({"round": r, "error": err, "letters": [letter], "applied": [letter]})
            nxt[sid] = _with_params(e, p)
        state = nxt
        if not state:
            break


def _fixed(cur, traj, cache: ReconCache, rounds: int, seeds: int, workers: int) -> None:
    state = {sid: e for sid, (_, e) in cur.items()}
    for r in range(1, rounds + 1):
        ps = {sid: candidates("K", e.params, 0)[0] for sid, e in state.items()}
        cache.ensure([(state[sid], p, k) for sid, p in ps.items() for k in range(seeds)], workers=workers)
        for sid, e in list(state.items()):
            err, p = mean_error(cache, e, [ps[sid]], seeds)
            if not np.isfinite(err):  # as for the advisor: the last good result stands, counted
                prev = traj[sid]["fixed"][-1]["error"]
                step = {"round": r, "error": prev, "letters": ["K"], "applied": [], "stopped": FAILED}
                traj[sid]["fixed"].append(step)
                del state[sid]
                continue
            traj[sid]["fixed"].append({"round": r, "error": err, "letters": ["K"], "applied": ["K"]})
            state[sid] = _with_params(e, p)


def _means(traj: dict[str, dict[str, list]], rounds: int) -> dict[str, list[float]]:
    """Mean error after each round per policy that ran; a stopped sample keeps its last error."""
    out: dict[str, list[float]] = {}
    for key in _policies_that_ran(traj):
        rows = []
        for r in range(rounds + 1):
            vals = [[x for x in t[key] if x["round"] <= r][-1]["error"] for t in traj.values()]
            rows.append(round(float(np.mean(vals)), 6))
        out[key] = rows
    return out
