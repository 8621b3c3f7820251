"""``ptychobench diagnose``: the typer command (mounted by the main CLI)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..data import DatasetError
from .detector import DEFAULT_DETECTOR
from .io import DiagnoseError


def _print(console: Console, d) -> None:
    console.print(f"\n[bold]{escape(d.name)}[/]", soft_wrap=True)  # a path is never cut
    console.print(escape(f"{d.kind} field {d.shape[0]} x {d.shape[1]} px ({d.source}); detector: {d.detector}"))
    for w in d.warnings:
        console.print(f"[bold yellow]warning:[/] {escape(w)}", soft_wrap=True)
    console.print(f"[bold]artifacts:[/] {escape(', '.join(d.labels) or 'none given')}")
    for n in d.notes:
        console.print(f"[yellow]note:[/] {escape(n)}", soft_wrap=True)
    if d.probabilities:
        t = Table("label", "probability", "threshold", title="artifact probabilities")
        for lab, p in sorted(d.probabilities.items(), key=lambda kv: -kv[1]):
            thr = (d.thresholds or {}).get(lab)
            style = "bold red" if lab in d.labels else None
            t.add_row(lab, f"{p:.2f}", "never" if thr is None else f"{thr:.2f}", style=style)
        console.print(t)
    t = Table("measurement", "value", "unit", "meaning", title="measurements (no truth)")
    for m in d.measurements.values():
        t.add_row(m.title, "n/a" if m.value is None else f"{m.value:.4g}", m.unit, m.meaning)
    console.print(t)
    if d.advice is not None:
        kind = "generic parameter advice" if d.advice.generic else "parameter advice"
        t = Table("option", "recommended", "evidence", title=f"{kind} ({d.advice.advisor})")
        for o in d.advice.options:
            t.add_row(
                f"{o.letter}. {o.text}",
                "yes" if o.chosen else "no",
                "\n".join(o.evidence),
                style="bold" if o.chosen else None,
            )
        console.print(t)
        for n in d.advice.notes:
            console.print(f"[dim]note: {n}[/]")


def diagnose_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Reconstruction files or folders (PNG/TIFF, .npy/.npz, HDF5, .ptyr).")
    ],
    detector: Annotated[
        str,
        typer.Option(
            "--detector", help="vision-probe (default), knn-vote, or a model: preset, hf:<id>, openai:<model>."
        ),
    ] = DEFAULT_DETECTOR,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="LoRA adapter folder for a model detector.")] = None,
    params: Annotated[
        Path | None,
        typer.Option("--params", help="Current parameters: YAML/JSON of ReconParams fields or a pty-chi options dump."),
    ] = None,
    scan_step: Annotated[
        float | None, typer.Option("--scan-step", help="Scan step in pixels of the object (grid check).")
    ] = None,
    half: Annotated[
        Path | None, typer.Option("--half", help="Second half-data reconstruction: FRC resolution.")
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option(
            "--crop", help="Keep the central PX x PX pixels (the well-lit field, without the buffer's margins)."
        ),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Dataset or array name inside an HDF5/.npz file.")] = None,
    advisor: Annotated[
        str,
        typer.Option("--advisor", help="text-probe (default), knn-vote, a language model, or 'none' to skip advice."),
    ] = "text-probe",
    advisor_adapter: Annotated[
        Path | None, typer.Option("--advisor-adapter", help="LoRA adapter for a model advisor.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset the probes are fitted on (default: the default dataset).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Label and advise even an input that does not look like a reconstruction.")
    ] = False,
    near_field: Annotated[
        bool,
        typer.Option(
            "--near-field", help="Near-field (holographic) data: advice wording and the FRC's low-frequency gap."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML card (a .html file, or a folder for several).")
    ] = None,
) -> None:
    """What is wrong with a reconstruction, with no truth, and what to change.

    Example: ptychobench diagnose recon.h5 --scan-step 12 --params params.yaml --html card.html
    Example: ptychobench diagnose recons/ --json
    """
    from .api import diagnose_many

    console = Console()
    err = Console(stderr=True)
    try:
        if scan_step is not None and not (math.isfinite(scan_step) and scan_step > 1):
            raise DiagnoseError(f"--scan-step {scan_step:g}: expected the scan step in object pixels (> 1)")
        ds = diagnose_many(
            list(paths),
            key=key,
            detector=detector,
            adapter=str(adapter) if adapter else None,
            params=params,
            scan_step=scan_step,
            half=half,
            advisor=None if advisor.lower() == "none" else advisor,
            advisor_adapter=str(advisor_adapter) if advisor_adapter else None,
            dataset=dataset,
            crop=crop,
            force=force,
            near_field=near_field or None,
        )
        written = []
        if html is not None:
            from .card import write_cards

            written = write_cards(ds, html)
    except DatasetError as e:  # DiagnoseError and a bad --dataset
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps([d.to_dict() for d in ds], indent=2))
    else:
        for d in ds:
            _print(console, d)
    for w in written:
        err.print(f"wrote {escape(str(w))}", highlight=False, soft_wrap=True)
