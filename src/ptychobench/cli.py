"""The ``ptychobench`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .data import DatasetError

app = typer.Typer(
    help="PtychoBench: adapt foundation models to X-ray ptychography and measure which adaptation works.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(2)


@app.command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="Folder with the released train.json/test.json (or one sub-folder per task)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder holding the images (searched by file name)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    name: Optional[str] = typer.Option(None, help="Dataset name (default: the source folder's name)."),
) -> None:
    """Import the paper's released chat-JSON data into a validated dataset.

    Example: ptychobench import ~/ptychobench_release --images ~/ptychobench_release/images --out ~/data/real
    """
    from .released import import_released

    try:
        ds = import_released(src, out, images=images, name=name)
    except DatasetError as e:
        _fail(e)
    _print_dataset_summary(ds.manifest, ds.root)


@app.command("export")
def export_cmd(
    dataset: str = typer.Argument(..., help="Dataset folder or name."),
    out: Path = typer.Option(..., "--out", help="Folder for {task}/train.json, {task}/test.json and images/."),
) -> None:
    """Export a dataset to the released chat-JSON format.

    Example: ptychobench export sim-v1 --out /tmp/sim-v1-released
    """
    from .released import export_released

    try:
        path = export_released(dataset, out)
    except DatasetError as e:
        _fail(e)
    console.print(f"wrote {path}")


@app.command("datasets")
def datasets_cmd() -> None:
    """List the datasets ptychobench knows: shipped ones and those under $PTYCHOBENCH_HOME.

    Example: ptychobench datasets
    """
    from .registry import list_datasets, user_datasets_dir

    table = Table(title="datasets")
    for col in ("name", "source", "tasks", "train/test", "path"):
        table.add_column(col)
    for e in list_datasets():
        m = e.manifest
        sizes = ", ".join(f"{t} {v.get('train', '?')}/{v.get('test', '?')}" for t, v in m.get("splits", {}).items())
        table.add_row(e.name, e.source, ", ".join(m.get("tasks", [])), sizes, str(e.path))
    console.print(table)
    console.print(f"user datasets folder: {user_datasets_dir()}")


@app.command("validate")
def validate_cmd(dataset: str = typer.Argument(..., help="Dataset folder or name.")) -> None:
    """Load a dataset with full validation and print its summary.

    Example: ptychobench validate ~/data/real
    """
    from .data import content_hash, load_dataset

    try:
        ds = load_dataset(dataset)
    except DatasetError as e:
        _fail(e)
    _print_dataset_summary(ds.manifest, ds.root)
    actual = content_hash(ds.root)
    if ds.manifest.get("content_hash") not in (None, actual):
        _fail(DatasetError(f"{ds.root / 'manifest.json'}: content hash differs from the files "
                           f"(manifest {ds.manifest['content_hash'][:12]}, files {actual[:12]}); "
                           "the dataset was changed after it was written"))


def _print_dataset_summary(manifest: dict, root: Path) -> None:
    table = Table(title=f"{manifest['name']} ({root})")
    table.add_column("task")
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("labels (count)")
    for task, splits in manifest.get("splits", {}).items():
        for split, n in splits.items():
            counts = manifest.get("label_counts", {}).get(task, {}).get(split, {})
            table.add_row(task, split, str(n), ", ".join(f"{k} {v}" for k, v in counts.items() if v))
    console.print(table)


@app.command("score")
def score_cmd(
    run: Path = typer.Argument(..., help="Run folder (all its prediction stores) or one store file."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the scores as JSON."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Score a run's stored predictions: micro/macro F1 with 95% bootstrap CI, parse failures.

    Example: ptychobench score runs/default
    """
    from .evaluate import score_records
    from .store import read_run

    try:
        results = score_records(read_run(run), seed=seed)
    except DatasetError as e:
        _fail(e)
    table = Table(title=f"scores: {run}")
    for col in ("task", "config", "n", "micro-F1", "95% CI", "macro-F1", "exact", "parse fail", "errors"):
        table.add_column(col, justify="right" if col not in ("task", "config") else "left",
                         overflow="fold", no_wrap=col not in ("config",))
    for r in results:
        s = r.scores
        lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
        table.add_row(r.task, r.config, str(s.n), f"{s.micro_f1:.3f}", f"[{lo:.3f}, {hi:.3f}]",
                      f"{s.macro_f1:.3f}", f"{s.exact_match:.3f}", str(s.parse_failures), str(s.errors))
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps([{"config": r.config, "task": r.task, "meta": r.meta,
                                         **r.scores.as_dict()} for r in results], indent=1))


def _register_optional_commands() -> None:
    """Commands of the other parts, registered where their modules are present."""
    import importlib

    for module, name, attr in (
        ("ptychobench.sim.cli", "generate", "generate_command"),
        ("ptychobench.strategies.cli", "train", "train_command"),
        ("ptychobench.runner", "run", "run_command"),
        ("ptychobench.report", "report", "report_command"),
        ("ptychobench.diagnose.cli", "diagnose", "diagnose_command"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("ptychobench"):
                continue  # that part is not built yet
            raise
        app.command(name)(getattr(mod, attr))


_register_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    app()
