"""A fine-tuned adapter's cells as the default runs them: SFT at 0-shot, SFT + 1 knn demo
and SFT + 1 random demo on a task's test split, stored as a run's records, then the report
(its "Paper findings" section: complementarity and contextual interference with paired
bootstrap p-values). Prints each cell's micro-F1 and most frequent answer, and the findings.

    PYTHONPATH=src python benchmarks/bench_sft_cells.py --adapter /tmp/ft/combo --run /tmp/ft/cells
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

CELLS = [("sft", None, 0), ("sft+icl", "knn", 1), ("sft+icl", "random", 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adapter", type=Path, help="the adapter folder (none: the base model, a smoke test)")
    ap.add_argument("--run", type=Path, required=True, help="run folder for the records and the report")
    ap.add_argument("--task", default="artifacts")
    ap.add_argument("--model", default="tiny-vlm")
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--limit", type=int, default=0, help="only the first N test samples (a smoke test)")
    args = ap.parse_args()

    from ptychobench.data import load_dataset
    from ptychobench.eval.compare import by_config
    from ptychobench.eval.predict import predict
    from ptychobench.eval.score import score_records
    from ptychobench.eval.store import PredictionStore, read_run
    from ptychobench.models import load_backend
    from ptychobench.models.base import GenerationConfig
    from ptychobench.report.findings import paper_findings
    from ptychobench.report.write import write_report
    from ptychobench.strategies import make_selector
    from ptychobench.tasks import get_task

    ds = load_dataset(args.dataset)
    task = get_task(args.task)
    train = sorted(ds.samples(args.task, "train"), key=lambda s: s.id)
    test = sorted(ds.samples(args.task, "test"), key=lambda s: s.id)[: args.limit or None]
    args.run.mkdir(parents=True, exist_ok=True)
    store = PredictionStore(args.run / "predictions.jsonl")
    backend = load_backend(args.model, adapter=args.adapter)
    component = {"dataset": {"name": ds.name, "content_hash": ds.manifest.get("content_hash"), "limit": None}}
    for strategy, sel, k in CELLS:
        config = f"{args.task}/{args.model}/{strategy}/{sel or '-'}/k{k}/seed0/nall"
        meta = {"task": args.task, "model": args.model, "strategy": strategy, "selector": sel, "k": k, "seed": 0}
        meta.update(train_size="all", family=strategy, prompt="ours", parse="tolerant", split="test")
        selector = make_selector(sel, seed=0) if sel else None
        t0 = time.perf_counter()
        predict(
            task,
            test,
            backend,
            store,
            config,
            meta,
            GenerationConfig(max_new_tokens=40),
            (lambda s, sel=selector: sel.select(s, train, k)) if selector else None,
            batch_size=16,
            components=component,
        )
        print(f"{config}: {time.perf_counter() - t0:.0f} s", flush=True)
    records = read_run(args.run)
    for r in score_records(records, ci=False):
        answers = Counter(", ".join(x["labels"]) or "(none)" for x in records if x["config"] == r.config)
        top, n = answers.most_common(1)[0]
        print(
            json.dumps(
                {
                    "cell": r.config,
                    "micro_f1": round(r.scores.micro_f1, 3),
                    "top": top,
                    "top_share": round(n / len(test), 3),
                }
            )
        )
    for f in paper_findings(score_records(records, ci=False), by_config(records)):
        print(" | ".join(f.cells()))
    write_report(args.run)
    print(f"report: {args.run / 'report.md'}")


if __name__ == "__main__":
    main()
