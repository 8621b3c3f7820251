"""Result commands: score (terminal, wide, csv, json) and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from .app import command, console


@command("score")
def score_cmd(
    run: Path = typer.Argument(..., help="Run folder (all its prediction stores) or one store file."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    fmt: str = typer.Option("table", "--format", help="table, wide (every column, no wrapping), csv or json."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Score a run's stored predictions: micro/macro F1 with 95% bootstrap CI, parse failures.

    Example: ptychobench score runs/default
    Example: ptychobench score runs/default --format csv > scores.csv
    """
    from ..eval.score import score_records
    from ..eval.store import read_run
    from ..files import write_atomic

    if fmt not in ("table", "wide", "csv", "json"):
        raise ConfigError(f"--format {fmt!r}: choose from table, wide, csv, json")
    results = score_records(read_run(run), seed=seed)
    if fmt == "json":
        typer.echo(json.dumps([r.as_dict() for r in results], indent=1))
    elif fmt == "csv":
        typer.echo(_scores_csv(results), nl=False)
    else:
        _scores_table(run, results, wide=fmt == "wide")
    if json_out:
        write_atomic(json_out, json.dumps([r.as_dict() for r in results], indent=1))


_SETTINGS = ("model", "strategy", "selector", "k", "seed")
_SCORE_COLUMNS = (
    "task",
    "config",
    *_SETTINGS,
    "n",
    "micro_f1",
    "micro_f1_lo",
    "micro_f1_hi",
    "macro_f1",
    "exact_match",
    "parse_failures",
    "errors",
    "failure_rate",
    "failed",
)


def _score_row(r) -> list:
    s = r.scores
    lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
    return [
        r.task,
        r.config,
        *(r.meta.get(k) for k in _SETTINGS),
        s.n,
        s.micro_f1,
        lo,
        hi,
        s.macro_f1,
        s.exact_match,
        s.parse_failures,
        s.errors,
        r.failure_rate,
        r.failed,
    ]


def _scores_csv(results) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_SCORE_COLUMNS)
    w.writerows(_score_row(r) for r in results)
    return buf.getvalue()


def _scores_table(run: Path, results, wide: bool) -> None:
    """The scores as a table. On a narrow terminal (under a scheduler's 80 columns) rich
    would squeeze the config column to nothing, so each row names its cell in a few words
    (``report.format.cell_label``: task, model, strategy, demos; seed and training size
    where not the defaults), wrapped within the row rather than numbered in a legend."""
    from ..report.format import cell_label

    out = Console(width=max(200, console.width), soft_wrap=True) if wide else console
    narrow = not wide and out.width < 120
    table = Table(title=f"scores: {run}")
    if narrow:  # the cell's name gets the room: macro-F1 and exact match are in --format wide/csv
        table.add_column("cell", overflow="fold", ratio=1)
        for col in ("n", "micro-F1", "95% CI", "failed"):
            table.add_column(col, justify="right", no_wrap=True)
        for r in results:
            s = r.scores
            lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
            mark = " [red](failed)[/]" if r.failed else ""
            table.add_row(
                f"{r.task}: {cell_label(r.config)}{mark}",
                str(s.n),
                f"{s.micro_f1:.3f}",
                f"[{lo:.3f}, {hi:.3f}]",
                str(s.parse_failures + s.errors),
            )
        out.print(table)
        return
    first = ("task", "config", "model") if wide else ("task", "config")
    for col in (*first, "n", "micro-F1", "95% CI", "macro-F1", "exact", "parse fail", "errors"):
        table.add_column(col, justify="left" if col in ("task", "config") else "right", no_wrap=True)
    for r in results:
        s = r.scores
        lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
        mark = " [red](failed)[/]" if r.failed else ""
        head = (r.task, r.config + mark, *([str(r.meta.get("model"))] if wide else []))
        table.add_row(
            *head,
            str(s.n),
            f"{s.micro_f1:.3f}",
            f"[{lo:.3f}, {hi:.3f}]",
            f"{s.macro_f1:.3f}",
            f"{s.exact_match:.3f}",
            str(s.parse_failures),
            str(s.errors),
        )
    out.print(table)


@command("report")
def report_command(
    run_dir: Path = typer.Argument(..., help="Run folder; every predictions*.jsonl in it (all shards) is merged."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    dataset: Optional[str] = typer.Option(
        None,
        "--dataset",
        help="The run's dataset, where it moved (for the "
        "per-sample browser's images; default: from the run's records).",
    ),
) -> None:
    """Write report.md and a self-contained report.html for a run (tables, plots, statistics).

    Example: ptychobench report runs/default
    """
    from ..report import write_report

    paths = write_report(run_dir, seed=seed, dataset=dataset)
    console.print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name}, {paths['scores'].name})")
