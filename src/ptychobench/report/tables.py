"""The report's tables: rows from scores, cells as text, Markdown and HTML renderings."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..eval.compare import Comparison
from ..eval.score import ConfigScores
from ..names import FAMILY_ORDER
from ..strategies.sft.manifest import training_summary
from .format import fmt, fmt_p, short_config


def main_rows(results: list[ConfigScores]) -> list[dict[str, Any]]:
    rows = []
    for task in sorted({r.task for r in results}):
        rs = [r for r in results if r.task == task]
        # a failed cell (too many errors or unparseable replies) is never the best
        best = max((r for r in rs if not r.failed), key=lambda r: r.scores.micro_f1, default=None)
        for r in sorted(
            rs,
            key=lambda r: (
                FAMILY_ORDER.index(r.meta.get("family", "baseline")) if r.meta.get("family") in FAMILY_ORDER else 9,
                str(r.meta.get("model")),
                str(r.meta.get("selector")),
                r.meta.get("k", 0),
                r.meta.get("seed", 0),
                str(r.meta.get("train_size")),
            ),
        ):
            m, s = r.meta, r.scores
            lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
            rows.append(
                {
                    "task": task,
                    "model": m.get("model"),
                    "strategy": m.get("strategy"),
                    "selector": m.get("selector") or "",
                    "k": m.get("k", 0),
                    "seed": m.get("seed", 0),
                    "n_train": m.get("n_train", m.get("train_size")),
                    "n": s.n,
                    "micro_f1": s.micro_f1,
                    "ci": (lo, hi),
                    "macro_f1": s.macro_f1,
                    "exact": s.exact_match,
                    "parse_fail": s.parse_failures,
                    "errors": s.errors,
                    "best": r is best,
                    "config": r.config,
                    "failed": r.failed,
                }
            )
    return rows


HEAD = [
    "task",
    "model",
    "strategy",
    "selector",
    "k",
    "seed",
    "n train",
    "n test",
    "micro-F1",
    "95% CI",
    "macro-F1",
    "exact",
    "parse fail",
    "errors",
]


def row_cells(row: dict[str, Any]) -> list[str]:
    star = " ★" if row["best"] else (" (failed)" if row.get("failed") else "")
    return [
        row["task"],
        str(row["model"]),
        row["strategy"],
        row["selector"],
        str(row["k"]),
        str(row["seed"]),
        str(row["n_train"]),
        str(row["n"]),
        f"{row['micro_f1']:.3f}{star}",
        f"[{fmt(row['ci'][0])}, {fmt(row['ci'][1])}]",
        f"{row['macro_f1']:.3f}",
        f"{row['exact']:.3f}",
        str(row["parse_fail"]),
        str(row["errors"]),
    ]


COMP_HEAD = ["task", "comparison", "A", "B", "n", "F1 A", "F1 B", "A-B", "95% CI of A-B", "p", "Cohen's d", "verdict"]


def comp_cells(c: Comparison) -> list[str]:
    return [
        c.task,
        c.kind,
        short_config(c.a),
        short_config(c.b),
        str(c.n),
        fmt(c.f1_a),
        fmt(c.f1_b),
        f"{c.diff:+.3f}",
        f"[{c.ci[0]:+.3f}, {c.ci[1]:+.3f}]",
        fmt_p(c.p),
        fmt(c.d, 2),
        c.verdict,
    ]


def md_table(head: list[str], rows: list[list[str]]) -> str:
    esc = [[x.replace("|", "\\|") for x in r] for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])


def html_table(head: list[str], rows: list[list[str]], best: list[bool] | None = None) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        cls = ' class="best"' if best and best[i] else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


ADAPTER_HEAD = [
    "task",
    "model",
    "adapter",
    "train samples",
    "steps",
    "epochs done / planned",
    "stopped by budget",
    "wall s",
    "mean train loss",
    "optimiser, loss on",
    "cells",
]


def adapter_rows(results: list[ConfigScores]) -> list[dict[str, Any]]:
    """One row per fine-tuned adapter the run used: how far its training went (recorded
    by the runner; older stores: read from the adapter folder where it still is)."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        path = r.meta.get("adapter")
        if not path:
            continue
        row = rows.get(path)
        if row is None:
            info = r.meta.get("adapter_training") or training_summary(path) or {}
            row = rows[path] = {
                "task": r.task,
                "model": r.meta.get("model"),
                "name": Path(path).name,
                "info": info,
                "cells": 0,
            }
        row["cells"] += 1
    return sorted(rows.values(), key=lambda x: (x["task"], str(x["model"]), x["name"]))


def adapter_cells(row: dict[str, Any]) -> list[str]:
    i = row["info"]
    if not i:
        return [row["task"], str(row["model"]), row["name"], *["?"] * 7, str(row["cells"])]
    budget = i.get("time_budget_s")
    stopped = f"yes ({budget:g} s)" if i.get("stopped_by_time_budget") else "no"
    return [
        row["task"],
        str(row["model"]),
        row["name"],
        str(i.get("train_samples", "?")),
        str(i.get("steps", "?")),
        f"{fmt(i.get('epochs_done'), 2)} / {i.get('epochs_planned', '?')}",
        stopped,
        fmt(i.get("wall_time_s"), 0),
        fmt(i.get("train_loss"), 3),
        f"{i.get('optim') or '?'}, {i.get('loss_on') or 'answer'}",
        str(row["cells"]),
    ]
