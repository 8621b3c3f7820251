"""Which cells go to which shard: an estimated cost per cell, and shards balanced by it.

Why a cost model: the paper grid's cells differ by three orders of magnitude (a 90B model
with 7 image demonstrations against a 135M probe), so splitting groups round-robin left
the paper grid's 4 shards at +62% and -29% of the mean work (under this estimate). The
estimate is arithmetic work, not a clock: about ``2 * parameters * tokens`` for a forward
pass and three times that for a training step, with a generated token weighted
:data:`DECODE_WEIGHT` prompt tokens (decoding is memory-bound), plus :data:`LOAD_TOKENS`
per model load. It ranks cells well enough to balance shards; it does not say how many
hours a shard takes.

How shards are cut (:func:`make_plan`): an adapter's group (its training plus its cells)
and a baseline are never cut, so no two shards train the same adapter; they go first,
largest first, to the least-loaded shard. A base model's zero-shot and ICL cells may be
cut anywhere; each base model goes whole to one shard where it fits under the even level
(or :data:`TOLERANCE` over it), else over the fewest shards that hold it, so a 70B model
is loaded once wherever the balance allows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..models.catalog import get_preset, resolve_model
from ..names import BASELINES
from .config import RunConfig, sft_recipe
from .grid import Cell

#: prompt tokens of one rendered sample (image tokens included for the image task); each
#: demonstration adds one more sample plus its answer
PROMPT_TOKENS = {"image": 1700, "text": 400}
ANSWER_TOKENS = 40
#: a generated token costs about this many prompt tokens of wall time (memory-bound decoding)
DECODE_WEIGHT = 4.0
#: loading a model from disk, in prompt-token equivalents (a 70B model: ~140 GB at ~1 GB/s)
LOAD_TOKENS = 3.0e5
#: a baseline's backbone (DINOv3 ViT-B or a MiniLM), embedding train and test once
BASELINE_PARAMS_B = 0.1
#: API models run on someone else's GPUs; their cells cost wall time (rate limits), counted
#: as if a model of this size ran here
API_PARAMS_B = 1.0
#: GPU memory assumed per device when sizing a job (an A100/H100 80 GB)
GPU_MEMORY_GB = 80
#: a base model may overshoot the even share by this fraction to avoid loading it on one more shard
TOLERANCE = 0.15

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def params_b(model: str | None) -> float:
    """Billions of parameters, read from the preset's hub id or the name (``...-70B-...``,
    ``smollm2-135m``); API models count :data:`API_PARAMS_B`; unknown sizes count 7; no
    model (a baseline) counts :data:`BASELINE_PARAMS_B`."""
    if not model:
        return BASELINE_PARAMS_B
    preset = get_preset(model)
    if preset is not None and preset.backend == "openai":
        return API_PARAMS_B
    if preset is None and resolve_model(model).backend == "openai":
        return API_PARAMS_B
    for text in (preset.model, preset.name) if preset else (model,):
        m = _SIZE.search(text.replace("_", "-"))
        if m:
            return float(m.group(1)) * (1.0 if m.group(2).lower() == "b" else 1e-3)
    return 7.0


@dataclass(frozen=True)
class Resources:
    """What one job needs to run a model: GPUs (0: the CPU or an API) and host memory."""

    gpus: int
    mem_gb: int
    cpus: int = 8


def resources(model: str | None, training: bool = False, quantize: str | None = None) -> Resources:
    """bf16 weights (2 bytes a parameter; half a byte when fine-tuned with QLoRA,
    ``sft: {quantize: 4bit}``) with 20% headroom for the KV cache (50% when fine-tuning:
    LoRA gradients, 8-bit optimizer states, checkpointed activations), on
    :data:`GPU_MEMORY_GB` devices. CPU-sized models (under 1B) and API models take none."""
    if not model:
        return Resources(gpus=0, mem_gb=16)
    preset = get_preset(model)
    backend = preset.backend if preset else resolve_model(model).backend
    p = params_b(model)
    if backend == "openai" or p < 1.0:
        return Resources(gpus=0, mem_gb=16)
    weight_bytes = 0.5 if (training and quantize == "4bit") else 2.0
    need = weight_bytes * p * (1.5 if training else 1.2)
    return Resources(gpus=max(1, math.ceil(need / GPU_MEMORY_GB)), mem_gb=max(32, math.ceil(2.2 * p) + 16))


# ----------------------------------------------------------------- cost of cells and groups


@dataclass
class CostModel:
    """Estimated work of cells, in units of 1e9 parameter-tokens (about 2 GFLOP)."""

    cfg: RunConfig
    sizes: Mapping[str, Mapping[str, int]]  # task -> split -> samples

    def n_test(self, task: str) -> int:
        n = int(self.sizes[task][self.cfg.split])
        return min(n, self.cfg.limit) if self.cfg.limit else n

    def n_train(self, cell: Cell) -> int:
        n = int(self.sizes[cell.task]["train"])
        return n if cell.train_size == "all" else min(n, int(cell.train_size))

    def _prompt(self, task: str) -> int:
        from ..tasks import TASKS

        return PROMPT_TOKENS["image" if TASKS[task].modality == "image" else "text"]

    def cell(self, c: Cell) -> float:
        if c.strategy in BASELINES:
            return BASELINE_PARAMS_B * (self.n_test(c.task) + self.n_train(c)) * self._prompt(c.task) / 1e3
        exp = self.cfg.experiments[c.exp]
        gen = self.cfg.generation().max_new_tokens
        tokens = (1 + c.k) * (self._prompt(c.task) + ANSWER_TOKENS) + DECODE_WEIGHT * gen
        return params_b(exp.model) * self.n_test(c.task) * tokens / 1e3

    def training(self, c: Cell) -> float:
        """One LoRA run for an adapter group (0 where the config names a ready adapter)."""
        exp = self.cfg.experiments[c.exp]
        if not c.uses_adapter or exp.adapter:
            return 0.0
        from ..tasks import TASKS

        recipe = sft_recipe(exp.sft, TASKS[c.task].modality == "image", auto="gpu")
        n = self.n_train(c)
        if recipe.max_train_samples:
            n = min(n, recipe.max_train_samples)
        k_train = int(exp.sft.get("k", 0))
        ckpt = 4.0 / 3.0 if recipe.gradient_checkpointing else 1.0  # the forward pass runs twice
        # the projector-alignment stage runs forward and backward too, less the weights' gradients
        epochs = recipe.epochs + recipe.align_epochs * 2.0 / 3.0
        tokens = epochs * n * (1 + k_train) * (self._prompt(c.task) + ANSWER_TOKENS)
        return 3.0 * ckpt * params_b(exp.model) * tokens / 1e3

    def load(self, c: Cell) -> float:
        if c.strategy in BASELINES:
            return 0.0
        return params_b(self.cfg.experiments[c.exp].model) * LOAD_TOKENS / 1e3


# ----------------------------------------------------------------- balanced shards


@dataclass
class _Piece:
    """Cells that go to one shard together: an adapter's whole group (its training
    included), or a baseline, or some cells of one base model's group."""

    cells: list[Cell]
    cost: float  # without the model load
    group: tuple
    load: float


@dataclass
class Shard:
    index: int
    cells: list[Cell] = field(default_factory=list)
    cost: float = 0.0  # including one model load per group on this shard

    @property
    def groups(self) -> list[tuple]:
        return list(dict.fromkeys(c.group for c in self.cells))

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(c.model for c in self.cells))

    def add(self, piece: _Piece) -> None:
        if piece.group not in self.groups:
            self.cost += piece.load
        self.cells.extend(piece.cells)
        self.cost += piece.cost


@dataclass
class Plan:
    shards: list[Shard]
    cell_cost: dict[str, float]
    group_cost: dict[tuple, float]  # training cost of adapter groups

    @property
    def mean(self) -> float:
        return sum(s.cost for s in self.shards) / len(self.shards)

    @property
    def spread(self) -> float:
        """Largest deviation of a shard's cost from the mean, as a fraction of the mean."""
        m = self.mean
        return max(abs(s.cost - m) for s in self.shards) / m if m else 0.0

    @property
    def loads(self) -> int:
        """Model loads over all shards (a group cut across two shards loads twice)."""
        return sum(len(s.groups) for s in self.shards)


def _groups(cells: Sequence[Cell], cm: CostModel) -> tuple[list[_Piece], list[_Piece]]:
    """(rigid, flexible): adapter groups and baselines stay whole; a base model's group
    (zero-shot and ICL cells) may be cut between cells."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.group, []).append(c)
    rigid: list[_Piece] = []
    flexible: list[_Piece] = []
    for g, gc in groups.items():
        cost = cm.training(gc[0]) + sum(cm.cell(c) for c in gc)
        (rigid if gc[0].uses_adapter or gc[0].strategy in BASELINES else flexible).append(
            _Piece(gc, cost, g, cm.load(gc[0]))
        )
    return rigid, flexible


def _level(loads: Sequence[float], amount: float) -> float:
    """The water level: pouring ``amount`` onto shards with these loads (lowest first)
    raises them all to this level."""
    low = sorted(loads)
    for i in range(len(low)):
        level = (amount + sum(low[: i + 1])) / (i + 1)
        if i + 1 == len(low) or level <= low[i + 1]:
            return level
    return max(low, default=0.0)


def make_plan(cfg: RunConfig, cells: Sequence[Cell], n: int, sizes: Mapping[str, Mapping[str, int]]) -> Plan:
    """``n`` shards of ``cells``, balanced by estimated cost (see the module doc).

    1. Whole groups (adapters with their training, baselines), largest first, each to the
       least-loaded shard, or to a shard already holding its model while that stays under
       the even share (LPT with affinity).
    2. The target: the water level that the base models' work raises the shards to.
    3. Base models, largest first: whole onto the shard whose room under the target fits
       it most tightly, or, within :data:`TOLERANCE` over the target, onto the roomiest;
       a model too big for that is poured over the fewest roomiest shards that hold it,
       raising them to one level (so a model is split only when it must be)."""
    cm = CostModel(cfg, sizes)
    rigid, flexible = _groups(cells, cm)
    shards = [Shard(i) for i in range(max(1, n))]
    share = (sum(p.cost + p.load for p in rigid + flexible)) / len(shards)
    for p in sorted(rigid, key=lambda p: (-(p.cost + p.load), p.cells[0].config)):
        same = [s for s in shards if p.cells[0].model in s.models and s.cost + p.cost <= share]
        min(same or shards, key=lambda s: (s.cost, s.index)).add(p)
    target = _level([s.cost for s in shards], sum(p.cost + p.load for p in flexible))
    cap = target * (1 + TOLERANCE)
    for p in sorted(flexible, key=lambda p: (-(p.cost + p.load), p.cells[0].config)):
        whole = p.cost + p.load
        fits = [s for s in shards if s.cost + whole <= target]
        if fits:
            min(fits, key=lambda s: (target - s.cost, s.index)).add(p)
            continue
        roomiest = sorted(shards, key=lambda s: (s.cost, s.index))
        if roomiest[0].cost + whole <= cap:
            roomiest[0].add(p)
            continue
        m = 1
        while m < len(shards) and sum(cap - s.cost for s in roomiest[:m]) < whole + (m - 1) * p.load:
            m += 1
        over = roomiest[:m]
        level = _level([s.cost for s in over], whole + (m - 1) * p.load)
        todo = sorted(p.cells, key=lambda c: (-cm.cell(c), c.config))
        for j, s in enumerate(over):
            take: list[Cell] = []
            last, room = j == m - 1, level - s.cost - p.load
            while todo and (last or not take or cm.cell(todo[0]) <= room):
                room -= cm.cell(todo[0])
                take.append(todo.pop(0))
                if not last and room <= 0:
                    break
            if take:
                s.add(_Piece(take, sum(cm.cell(c) for c in take), p.group, p.load))
    order = {c.config: i for i, c in enumerate(cells)}
    for s in shards:
        s.cells.sort(key=lambda c: order[c.config])
    group_cost = {c.group: cm.training(c) for c in cells if c.uses_adapter}
    return Plan(shards, {c.config: cm.cell(c) for c in cells}, group_cost)


def dataset_sizes(dataset: Any) -> dict[str, dict[str, int]]:
    """task -> split -> samples of a loaded :class:`~ptychobench.data.Dataset` (every split)."""
    return {t: {sp: len(dataset.samples(t, sp)) for sp in dataset.split_names(t)} for t in dataset.tasks}


def plan_run(cfg: RunConfig, dataset: Any, n: int) -> Plan:
    """The plan of ``cfg``'s whole grid over ``n`` shards; every shard computes the same one."""
    from .grid import expand, require_split

    require_split(cfg, dataset)
    return make_plan(cfg, expand(cfg), n, dataset_sizes(dataset))


def shard_resources(shard: Shard, cfg: RunConfig) -> Resources:
    """What the shard's job asks the scheduler for: its largest model's needs."""
    need = [
        resources(
            cfg.experiments[c.exp].model,
            training=c.uses_adapter and not cfg.experiments[c.exp].adapter,
            quantize=cfg.experiments[c.exp].sft.get("quantize"),
        )
        for c in shard.cells
    ]
    if not need:
        return Resources(gpus=0, mem_gb=8, cpus=2)
    return Resources(gpus=max(r.gpus for r in need), mem_gb=max(r.mem_gb for r in need), cpus=max(r.cpus for r in need))


def plan_table(plan: Plan, cfg: RunConfig, title: str = "plan") -> Any:
    """A rich Table: per shard its cells, models, estimated cost and what its job asks for."""
    from rich.table import Table

    table = Table(title=f"{title}: {len(plan.shards)} shards, cost = estimated work (1e9 parameter-tokens)")
    for col in ("shard", "cells", "groups (model loads)", "models", "est. cost", "vs mean", "GPUs", "memory"):
        table.add_column(col, justify="left" if col == "models" else "right")
    mean = plan.mean
    for s in plan.shards:
        r = shard_resources(s, cfg)
        table.add_row(
            str(s.index),
            str(len(s.cells)),
            str(len(s.groups)),
            ", ".join(s.models) or "-",
            f"{s.cost:,.0f}",
            f"{(s.cost / mean - 1) * 100:+.1f}%" if mean else "-",
            str(r.gpus),
            f"{r.mem_gb} GB",
        )
    return table


def cell_table(plan: Plan) -> Any:
    """A rich Table: every cell, its shard and its estimated cost (adapter training shown once)."""
    from rich.table import Table

    table = Table(title="cells by shard")
    for col in ("shard", "cell", "est. cost"):
        table.add_column(col, justify="right" if col != "cell" else "left", overflow="fold")
    for s in plan.shards:
        trained: set[tuple] = set()
        for c in s.cells:
            extra = ""
            if c.group in plan.group_cost and c.group not in trained:
                trained.add(c.group)
                extra = f" + training {plan.group_cost[c.group]:,.0f}"
            table.add_row(str(s.index), c.config, f"{plan.cell_cost[c.config]:,.0f}{extra}")
    return table
