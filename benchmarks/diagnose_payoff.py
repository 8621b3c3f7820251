"""The payoff of ``diagnose``'s advice on a simulated dataset's params test split.

For each test experiment: reconstruct it with its current parameters (seed 0) and diagnose
it as a user's run (``diagnose_texts.diagnose_experiment``: the field a user would look
at, the run's facts, never the truth or the dataset's labels); take the options diagnose's
advisor chooses on that text (the text probe fitted on diagnose's own texts of the train
experiments, with the expected-gain rule), and score them with the payoff protocol of
``ptychobench payoff`` (:mod:`ptychobench.loop.payoff`: apply jointly, reconstruct, error
against the truth, gain as a fraction of the oracle's). The text probe on the dataset's
own texts (the default run's params cell) and the reference policies are scored on the
same experiments. ``letters.json`` keeps diagnose's text of each experiment; a rerun
recomputes the advice from it (the advisors as they are then) and reuses every
reconstruction already in the cache.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnose_payoff.py --dataset sim-v2 \
        --out runs/diagnose-payoff --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DIAGNOSE = "diagnose (probe fitted on diagnose's train texts, expected-gain rule)"
TEXT_PROBE = "text probe on the dataset's text"


def cell_letters(advisor, text: str) -> list[str]:
    """The text probe as the runner's params cell answers: every option at or above its
    threshold, else the one closest to it; "No changes needed" dropped beside a change."""
    p = advisor.probe.predict_proba(advisor_embed([text]))[0]
    t = advisor.probe.threshold_vector()
    chosen = {lab for lab, pj, tj in zip(advisor.labels, p, t) if pj >= tj}
    if not chosen:
        chosen = {advisor.labels[int(np.argmax(p - np.where(np.isfinite(t), t, 1.0)))]}
    if "L" in chosen and len(chosen) > 1:
        chosen -= {"L"}
    return sorted(chosen)


def advisor_embed(texts: list[str]) -> np.ndarray:
    from ptychobench.diagnose.advice import _embed_texts

    return _embed_texts(texts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--out", type=Path, default=Path("runs/diagnose-payoff"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    from diagnose_texts import diagnose_experiment, run_facts
    from ptychobench.data import load_dataset
    from ptychobench.diagnose.advice import get_advisor, is_clean, load_probe_advisor
    from ptychobench.loop.cache import ReconCache, acquisition
    from ptychobench.loop.payoff import (
        GOLD,
        NO_CHANGE,
        dataset_scale,
        experiment_of,
        outcome,
        paired,
        plan,
        summarize,
    )

    ds = load_dataset(args.dataset)
    scale = dataset_scale(ds)
    test = ds.samples("params", "test")[: args.limit]
    own = get_advisor("text-probe", None, args.dataset)  # diagnose's default: fitted on diagnose's train texts
    probe = load_probe_advisor("text-probe", args.dataset, own_texts=False)  # the runner's cell: the dataset's texts
    if not own.own_texts:
        raise SystemExit(f"no diagnose texts of {args.dataset} train are shipped: run benchmarks/diagnose_texts.py")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    plans, per_sample = [], {}
    done_path = args.out / "letters.json"  # the advice per sample: a rerun goes straight to the payoff
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    cache = ReconCache(args.out / "payoff-cache")
    for i, s in enumerate(test):
        exp = experiment_of(s, scale)
        if exp is None:
            continue
        cache.ensure([(exp, exp.params, 0)])  # the current run (the one diagnosed): its loss curve
        if s.id not in done:  # diagnose's text of the current reconstruction (the slow part)
            d, _, text = diagnose_experiment(exp)
            done[s.id] = {
                "labels": d.labels,
                "notes": d.notes,
                "warnings": d.warnings,
                "clean": is_clean(d.labels, d.measurements),
                "text": text,
                "gold": sorted(s.labels),
            }
            done_path.write_text(json.dumps(done, indent=1))
        r = dict(done[s.id])
        # the advice itself is recomputed from the stored text with the advisors as they are now
        # the run's facts with its loss curve, as a user's --params carries it (the convergence rule reads it)
        cur = run_facts(exp, acquisition(exp), (cache.get(exp, exp.params, 0) or {}).get("loss"))
        withheld = bool(r["warnings"])  # diagnose gives no advice on what it takes for no reconstruction
        advice = None if withheld else own.advise(r["text"], cur, r["clean"])
        r["letters"] = advice.chosen if advice else []
        r["advice_notes"] = advice.notes if advice else []
        r["text_probe"] = cell_letters(probe, s.text)  # on the dataset's text, as the runner's cell
        per_sample[s.id] = r
        plans += [
            plan(DIAGNOSE, s, exp, r["letters"]),
            plan(TEXT_PROBE, s, exp, r["text_probe"]),
            plan(NO_CHANGE, s, exp, []),
            plan(GOLD, s, exp, sorted(s.labels)),
        ]
        print(
            f"{i + 1}/{len(test)} {s.id}: diagnose {r['letters']} text-probe {r['text_probe']} "
            f"gold {r['gold']} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    cache.ensure((j for p in plans for j in p.jobs(1)), workers=args.workers)
    rows = [outcome(p, cache, 1) for p in plans]
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    result = {
        "dataset": args.dataset,
        "n": len(per_sample),
        "seconds": round(time.time() - t0, 1),
        "summaries": [summarize(c, v) for c, v in by.items()],
        # diagnose against the text probe, experiment by experiment (bootstrap of the gain difference)
        "paired": paired(DIAGNOSE, TEXT_PROBE, {c: {r["sample_id"]: r for r in v} for c, v in by.items()}),
        "samples": per_sample,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnose_payoff.json").write_text(json.dumps(result, indent=1))
    print("| policy | n | error change | improved | harmed | payoff |")
    print("|---|---|---|---|---|---|")
    for s in result["summaries"]:
        pay = "n/a" if s["payoff"] is None else f"{s['payoff']:.2f}"
        print(
            f"| {s['config']} | {s['n']} | {100 * s['mean_change']:+.1f}% | {100 * s['improved']:.0f}% | "
            f"{100 * s['harmed']:.0f}% | {pay} |"
        )
    pr = result["paired"]
    if pr:
        print(
            f"paired, {pr['n']} experiments: diagnose's error reduction minus the text probe's "
            f"{100 * pr['gain_diff']:+.1f} points (95% CI {100 * pr['ci'][0]:+.1f} to {100 * pr['ci'][1]:+.1f}; "
            f"p = {pr['p']:.2f})"
        )
    print(f"seconds: {result['seconds']}", np.round(result["seconds"] / 60, 1), "min")


if __name__ == "__main__":
    main()
