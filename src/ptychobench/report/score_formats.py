"""``ptychobench score --format``: a run's scores for a terminal, a spreadsheet or a program.

``table`` is the rich table (fits the terminal); ``wide`` prints every column at full width
whatever the terminal (no column is dropped at 80 columns, e.g. under a scheduler);
``csv`` and ``json`` are for other tools, one row per cell with the cell's settings split
into columns.
"""

from __future__ import annotations

import json
from typing import Any

from ..eval.score import ConfigScores

FORMATS = ("table", "wide", "csv", "json")
SETTINGS = ("model", "strategy", "selector", "k", "seed", "train_size")


def score_rows(results: list[ConfigScores]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        s = r.scores
        lo, hi = s.micro_f1_ci or (None, None)
        rows.append({"task": r.task, "config": r.config, **{k: r.meta.get(k) for k in SETTINGS}, "n": s.n,
                     "micro_f1": round(s.micro_f1, 4), "micro_f1_lo": None if lo is None else round(lo, 4),
                     "micro_f1_hi": None if hi is None else round(hi, 4), "macro_f1": round(s.macro_f1, 4),
                     "exact": round(s.exact_match, 4), "parse_failures": s.parse_failures, "errors": s.errors})
    return rows


def format_scores(results: list[ConfigScores], fmt: str) -> str:
    """The scores as text in one of ``wide``, ``csv``, ``json`` (``table`` is drawn by rich)."""
    import pandas as pd

    rows = score_rows(results)
    if fmt == "json":
        return json.dumps(rows, indent=1)
    df = pd.DataFrame(rows, columns=list(rows[0]) if rows else ["task", "config"])
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "wide":
        return df.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.3f}")
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
