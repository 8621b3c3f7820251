"""One fine-tuning recipe, measured: train an adapter on a task's train split, answer the
test split with it (greedy, k=0), and print micro-F1, the most frequent answer's share and
the training time. Issue 27 chose the default's low-data recipe with it.

    PYTHONPATH=src python benchmarks/bench_sft_recipe.py --task artifacts --model tiny-vlm \
        --profile cpu --set epochs=0.5 --set align_epochs=0.5 --out /tmp/ft/a1
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path


def value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="artifacts")
    ap.add_argument("--model", default="tiny-vlm")
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--set", action="append", default=[], help="a recipe field, name=value (JSON value)")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N test samples")
    ap.add_argument("--out", type=Path, required=True, help="adapter folder")
    args = ap.parse_args()

    from ptychobench.data import load_dataset
    from ptychobench.eval.metrics import score
    from ptychobench.models import load_backend
    from ptychobench.models.base import GenerationConfig
    from ptychobench.strategies.sft import train_adapter
    from ptychobench.tasks import get_task

    overrides = {k: value(v) for k, v in (s.split("=", 1) for s in args.set)}
    t0 = time.perf_counter()
    train_adapter(
        args.task, args.model, args.dataset, args.out, profile=args.profile, force=True, progress=True, **overrides
    )
    train_s = time.perf_counter() - t0
    manifest = json.loads((args.out / "ptychobench_adapter.json").read_text())
    task = get_task(args.task)
    test = sorted(load_dataset(args.dataset).samples(args.task, "test"), key=lambda s: s.id)
    if args.limit:
        test = test[: args.limit]
    backend = load_backend(args.model, adapter=args.out)
    t1 = time.perf_counter()
    gens = []
    for i in range(0, len(test), 16):
        gens += backend.generate([task.render(s) for s in test[i : i + 16]], GenerationConfig(max_new_tokens=40))
    eval_s = time.perf_counter() - t1
    pred = [task.parse(g.text).labels for g in gens]
    gold = [frozenset(s.labels) for s in test]
    sc = score(gold, pred, task.scored_labels, ci=False)
    answers = Counter(", ".join(sorted(p)) or "(none)" for p in pred)
    top, n_top = answers.most_common(1)[0]
    print(
        json.dumps(
            {
                "set": overrides,
                "profile": args.profile,
                "micro_f1": round(sc.micro_f1, 3),
                "top_answer": top,
                "top_share": round(n_top / len(test), 3),
                "distinct_answers": len(answers),
                "steps": manifest["steps"],
                "align_steps": manifest.get("align", {}).get("steps", 0),
                "train_s": round(train_s, 1),
                "eval_s": round(eval_s, 1),
                "n": len(test),
            }
        )
    )


if __name__ == "__main__":
    main()
