"""Dataset commands: import, export, datasets, validate, generate."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..data.summary import dataset_table
from ..errors import DatasetError
from .app import command, console


@command("import")
def import_cmd(
    src: Path = typer.Argument(..., help="Folder with the released train.json/test.json (or one sub-folder per task)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder holding the images (searched by file name)."),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    name: Optional[str] = typer.Option(None, help="Dataset name (default: the source folder's name)."),
) -> None:
    """Import the paper's released chat-JSON data into a validated dataset.

    Example: ptychobench import ~/ptychobench_release --images ~/ptychobench_release/images --out ~/data/real
    """
    from ..data.released import import_released

    ds = import_released(src, out, images=images, name=name)
    console.print(dataset_table(ds.manifest, ds.root))


@command("export")
def export_cmd(
    dataset: str = typer.Argument(..., help="Dataset folder or name."),
    out: Path = typer.Option(..., "--out", help="Folder for {task}/train.json, {task}/test.json and images/."),
) -> None:
    """Export a dataset to the released chat-JSON format.

    Example: ptychobench export sim-v2 --out /tmp/sim-v2-released
    """
    from ..data.released import export_released

    path = export_released(dataset, out)
    console.print(f"wrote {path}")


@command("datasets")
def datasets_cmd() -> None:
    """List the datasets ptychobench knows: shipped ones and those under $PTYCHOBENCH_HOME.

    Example: ptychobench datasets
    """
    from ..data.registry import list_datasets
    from ..paths import user_datasets_dir

    table = Table(title="datasets")
    for col in ("name", "source", "tasks", "train/test", "path"):
        table.add_column(col)
    for e in list_datasets():
        m = e.manifest
        sizes = ", ".join(
            f"{t} {v.get('train', '?')}/{v.get('test', '?')}"
            + "".join(f" +{sp} {n}" for sp, n in v.items() if sp not in ("train", "test"))
            for t, v in m.get("splits", {}).items()
        )
        table.add_row(e.name, e.source, ", ".join(m.get("tasks", [])), sizes, str(e.path))
    console.print(table)
    console.print(f"user datasets folder: {user_datasets_dir()}")


@command("validate")
def validate_cmd(dataset: str = typer.Argument(..., help="Dataset folder or name.")) -> None:
    """Load a dataset with full validation and print its summary.

    Example: ptychobench validate ~/data/real
    """
    from ..data import content_hash, load_dataset
    from ..data.dataset import cross_task_leaks

    ds = load_dataset(dataset)
    console.print(dataset_table(ds.manifest, ds.root))
    leaks = cross_task_leaks(ds)
    if leaks:
        sid, test, train = leaks[0]
        console.print(
            f"[yellow]warning:[/] {len(leaks)} sample id(s) are in a test split of one task and the train "
            f"split of another (e.g. {sid!r} in {test} and {train}); if the tasks share an id per "
            "experiment, that experiment's labels can be learnt in one task and scored in the other",
            highlight=False,
        )
    actual = content_hash(ds.root)
    if ds.manifest.get("content_hash") not in (None, actual):
        raise DatasetError(
            f"{ds.root / 'manifest.json'}: content hash differs from the files "
            f"(manifest {ds.manifest['content_hash'][:12]}, files {actual[:12]}); "
            "the dataset was changed after it was written"
        )


@command("generate")
def generate_command(
    dataset: str = typer.Argument(
        "sim-v2", help="Which dataset to build: sim-v2 or sim-v3 (labels from the labeller)."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to build the dataset in (resumable)."),
    n_visual: int = typer.Option(None, "--n-visual", help="Artifact-task images (default 391; quick 12)."),
    n_text: int = typer.Option(None, "--n-text", help="Parameter-task samples (default 135; quick 3)."),
    n_ood_visual: int = typer.Option(None, "--n-ood-visual", help="test-ood images (default 79; quick 3)."),
    n_ood_text: int = typer.Option(None, "--n-ood-text", help="test-ood parameter samples (default 44; quick 1)."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed gives the same files."),
    workers: int = typer.Option(1, "--workers", help="Worker processes (one CPU thread each)."),
    quick: bool = typer.Option(False, "--quick", help="Small field and few samples; under 2 minutes."),
    name: str = typer.Option(None, "--name", help="Dataset name written to the manifest (default: DATASET)."),
    calibration: bool = typer.Option(
        False, "--calibration", help="Seeds disjoint from every shipped build: the build thresholds are tuned on."
    ),
) -> None:
    """Simulate ptychography experiments with known defects, reconstruct them with pty-chi,
    and label them: sim-v2 by measurement thresholds, sim-v3 by the shipped labeller (images
    it is unsure of are left out). Rerun the same command to resume an interrupted build.

    Example: ptychobench generate --out runs/sim-v2 --workers 2
    Example: ptychobench generate sim-v3 --out /tmp/quick-v3 --quick
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ..eval.confounds import confound_section
    from ..sim.build import QUICK, RECIPES, BuildConfig, BuildError, build

    if dataset not in RECIPES:
        raise typer.BadParameter(f"{dataset!r}: generate builds {' or '.join(RECIPES)}", param_hint="DATASET")
    recipe = RECIPES[dataset]
    nv = n_visual if n_visual is not None else (QUICK["n_visual"] if quick else 391)
    nt = n_text if n_text is not None else (QUICK["n_text"] if quick else 135)
    nov = n_ood_visual if n_ood_visual is not None else (QUICK["n_ood_visual"] if quick else 79)
    not_ = n_ood_text if n_ood_text is not None else (QUICK["n_ood_text"] if quick else 44)
    if nt > nv or not_ > nov:
        raise typer.BadParameter("text samples cannot exceed images (text samples reuse experiments)")
    cfg = BuildConfig(
        n_visual=nv,
        n_text=nt,
        n_ood_visual=nov,
        n_ood_text=not_,
        seed=seed,
        quick=quick,
        calibration=calibration,
        name=name or recipe.name,
        labelling=recipe.labelling,
    )
    labelling = None
    if recipe.labelling == 3:
        from ..labelling.apply import ShippedLabelling

        labelling = ShippedLabelling()
    with Progress(TextColumn("[bold]experiments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("build", total=nv)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            path = build(cfg, out, workers=workers, progress=progress, sections=[confound_section], labelling=labelling)
        except BuildError as e:
            raise DatasetError(str(e)) from None
    typer.echo(f"wrote {path} (manifest, artifacts/, params/, validation.md, released/)")
