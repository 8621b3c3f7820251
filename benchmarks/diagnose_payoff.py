"""The payoff of ``diagnose``'s advice on a simulated dataset's params test split.

For each test experiment: reconstruct it with its current parameters (seed 0), hand the
field a user would look at (``sim.pipeline.field``) and the run's facts (parameters,
loss curve, scan, counts; never the truth or the dataset's labels) to ``diagnose``, take
its advised options, and score them with the payoff protocol of ``ptychobench payoff``
(:mod:`ptychobench.loop.payoff`: apply jointly, reconstruct, error against the truth,
gain as a fraction of the oracle's). The text probe on the dataset's own texts (the
default run's best params cell) and the reference policies are scored on the same
reconstructions.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diagnose_payoff.py --dataset sim-v2 \
        --out runs/diagnose-payoff --workers 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DIAGNOSE = "diagnose (text probe fitted on diagnose's train texts)"
BEFORE = "diagnose's text, probe fitted on the dataset's texts (before)"


def advice_letters(text: str, cur, clean: bool, advisor) -> list[str]:
    """The options ``advisor`` chooses on diagnose's text, with diagnose's rules (options that
    cannot apply are not chosen; a clean image gets "No changes needed")."""
    return advisor.advise(text, cur, clean).chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--out", type=Path, default=Path("runs/diagnose-payoff"))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()

    from diagnose_texts import diagnose_experiment
    from ptychobench.data import load_dataset
    from ptychobench.diagnose.advice import get_advisor, is_clean, load_probe_advisor
    from ptychobench.loop.cache import ReconCache
    from ptychobench.loop.payoff import GOLD, NO_CHANGE, dataset_scale, experiment_of, outcome, plan, summarize

    ds = load_dataset(args.dataset)
    scale = dataset_scale(ds)
    test = ds.samples("params", "test")[: args.limit]
    own = get_advisor("text-probe", None, args.dataset)  # diagnose's default: fitted on diagnose's train texts
    probe = load_probe_advisor("text-probe", args.dataset, own_texts=False)  # fitted on the dataset's texts
    if not own.own_texts:
        raise SystemExit(f"no diagnose texts of {args.dataset} train are shipped: run benchmarks/diagnose_texts.py")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    plans, per_sample = [], {}
    done_path = args.out / "letters.json"  # the advice per sample: a rerun goes straight to the payoff
    done = json.loads(done_path.read_text()) if done_path.is_file() else {}
    for i, s in enumerate(test):
        exp = experiment_of(s, scale)
        if exp is None:
            continue
        if s.id in done:
            per_sample[s.id] = done[s.id]
        else:
            d, cur, text = diagnose_experiment(exp)
            withheld = bool(d.warnings)  # diagnose gives no advice on what it takes for no reconstruction
            clean = is_clean(d.labels, d.measurements)
            per_sample[s.id] = {
                "labels": d.labels,
                "notes": d.notes,
                "warnings": d.warnings,
                "clean": clean,
                "text": text,
                "letters": [] if withheld else advice_letters(text, cur, clean, own),
                "letters_dataset_probe": [] if withheld else advice_letters(text, cur, clean, probe),
                "text_probe": probe.advise(s.text).chosen,  # on the dataset's text, as the runner's cell
                "gold": sorted(s.labels),
            }
            args.out.mkdir(parents=True, exist_ok=True)
            done_path.write_text(json.dumps(per_sample, indent=1))
        r = per_sample[s.id]
        plans += [
            plan(DIAGNOSE, s, exp, r["letters"]),
            plan(BEFORE, s, exp, r["letters_dataset_probe"]),
            plan("text-probe on the dataset's text", s, exp, r["text_probe"]),
            plan(NO_CHANGE, s, exp, []),
            plan(GOLD, s, exp, sorted(s.labels)),
        ]
        print(
            f"{i + 1}/{len(test)} {s.id}: diagnose {r['letters']} before {r['letters_dataset_probe']} "
            f"text-probe {r['text_probe']} gold {r['gold']} ({time.time() - t0:.0f} s)",
            flush=True,
        )
    cache = ReconCache(args.out / "payoff-cache")
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
    print(f"seconds: {result['seconds']}", np.round(result["seconds"] / 60, 1), "min")


if __name__ == "__main__":
    main()
