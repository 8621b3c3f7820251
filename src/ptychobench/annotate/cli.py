"""``ptychobench annotate``: export to Label Studio, import its export, measure agreement;
and a blind review without Label Studio (``review-sheets``, ``review-score``).

Mounted on the main command as ``app.add_typer(annotate_app, name="annotate")``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..data import DatasetError
from ..errors import PtychoBenchError
from ..secrets import scrub

if TYPE_CHECKING:  # pragma: no cover
    from .agreement import Agreement

app = typer.Typer(
    help="Experts in the loop: a Label Studio round trip (export tasks, import labels, measure agreement).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {escape(scrub(str(e)))}", soft_wrap=True)
    raise typer.Exit(2)


def guarded(fn: Callable) -> Callable:
    """A command whose foreseeable errors (bad input, a file where a folder belongs, an
    unreadable path) end in one line and exit 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PtychoBenchError as e:
            _fail(e)
        except OSError as e:
            _fail(Exception(f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"))

    return wrapper


def _print_agreement(result: Agreement) -> None:
    """Every table of an agreement result, as the terminal shows them."""
    from .agreement import tables

    for title, head, rows in tables(result):
        table = Table(title=title)
        for i, h in enumerate(head):
            table.add_column(h, justify="left" if i == 0 or h.startswith("annotator") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)


@app.command("export")
@guarded
def export_cmd(
    source: str = typer.Argument(..., help="Dataset (folder or name), run folder (with --cell), or image folder."),
    out: Path = typer.Option(..., "--out", help="Folder for the Label Studio project files (nothing goes elsewhere)."),
    cell: str | None = typer.Option(None, "--cell", help="Run cell whose predictions become pre-annotations."),
    dataset: str | None = typer.Option(None, "--dataset", help="The run's dataset (default: its config.yaml)."),
    split: str | None = typer.Option(None, "--split", help="Only this split (train, test or a test-<word> split)."),
    sample: int | None = typer.Option(None, "--sample", help="Only N samples per task, drawn at random."),
    seed: int = typer.Option(0, "--seed", help="Seed of --sample."),
    blind: bool = typer.Option(False, "--blind", help="No pre-annotations and no dataset labels in the task data."),
    task: str | None = typer.Option(None, "--task", help="Only this task (artifacts or params)."),
    document_root: Path | None = typer.Option(
        None, "--document-root", help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: --out)."
    ),
    image_url_prefix: str | None = typer.Option(
        None, "--image-url-prefix", help="Serve images from this URL instead of Label Studio's local files."
    ),
) -> None:
    """Write a Label Studio project: labeling config, tasks, images, optional pre-annotations.

    Example: ptychobench annotate export sim-v2 --split test --sample 40 --blind --out ~/ls/sim-v2-blind
    """
    from .export import export_project

    try:
        s = export_project(
            source,
            out,
            cell=cell,
            dataset=dataset,
            split=split,
            sample=sample,
            seed=seed,
            blind=blind,
            task=task,
            document_root=document_root,
            image_url_prefix=image_url_prefix,
        )
    except DatasetError as e:
        _fail(e)
    for t, n in s.tasks.items():
        console.print(f"{t}: {n} tasks -> {s.out / t}/tasks.json (config: label_config.xml)", soft_wrap=True)
    if s.predictions:
        console.print(f"{s.predictions} pre-annotations (model_version {cell!r})")
    if s.source.get("prediction_errors"):
        console.print(f"{s.source['prediction_errors']} samples had a failed generation: no pre-annotation")
    images = s.source["images"]
    if "served_as" in images:
        console.print(
            "images: start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
            f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={images['LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT']} "
            "and add a Local Storage on the images/ folder (docs/annotate.md)",
            soft_wrap=True,
        )


@app.command("import")
@guarded
def import_cmd(
    export: list[Path] = typer.Argument(
        ..., help="Label Studio JSON export (Export > JSON); several: one project per rater, merged by sample."
    ),
    out: Path = typer.Option(..., "--out", help="Dataset folder to write."),
    images: Path | None = typer.Option(None, "--images", help="Folder with the tasks' images (matched by name)."),
    name: str | None = typer.Option(None, "--name", help="Dataset name (default: the export's file name)."),
    task: str | None = typer.Option(None, "--task", help="artifacts or params (default: read from the export)."),
    test_fraction: float | None = typer.Option(
        None,
        "--test-fraction",
        help="Split the samples anew with this test share (default 0.2 when the tasks carry no splits).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of that split."),
) -> None:
    """Turn a Label Studio JSON export into a dataset: consensus labels, every annotator's in metadata.

    Example: ptychobench annotate import ~/Downloads/project-3.json --images ~/ls/blind/artifacts/images --out ~/experts
    """
    from ..data.summary import dataset_table
    from .importer import import_export

    try:
        r = import_export(export, out, images=images, name=name, task=task, test_fraction=test_fraction, seed=seed)
    except DatasetError as e:
        _fail(e)
    console.print(dataset_table(r.dataset.manifest, r.dataset.root))
    c = r.contents
    console.print(f"annotators: {', '.join(c.annotators)}; splits: {r.split_rule}")
    for it in c.skipped:
        console.print(
            f"[yellow]skipped[/] task {it.task_id} (sample {it.sample_id}) by {', '.join(it.skipped_by)}: "
            "not in the dataset"
        )
    for it in c.unannotated:
        console.print(f"[yellow]unannotated[/] task {it.task_id} (sample {it.sample_id}): not in the dataset")
    for it in r.no_consensus:
        console.print(
            f"[yellow]no consensus[/] task {it.task_id} (sample {it.sample_id}): its annotators agreed on no "
            "label; not in the dataset"
        )
    for it in r.ties:
        console.print(f"tie on sample {it.sample_id}: {', '.join(it.ties)} (left out of its labels)")


@app.command("agreement")
@guarded
def agreement_cmd(
    export: list[Path] = typer.Argument(
        ..., help="Label Studio JSON export(s): one with several annotators, or one project per rater."
    ),
    against: str | None = typer.Option(None, "--against", help="Dataset (folder or name) whose labels to compare."),
    out: Path | None = typer.Option(None, "--out", help="Also write agreement.md and agreement.json here."),
    task: str | None = typer.Option(None, "--task", help="artifacts or params (default: read from the export)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Agreement between annotators (kappa, Krippendorff's alpha, micro-F1) and with a dataset.

    Example: ptychobench annotate agreement ~/Downloads/project-3.json --against sim-v2 --out ~/ls/agreement
    """
    from ..data import load_dataset
    from .agreement import measure, write
    from .load import read_exports

    try:
        contents = read_exports(export, task)
        result = measure(contents, load_dataset(against) if against else None, seed=seed)
    except DatasetError as e:
        _fail(e)
    _print_agreement(result)
    if result.unmatched:
        console.print(
            f"{len(result.unmatched)} samples not in {result.against_dataset}: {', '.join(result.unmatched[:10])}"
        )
    if out:
        for p in write(result, out, ", ".join(map(str, export))):
            console.print(f"wrote {p}")


@app.command("review-sheets")
@guarded
def review_sheets_cmd(
    dataset: str = typer.Argument(..., help="Dataset (folder or name) whose labels to review."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the contact sheets and review.csv (nothing goes elsewhere)."
    ),
    n: int = typer.Option(60, "--n", help="Images to draw at random."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draw."),
    split: str = typer.Option("test", "--split", help="Split to draw from (train, test or test-<word>)."),
    task: str = typer.Option("artifacts", "--task", help="An image task (artifacts)."),
) -> None:
    """Blind review, step 1: numbered contact sheets (no labels, no ids) and an empty review.csv.

    Fill review.csv's labels column with ';'-separated labels while looking only at the sheets,
    then run review-score.

    Example: ptychobench annotate review-sheets sim-v2 --n 60 --seed 1 --out ~/review
    """
    from ..data import load_dataset
    from .config import task_named
    from .review import write_sheets

    try:
        task_named(task, "--task")
        result = write_sheets(load_dataset(dataset), out, n=n, seed=seed, split=split, task=task)
    except DatasetError as e:
        _fail(e)
    for p in result.sheets:
        console.print(f"wrote {p}", soft_wrap=True)
    console.print(
        f"wrote {result.csv}: {len(result.samples)} rows; fill its labels column (';'-separated), "
        f"then: ptychobench annotate review-score {dataset} {result.csv}",
        soft_wrap=True,
    )


@app.command("review-score")
@guarded
def review_score_cmd(
    dataset: str = typer.Argument(..., help="Dataset (folder or name) the review was drawn from."),
    review: Path = typer.Argument(..., help="The filled review.csv (number,sample_id,labels)."),
    out: Path | None = typer.Option(
        None, "--out", help="Markdown section to write (default: validation-review.md beside the CSV)."
    ),
    task: str = typer.Option("artifacts", "--task", help="The task the review labelled."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed of the micro-F1 interval."),
) -> None:
    """Blind review, step 2: the rater's labels against the dataset's, as markdown.

    Per label: both / only dataset / only rater and Cohen's kappa; micro-F1; the share of
    the dataset's labels the rater also chose ("visibly right").

    Example: ptychobench annotate review-score sim-v2 ~/review/review.csv --out ~/review/validation-review.md
    """
    from ..data import load_dataset
    from .config import task_named
    from .review import score_review, summary_lines, table, to_markdown

    try:
        task_named(task, "--task")
        result = score_review(review, load_dataset(dataset), task, seed=seed)
    except DatasetError as e:
        _fail(e)
    head, rows = table(result)
    t = Table(title=f"blind review: {result.n} {result.task} images of {result.dataset}")
    for i, h in enumerate(head):
        t.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    for line in summary_lines(result)[1:]:
        console.print(line, soft_wrap=True, highlight=False)
    path = out or review.parent / "validation-review.md"
    try:
        path.write_text(to_markdown(result), encoding="utf-8")
    except OSError as e:
        _fail(e)
    console.print(f"wrote {path}", soft_wrap=True)


@app.command("packet")
def packet_cmd(
    dataset: str = typer.Argument(..., help="Dataset (folder or name) whose artifact images to rate."),
    out: Path = typer.Option(
        ..., "--out", help="Packet folder the raters get: sheets, BRIEF.md, ratings-template.csv."
    ),
    key: Path = typer.Option(
        ..., "--key", help="Number -> sample id CSV, written OUTSIDE --out (raters never see it)."
    ),
    n: int | None = typer.Option(None, "--n", help="Images to draw at random (default: all of them)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the order (and of the draw)."),
    split: list[str] | None = typer.Option(None, "--split", help="Only these splits (repeatable; default: all)."),
    exclude_key: list[Path] | None = typer.Option(
        None, "--exclude-key", help="Key of an earlier packet whose images to leave out (repeatable)."
    ),
    cols: int = typer.Option(3, "--cols", min=1, help="Images across a sheet."),
    rows: int = typer.Option(3, "--rows", min=1, help="Images down a sheet."),
) -> None:
    """Blind panel, step 1: a rating packet (numbered sheets, the rater brief, an answer
    template) and, outside it, the key.

    Example: ptychobench annotate packet /work/calib/build --out ~/rating/calib --key ~/rating/calib-key.csv
    """
    from ..data import load_dataset
    from .panel import write_packet

    try:
        p = write_packet(
            load_dataset(dataset),
            out,
            key,
            n=n,
            seed=seed,
            splits=split or None,
            exclude_keys=exclude_key or (),
            cols=cols,
            rows=rows,
        )
    except DatasetError as e:
        _fail(e)
    console.print(
        f"wrote {p.out}: {len(p.samples)} images on {len(p.sheets)} sheets ({p.per_sheet} per sheet), "
        f"BRIEF.md, ratings-template.csv; key: {p.key} (keep it from the raters)",
        soft_wrap=True,
    )


@app.command("panel")
def panel_cmd(
    key: Path = typer.Argument(..., help="The packet's key CSV (number,sample_id)."),
    ratings: list[Path] = typer.Argument(
        ..., help="One ratings CSV (number,labels) per rater; the stem names the rater."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for majority.csv, agreement.md and agreement.json."),
    against: str | None = typer.Option(None, "--against", help="Also score this dataset's labels against the panel."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
) -> None:
    """Blind panel, step 2: the raters' majority per sample and the panel's agreement
    (pairwise micro-F1, per-label kappa, Krippendorff's alpha).

    Example: ptychobench annotate panel ~/rating/calib-key.csv r1.csv r2.csv r3.csv --out ~/rating/calib-panel
    """
    from ..data import load_dataset
    from .agreement import measure, write
    from .panel import panel, write_majority

    try:
        contents = panel(key, ratings)
        result = measure(contents, load_dataset(against) if against else None, seed=seed)
        written = [write_majority(contents, out / "majority.csv"), *write(result, out, str(key))]
    except (DatasetError, OSError) as e:
        _fail(e)
    _print_agreement(result)
    for p in written:
        console.print(f"wrote {p}", soft_wrap=True)
