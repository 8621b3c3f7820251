"""The ``ptychobench`` command: every sub-command in one place.

Each command imports what it needs when it runs, so ``--help`` is instant. Every error
the tool can foresee is a :class:`~ptychobench.errors.PtychoBenchError`; :func:`command`
turns it (and an unreadable or unwritable file) into one line and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from .data.registry import DEFAULT_DATASET
from .data.summary import dataset_table
from .errors import ConfigError, DatasetError, PtychoBenchError

app = typer.Typer(
    help="PtychoBench: adapt foundation models to X-ray ptychography and measure which adaptation works.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def command(name: str) -> Callable[[Callable], Callable]:
    """Register a sub-command whose foreseeable errors end in one clear line."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def safe(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except PtychoBenchError as e:
                _fail(str(e))
            except OSError as e:  # permissions, a full disk, a vanished folder
                where = f"{e.filename}: " if e.filename else ""
                _fail(f"{where}{e.strerror or e}")

        return app.command(name)(safe)

    return wrap


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
    from .data.released import import_released

    ds = import_released(src, out, images=images, name=name)
    console.print(dataset_table(ds.manifest, ds.root))


@command("export")
def export_cmd(
    dataset: str = typer.Argument(..., help="Dataset folder or name."),
    out: Path = typer.Option(..., "--out", help="Folder for {task}/train.json, {task}/test.json and images/."),
) -> None:
    """Export a dataset to the released chat-JSON format.

    Example: ptychobench export sim-v1 --out /tmp/sim-v1-released
    """
    from .data.released import export_released

    path = export_released(dataset, out)
    console.print(f"wrote {path}")


@command("datasets")
def datasets_cmd() -> None:
    """List the datasets ptychobench knows: shipped ones and those under $PTYCHOBENCH_HOME.

    Example: ptychobench datasets
    """
    from .data.registry import list_datasets
    from .paths import user_datasets_dir

    table = Table(title="datasets")
    for col in ("name", "source", "tasks", "train/test", "path"):
        table.add_column(col)
    for e in list_datasets():
        m = e.manifest
        sizes = ", ".join(f"{t} {v.get('train', '?')}/{v.get('test', '?')}" for t, v in m.get("splits", {}).items())
        table.add_row(e.name, e.source, ", ".join(m.get("tasks", [])), sizes, str(e.path))
    console.print(table)
    console.print(f"user datasets folder: {user_datasets_dir()}")


@command("validate")
def validate_cmd(dataset: str = typer.Argument(..., help="Dataset folder or name.")) -> None:
    """Load a dataset with full validation and print its summary.

    Example: ptychobench validate ~/data/real
    """
    from .data import content_hash, load_dataset

    ds = load_dataset(dataset)
    console.print(dataset_table(ds.manifest, ds.root))
    actual = content_hash(ds.root)
    if ds.manifest.get("content_hash") not in (None, actual):
        raise DatasetError(
            f"{ds.root / 'manifest.json'}: content hash differs from the files "
            f"(manifest {ds.manifest['content_hash'][:12]}, files {actual[:12]}); "
            "the dataset was changed after it was written"
        )


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
    from .eval.score import score_records
    from .eval.store import read_run
    from .files import write_atomic

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
    would squeeze the config column to nothing, so each row gets a number instead and
    the configs are listed under the table, whole."""
    out = Console(width=max(200, console.width), soft_wrap=True) if wide else console
    narrow = not wide and out.width < 120
    table = Table(title=f"scores: {run}")
    first = ("#",) if narrow else ("task", "config", "model") if wide else ("task", "config")
    for col in (*first, "n", "micro-F1", "95% CI", "macro-F1", "exact", "parse fail", "errors"):
        table.add_column(col, justify="left" if col in ("task", "config") else "right", no_wrap=True)
    for i, r in enumerate(results, 1):
        s = r.scores
        lo, hi = s.micro_f1_ci or (float("nan"), float("nan"))
        mark = " [red](failed)[/]" if r.failed else ""
        head = (str(i),) if narrow else (r.task, r.config + mark, *([str(r.meta.get("model"))] if wide else []))
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
    if narrow:
        for i, r in enumerate(results, 1):
            out.print(
                f"{i:>3}  {r.config}" + ("  [red](failed)[/]" if r.failed else ""), soft_wrap=True, highlight=False
            )


@command("generate")
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

    from .sim.build import QUICK, BuildConfig, BuildError, build

    nv = n_visual if n_visual is not None else (QUICK["n_visual"] if quick else 391)
    nt = n_text if n_text is not None else (QUICK["n_text"] if quick else 135)
    if nt > nv:
        raise typer.BadParameter("--n-text cannot exceed --n-visual (text samples reuse experiments)")
    cfg = BuildConfig(n_visual=nv, n_text=nt, seed=seed, quick=quick, name=name)
    with Progress(TextColumn("[bold]experiments"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("build", total=nv)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            path = build(cfg, out, workers=workers, progress=progress)
        except BuildError as e:
            raise DatasetError(str(e)) from None
    typer.echo(f"wrote {path} (manifest, artifacts/, params/, validation.md, released/)")


def _parse_set(items: list[str]) -> dict:
    """``--set key=value`` pairs -> Recipe overrides, values read as JSON where they parse."""
    import json

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes key=value, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip().replace("-", "_")] = value
    return out


@command("train")
def train_command(
    task: str = typer.Option(..., "--task", help="artifacts (image, VLM) or params (text, LLM)."),
    model: str = typer.Option(..., "--model", help="smollm2-135m, tiny-vlm, a paper preset or hf:<id or folder>."),
    dataset: str = typer.Option(DEFAULT_DATASET, "--dataset", help="Dataset folder or name."),
    out: Path = typer.Option(..., "--out", help="Adapter folder to write (reused if its settings match)."),
    profile: str = typer.Option(
        "cpu",
        "--profile",
        help="cpu (a 2-core CPU), gpu (the paper's recipe), paper (the authors' exact recipe) or auto.",
    ),
    demos: str | None = typer.Option(
        None, "--demos", help="Train on k-shot prompts: random, sample-type, knn, knn-diverse."
    ),
    k: int = typer.Option(0, "--k", help="Demos per training prompt (with --demos)."),
    seed: int = typer.Option(0, "--seed"),
    epochs: float | None = typer.Option(None, "--epochs", help="Override the profile's epochs."),
    lr: float | None = typer.Option(None, "--lr", help="Override the profile's learning rate."),
    n_train: int | None = typer.Option(None, "--n-train", help="Train on a seeded subset of this many samples."),
    set_: list[str] = typer.Option(
        [], "--set", help="Any recipe field, e.g. --set lora_layers=null --set batch_size=4."
    ),
    force: bool = typer.Option(False, "--force", help="Retrain even if the adapter's settings match."),
    processes: int = typer.Option(
        1,
        "--processes",
        help="Data-parallel processes (DDP through torchrun: one per GPU, "
        "or gloo on the CPU); the effective batch grows with them.",
    ),
) -> None:
    """Fine-tune a model with LoRA (TRL SFTTrainer) on a task's train split.

    Example: ptychobench train --task params --model smollm2-135m --dataset sim-v1 --out adapters/smollm2-params
    Example: ptychobench train --task params --model llama-3.1-8b --profile gpu --out adapters/l8b --processes 4
    """
    import json

    from .strategies.sft import MANIFEST, train_adapter

    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from .run.scheduler import relaunch_distributed

        raise typer.Exit(relaunch_distributed(processes))

    overrides = _parse_set(set_)
    if epochs is not None:
        overrides["epochs"] = epochs
    if lr is not None:
        overrides["learning_rate"] = lr
    if n_train is not None:
        overrides["max_train_samples"] = n_train
    try:
        path = train_adapter(
            task,
            model,
            dataset,
            out,
            profile=profile,
            demo_selector=demos,
            k=k,
            seed=seed,
            force=force,
            progress=True,
            **overrides,
        )
    except (ValueError, FileNotFoundError, NotImplementedError) as e:
        raise ConfigError(str(e)) from None
    if int(os.environ.get("RANK", "0")) != 0:  # one report, from the first process
        return
    m = json.loads((path / MANIFEST).read_text())
    curve = m.get("train_loss_curve", [])
    first, last = (curve[0]["loss"], curve[-1]["loss"]) if curve else (float("nan"), float("nan"))
    console.print(
        f"adapter {path}: {m['steps']} steps, {m['epochs_done']} epochs, loss {first:.3f} -> {last:.3f}, "
        f"{m['wall_time_s']:.0f} s, {m['tokens_per_s']} tokens/s"
        + (" [yellow](stopped by the time budget)[/]" if m.get("stopped_by_time_budget") else "")
    )


@command("run")
def run_command(
    config: Optional[str] = typer.Argument(
        None, help="YAML config file or shipped config name (default: the embedded default)."
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="i/n, auto (from the Slurm/PBS job array) or auto/N: "
        "run only this worker's share of the grid, balanced by estimated cost.",
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Print which cells go to which shard and their estimated cost; "
        "run nothing (with --shard i/n or auto: the plan over n shards).",
    ),
    shards: int = typer.Option(0, "--shards", help="With --plan: plan over this many shards."),
    gpus_per_shard: int = typer.Option(
        0,
        "--gpus-per-shard",
        help="Shards sharing a node each take this many of "
        "its GPUs (by local rank or shard index); 0: as the scheduler set them.",
    ),
    report: bool = typer.Option(
        True, "--report/--no-report", help="Write the report when the run ends (not for shards)."
    ),
    allow_failures: bool = typer.Option(
        False,
        "--allow-failures",
        help="Exit 0 even when cells fail (errors + unparseable replies above max_failure_rate).",
    ),
) -> None:
    """Run a grid of experiments into a prediction store, then write the report.

    Without a config: the embedded default (shipped sim-v1, offline models, both tasks).
    Killed or interrupted, the same command picks up where it stopped.

    Example: ptychobench run                       # embedded default -> runs/default/report.html
    Example: ptychobench run paper --out runs/paper --shard 0/4
    Example: ptychobench run paper --plan --shards 4      # the plan only (docs/cluster.md)
    Example: ptychobench run paper --out runs/paper --shard auto   # in a Slurm/PBS job array
    """
    from .run import Runner, load_config
    from .run.scheduler import pin_devices, resolve_shard

    try:
        cfg = load_config(config)
        sh = resolve_shard(shard)
        if plan:
            _print_plan(cfg, shards or (sh[1] if sh else 1))
            return
        devices = pin_devices(sh, gpus_per_shard or None)
        if sh is not None:
            console.print(f"shard {sh[0]}/{sh[1]}" + (f", GPUs {','.join(devices)}" if devices else ""))
        run_dir = out or Path("runs") / cfg.name
        console.print(f"report: [bold]{(run_dir / 'report.html').resolve()}[/]")
        runner = Runner(cfg, run_dir, sh, console)
        summary = runner.run()
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted[/]: finished predictions are in the store; rerun the same command to continue"
        )
        raise typer.Exit(130)
    console.print(f"ran {summary['ran']} of {summary['cells']} cells in {summary['seconds']} s")
    if report and sh is None:
        from .report import write_report

        paths = write_report(run_dir)
        console.print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name})")
    elif sh is not None:
        console.print(f"shard {sh[0]}/{sh[1]} done; when all shards are done: ptychobench report {run_dir}")
    if summary.get("failed") and not allow_failures:
        _fail(
            f"{len(summary['failed'])} cell(s) failed (errors + unparseable replies above max_failure_rate "
            f"{cfg.max_failure_rate:g}): {', '.join(summary['failed'][:3])}"
            f"{' ...' if len(summary['failed']) > 3 else ''}; see the store's 'error' fields, or pass "
            "--allow-failures",
            code=1,
        )


def _print_plan(cfg, n: int) -> None:
    from .data import load_dataset
    from .run.plan import cell_table, plan_run, plan_table

    if n < 1:
        raise ConfigError(f"--shards {n}: need at least 1")
    p = plan_run(cfg, load_dataset(cfg.dataset, check_images=False), n)
    console.print(cell_table(p))
    console.print(plan_table(p, cfg, title=f"plan of {cfg.name}"))
    console.print(
        f"largest shard {max(s.cost for s in p.shards) / p.mean - 1:+.1%} of the mean, smallest "
        f"{min(s.cost for s in p.shards) / p.mean - 1:+.1%}; {p.loads} model loads "
        f"({len({c.group for s in p.shards for c in s.cells})} groups)"
    )


@command("submit")
def submit_command(
    config: str = typer.Argument(..., help="YAML config file or shipped config name."),
    shards: int = typer.Option(..., "--shards", help="Number of jobs; each runs one balanced shard."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    cluster: Optional[str] = typer.Option(
        None,
        "--cluster",
        help="slurm, local (jobs as processes here) or debug; default: slurm where sbatch is, else local.",
    ),
    partition: Optional[str] = typer.Option(None, "--partition", help="Slurm partition."),
    account: Optional[str] = typer.Option(None, "--account", help="Slurm account."),
    hours: float = typer.Option(24.0, "--hours", help="Wall-time limit of each job."),
    gpus_per_node: int = typer.Option(0, "--gpus-per-node", help="Cap on GPUs a job may ask for (0: no cap)."),
    wait: bool = typer.Option(
        True,
        "--wait/--no-wait",
        help="Wait for the jobs, then write the merged report "
        "(without: a report job runs after all shards succeed, on Slurm).",
    ),
) -> None:
    """Submit the grid as N jobs through submitit, each with its shard's model resources,
    and merge their stores into one report when all finish.

    Example: ptychobench submit paper --shards 4 --partition gpu --out runs/paper
    """
    from .report import write_report
    from .run import load_config
    from .run.submit import submit

    cfg = load_config(config)
    run_dir = out or Path("runs") / cfg.name
    result = submit(
        cfg,
        run_dir,
        shards,
        cluster=cluster,
        partition=partition,
        account=account,
        hours=hours,
        gpus_per_node=gpus_per_node or None,
        wait=wait,
        report=write_report,
        console=console,
    )
    if result.get("report"):
        console.print(f"report: [bold]{Path(result['report']).resolve()}[/]")


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
    from .report import write_report

    paths = write_report(run_dir, seed=seed, dataset=dataset)
    console.print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name}, {paths['scores'].name})")


def _mount_parts() -> None:
    """The sub-apps of the later steps: ``annotate`` (Label Studio round trip) and
    ``diagnose`` (a user's own reconstruction)."""
    from .annotate.cli import app as annotate_app
    from .diagnose.cli import diagnose_command

    app.add_typer(annotate_app, name="annotate")
    command("diagnose")(diagnose_command)


_mount_parts()

if __name__ == "__main__":  # pragma: no cover
    app()
