"""Synthetic model cells for report tests: records as the runner writes them, made without
a model, over a real dataset's samples, so the report's pages can be tested quickly."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ptychobench.data import load_dataset
from ptychobench.eval.record import PredictionRecord
from ptychobench.eval.store import PredictionStore
from ptychobench.tasks import get_task

#: (strategy, selector, k, family, how good the cell is)
CELLS = [
    ("zero-shot", None, 0, "zero-shot", 0.2),
    ("icl", "knn", 1, "icl", 0.5),
    ("icl", "random", 1, "icl", 0.3),
    ("sft", None, 0, "sft", 0.7),
    ("sft+icl", "knn", 1, "sft+icl", 0.8),
    ("knn-vote", None, 0, "baseline", 0.4),
]


def add_model_cells(
    run_dir: Path, dataset: Path | str, limit: int | None = None, model: str = "fake-vlm", seed: int = 0
) -> int:
    """Append records of five model cells per task to ``run_dir``'s store; replies are right
    with each cell's probability and otherwise wrong, unparseable or a generation error.
    The config file names the dataset, as a run's does. Returns the number of records."""
    ds = load_dataset(dataset)
    rng = random.Random(seed)
    store = PredictionStore(Path(run_dir) / "predictions.jsonl")
    cfg = Path(run_dir) / "config.yaml"
    if not cfg.exists():
        cfg.write_text(f"name: fixture\ndataset: {ds.root}\nexperiments: []\n")
    n = 0
    for task in ds.tasks:
        t = get_task(task)
        train = ds.samples(task, "train")
        test = ds.samples(task, "test")[:limit] if limit else ds.samples(task, "test")
        component = {"dataset": {"name": ds.name, "content_hash": ds.manifest.get("content_hash"), "limit": limit}}
        for strategy, sel, k, family, p_right in CELLS:
            name = strategy if family == "baseline" else model
            config = f"{task}/{name}/{strategy}/{sel or '-'}/k{k}/seed0/nall"
            meta = {
                "task": task,
                "model": name,
                "strategy": strategy,
                "selector": sel,
                "k": k,
                "seed": 0,
                "train_size": "all",
                "family": family,
                "n_train": len(train),
            }
            for s in test:
                roll = rng.random()
                error, ok = None, True
                if roll < p_right:
                    labels = sorted(s.labels)
                elif roll < p_right + 0.1 and family != "baseline":
                    labels, ok = [], False
                elif roll < p_right + 0.15 and family != "baseline":
                    labels, error = [], "RuntimeError: the server closed the connection"
                else:
                    labels = sorted(rng.sample(t.labels, 2))
                reply = (
                    ""
                    if error or family == "baseline"
                    else t.target(labels)
                    if ok
                    else "I think it <b>looks</b> fine </script>"
                )
                demos = [d.id for d in rng.sample(train, k)]
                if family != "baseline" and roll >= p_right and not error and ok and rng.random() < 0.3:
                    reply = "<answer>[" + ", ".join(labels) + "]</answer> </script><!-- <b>bold</b>"
                store.append(
                    PredictionRecord(
                        config=config,
                        sample_id=s.id,
                        task=task,
                        sample_type=s.sample_type,
                        gold=sorted(s.labels),
                        labels=labels,
                        parse_ok=ok,
                        reply=reply,
                        error=error,
                        demos=demos,
                        meta=meta,
                        components=component,
                    )
                )
                n += 1
    return n


if __name__ == "__main__":  # python tests/report_fixture.py RUN_DIR DATASET [LIMIT]
    import sys

    print(json.dumps(add_model_cells(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)))
