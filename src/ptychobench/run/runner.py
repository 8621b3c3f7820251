"""Execute the grid: one loaded model (or one baseline kind) at a time, every cell's
predictions into the store, each record naming the settings that made it.

Integrity: one writer per run folder (``lock.FolderLock``); each cell's settings hash
(``settings.py``) decides what is done, so predictions made under other settings are
never reused; the run folder keeps every config it ran under as
``configs/config-<hash>.yaml`` (secrets removed), never overwriting one; and a cell whose
errors and unparseable replies pass ``max_failure_rate`` is reported as failed."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..data import Dataset, Sample, content_hash, load_dataset
from ..errors import ConfigError, ModelError, TrainingCutShort
from ..eval.predict import make_record, predict
from ..eval.score import ConfigScores, score_records
from ..eval.store import PredictionStore
from ..files import write_atomic
from ..models.catalog import get_preset, resolve_model
from ..names import BASELINES
from ..paths import adapters_dir
from ..tasks import get_task
from .config import Experiment, RunConfig
from .grid import Cell, expand, require_split, shard_cells, train_subset
from .lock import FolderLock
from .settings import config_copy_text, settings_hash, short_hash


def store_path(run_dir: Path, shard: tuple[int, int] | None) -> Path:
    return run_dir / ("predictions.jsonl" if shard is None else f"predictions-shard{shard[0]}of{shard[1]}.jsonl")


def adapter_dir(ds: Dataset, cell: Cell, exp: Experiment, subset: Sequence[Sample], dataset_hash: str) -> Path:
    key = json.dumps(
        {
            "dataset": dataset_hash,
            "task": cell.task,
            "model": exp.model,
            "train": sorted(s.id for s in subset),
            "seed": cell.seed,
            "sft": exp.sft,
            **({"prompt": exp.prompt} if exp.prompt != "ours" else {}),
        },
        sort_keys=True,
    )
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
        self.preflight()
        self.ds = load_dataset(cfg.dataset)
        require_split(cfg, self.ds)
        self.store = PredictionStore(store_path(self.run_dir, shard))
        plan = None
        if shard is not None:  # every shard computes the same balanced plan (run/plan.py)
            from .plan import plan_run

            plan = plan_run(cfg, self.ds, shard[1])
        self.cells = shard_cells(expand(cfg), shard, plan)
        # the files' own hash, not manifest.json's: a label edited after the manifest was
        # written is a new dataset, so its cells are predicted (and scored) anew
        self.dataset_hash = content_hash(self.ds.root)
        self.settings = {c.config: settings_hash(cfg, c, cfg.experiments[c.exp], self.dataset_hash) for c in self.cells}

    def __repr__(self) -> str:
        shard = f", shard={self.shard[0]}/{self.shard[1]}" if self.shard else ""
        return f"Runner({self.cfg.name!r}, dataset={self.ds.name!r}, {len(self.cells)} cells -> {self.run_dir}{shard})"

    def preflight(self) -> None:
        """What can be known to fail before anything runs or is written: an API model with
        no key for OpenAI's own endpoint. (Names, options, adapters and image capability
        are checked when the config is parsed.)"""
        import os

        for i, exp in enumerate(self.cfg.experiments):
            if not exp.model or resolve_model(exp.model).backend != "openai":
                continue
            preset = get_preset(exp.model)
            base = exp.backend_options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
            if not base and not exp.backend_options.get("api_key") and not os.environ.get("OPENAI_API_KEY"):
                raise ConfigError(
                    f"{self.cfg.source}: experiments[{i}]: model {exp.model!r} "
                    f"({preset.model if preset else exp.model} on api.openai.com) needs an API key: "
                    "set OPENAI_API_KEY, or a base_url for a local server"
                )

    def _keep_config(self) -> Path:
        """``configs/config-<hash>.yaml``: each config the folder ran under, written once."""
        text = config_copy_text(self.cfg)
        path = self.run_dir / "configs" / f"config-{short_hash(text)}.yaml"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text)
        return path

    def _dataset_component(self) -> dict[str, Any]:
        return {
            "dataset": {
                "name": self.ds.name,
                "content_hash": self.dataset_hash,
                "limit": self.cfg.limit,
                "split": self.cfg.split,
            }
        }

    def _run_meta(self) -> dict[str, Any]:
        """What ``report`` needs from the config, kept in each record: the threshold of a
        failed cell, and whether the test set was cut."""
        return {"max_failure_rate": self.cfg.max_failure_rate, "limit": self.cfg.limit}

    def test_samples(self, task: str) -> list[Sample]:
        test = self.ds.samples(task, self.cfg.split)
        return test[: self.cfg.limit] if self.cfg.limit else test

    def pending(self) -> list[Cell]:
        return [
            c
            for c in self.cells
            if not all(self.store.is_done(c.config, s.id, self.settings[c.config]) for s in self.test_samples(c.task))
        ]

    def run(self) -> dict[str, Any]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with FolderLock(self.run_dir, self.shard):
            return self._run_locked()

    def _run_locked(self) -> dict[str, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.store = PredictionStore(self.store.path)  # re-read under the lock: the last writer's lines count
        self.store.touch()
        kept = self._keep_config()
        t0 = time.perf_counter()
        todo = self.pending()
        for label, why in self.cfg.skipped:
            self.console.print(f"[yellow]left out[/] experiment {label}: {why}")
        machine = self._local_model_machine(todo)
        if machine:
            self.console.print(machine["line"], highlight=False, soft_wrap=True)
        self.console.print(
            f"[bold]{len(self.cells)}[/] cells, {len(self.cells) - len(todo)} already in the store, "
            f"{len(todo)} to run -> {self.store.path}"
        )
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            grid = progress.add_task("grid", total=len(todo))
            groups: dict[tuple, list[Cell]] = {}
            for c in todo:
                groups.setdefault(c.group, []).append(c)
            for group_cells in groups.values():
                self._run_group(group_cells, progress, grid)
        wall = time.perf_counter() - t0
        failed = self.failed_cells()
        for r in failed:
            self.console.print(
                f"[bold red]failed cell[/] {r.config}: {r.scores.errors} error(s) and "
                f"{r.scores.parse_failures} unparseable repl(ies) of {r.scores.n} "
                f"({r.failure_rate:.0%} > {self.cfg.max_failure_rate:.0%})",
                highlight=False,
            )
        summary = {
            "cells": len(self.cells),
            "ran": len(todo),
            "seconds": round(wall, 1),
            "store": str(self.store.path),
            "config": str(kept.relative_to(self.run_dir)),
            "failed": [r.config for r in failed],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **({"machine": {k: v for k, v in machine.items() if k != "line"}} if machine else {}),
            **({"left_out": [f"{label}: {why}" for label, why in self.cfg.skipped]} if self.cfg.skipped else {}),
        }
        with (self.run_dir / "runs.jsonl").open("a") as f:
            f.write(json.dumps(summary) + "\n")
        return summary

    def _local_model_machine(self, todo: list[Cell]) -> dict[str, Any] | None:
        """Where a cell to run loads a model here with ``dtype: auto``: the CPU capability and
        the measured choice (``models.precision``), for the log and ``runs.jsonl`` (the report's
        machine line). None when no such cell runs (baselines, API models, an explicit dtype)."""
        auto = False
        for c in todo:
            exp = self.cfg.experiments[c.exp]
            if c.strategy in BASELINES or exp.model is None or not resolve_model(exp.model).takes_adapter:
                continue
            auto = auto or exp.backend_options.get("dtype", "auto") in (None, "auto")
        if not auto:
            return None
        from ..models.hf import pick_device
        from ..models.precision import cpu_capability, cpu_dtype_probe, describe_choice

        device = str(self.cfg.experiments[todo[0].exp].backend_options.get("device", "auto"))
        device = pick_device(device)
        facts: dict[str, Any] = {"device": device, "line": describe_choice(device)}
        if device == "cpu":
            probe = cpu_dtype_probe()
            facts.update(cpu_capability=cpu_capability(), dtype_auto=probe["dtype"], probe=probe)
        return facts

    def failed_cells(self) -> list[ConfigScores]:
        """This run's cells whose errors + unparseable replies pass ``max_failure_rate``."""
        mine = {c.config for c in self.cells}
        recs = [r for r in self.store.records() if r["config"] in mine]
        if not recs:
            return []
        return [r for r in score_records(recs, ci=False, max_failure_rate=self.cfg.max_failure_rate) if r.failed]

    def _pool(self, c: Cell) -> list[Sample]:
        """The cell's training examples: what a probe fits, an adapter trains on, and demos
        come from (the first ``train_size`` of a seeded shuffle of the train split)."""
        return train_subset(self.ds.samples(c.task, "train"), c.train_size, c.seed)

    # one loaded model (or one baseline kind) at a time
    def _run_group(self, cells: list[Cell], progress, grid) -> None:
        exp = self.cfg.experiments[cells[0].exp]
        # an experiment with a model and baselines puts both kinds in one group
        for c in [c for c in cells if c.strategy in BASELINES]:
            self._run_baseline(c, exp, progress, grid)
        cells = [c for c in cells if c.strategy not in BASELINES]
        if not cells:
            return
        first = cells[0]
        from ..models import load_backend
        from ..models.cpu import torch_threads

        adapter = None
        if first.uses_adapter:
            try:
                # an adapter's group shares one training size and seed: the first cell's pool is
                # every cell's
                adapter = exp.adapter or self._train(first, exp, self._pool(first), progress)
            except TrainingCutShort as e:
                self._fail_untrained(cells, str(e), progress, grid)
                return
        from ..strategies.sft import training_summary

        trained = training_summary(adapter) if adapter else None  # one adapter for the group's cells
        progress.update(grid, description=f"loading {exp.model}{' + adapter' if adapter else ''}")
        assert exp.model is not None  # model groups come from experiments with a model
        backend = load_backend(exp.model, adapter=str(adapter) if adapter else None, **exp.backend_options)
        if get_task(first.task).modality == "image" and getattr(backend, "vision", None) is False:
            raise ModelError(
                f"model {exp.model!r} loaded as a text-only model; the {first.task} task needs a "
                "vision-language model (nothing was stored for its cells)"
            )
        try:
            # on a shared CPU one thread can be several times faster than all (ptychobench.models.cpu)
            with torch_threads():
                for c in cells:
                    self._run_model_cell(c, exp, backend, adapter, trained, progress, grid)
        finally:
            del backend

    def _fail_untrained(self, cells: list[Cell], why: str, progress, grid) -> None:
        """The cells of an adapter whose training was cut short: an error record per test sample,
        so each cell fails loudly (and reruns once its settings change) and the run goes on."""
        progress.console.print(f"[bold red]adapter not trained[/] {why}", highlight=False)
        for c in cells:
            task = get_task(c.task)
            meta = {**c.meta(), "model_spec": self.cfg.experiments[c.exp].model, **self._run_meta()}
            for s in self.test_samples(c.task):
                self.store.append(
                    make_record(
                        task,
                        s,
                        c.config,
                        meta,
                        error=why,
                        components={**self._dataset_component()},
                        settings=self.settings[c.config],
                    )
                )
            progress.advance(grid)

    def _train(self, cell: Cell, exp: Experiment, subset: list[Sample], progress) -> Path:
        from ..strategies import train_adapter

        out = adapter_dir(self.ds, cell, exp, subset, self.dataset_hash)
        progress.console.print(f"training adapter {out.name} on {len(subset)} samples (reused when present)")
        sft = {**exp.sft, **({"prompt": exp.prompt} if exp.prompt != "ours" else {})}
        return Path(train_adapter(cell.task, exp.model, self.ds.root, out, seed=cell.seed, train_samples=subset, **sft))

    def _run_model_cell(self, c: Cell, exp: Experiment, backend, adapter, trained, progress, grid) -> None:
        from ..strategies import make_selector

        # the cell's own pool: a base model's group spans training sizes and seeds
        subset = self._pool(c)
        task = get_task(c.task).with_modes(prompt=c.prompt, parse=c.parse)
        test = self.test_samples(c.task)
        gen = self.cfg.generation()
        gen = replace(gen, seed=c.seed) if gen.do_sample else gen  # each seed samples its own replies
        demos_for = None
        selector = None
        if c.k > 0:
            assert c.selector is not None  # k > 0 cells always name a selector
            selector = make_selector(c.selector, seed=c.seed, **exp.selector_options)
            demos_for = lambda s, sel=selector: sel.select(s, subset, c.k)  # noqa: E731
        meta = {
            **c.meta(),
            "n_train": len(subset),
            "model_spec": exp.model,
            "adapter": str(adapter) if adapter else None,
            "decoding": gen.as_dict(),
            "fingerprint": backend.fingerprint(),
            **self._run_meta(),
        }
        if adapter:
            meta["adapter_training"] = trained
        components = {
            **self._dataset_component(),
            "model": backend.fingerprint(),
            "decoding": gen.as_dict(),
            "prompt": c.prompt,
            "parse": c.parse,
            "selector": {**selector.describe(), "k": c.k} if selector else None,
            "adapter": {"path": str(adapter), "sft": exp.sft, "training": trained} if adapter else None,
        }
        bar = progress.add_task(f"  {c.config}", total=len(test))
        settings = self.settings[c.config]
        progress.update(bar, completed=sum(self.store.is_done(c.config, s.id, settings) for s in test))
        t0 = time.perf_counter()
        predict(
            task,
            test,
            backend,
            self.store,
            c.config,
            meta,
            gen,
            demos_for,
            batch_size=exp.batch_size or self.cfg.batch_size,
            components=components,
            on_done=lambda n: progress.advance(bar, n),
            settings=settings,
        )
        progress.update(bar, visible=False)
        progress.advance(grid)
        self._log_cell(c, test, t0)

    def _log_cell(self, c: Cell, test: Sequence[Sample], t0: float) -> None:
        """One line per finished cell where no one watches a live bar (a scheduler's log file)."""
        if self.console.is_terminal:
            return
        recs = [self.store.get(c.config, s.id) for s in test]
        errors = sum(1 for r in recs if r and r.get("error"))
        self.console.print(
            f"cell {c.config} n={len(test)} time={time.perf_counter() - t0:.1f}s errors={errors}",
            highlight=False,
            soft_wrap=True,
        )

    def _run_baseline(self, c: Cell, exp: Experiment, progress, grid) -> None:
        from ..strategies import fit_predict_probe

        task = get_task(c.task)
        test = self.test_samples(c.task)
        subset = self._pool(c)
        progress.update(grid, description=f"{c.config}")
        t0 = time.perf_counter()
        preds = fit_predict_probe(c.task, subset, test, c.strategy, seed=c.seed, **exp.probe_options)
        per = (time.perf_counter() - t0) / max(1, len(test))
        meta = {**c.meta(), "n_train": len(subset), "probe_options": exp.probe_options, **self._run_meta()}
        components = {**self._dataset_component(), "probe": {"name": c.strategy, "options": exp.probe_options}}
        settings = self.settings[c.config]
        for s, labels in zip(test, preds):
            if not self.store.is_done(c.config, s.id, settings):
                self.store.append(
                    make_record(
                        task, s, c.config, meta, labels=labels, seconds=per, components=components, settings=settings
                    )
                )
        progress.advance(grid)
        self._log_cell(c, test, t0)
