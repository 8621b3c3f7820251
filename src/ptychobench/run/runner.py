"""Execute the grid: one loaded model (or one baseline kind) at a time, every cell's
predictions into the store, each record naming the settings that made it."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Sequence

from ..data import Dataset, Sample, load_dataset
from ..eval.predict import make_record, predict
from ..eval.store import PredictionStore
from ..names import BASELINES
from ..paths import adapters_dir
from ..tasks import get_task
from .config import Experiment, RunConfig
from .grid import Cell, expand, shard_cells, train_subset


def store_path(run_dir: Path, shard: tuple[int, int] | None) -> Path:
    return run_dir / ("predictions.jsonl" if shard is None else f"predictions-shard{shard[0]}of{shard[1]}.jsonl")


def adapter_dir(ds: Dataset, cell: Cell, exp: Experiment, subset: Sequence[Sample]) -> Path:
    key = json.dumps({
        "dataset": ds.manifest.get("content_hash"), "task": cell.task, "model": exp.model,
        "train": sorted(s.id for s in subset), "seed": cell.seed, "sft": exp.sft,
    }, sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:12]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in exp.label)
    return adapters_dir() / f"{cell.task}-{safe}-n{cell.train_size}-seed{cell.seed}-{h}"


class Runner:
    def __init__(self, cfg: RunConfig, run_dir: Path, shard: tuple[int, int] | None = None, console=None):
        from rich.console import Console

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.shard = shard
        self.console = console or Console()
        self.ds = load_dataset(cfg.dataset)
        self.store = PredictionStore(store_path(self.run_dir, shard))
        plan = None
        if shard is not None:  # every shard computes the same balanced plan (run/plan.py)
            from .plan import plan_run

            plan = plan_run(cfg, self.ds, shard[1])
        self.cells = shard_cells(expand(cfg), shard, plan)

    def _dataset_component(self) -> dict[str, Any]:
        return {"dataset": {"name": self.ds.name, "content_hash": self.ds.manifest.get("content_hash"),
                            "limit": self.cfg.limit}}

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
        from ..models import load_backend
        from ..models.cpu import torch_threads

        subset = train_subset(self.ds.samples(first.task, "train"), first.train_size, first.seed)
        adapter = None
        if first.uses_adapter:
            adapter = exp.adapter or self._train(first, exp, subset, progress)
        from ..strategies.sft import training_summary

        trained = training_summary(adapter) if adapter else None  # one adapter for the group's cells
        progress.update(grid, description=f"loading {exp.model}{' + adapter' if adapter else ''}")
        backend = load_backend(exp.model, adapter=str(adapter) if adapter else None, **exp.backend_options)
        try:
            # on a shared CPU one thread can be several times faster than all (ptychobench.models.cpu)
            with torch_threads():
                for c in cells:
                    self._run_model_cell(c, exp, backend, subset, adapter, trained, progress, grid)
        finally:
            del backend

    def _train(self, cell: Cell, exp: Experiment, subset: list[Sample], progress) -> Path:
        from ..strategies import train_adapter

        out = adapter_dir(self.ds, cell, exp, subset)
        progress.console.print(f"training adapter {out.name} on {len(subset)} samples (reused when present)")
        return Path(train_adapter(cell.task, exp.model, self.ds.root, out, seed=cell.seed,
                                  train_samples=subset, **exp.sft))

    def _run_model_cell(self, c: Cell, exp: Experiment, backend, subset, adapter, trained, progress, grid) -> None:
        from ..strategies import make_selector

        task = get_task(c.task)
        test = self.test_samples(c.task)
        demos_for = None
        selector = None
        if c.k > 0:
            selector = make_selector(c.selector, seed=c.seed, **exp.selector_options)
            demos_for = lambda s, sel=selector: sel.select(s, subset, c.k)  # noqa: E731
        meta = {**c.meta(), "n_train": len(subset), "model_spec": exp.model, "adapter": str(adapter) if adapter else None,
                "decoding": self.cfg.generation().as_dict(), "fingerprint": backend.fingerprint()}
        if adapter:
            meta["adapter_training"] = trained
        components = {**self._dataset_component(), "model": backend.fingerprint(),
                      "decoding": self.cfg.generation().as_dict(),
                      "selector": {**selector.describe(), "k": c.k} if selector else None,
                      "adapter": {"path": str(adapter), "sft": exp.sft, "training": trained} if adapter else None}
        bar = progress.add_task(f"  {c.config}", total=len(test))
        progress.update(bar, completed=sum(self.store.is_done(c.config, s.id) for s in test))
        t0 = time.perf_counter()
        predict(task, test, backend, self.store, c.config, meta, self.cfg.generation(), demos_for,
                batch_size=exp.batch_size or self.cfg.batch_size, components=components,
                on_done=lambda n: progress.advance(bar, n))
        progress.update(bar, visible=False)
        progress.advance(grid)
        self._log_cell(c, test, t0)

    def _log_cell(self, c: Cell, test: Sequence[Sample], t0: float) -> None:
        """One line per finished cell where no one watches a live bar (a scheduler's log file)."""
        if self.console.is_terminal:
            return
        recs = [self.store.get(c.config, s.id) for s in test]
        errors = sum(1 for r in recs if r and r.get("error"))
        self.console.print(f"cell {c.config} n={len(test)} time={time.perf_counter() - t0:.1f}s errors={errors}",
                           highlight=False, soft_wrap=True)

    def _run_baseline(self, c: Cell, exp: Experiment, progress, grid) -> None:
        from ..strategies import fit_predict_probe

        task = get_task(c.task)
        test = self.test_samples(c.task)
        subset = train_subset(self.ds.samples(c.task, "train"), c.train_size, c.seed)
        progress.update(grid, description=f"{c.config}")
        t0 = time.perf_counter()
        preds = fit_predict_probe(c.task, subset, test, c.strategy, seed=c.seed, **exp.probe_options)
        per = (time.perf_counter() - t0) / max(1, len(test))
        meta = {**c.meta(), "n_train": len(subset), "probe_options": exp.probe_options}
        components = {**self._dataset_component(), "probe": {"name": c.strategy, "options": exp.probe_options}}
        for s, labels in zip(test, preds):
            if not self.store.is_done(c.config, s.id):
                self.store.append(make_record(task, s, c.config, meta, labels=labels, seconds=per,
                                              components=components))
        progress.advance(grid)
        self._log_cell(c, test, t0)
