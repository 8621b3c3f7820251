"""The objects a user reaches for in a notebook, in one import.

import ptychobench as pb
ds = pb.load_dataset("sim-v2")            # a validated Dataset
df = pb.run_frame("runs/default")         # one row per stored prediction (pandas)
scores = pb.score_frame("runs/default")   # one row per cell: micro/macro F1 with CIs
backend = pb.load_backend("smollm2-135m") # any model the runner knows
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_frame(run: Path | str) -> Any:
    """Every stored prediction of a run (all shards merged) as a pandas DataFrame: one row
    per (cell, sample) with the cell's settings flattened into columns."""
    import pandas as pd

    from .eval.store import read_run

    rows = []
    for r in read_run(run):
        meta = r.get("meta", {})
        rows.append(
            {
                "config": r["config"],
                "sample_id": r["sample_id"],
                "task": r["task"],
                "sample_type": r.get("sample_type"),
                "gold": r["gold"],
                "labels": r["labels"],
                "parse_ok": r.get("parse_ok"),
                "error": r.get("error"),
                "reply": r.get("reply"),
                **{k: meta.get(k) for k in ("model", "strategy", "selector", "k", "seed", "train_size", "family")},
            }
        )
    return pd.DataFrame(rows)


def score_frame(run: Path | str, ci: bool = True, seed: int = 0) -> Any:
    """Scores per cell as a pandas DataFrame (the ``score`` command's table)."""
    import pandas as pd

    from .eval.score import score_records
    from .eval.store import read_run

    rows = []
    for r in score_records(read_run(run), ci=ci, seed=seed):
        s = r.scores
        lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
        rows.append(
            {
                "config": r.config,
                "task": r.task,
                **{k: r.meta.get(k) for k in ("model", "strategy", "selector", "k", "seed")},
                "n": s.n,
                "micro_f1": s.micro_f1,
                "micro_f1_lo": lo,
                "micro_f1_hi": hi,
                "macro_f1": s.macro_f1,
                "parse_failures": s.parse_failures,
                "errors": s.errors,
            }
        )
    return pd.DataFrame(rows)


def load_backend(model: str, adapter: str | Path | None = None, **options: Any) -> Any:
    """A ready model backend (``generate(conversations, GenerationConfig)``); see
    :func:`ptychobench.models.load_backend`."""
    from .models import load_backend as _load

    return _load(model, adapter, **options)
