"""The main job: expand a YAML config into a grid of cells, run each into the store.

A cell is one (task, model, strategy, selector, k, seed, training-set size) or one
baseline; its name keys the store, so a rerun skips what is done and a killed run loses
nothing. ``--shard i/n`` gives each of n workers its own cells and its own store file;
``report`` merges them.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import typer
import yaml

from .backends.base import DECODING_PRESETS, GenerationConfig
from .data import Dataset, DatasetError, Sample, load_dataset
from .evaluate import make_record, predict
from .registry import home
from .store import PredictionStore
from .tasks import get_task

CONFIG_DIR = Path(__file__).parent / "configs"
STRATEGIES = ("zero-shot", "icl", "sft", "sft+icl")
BASELINES = ("vision-probe", "text-probe", "knn-vote")
SELECTORS = ("random", "sample-type", "knn", "knn-diverse")


class ConfigError(ValueError):
    pass


# --------------------------------------------------------------------------- config


@dataclass
class Experiment:
    task: str
    model: str | None = None
    name: str | None = None
    adapter: str | None = None
    strategies: list[str] = field(default_factory=lambda: ["zero-shot"])
    selectors: list[str] = field(default_factory=lambda: ["random"])
    k: list[int] = field(default_factory=lambda: [0])
    baselines: list[str] = field(default_factory=list)
    backend_options: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    probe_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None

    @property
    def label(self) -> str:
        return self.name or (self.model or "baseline")


@dataclass
class RunConfig:
    name: str
    dataset: str
    experiments: list[Experiment]
    seeds: list[int] = field(default_factory=lambda: [0])
    train_sizes: list[int | str] = field(default_factory=lambda: ["all"])
    decoding: str = "greedy"
    max_new_tokens: int | None = None
    batch_size: int = 8
    limit: int | None = None  # first N test samples only (smoke tests)
    source: str = ""

    def generation(self) -> GenerationConfig:
        gen = DECODING_PRESETS[self.decoding]
        return replace(gen, max_new_tokens=self.max_new_tokens) if self.max_new_tokens else gen


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def _list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunConfig:
    _check(isinstance(data, dict), source, "the config must be a YAML mapping")
    known = {f for f in RunConfig.__dataclass_fields__} - {"source"}
    unknown = set(data) - known
    _check(not unknown, source, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}")
    _check("experiments" in data and data["experiments"], source, "needs a non-empty 'experiments' list")
    _check(data.get("decoding", "greedy") in DECODING_PRESETS, source,
           f"decoding must be one of {list(DECODING_PRESETS)}")
    exps = []
    efields = set(Experiment.__dataclass_fields__)
    for i, e in enumerate(_list(data["experiments"])):
        where = f"{source}: experiments[{i}]"
        _check(isinstance(e, dict), where, "must be a mapping")
        bad = set(e) - efields
        _check(not bad, where, f"unknown key(s) {sorted(bad)}; allowed: {sorted(efields)}")
        _check(e.get("task") in ("artifacts", "params"), where, "task must be 'artifacts' or 'params'")
        e = dict(e)
        for key in ("strategies", "selectors", "k", "baselines"):
            if key in e:
                e[key] = _list(e[key])
        exp = Experiment(**e)
        if not exp.model:
            _check(bool(exp.baselines), where, "needs a 'model' or 'baselines'")
            exp.strategies = []
        for s in exp.strategies:
            _check(s in STRATEGIES, where, f"unknown strategy {s!r}; choose from {list(STRATEGIES)}")
        for s in exp.selectors:
            _check(s in SELECTORS, where, f"unknown selector {s!r}; choose from {list(SELECTORS)}")
        for b in exp.baselines:
            _check(b in BASELINES, where, f"unknown baseline {b!r}; choose from {list(BASELINES)}")
        _check(all(isinstance(k, int) and 0 <= k <= 32 for k in exp.k), where, "k must be integers in 0..32")
        if any(s in ("icl", "sft+icl") for s in exp.strategies):
            _check(any(k > 0 for k in exp.k), where, "icl strategies need a k > 0")
        if exp.task == "params":
            _check("vision-probe" not in exp.baselines, where, "vision-probe needs images: artifacts task only")
        else:
            _check("text-probe" not in exp.baselines, where, "text-probe is for the params task")
        exps.append(exp)
    cfg = RunConfig(**{**{k: v for k, v in data.items() if k != "experiments"}, "experiments": exps, "source": source})
    cfg.seeds = _list(cfg.seeds)
    cfg.train_sizes = _list(cfg.train_sizes)
    for n in cfg.train_sizes:
        _check(n == "all" or (isinstance(n, int) and n > 0), source, f"train size {n!r} must be 'all' or a positive int")
    return cfg


def load_config(path: str | Path | None) -> RunConfig:
    """A YAML file, or the name of a shipped config ('default', 'paper', 'gpt4o', ...)."""
    if path is None:
        path = "default"
    p = Path(path)
    if not p.is_file():
        shipped = CONFIG_DIR / f"{path}.yaml"
        if not shipped.is_file():
            names = ", ".join(x.stem for x in sorted(CONFIG_DIR.glob("*.yaml")))
            raise ConfigError(f"{path}: no such config file (shipped configs: {names})")
        p = shipped
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    return parse_config(data, str(p))


# --------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Cell:
    task: str
    model: str
    strategy: str  # zero-shot | icl | sft | sft+icl | baseline name
    selector: str | None
    k: int
    seed: int
    train_size: int | str
    exp: int  # index into config.experiments

    @property
    def config(self) -> str:
        sel = self.selector or "-"
        return f"{self.task}/{self.model}/{self.strategy}/{sel}/k{self.k}/seed{self.seed}/n{self.train_size}"

    @property
    def uses_adapter(self) -> bool:
        return self.strategy in ("sft", "sft+icl")

    @property
    def group(self) -> tuple:
        """Cells sharing a loaded model (and adapter) run together, on one shard."""
        return (self.task, self.model, self.uses_adapter, self.seed if self.uses_adapter else None,
                self.train_size if self.uses_adapter else None, self.exp)

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("exp")
        d["family"] = "baseline" if self.strategy in BASELINES else self.strategy
        return d


def expand(cfg: RunConfig) -> list[Cell]:
    cells: list[Cell] = []
    for i, e in enumerate(cfg.experiments):
        for seed in cfg.seeds:
            for n in cfg.train_sizes:
                for b in e.baselines:
                    cells.append(Cell(e.task, e.label if e.model else b, b, None, 0, seed, n, i))
                for s in e.strategies:
                    if s in ("zero-shot", "sft"):
                        # base zero-shot does not depend on the training set or the seed (greedy)
                        if s == "zero-shot" and (n != cfg.train_sizes[0] or seed != cfg.seeds[0]):
                            continue
                        cells.append(Cell(e.task, e.label, s, None, 0, seed, n, i))
                    else:
                        for sel in e.selectors:
                            for k in e.k:
                                if k > 0:
                                    cells.append(Cell(e.task, e.label, s, sel, k, seed, n, i))
    seen: set[str] = set()
    for c in cells:
        if c.config in seen:
            raise ConfigError(f"{cfg.source}: two experiments give the same cell {c.config}; give one a 'name'")
        seen.add(c.config)
    return cells


def shard_cells(cells: list[Cell], shard: tuple[int, int] | None) -> list[Cell]:
    if shard is None:
        return cells
    i, n = shard
    groups = sorted({c.group for c in cells}, key=repr)
    mine = {g for j, g in enumerate(groups) if j % n == i}
    return [c for c in cells if c.group in mine]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/2") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def train_subset(samples: Sequence[Sample], size: int | str, seed: int) -> list[Sample]:
    """The first ``size`` of a seeded shuffle: smaller sets are nested in larger ones."""
    if size == "all" or size >= len(samples):
        return list(samples)
    order = sorted(samples, key=lambda s: s.id)
    random.Random(f"train-subset-{seed}").shuffle(order)
    return order[: int(size)]


# --------------------------------------------------------------------------- running


def store_path(run_dir: Path, shard: tuple[int, int] | None) -> Path:
    return run_dir / ("predictions.jsonl" if shard is None else f"predictions-shard{shard[0]}of{shard[1]}.jsonl")


def adapter_dir(ds: Dataset, cell: Cell, exp: Experiment, subset: Sequence[Sample]) -> Path:
    key = json.dumps({
        "dataset": ds.manifest.get("content_hash"), "task": cell.task, "model": exp.model,
        "train": sorted(s.id for s in subset), "seed": cell.seed, "sft": exp.sft,
    }, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in exp.label)
    return home() / "adapters" / f"{cell.task}-{safe}-n{cell.train_size}-seed{cell.seed}-{h}"


class Runner:
    def __init__(self, cfg: RunConfig, run_dir: Path, shard: tuple[int, int] | None = None, console=None):
        from rich.console import Console

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.shard = shard
        self.console = console or Console()
        self.ds = load_dataset(cfg.dataset)
        self.store = PredictionStore(store_path(self.run_dir, shard))
        self.cells = shard_cells(expand(cfg), shard)

    def test_samples(self, task: str) -> list[Sample]:
        test = self.ds.samples(task, "test")
        return test[: self.cfg.limit] if self.cfg.limit else test

    def pending(self) -> list[Cell]:
        return [c for c in self.cells
                if not all(self.store.is_done(c.config, s.id) for s in self.test_samples(c.task))]

    def run(self) -> dict[str, Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(Path(self.cfg.source).read_text()
                                                  if Path(self.cfg.source).is_file() else "")
        t0 = time.perf_counter()
        todo = self.pending()
        self.console.print(f"[bold]{len(self.cells)}[/] cells, {len(self.cells) - len(todo)} already in the store, "
                           f"{len(todo)} to run -> {self.store.path}")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            grid = progress.add_task("grid", total=len(todo))
            groups: dict[tuple, list[Cell]] = {}
            for c in todo:
                groups.setdefault(c.group, []).append(c)
            for group_cells in groups.values():
                self._run_group(group_cells, progress, grid)
        wall = time.perf_counter() - t0
        summary = {"cells": len(self.cells), "ran": len(todo), "seconds": round(wall, 1),
                   "store": str(self.store.path), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        with (self.run_dir / "runs.jsonl").open("a") as f:
            f.write(json.dumps(summary) + "\n")
        return summary

    # one loaded model (or one baseline kind) at a time
    def _run_group(self, cells: list[Cell], progress, grid) -> None:
        first = cells[0]
        exp = self.cfg.experiments[first.exp]
        if first.strategy in BASELINES:
            for c in cells:
                self._run_baseline(c, exp, progress, grid)
            return
        from .backends import load_backend
        from .cpu import torch_threads

        subset = train_subset(self.ds.samples(first.task, "train"), first.train_size, first.seed)
        adapter = None
        if first.uses_adapter:
            adapter = exp.adapter or self._train(first, exp, subset, progress)
        from .strategies.sft import training_summary

        trained = training_summary(adapter) if adapter else None  # one adapter for the group's cells
        progress.update(grid, description=f"loading {exp.model}{' + adapter' if adapter else ''}")
        backend = load_backend(exp.model, adapter=str(adapter) if adapter else None, **exp.backend_options)
        try:
            # on a shared CPU one thread can be several times faster than all (ptychobench.cpu)
            with torch_threads():
                for c in cells:
                    self._run_model_cell(c, exp, backend, subset, adapter, trained, progress, grid)
        finally:
            del backend

    def _train(self, cell: Cell, exp: Experiment, subset: list[Sample], progress) -> Path:
        from .strategies import train_adapter

        out = adapter_dir(self.ds, cell, exp, subset)
        progress.console.print(f"training adapter {out.name} on {len(subset)} samples (reused when present)")
        return Path(train_adapter(cell.task, exp.model, self.ds.root, out, seed=cell.seed,
                                  train_samples=subset, **exp.sft))

    def _run_model_cell(self, c: Cell, exp: Experiment, backend, subset, adapter, trained, progress, grid) -> None:
        from .strategies import make_selector

        task = get_task(c.task)
        test = self.test_samples(c.task)
        demos_for = None
        if c.k > 0:
            selector = make_selector(c.selector, seed=c.seed)
            demos_for = lambda s, sel=selector: sel.select(s, subset, c.k)  # noqa: E731
        meta = {**c.meta(), "n_train": len(subset), "model_spec": exp.model, "adapter": str(adapter) if adapter else None,
                "decoding": self.cfg.generation().as_dict(), "fingerprint": backend.fingerprint()}
        if adapter:
            meta["adapter_training"] = trained
        bar = progress.add_task(f"  {c.config}", total=len(test))
        progress.update(bar, completed=sum(self.store.is_done(c.config, s.id) for s in test))
        predict(task, test, backend, self.store, c.config, meta, self.cfg.generation(), demos_for,
                batch_size=exp.batch_size or self.cfg.batch_size,
                on_done=lambda n: progress.advance(bar, n))
        progress.update(bar, visible=False)
        progress.advance(grid)

    def _run_baseline(self, c: Cell, exp: Experiment, progress, grid) -> None:
        from .strategies import fit_predict_probe

        task = get_task(c.task)
        test = self.test_samples(c.task)
        subset = train_subset(self.ds.samples(c.task, "train"), c.train_size, c.seed)
        progress.update(grid, description=f"{c.config}")
        t0 = time.perf_counter()
        preds = fit_predict_probe(c.task, subset, test, c.strategy, seed=c.seed, **exp.probe_options)
        per = (time.perf_counter() - t0) / max(1, len(test))
        meta = {**c.meta(), "n_train": len(subset), "probe_options": exp.probe_options}
        for s, labels in zip(test, preds):
            if not self.store.is_done(c.config, s.id):
                self.store.append(make_record(task, s, c.config, meta, labels=labels, seconds=per))
        progress.advance(grid)


# --------------------------------------------------------------------------- command


def run_command(
    config: Optional[str] = typer.Argument(None, help="YAML config file or shipped config name (default: the embedded default)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder (default: runs/<config name>)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: run only this worker's share of the grid."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the report when the run ends (not for shards)."),
) -> None:
    """Run a grid of experiments into a prediction store, then write the report.

    Without a config: the embedded default (shipped sim-v1, offline models, both tasks).
    Killed or interrupted, the same command picks up where it stopped.

    Example: ptychobench run                       # embedded default -> runs/default/report.html
    Example: ptychobench run paper --out runs/paper --shard 0/4
    """
    from rich.console import Console

    console = Console()
    try:
        cfg = load_config(config)
        sh = parse_shard(shard)
        run_dir = out or Path("runs") / cfg.name
        console.print(f"report: [bold]{(run_dir / 'report.html').resolve()}[/]")
        runner = Runner(cfg, run_dir, sh, console)
        summary = runner.run()
    except (ConfigError, DatasetError) as e:
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished predictions are in the store; rerun the same command to continue")
        raise typer.Exit(130)
    console.print(f"ran {summary['ran']} of {summary['cells']} cells in {summary['seconds']} s")
    if report and sh is None:
        from .report import write_report

        paths = write_report(run_dir)
        console.print(f"report: [bold]{paths['html'].resolve()}[/] (and {paths['md'].name})")
    elif sh is not None:
        console.print(f"shard {sh[0]}/{sh[1]} done; when all shards are done: ptychobench report {run_dir}")
