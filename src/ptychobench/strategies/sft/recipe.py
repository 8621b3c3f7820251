"""The hyper-parameters of a LoRA run: the paper's GPU recipe, a CPU profile, overrides,
and which linear layers get adapters."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ...errors import ConfigError
from ...names import SFT_PROFILES

FORMAT_VERSION = 1
#: The attention and MLP projections of Llama-family decoders (the paper's targets).
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one LoRA fine-tuning run."""

    epochs: float = 50
    learning_rate: float = 2e-4
    lora_r: int = 16
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: tuple[str, ...] = PROJECTIONS
    #: LoRA on the top N decoder layers only (None: all). Back-propagation then stops at
    #: the lowest adapted layer, which is most of the saving on a CPU.
    lora_layers: int | None = None
    #: Also adapt the vision tower's projections (hub VLMs; tiny-vlm's encoder is a CNN).
    train_vision: bool = False
    batch_size: int = 8  # per device
    grad_accum: int = 4  # effective batch = batch_size * grad_accum * devices
    weight_decay: float = 0.01
    scheduler: str = "linear"
    warmup_steps: int = 5
    max_length: int = 2048
    optim: str = "auto"  # auto: 8-bit AdamW where bitsandbytes and a GPU are there, else AdamW
    bf16: bool | None = None  # None: bf16 on a GPU that has it; on the CPU, bf16 autocast
    gradient_checkpointing: bool = False
    max_train_samples: int | None = None  # a seeded subset of the train split
    #: a wall-clock guard: past it the run fails (no adapter is saved), never a shorter adapter
    time_budget_s: float | None = None
    logging_steps: int = 1
    #: Run the batch's shared prompt prefix once per batch (CPU speed; off with
    #: gradient checkpointing, which cannot keep a cache).
    share_prefix: bool = False
    #: Which tokens carry the loss: ``answer`` (the query's answer only; ours), ``answers``
    #: (every assistant turn, demos' answers too) or ``sequence`` (every token, prompt
    #: included, padding and image tokens excepted: the authors' scripts).
    loss_on: str = "answer"
    #: ``4bit``: QLoRA (the base model loaded in 4-bit NF4 by bitsandbytes, LoRA on top), the
    #: memory-saving recipe for the 70B/90B models on fewer GPUs; None: the base in bf16.
    quantize: str | None = None
    #: Label-aware sampling (issue 27): each epoch's examples are drawn (seeded, with
    #: replacement) with probability proportional to count(answer) ** -balance, so that on a
    #: split where half the images have "No obvious artifacts" that answer is not the optimum
    #: of a short run. 0: the split as it is; 1: every distinct answer equally often.
    balance: float = 0.0
    #: The answer's labels in a random (seeded) order in each training example, so the model
    #: cannot learn the option list's order instead of the image.
    shuffle_labels: bool = False
    #: Projector alignment before LoRA (LLaVA's first stage, on the same train split): this
    #: many epochs train the image projector alone, the language model frozen. tiny-vlm's
    #: projector starts random; without it a short LoRA run learns the majority answer.
    align_epochs: float = 0.0
    align_learning_rate: float = 1e-3
    #: Word alignment before LoRA (tiny-vlm): this many steps train the projector alone, on
    #: cached encoder features, toward the input embeddings of each image's label words
    #: (``align.align_projector_to_words``); no language-model pass, so cheap.
    word_align_steps: int = 0
    word_align_learning_rate: float = 1e-3


#: Recipe fields added after adapters were trained: left out of an adapter's settings while
#: at these values, so those adapters keep their settings (and are reused).
LATER_FIELDS = {
    "balance": 0.0,
    "shuffle_labels": False,
    "align_epochs": 0.0,
    "align_learning_rate": 1e-3,
    "word_align_steps": 0,
    "word_align_learning_rate": 1e-3,
}


def _gpu(vision: bool) -> Recipe:
    # The paper: r=16, alpha=16, dropout 0, attention + MLP (vision and language layers of
    # the VLM: finetune_vision_layers=True), 50 epochs, lr 2e-4, 8-bit AdamW, weight decay
    # 0.01, linear schedule, 5 warm-up steps, max length 2048, effective batch 8 (VLM) / 32 (LLM).
    return Recipe(batch_size=2 if vision else 8, grad_accum=4, gradient_checkpointing=True, train_vision=vision)


def _paper(vision: bool) -> Recipe:
    # The authors' scripts exactly where we can: the gpu recipe, their per-device batches
    # (VLM 1 x 8, LLM 4 x 8) and the loss on the whole sequence (their LLM labels are the
    # input ids; their VLM collator masks only padding and image tokens).
    return replace(_gpu(vision), batch_size=1 if vision else 4, grad_accum=8, loss_on="sequence")


def _cpu(vision: bool) -> Recipe:
    # Measured on this project's 2-core AVX512-BF16 CPU (docs/strategies.md): bf16 autocast
    # where the CPU probe finds it faster (models/precision.py), the shared system prompt run
    # once per batch with the LM head at answer positions only, LoRA on the top 6 of 30
    # layers, few epochs at a high rate, and no wall-clock cap: a run goes to its last step, so
    # the adapter does not depend on the machine's speed. tiny-vlm back-propagates
    # through every layer anyway (its trained projector sits below them), so LoRA on every
    # layer costs it little more.
    if vision:
        return Recipe(
            epochs=1,
            learning_rate=1e-3,
            lora_layers=None,
            batch_size=8,
            grad_accum=1,
            warmup_steps=2,
            share_prefix=True,
        )
    return Recipe(
        epochs=3,
        learning_rate=1e-3,
        lora_layers=6,
        batch_size=8,
        grad_accum=1,
        warmup_steps=2,
        share_prefix=True,
    )


def _lowdata(vision: bool) -> Recipe:
    # Issue 27: the cpu profile plus what makes a short run on a few hundred examples learn
    # the image rather than the majority answer (each measured: docs/strategies.md).
    return replace(_cpu(vision), **LOWDATA_STAGES)


#: the low-data stages (issue 27); the gpu and paper profiles opt in through ``sft:`` overrides
LOWDATA_STAGES: dict[str, Any] = {
    "align_epochs": 0.25,
    "align_learning_rate": 2e-3,
    "balance": 0.5,
    "shuffle_labels": True,
    "word_align_steps": 300,
}

PROFILES = {"cpu": _cpu, "lowdata": _lowdata, "gpu": _gpu, "paper": _paper}
assert tuple(PROFILES) == SFT_PROFILES  # names.SFT_PROFILES is what configs are checked against
LOSS_ON = ("answer", "answers", "sequence")
QUANTIZE = (None, "4bit")


def recipe_settings(recipe: Recipe) -> dict[str, Any]:
    """A recipe as adapters' manifests and the runner's cell settings record it: every field,
    tuples as lists, except the ``LATER_FIELDS`` still at the value that adapters trained
    before them had (so those keep their settings)."""
    return {
        key: (list(v) if isinstance(v, tuple) else v)
        for key, v in asdict(recipe).items()
        if key not in LATER_FIELDS or v != LATER_FIELDS[key]
    }


def resolve_profile(profile: str) -> str:
    """``auto`` -> ``gpu`` where CUDA is available, else ``cpu``."""
    if profile != "auto":
        return profile
    try:
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def recipe_for(profile: str, vision: bool, **overrides: Any) -> Recipe:
    profile = resolve_profile(profile)
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; choose {', '.join(SFT_PROFILES)} or auto")
    base = PROFILES[profile](vision)
    names = {f.name for f in fields(Recipe)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}; known: {', '.join(sorted(names))}")
    if "target_modules" in overrides and isinstance(overrides["target_modules"], (list, str)):
        tm = overrides["target_modules"]
        overrides["target_modules"] = tuple(tm.split(",")) if isinstance(tm, str) else tuple(tm)
    recipe = replace(base, **{k: coerce_option(k, v) for k, v in overrides.items()})
    if recipe.loss_on not in LOSS_ON:
        raise ConfigError(f"loss_on {recipe.loss_on!r}: choose one of {', '.join(LOSS_ON)}")
    if recipe.quantize not in QUANTIZE:
        raise ConfigError(f"quantize {recipe.quantize!r}: choose 4bit or leave it out")
    return recipe


_NUMBER_FIELDS = {f.name: f.type.split(" |")[0] for f in fields(Recipe) if f.type.split(" |")[0] in ("int", "float")}


def coerce_option(name: str, value: Any) -> Any:
    """A numeric recipe field as a number. YAML 1.1 (PyYAML) reads ``3e-3`` as a string,
    which the optimiser would only reject deep inside the trainer, so such strings are
    converted here and anything else that is not a number is one clear error. Numbers stay
    as given (``epochs: 1`` stays 1), so adapter settings keep their keys."""
    kind = _NUMBER_FIELDS.get(name)
    if kind is None or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"training option {name}: {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"training option {name}: {value!r} is not a number") from None
    if kind == "int":
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"training option {name}: {value!r} is not a whole number")
        return int(number)
    return value if isinstance(value, (int, float)) else number


def lora_targets(model: Any, recipe: Recipe, vision_tower_prefixes: Sequence[str] = ()) -> list[str]:
    """Full module names of the linear layers to adapt: the recipe's projections, in the
    top ``lora_layers`` decoder layers (all when None), outside the vision tower unless
    ``train_vision``."""
    import torch

    names = []
    layer_ids = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] not in recipe.target_modules:
            continue
        in_vision = any(p in name for p in vision_tower_prefixes) or bool(
            re.search(r"(^|\.)(vision_tower|vision_model|visual|vision_encoder)\.", name)
        )
        if in_vision and not recipe.train_vision:
            continue
        m = re.search(r"\.layers\.(\d+)\.", name)
        names.append((name, int(m.group(1)) if m and not in_vision else None))
        if m and not in_vision:
            layer_ids.append(int(m.group(1)))
    if not names:
        raise ValueError(
            f"no linear layer named {', '.join(recipe.target_modules)} in the model; "
            "set target_modules to its projection names"
        )
    if recipe.lora_layers:
        n_layers = max(layer_ids) + 1 if layer_ids else 0
        lowest = n_layers - recipe.lora_layers
        return [n for n, layer in names if layer is None or layer >= lowest]
    return [n for n, _ in names]


def lora_config(model: Any, recipe: Recipe, vision: bool, tiny: bool) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r,
        lora_alpha=recipe.lora_alpha,
        lora_dropout=recipe.lora_dropout,
        bias="none",
        target_modules=lora_targets(model, recipe),
        modules_to_save=["projector"] if tiny else None,
        task_type=None if (vision or tiny) else "CAUSAL_LM",
    )
