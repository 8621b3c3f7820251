"""``ptychobench diagnose``: the typer command (mounted by the main CLI)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .detector import DEFAULT_DETECTOR
from ..data import DatasetError
from .io import DiagnoseError


def _print(console: Console, d) -> None:
    console.rule(f"[bold]{d.name}")
    console.print(f"{d.kind} field {d.shape[0]} x {d.shape[1]} px ({d.source}); detector: {d.detector}")
    console.print(f"[bold]artifacts:[/] {', '.join(d.labels)}")
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
        t = Table("option", "recommended", "evidence", title=f"parameter advice ({d.advice.advisor})")
        for o in d.advice.options:
            t.add_row(f"{o.letter}. {o.text}", "yes" if o.chosen else "no", "\n".join(o.evidence),
                      style="bold" if o.chosen else None)
        console.print(t)
        for n in d.advice.notes:
            console.print(f"[dim]note: {n}[/]")


def diagnose_command(
    paths: list[Path] = typer.Argument(..., help="Reconstruction files or folders (PNG/TIFF, .npy/.npz, HDF5, .ptyr)."),
    detector: str = typer.Option(DEFAULT_DETECTOR, "--detector",
                                 help="vision-probe (default), knn-vote, or a model: preset, hf:<id>, openai:<model>."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder for a model detector."),
    params: Optional[Path] = typer.Option(None, "--params",
                                          help="Current parameters: YAML/JSON of ReconParams fields or a pty-chi options dump."),
    scan_step: Optional[float] = typer.Option(None, "--scan-step", help="Scan step in pixels of the object (grid check)."),
    half: Optional[Path] = typer.Option(None, "--half", help="Second half-data reconstruction: FRC resolution."),
    key: Optional[str] = typer.Option(None, "--key", help="Dataset or array name inside an HDF5/.npz file."),
    advisor: str = typer.Option("text-probe", "--advisor",
                                help="text-probe (default), knn-vote, a language model, or 'none' to skip advice."),
    advisor_adapter: Optional[Path] = typer.Option(None, "--advisor-adapter", help="LoRA adapter for a model advisor."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset the probes are fitted on (default: the default dataset)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write an HTML card (a .html file, or a folder for several)."),
) -> None:
    """What is wrong with a reconstruction, with no truth, and what to change.

    Example: ptychobench diagnose recon.h5 --scan-step 12 --params params.yaml --html card.html
    Example: ptychobench diagnose recons/ --json
    """
    from .api import diagnose_many

    console = Console()
    err = Console(stderr=True)
    try:
        if scan_step is not None and scan_step <= 1:
            raise DiagnoseError(f"--scan-step {scan_step:g}: expected the scan step in object pixels (> 1)")
        ds = diagnose_many(list(paths), key=key, detector=detector, adapter=str(adapter) if adapter else None,
                           params=params, scan_step=scan_step, half=half,
                           advisor=None if advisor.lower() == "none" else advisor,
                           advisor_adapter=str(advisor_adapter) if advisor_adapter else None, dataset=dataset)
        written = []
        if html is not None:
            from .card import write_cards

            written = write_cards(ds, html)
    except DatasetError as e:  # DiagnoseError and a bad --dataset
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps([d.to_dict() for d in ds], indent=2))
    else:
        for d in ds:
            _print(console, d)
    for w in written:
        err.print(f"wrote {w}", highlight=False)
