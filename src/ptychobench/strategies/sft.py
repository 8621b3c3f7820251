"""Supervised fine-tuning with LoRA: TRL's ``SFTTrainer`` (language models) or transformers'
``Trainer`` (``tiny-vlm``), peft's ``LoraConfig``, and the task's own rendering.

Every training example is ``task.render(sample, demos) + [assistant: task.target(labels)]``
collated by the backends' ``conversation_batch`` with ``loss_on="last"``: the loss is on
the query's answer only (demos' answers are prompt), and the prompt is rendered exactly as
the backend renders it at evaluation, so training and inference never drift apart.

The adapter folder holds the peft adapter (plus the trained projector for ``tiny-vlm``)
and ``ptychobench_adapter.json``: base model, dataset name and content hash, every
hyper-parameter, the train-loss curve, wall time and training tokens/s. A second call with
the same settings returns at once; other settings retrain into the folder.

Profiles: ``gpu`` is the paper's recipe; ``cpu`` fits a 2-core laptop-class CPU (see
:data:`PROFILES` and docs/strategies.md for the measurements behind it).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..backends.base import ADAPTER_MANIFEST as MANIFEST
from ..cpu import cpu_has_bf16, torch_threads

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
    time_budget_s: float | None = None  # stop (and say so in the manifest) after this long
    logging_steps: int = 1
    #: Run the batch's shared prompt prefix once per batch (CPU speed; off with
    #: gradient checkpointing, which cannot keep a cache).
    share_prefix: bool = False


def _gpu(vision: bool) -> Recipe:
    # The paper: r=16, alpha=16, dropout 0, attention + MLP, 50 epochs, lr 2e-4, 8-bit AdamW,
    # weight decay 0.01, linear schedule, 5 warm-up steps, max length 2048,
    # effective batch 8 (VLM) / 32 (LLM).
    return Recipe(batch_size=2 if vision else 8, grad_accum=4, gradient_checkpointing=True)


def _cpu(vision: bool) -> Recipe:
    # Measured on this project's 2-core AVX512-BF16 CPU (docs/strategies.md): bf16 autocast,
    # the shared system prompt run once per batch with the LM head at answer positions
    # only, LoRA on the top 6 of 30 layers, few epochs at a high rate, and a wall-clock cap
    # so the default job stays in minutes even on a busy machine. tiny-vlm back-propagates
    # through every layer anyway (its trained projector sits below them), so LoRA on every
    # layer costs it little more.
    if vision:
        return Recipe(epochs=1, learning_rate=1e-3, lora_layers=None, batch_size=8, grad_accum=1,
                      warmup_steps=2, time_budget_s=240, share_prefix=True)
    return Recipe(epochs=3, learning_rate=1e-3, lora_layers=6, batch_size=8, grad_accum=1,
                  warmup_steps=2, time_budget_s=240, share_prefix=True)


PROFILES = {"gpu": _gpu, "cpu": _cpu}


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
        raise ValueError(f"unknown profile {profile!r}; choose cpu, gpu or auto")
    base = PROFILES[profile](vision)
    names = {f.name for f in fields(Recipe)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown training option(s) {unknown}; known: {', '.join(sorted(names))}")
    if "target_modules" in overrides and isinstance(overrides["target_modules"], (list, str)):
        tm = overrides["target_modules"]
        overrides["target_modules"] = tuple(tm.split(",")) if isinstance(tm, str) else tuple(tm)
    return replace(base, **overrides)


# --------------------------------------------------------------------------- examples


def training_conversations(task: str, samples: Sequence[Any], demo_selector: str | None = None,
                           k: int = 0, seed: int = 0, selector_options: dict | None = None) -> list[list[dict]]:
    """One conversation per sample: the evaluation prompt (with ``k`` demos drawn from the
    other training samples when a selector is named) followed by the target answer."""
    from ..tasks import get_task
    from .selectors import make_selector

    spec = get_task(task)
    for s in samples:
        if s.split != "train":
            raise ValueError(f"fine-tuning sample {s.id!r} is from split {s.split!r}; train on the train split only")
    selector = make_selector(demo_selector, seed=seed, **(selector_options or {})) if demo_selector and k else None
    convs = []
    for s in samples:
        demos = selector.select(s, samples, k) if selector else []
        convs.append([*spec.render(s, demos),
                      {"role": "assistant", "content": [{"type": "text", "text": spec.target(s.labels)}]}])
    return convs


class _Collator:
    """Released-format conversations (JSON strings) -> a training batch; counts tokens."""

    def __init__(self, processor: Any, max_length: int | None):
        self.processor = processor
        self.max_length = max_length
        self.tokens = 0
        self.answer_tokens = 0
        self.samples = 0

    def __call__(self, rows: list[dict]) -> dict:
        from ..backends.tinyvlm import conversation_batch

        convs = [json.loads(r["conversation"]) for r in rows]
        batch = conversation_batch(self.processor, convs, loss_on="last", max_length=None)
        if self.max_length and batch["input_ids"].shape[1] > self.max_length:
            lengths = batch["attention_mask"].sum(1).tolist()
            raise ValueError(f"a training example has {max(lengths)} tokens, over max_length={self.max_length}; "
                             "raise max_length or use fewer demos (k): truncating would cut the answer off")
        self.samples += len(convs)
        self.tokens += int(batch["attention_mask"].sum())
        self.answer_tokens += int((batch["labels"] != -100).sum())
        return batch


class _HubVLMCollator(_Collator):
    """Training batches for a hub VLM and its ``AutoProcessor``: the conversation rendered
    by the processor's chat template as the backend renders it, images passed to the
    processor (which expands image tokens its own way), labels on the last answer only.
    The prompt's token count comes from processing the prompt alone, so any expansion of
    image tokens is counted exactly."""

    def __call__(self, rows: list[dict]) -> dict:
        from ..backends.chat import load_image, render_with_fallback, to_vision_messages

        convs = [json.loads(r["conversation"]) for r in rows]
        state: dict[str, bool] = {}
        proc = self.processor
        proc.tokenizer.padding_side = "right"

        def render(turns: list[dict], gen: bool) -> str:
            return render_with_fallback(
                lambda c: proc.apply_chat_template(to_vision_messages(c)[0], tokenize=False,
                                                   add_generation_prompt=gen), turns, state)

        texts, prompts, images = [], [], []
        for conv in convs:
            texts.append(render(conv, False))
            prompts.append(render(conv[:-1], True))
            images.append([load_image(p) for p in to_vision_messages(conv)[1]])
        kw = dict(padding=True, return_tensors="pt", add_special_tokens=False)
        batch = dict(proc(text=texts, images=images if any(images) else None, **kw))
        labels = batch["input_ids"].clone()
        labels[batch["attention_mask"] == 0] = -100
        for row, (prompt, ims) in enumerate(zip(prompts, images)):
            n_prompt = int(proc(text=[prompt], images=[ims] if ims else None, **kw)["attention_mask"].sum())
            labels[row, :n_prompt] = -100
        batch["labels"] = labels
        if self.max_length and batch["input_ids"].shape[1] > self.max_length:
            raise ValueError(f"a training example has {batch['input_ids'].shape[1]} tokens, over "
                             f"max_length={self.max_length}; raise max_length or use fewer demos (k)")
        self.samples += len(convs)
        self.tokens += int(batch["attention_mask"].sum())
        self.answer_tokens += int((labels != -100).sum())
        return batch


def _dataset(convs: list[list[dict]]) -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"conversation": [json.dumps(c) for c in convs]})


# --------------------------------------------------------------------------- LoRA


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
            re.search(r"(^|\.)(vision_tower|vision_model|visual|vision_encoder)\.", name))
        if in_vision and not recipe.train_vision:
            continue
        m = re.search(r"\.layers\.(\d+)\.", name)
        names.append((name, int(m.group(1)) if m and not in_vision else None))
        if m and not in_vision:
            layer_ids.append(int(m.group(1)))
    if not names:
        raise ValueError(f"no linear layer named {', '.join(recipe.target_modules)} in the model; "
                         "set target_modules to its projection names")
    if recipe.lora_layers:
        n_layers = max(layer_ids) + 1 if layer_ids else 0
        lowest = n_layers - recipe.lora_layers
        return [n for n, layer in names if layer is None or layer >= lowest]
    return [n for n, _ in names]


def _lora_config(model: Any, recipe: Recipe, vision: bool, tiny: bool) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=recipe.lora_dropout, bias="none",
        target_modules=lora_targets(model, recipe),
        modules_to_save=["projector"] if tiny else None,
        task_type=None if (vision or tiny) else "CAUSAL_LM",
    )


# --------------------------------------------------------------------------- training


def _settings(task: str, model: str, ds: Any, dataset_hash: str, recipe: Recipe, demo_selector: str | None,
              k: int, seed: int, n_samples: int, train_ids: Sequence[str]) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "task": task,
        "base_model": model,
        "dataset": {"name": ds.name, "content_hash": dataset_hash},
        "demo_selector": demo_selector if k else None,
        "k": k if demo_selector else 0,
        "seed": seed,
        "train_samples": n_samples,
        "train_ids_sha256": hashlib.sha256("\n".join(train_ids).encode()).hexdigest()[:16],
        "recipe": {key: (list(v) if isinstance(v, tuple) else v) for key, v in asdict(recipe).items()},
    }


def read_manifest(adapter: Path | str) -> dict | None:
    path = Path(adapter) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def training_summary(adapter: Path | str) -> dict | None:
    """How far an adapter's training went, from its manifest (None where it has none):
    steps, epochs done of those planned, whether the wall-clock budget stopped it, wall
    time and mean train loss. A report shows it next to the adapter's cells."""
    m = read_manifest(adapter)
    if not m:
        return None
    recipe = m.get("settings", {}).get("recipe", {})
    return {"steps": m.get("steps"), "epochs_done": m.get("epochs_done"), "epochs_planned": recipe.get("epochs"),
            "stopped_by_time_budget": bool(m.get("stopped_by_time_budget")),
            "time_budget_s": recipe.get("time_budget_s"), "wall_time_s": m.get("wall_time_s"),
            "train_loss": m.get("train_loss"), "train_samples": m.get("settings", {}).get("train_samples")}


def train_adapter(task: str, model: str, dataset: str | Path, out: Path | str, profile: str = "cpu",
                  demo_selector: str | None = None, k: int = 0, seed: int = 0, *,
                  train_samples: Sequence[Any] | None = None, selector_options: dict | None = None,
                  force: bool = False, progress: bool = False, **overrides: Any) -> Path:
    """Fine-tune ``model`` with LoRA on ``task``'s train split of ``dataset``; write the
    adapter and its manifest to ``out``; return ``out``.

    ``model``: ``smollm2-135m``, ``tiny-vlm``, a paper preset or ``hf:<id or folder>``.
    ``profile``: ``gpu`` (the paper's recipe), ``cpu`` or ``auto`` (gpu where CUDA is); ``overrides`` set any
    :class:`Recipe` field (``epochs=2``, ``learning_rate=5e-4``, ``lora_layers=None``, ...).
    ``demo_selector``/``k``: train on k-shot prompts (demos from the other train samples).
    ``train_samples``: train on these samples of the dataset's train split (a training-set
    size sweep) instead of all of it; demos then come from them too.
    Reuses ``out`` when its manifest has the same settings (``force`` retrains)."""
    from ..backends.presets import get_preset
    from ..data import content_hash, load_dataset
    from ..tasks import get_task

    spec = get_task(task)
    out = Path(out)
    preset = get_preset(model)
    tiny = preset is not None and preset.backend == "tinyvlm"
    vision_model = (preset.modality == "vision") if preset else None
    if spec.modality == "image" and vision_model is False:
        raise ValueError(f"task {task!r} needs a vision-language model; {model!r} takes text only")
    if tiny and spec.modality != "image":
        raise ValueError("tiny-vlm is for the image task; fine-tune smollm2-135m for params")
    if k and not demo_selector:
        raise ValueError("k > 0 needs a demo selector (random, sample-type, knn, knn-diverse)")
    recipe = recipe_for(profile, vision=spec.modality == "image", **overrides)

    ds = load_dataset(dataset)
    dataset_hash = ds.manifest.get("content_hash") or content_hash(ds.root)
    train = sorted(ds.samples(task, "train"), key=lambda s: s.id)
    if train_samples is not None:
        known = {s.id for s in train}
        for s in train_samples:
            if s.split != "train" or s.task != task or s.id not in known:
                raise ValueError(f"train_samples holds {s.id!r} ({s.task}/{s.split}), which is not in the "
                                 f"{task} train split of {ds.root}; fine-tune on train samples only")
        train = sorted({s.id: s for s in train_samples}.values(), key=lambda s: s.id)
        if not train:
            raise ValueError("train_samples is empty")
    if recipe.max_train_samples and recipe.max_train_samples < len(train):
        train = sorted(random.Random(f"sft:{seed}").sample(train, recipe.max_train_samples), key=lambda s: s.id)
    settings = _settings(task, model, ds, dataset_hash, recipe, demo_selector, k, seed, len(train),
                         [s.id for s in train])
    old = read_manifest(out)
    if old and not force and old.get("settings") == settings and (out / "adapter_config.json").is_file():
        return out

    import torch

    convs = training_conversations(task, train, demo_selector, k, seed, selector_options)
    t_load = time.perf_counter()
    from ..backends.hf import quiet_peft

    with torch_threads(), quiet_peft():  # the caller's own thread count comes back afterwards
        torch.manual_seed(seed)
        from ..backends import load_for_training

        load_options: dict[str, Any] = {}
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and torch.cuda.is_available():  # accelerate launch / torchrun: one replica per GPU
            load_options["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        base, processor = load_for_training(model, **load_options)
        tokenizer = getattr(processor, "tokenizer", processor)
        hub_vlm = spec.modality == "image" and not tiny
        from peft import get_peft_model

        peft_model = get_peft_model(base, _lora_config(base, recipe, spec.modality == "image", tiny))
        load_s = time.perf_counter() - t_load

        on_gpu = torch.cuda.is_available()
        bf16 = recipe.bf16 if recipe.bf16 is not None else (
            torch.cuda.is_bf16_supported() if on_gpu else cpu_has_bf16())
        optim = recipe.optim
        if optim == "auto":
            try:
                import bitsandbytes  # noqa: F401

                optim = "adamw_8bit" if on_gpu else "adamw_torch"
            except ImportError:
                optim = "adamw_torch"

        work = out.with_name(out.name + ".partial")
        if int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        common = dict(
            output_dir=str(work / "trainer"), num_train_epochs=recipe.epochs, learning_rate=recipe.learning_rate,
            per_device_train_batch_size=recipe.batch_size, gradient_accumulation_steps=recipe.grad_accum,
            weight_decay=recipe.weight_decay, lr_scheduler_type=recipe.scheduler, warmup_steps=recipe.warmup_steps,
            optim=optim, bf16=bf16, use_cpu=not on_gpu, logging_steps=recipe.logging_steps, save_strategy="no",
            report_to=[], seed=seed, data_seed=seed, remove_unused_columns=False, dataloader_num_workers=0,
            disable_tqdm=not progress,
        )
        collator = (_HubVLMCollator if hub_vlm else _Collator)(processor, recipe.max_length)
        clock = _step_clock()
        callbacks = [clock] + ([_time_budget(recipe.time_budget_s)] if recipe.time_budget_s else [])
        from trl import SFTConfig, SFTTrainer

        # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old
        # name warns); use whichever this version has.
        ckpt = ("activation_checkpointing" if "activation_checkpointing" in SFTConfig.__dataclass_fields__
                else "gradient_checkpointing")
        common[ckpt] = recipe.gradient_checkpointing
        if recipe.gradient_checkpointing:
            common[f"{ckpt}_kwargs"] = {"use_reentrant": False}
        args = SFTConfig(**common, max_length=recipe.max_length, dataset_kwargs={"skip_prepare_dataset": True})
        trainer_cls = SFTTrainer
        if recipe.share_prefix and not recipe.gradient_checkpointing and not hub_vlm:
            trainer_cls = _shared_prefix_trainer(SFTTrainer)
        trainer = trainer_cls(model=peft_model, args=args, train_dataset=_dataset(convs), data_collator=collator,
                              processing_class=tokenizer, callbacks=callbacks)
        if not progress:  # the caller (the runner) shows its own progress; the loss curve is in the manifest
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)
        t0 = time.perf_counter()
        result = trainer.train()
        train_s = time.perf_counter() - t0

        if not trainer.is_world_process_zero():
            return out
        adapter_dir = work / "adapter"
        if tiny:
            from ..backends.tinyvlm import save_adapter

            save_adapter(trainer.model, adapter_dir)
        else:
            trainer.model.save_pretrained(str(adapter_dir))
            tokenizer.save_pretrained(str(adapter_dir))
        curve = [{"step": h["step"], "epoch": round(h.get("epoch", 0.0), 4), "loss": round(h["loss"], 5),
                  "t_s": clock.times.get(h["step"])}
                 for h in trainer.state.log_history if "loss" in h]
        budget_hit = any(getattr(c, "hit", False) for c in callbacks)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        manifest = {
            "settings": settings,
            "dataset_path": str(ds.root),
            "profile": resolve_profile(profile),
            "train_loss_curve": curve,
            "train_loss": round(float(result.training_loss), 5),
            "steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0.0), 4),
            "stopped_by_time_budget": budget_hit,
            "wall_time_s": round(train_s, 2),
            "load_time_s": round(load_s, 2),
            "train_tokens": collator.tokens,
            "answer_tokens": collator.answer_tokens,
            # tokens of the training sequences per second; with share_prefix the model runs
            # fewer (computed_tokens): the shared prefix once per batch
            "tokens_per_s": round(collator.tokens / train_s, 1) if train_s else None,
            "computed_tokens": getattr(trainer, "computed_tokens", collator.tokens) or collator.tokens,
            "samples_seen": collator.samples,
            "samples_per_s": round(collator.samples / train_s, 3) if train_s else None,
            "trainable_parameters": trainable,
            "resolved": {"optim": optim, "bf16": bf16, "device": "cuda" if on_gpu else "cpu",
                         "threads": torch.get_num_threads(), "trainer": type(trainer).__name__},
            "versions": _versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (adapter_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        # swap in the finished adapter last: an interrupted run never leaves a half adapter
        if out.exists():
            shutil.rmtree(out)
        os.replace(adapter_dir, out)
        shutil.rmtree(work, ignore_errors=True)
        return out


def shared_prefix_length(input_ids: Any, attention_mask: Any, labels: Any, stop_ids: Sequence[int] = ()) -> int:
    """How many leading tokens every row of a right-padded batch shares, stopping before
    the first position whose next token is a label (that position's output is needed)
    and before any ``stop_ids`` token (image slots: their embeddings need the pixels)."""
    import torch

    same = (input_ids == input_ids[:1]).all(0) & (attention_mask == 1).all(0)
    for t in stop_ids:
        same &= ~(input_ids == t).any(0)
    differs = torch.nonzero(~same)
    common = int(differs[0]) if len(differs) else input_ids.shape[1]
    labelled = torch.nonzero((labels != -100).any(0))
    first_label = int(labelled[0]) if len(labelled) else input_ids.shape[1]
    return max(0, min(common, first_label - 1))


def shared_prefix_loss(model: Any, inputs: dict, p: int) -> tuple[Any, Any]:
    """(sum of the answer tokens' cross-entropy, their count) for a right-padded batch
    whose rows share their first ``p`` tokens: the prefix runs once, the rest of every row
    on top of its key/value cache repeated over the batch (the prefix's keys and values
    stay in the autograd graph, so loss and gradients equal the plain forward's), and the
    LM head runs only where there is a label (the full logits would be most of the memory
    traffic). ``model``: a causal LM or a peft model of one (LoRA layers sit in place)."""
    import torch
    from transformers import DynamicCache

    ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
    rest = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask", "labels")}
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = base.base_model, base.get_output_embeddings()
    decoder = getattr(backbone, "language_model", backbone)
    # transformers 5 renames past_key_values to cache; take whichever the decoder knows
    key = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    cache = DynamicCache()  # filled in place by the prefix pass
    backbone(input_ids=ids[:1, :p], attention_mask=mask[:1, :p], use_cache=True, **{key: cache})
    cache.batch_repeat_interleave(ids.shape[0])
    out = backbone(input_ids=ids[:, p:], attention_mask=mask, use_cache=True, **{key: cache}, **rest)
    hidden = out.last_hidden_state[:, :-1]
    target = labels[:, p + 1:].to(hidden.device)
    keep = target != -100
    logits = head(hidden[keep])
    loss_sum = torch.nn.functional.cross_entropy(logits.float(), target[keep], reduction="sum")
    return loss_sum, keep.sum()


def _shared_prefix_trainer(trainer_cls: type, min_prefix: int = 32) -> type:
    """``trainer_cls`` whose loss is :func:`shared_prefix_loss` when the batch shares a
    prefix (the system turn: the instructions and the option list, half or more of a
    prompt here). On the CPU, where compute is the bottleneck, it is most of the speed."""
    import torch

    class SharedPrefixTrainer(trainer_cls):
        computed_tokens = 0  # tokens actually run through the model (prefix once per batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ids, mask, labels = inputs["input_ids"], inputs["attention_mask"], inputs["labels"]
            image_token = getattr(getattr(self.model, "config", None), "image_token_id", None)
            p = shared_prefix_length(ids, mask, labels, () if image_token is None else (image_token,))
            if p < min_prefix or ids.shape[0] < 2 or return_outputs:
                self.computed_tokens += int(mask.sum())
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            self.computed_tokens += p + int(mask[:, p:].sum())
            unwrapped = self.accelerator.unwrap_model(model)
            with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=bool(self.args.bf16)):
                loss_sum, n = shared_prefix_loss(unwrapped, inputs, p)
            if self.model_accepts_loss_kwargs and num_items_in_batch is not None:
                loss = loss_sum / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = loss_sum / n.clamp(min=1)
            return loss

    SharedPrefixTrainer.__name__ = f"SharedPrefix{trainer_cls.__name__}"
    return SharedPrefixTrainer


def _step_clock() -> Any:
    """A callback recording the wall time since the start of training at each step."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()
            self.times: dict[int, float] = {}

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times[state.global_step] = round(time.perf_counter() - self.start, 2)

    return StepClock()


def _time_budget(seconds: float) -> Any:
    """A callback that stops training after ``seconds`` of wall time (checked after each
    optimizer step); ``.hit`` says whether it did."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def __init__(self) -> None:
            self.hit = False
            self.start = time.perf_counter()

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if time.perf_counter() - self.start > seconds:
                self.hit = True
                control.should_training_stop = True
            return control

    return TimeBudget()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
