"""The grid: a config expanded into cells, cells split into shards, training subsets.

A cell is one (task, model, strategy, selector, k, seed, training-set size) or one
baseline; its name keys the store, so a rerun skips what is done and a killed run loses
nothing. ``--shard i/n`` gives each of n workers a share of the cells, balanced by
estimated cost (:mod:`ptychobench.run.plan`; an adapter's cells never split), each into
its own store file; ``report`` merges them. ``--shard auto`` reads i and n from the
scheduler (:mod:`ptychobench.run.scheduler`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ..data import Sample
from ..errors import ConfigError
from ..names import ADAPTER_STRATEGIES, family
from .config import RunConfig


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
    prompt: str = "ours"  # ours | released (docs/paper.md)
    parse: str = "tolerant"  # tolerant | strict
    #: the split it is evaluated on (the config's ``split``); part of the name, so a cell's
    #: predictions on ``test-ood`` never mix with its predictions on ``test`` in one store
    split: str = "test"

    @property
    def config(self) -> str:
        sel = self.selector or "-"
        modes = (
            (f"/prompt-{self.prompt}" if self.prompt != "ours" else "")
            + (f"/parse-{self.parse}" if self.parse != "tolerant" else "")
            + (f"/split-{self.split}" if self.split != "test" else "")
        )  # default cells keep their old keys
        return f"{self.task}/{self.model}/{self.strategy}/{sel}/k{self.k}/seed{self.seed}/n{self.train_size}{modes}"

    @property
    def uses_adapter(self) -> bool:
        return self.strategy in ADAPTER_STRATEGIES

    @property
    def group(self) -> tuple:
        """Cells sharing a loaded model (and adapter) run together, on one shard."""
        return (
            self.task,
            self.model,
            self.uses_adapter,
            self.seed if self.uses_adapter else None,
            self.train_size if self.uses_adapter else None,
            self.exp,
        )

    def meta(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("exp")
        d["family"] = family(self.strategy)
        return d


def expand(cfg: RunConfig) -> list[Cell]:
    cells: list[Cell] = []
    sampling = cfg.generation().do_sample
    for i, e in enumerate(cfg.experiments):
        modes = {"prompt": e.prompt, "parse": e.parse, "split": cfg.split}
        for seed in cfg.seeds:
            for n in cfg.train_sizes:
                for b in e.baselines:
                    cells.append(Cell(e.task, e.label if e.model else b, b, None, 0, seed, n, i, split=cfg.split))
                for s in e.strategies:
                    if s in ("zero-shot", "sft"):
                        # base zero-shot does not depend on the training set, nor on the seed
                        # unless decoding samples (each seed then samples its own replies)
                        if s == "zero-shot" and (n != cfg.train_sizes[0] or (seed != cfg.seeds[0] and not sampling)):
                            continue
                        cells.append(Cell(e.task, e.label, s, None, 0, seed, n, i, **modes))
                    else:
                        for sel in e.selectors:
                            for k in e.k:
                                if k > 0:
                                    cells.append(Cell(e.task, e.label, s, sel, k, seed, n, i, **modes))
    seen: set[str] = set()
    for c in cells:
        if c.config in seen:
            raise ConfigError(f"{cfg.source}: two experiments give the same cell {c.config}; give one a 'name'")
        seen.add(c.config)
    return cells


def require_split(cfg: RunConfig, dataset: Any) -> None:
    """ConfigError unless the dataset has the config's ``split`` for every task the grid
    evaluates: said before anything runs or is planned, naming the splits it has."""
    for task in dict.fromkeys(e.task for e in cfg.experiments):
        if (task, cfg.split) not in dataset.splits:
            have = ", ".join(dataset.split_names(task)) if task in dataset.tasks else "none (no such task)"
            raise ConfigError(
                f"{cfg.source}: split {cfg.split!r}: dataset {dataset.name!r} ({dataset.root}) has no "
                f"{task}/{cfg.split} split; its {task} splits: {have}"
            )


def shard_cells(cells: list[Cell], shard: tuple[int, int] | None, plan: Any = None) -> list[Cell]:
    """Shard ``i`` of ``n``'s cells: from ``plan`` (a :class:`~ptychobench.run.plan.Plan` of
    the same grid, balanced by cost), or, without one, every n-th group of cells."""
    if shard is None:
        return cells
    i, n = shard
    if plan is not None:
        if len(plan.shards) != n:
            raise ValueError(f"the plan has {len(plan.shards)} shards, not {n}")
        return list(plan.shards[i].cells)
    groups = sorted({c.group for c in cells}, key=repr)
    mine = {g for j, g in enumerate(groups) if j % n == i}
    return [c for c in cells if c.group in mine]


#: the most shards a grid is split into (a count of 1e10 was a MemoryError)
MAX_SHARDS = 1024


def check_shard_count(n: int, flag: str = "--shard") -> None:
    """ConfigError unless ``n`` shards is a count this tool can plan."""
    if not 1 <= n <= MAX_SHARDS:
        raise ConfigError(f"{flag}: {n} shards; use 1..{MAX_SHARDS}")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/2") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    check_shard_count(n, f"--shard {text}")
    return i, n


def train_subset(samples: Sequence[Sample], size: int | str, seed: int) -> list[Sample]:
    """The first ``size`` of a seeded shuffle: smaller sets are nested in larger ones."""
    if isinstance(size, str) or size >= len(samples):  # "all" (the config allows no other string)
        return list(samples)
    order = sorted(samples, key=lambda s: s.id)
    random.Random(f"train-subset-{seed}").shuffle(order)
    return order[: int(size)]
