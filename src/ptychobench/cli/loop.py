"""Closed-loop commands: ``payoff`` (score a run's parameter advice by reconstruction) and
``loop`` (several rounds of advice on simulated experiments)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from ..errors import ConfigError
from .app import command, console


def run_dataset(run: Path) -> str:
    """The dataset a run folder ran on: the ``dataset`` of its newest kept config."""
    import yaml

    configs = sorted((run / "configs").glob("config-*.yaml"), key=lambda p: p.stat().st_mtime)
    if not configs:
        raise ConfigError(f"{run}: no configs/config-*.yaml to name the dataset; pass --dataset")
    data = yaml.safe_load(configs[-1].read_text()) or {}
    if not isinstance(data, dict) or not data.get("dataset"):
        raise ConfigError(f"{configs[-1]}: names no dataset; pass --dataset")
    return str(data["dataset"])


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:+.1f}%" if pct else f"{v:.2f}"


def payoff_table(result: dict[str, Any]) -> Table:
    t = Table(title=f"Payoff of parameter advice (reconstructed, {result['seeds']} seed(s))")
    for col in ("cell", "n", "micro-F1", "error change [95% CI]", "improved", "harmed", "payoff", "contra", "n/a"):
        t.add_column(col)
    for r in result["cells"] + result["references"]:
        ci = f"{_fmt(r['mean_change'], True)} [{_fmt(r['ci_lo'], True)}, {_fmt(r['ci_hi'], True)}]"
        t.add_row(
            r["config"],
            str(r["n"]),
            _fmt(r.get("micro_f1")),
            ci,
            f"{100 * r['improved']:.0f}%",
            f"{100 * r['harmed']:.0f}%",
            _fmt(r["payoff"]),
            str(r["contradictory"]),
            str(r["not_applicable"]),
        )
    return t


def compute_run_payoff(run: Path, dataset: str | None, seeds: int, workers: int) -> dict[str, Any] | None:
    """Payoff of a run folder's params cells, written to ``payoff.json``/``payoff.csv``;
    None (and one line) when the dataset is not simulated."""
    from ..data import load_dataset, resolve_dataset
    from ..eval.store import read_run
    from ..loop.payoff import NotSimulated, cache_root, compute_payoff, write_payoff

    if seeds < 1 or workers < 1:
        raise ConfigError("--seeds and --workers must be at least 1")
    ds = load_dataset(resolve_dataset(dataset or run_dataset(run)), check_images=False)
    records = read_run(run)
    if not any(r.get("task") == "params" for r in records):
        console.print(f"payoff skipped: {run} has no parameter-task predictions")
        return None
    try:
        with _recon_progress() as progress:
            result = compute_payoff(records, ds, cache_root(run), seeds=seeds, workers=workers, progress=progress)
    except NotSimulated as e:
        console.print(f"payoff skipped: {e}")
        return None
    write_payoff(run, result)
    rc = result["reconstructions"]
    console.print(
        f"payoff: {rc['computed']} reconstructions new, {rc['cache_hits']} from the cache ({rc['seconds']:.0f} s)"
    )
    return result


@contextmanager
def _recon_progress() -> Iterator[Callable[[int, int], None]]:
    """A bar for the reconstructions still to compute (minutes on a first run; cached
    ones are not counted), as ``(done, total)`` callbacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("payoff reconstructions"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("payoff", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


@command("payoff")
def payoff_cmd(
    run: Path = typer.Argument(..., help="Run folder with parameter-task predictions."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the one the run's config names)."),
    seeds: int = typer.Option(3, help="Reconstruction repeats per parameter set (seed_index 0..N-1)."),
    workers: int = typer.Option(1, help="Reconstruction worker processes."),
) -> None:
    """Score a run's parameter advice by what it does to the reconstruction (simulated data).

    Example: ptychobench payoff runs/default --seeds 1 --workers 2
    """
    result = compute_run_payoff(run, dataset, seeds, workers)
    if result is None:
        return
    console.print(payoff_table(result))
    console.print(f"wrote {run / 'payoff.json'} and {run / 'payoff.csv'}")


def make_advisor(
    task_name: str,
    ds: Any,
    model: str | None,
    baseline: str | None,
    adapter: Optional[Path],
    max_new_tokens: int | None = None,
):
    """A function from samples to predicted letter sets: a model backend (zero-shot
    prompt, the task's parser, greedy decoding that stops at the answer's closing tag) or
    a baseline fitted on the dataset's train split."""
    from ..names import BASELINES
    from ..tasks import get_task

    task = get_task(task_name)
    if (model is None) == (baseline is None):
        raise ConfigError("give exactly one of --model or --baseline")
    if baseline is not None:
        if baseline not in BASELINES:
            raise ConfigError(f"--baseline {baseline!r}: choose one of {', '.join(BASELINES)}")
        from ..strategies import fit_predict_probe

        train = ds.samples(task_name, "train")
        return lambda ss: fit_predict_probe(task_name, train, list(ss), baseline)
    from ..models import load_backend

    assert model is not None  # exactly one of model/baseline was checked above
    from ..models.base import GREEDY

    backend = load_backend(model, adapter)
    gen = replace(GREEDY, max_new_tokens=max_new_tokens) if max_new_tokens else GREEDY

    def ask(ss):
        gens = backend.generate([task.render(s) for s in ss], gen)
        return [task.parse(g.text).labels if g.text else frozenset() for g in gens]

    return ask


@command("loop")
def loop_cmd(
    dataset: str = typer.Option(..., help="A simulated dataset (name or folder)."),
    out: Path = typer.Option(..., help="Folder for the loop's results and reconstruction cache."),
    model: Optional[str] = typer.Option(None, help="Model preset or scheme:target that answers the params task."),
    adapter: Optional[Path] = typer.Option(None, help="LoRA adapter for --model."),
    baseline: Optional[str] = typer.Option(None, help="A baseline instead of a model (knn-vote, text-probe)."),
    rounds: int = typer.Option(3, help="At most this many rounds of advice."),
    seeds: int = typer.Option(1, help="Reconstruction repeats per parameter set."),
    workers: int = typer.Option(1, help="Reconstruction worker processes."),
    split: str = typer.Option("test", help="Which params split to run on."),
    limit: Optional[int] = typer.Option(None, help="Only the first N samples."),
    policies: str = typer.Option("oracle,fixed", help="Reference policies beside the advisor (comma list or 'none')."),
    max_new_tokens: Optional[int] = typer.Option(
        None, help="Cap on a model's generated tokens (default: the greedy preset's 500; the default config uses 40)."
    ),
) -> None:
    """Advise, apply, reconstruct, rewrite the text, advise again: error after each round.

    Example: ptychobench loop --dataset sim-v2 --baseline knn-vote --rounds 3 --out runs/loop-knn
    """
    from ..data import load_dataset, resolve_dataset
    from ..files import write_atomic
    from ..loop.cache import ReconCache
    from ..loop.payoff import NotSimulated, dataset_scale, experiment_of
    from ..loop.rounds import run_loop

    if rounds < 1 or seeds < 1 or workers < 1:
        raise ConfigError("--rounds, --seeds and --workers must be at least 1")
    pol = tuple(p for p in policies.split(",") if p and p != "none")
    bad = [p for p in pol if p not in ("oracle", "fixed")]
    if bad:
        raise ConfigError(f"--policies: unknown {', '.join(bad)} (choose oracle, fixed or none)")
    ds = load_dataset(resolve_dataset(dataset), check_images=False)
    scale = dataset_scale(ds)
    samples = [(s, e) for s in ds.samples("params", split) if (e := experiment_of(s, scale)) is not None]
    if not samples:
        raise NotSimulated(f"{ds.root}: dataset {ds.name!r} is not simulated; the loop needs experiment recipes")
    samples = samples[:limit] if limit else samples
    advisor = make_advisor("params", ds, model, baseline, adapter, max_new_tokens)
    out.mkdir(parents=True, exist_ok=True)
    result = run_loop(samples, advisor, ReconCache(out / "payoff-cache"), rounds, seeds, workers, pol)
    result.update({"dataset": ds.name, "advisor": model or baseline, "split": split})
    write_atomic(out / "loop.json", json.dumps(result, indent=1))
    t = Table(title=f"Mean truth error after each round ({len(samples)} samples, {seeds} seed(s))")
    t.add_column("policy")
    for r in range(rounds + 1):
        t.add_column(f"round {r}")
    for key, rows in result["mean_error"].items():
        t.add_row(model or baseline if key == "advisor" else key, *[f"{v:.4f}" for v in rows])
    console.print(t)
    for key, n in result["failed"].items():
        if n:
            who = model or baseline if key == "advisor" else key
            console.print(
                f"{who}: {n} sample(s) stopped because the next parameters failed to reconstruct (last good error kept)"
            )
    console.print(f"wrote {out / 'loop.json'}")
