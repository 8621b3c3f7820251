"""``ptychobench generate``: build a PtychoBench-Sim dataset (registered by the main CLI)."""

from __future__ import annotations

from pathlib import Path

import typer


def generate_command(
    out: Path = typer.Option(..., "--out", help="Folder to build the dataset in (resumable)."),
    n_visual: int = typer.Option(None, "--n-visual", help="Artifact-task images (default 391; quick 12)."),
    n_text: int = typer.Option(None, "--n-text", help="Parameter-task samples (default 135; quick 3)."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same files."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (one CPU thread each)."),
    quick: bool = typer.Option(False, "--quick", help="Small field and few samples; under 2 minutes."),
    name: str = typer.Option("sim-v1", "--name", help="Dataset name written to the manifest."),
) -> None:
    """Simulate ptychography experiments with known defects, reconstruct them with pty-chi,
    and label them by measurement. Rerun the same command to resume an interrupted build.

    Example: ptychobench generate --out runs/sim-v1 --workers 2
    Example: ptychobench generate --out /tmp/quick --quick
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from .build import QUICK, BuildConfig, BuildError, build

    nv = n_visual if n_visual is not None else (QUICK["n_visual"] if quick else 391)
    nt = n_text if n_text is not None else (QUICK["n_text"] if quick else 135)
    if nt > nv:
        raise typer.BadParameter("--n-text cannot exceed --n-visual (text samples reuse experiments)")
    cfg = BuildConfig(n_visual=nv, n_text=nt, seed=seed, quick=quick, name=name)
    with Progress(TextColumn("[bold]experiments"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task("build", total=nv)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            path = build(cfg, out, workers=workers, progress=progress)
        except BuildError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"wrote {path} (manifest, artifacts/, params/, validation.md, released/)")
