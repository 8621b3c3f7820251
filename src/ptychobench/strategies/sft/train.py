"""Supervised fine-tuning with LoRA: TRL's ``SFTTrainer`` (language models) or transformers'
``Trainer`` (``tiny-vlm``), peft's ``LoraConfig``, and the task's own rendering.

Every training example is ``task.render(sample, demos) + [assistant: task.target(labels)]``
collated by ``models.collate.conversation_batch`` with ``loss_on="last"``: the loss is on
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

import json
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import TrainingCutShort
from ...models.cpu import torch_threads
from ...models.precision import cpu_dtype_probe
from .align import align_projector, align_projector_to_words
from .callbacks import step_clock, time_budget
from .examples import Collator, HubVLMCollator, as_dataset, balanced_draw, training_conversations
from .manifest import MANIFEST, library_versions, read_manifest, settings_of
from .prefix import shared_prefix_trainer
from .recipe import Recipe, lora_config, recipe_for, resolve_profile


def training_bf16(recipe: Recipe) -> bool:
    """bf16 autocast for this run: the recipe's choice, else on a GPU that supports it, else
    where the CPU probe measured bf16 faster than float32 (``models.precision``)."""
    if recipe.bf16 is not None:
        return recipe.bf16
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_dtype_probe()["dtype"] == "bfloat16"


def qlora_quantization() -> Any:
    """The QLoRA base-model quantisation (4-bit NF4, double quantisation, bf16 compute);
    needs bitsandbytes and a CUDA GPU."""
    import torch

    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise ValueError("quantize: 4bit needs bitsandbytes (pip install bitsandbytes)") from None
    if not torch.cuda.is_available():
        raise ValueError("quantize: 4bit needs a CUDA GPU")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def train_adapter(
    task: str,
    model: str,
    dataset: str | Path,
    out: Path | str,
    profile: str = "cpu",
    demo_selector: str | None = None,
    k: int = 0,
    seed: int = 0,
    *,
    train_samples: Sequence[Any] | None = None,
    selector_options: dict | None = None,
    force: bool = False,
    progress: bool = False,
    prompt: str = "ours",
    **overrides: Any,
) -> Path:
    """Fine-tune ``model`` with LoRA on ``task``'s train split of ``dataset``; write the
    adapter and its manifest to ``out``; return ``out``.

    ``model``: ``smollm2-135m``, ``tiny-vlm``, a paper preset or ``hf:<id or folder>``.
    ``profile``: ``gpu`` (the paper's recipe), ``cpu`` or ``auto`` (gpu where CUDA is); ``overrides`` set any
    :class:`Recipe` field (``epochs=2``, ``learning_rate=5e-4``, ``lora_layers=None``, ...).
    ``demo_selector``/``k``: train on k-shot prompts (demos from the other train samples).
    ``train_samples``: train on these samples of the dataset's train split (a training-set
    size sweep) instead of all of it; demos then come from them too.
    ``prompt``: ``ours`` or ``released`` (train on the released question and answer strings
    verbatim, as the authors do; docs/paper.md). ``profile="paper"``: the authors' recipe
    (vision layers too, loss on the whole sequence, their batch sizes, 8-bit AdamW).
    Reuses ``out`` when its manifest has the same settings (``force`` retrains)."""
    from ...data import content_hash, load_dataset
    from ...models.catalog import get_preset
    from ...tasks import get_task

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
    # bf16 autocast or not is part of what made the adapter: resolved here, it is in the settings
    recipe = replace(recipe, bf16=training_bf16(recipe))

    ds = load_dataset(dataset)
    dataset_hash = ds.manifest.get("content_hash") or content_hash(ds.root)
    train = sorted(ds.samples(task, "train"), key=lambda s: s.id)
    if train_samples is not None:
        known = {s.id for s in train}
        for s in train_samples:
            if s.split != "train" or s.task != task or s.id not in known:
                raise ValueError(
                    f"train_samples holds {s.id!r} ({s.task}/{s.split}), which is not in the "
                    f"{task} train split of {ds.root}; fine-tune on train samples only"
                )
        train = sorted({s.id: s for s in train_samples}.values(), key=lambda s: s.id)
        if not train:
            raise ValueError("train_samples is empty")
    if recipe.max_train_samples and recipe.max_train_samples < len(train):
        train = sorted(random.Random(f"sft:{seed}").sample(train, recipe.max_train_samples), key=lambda s: s.id)
    settings = settings_of(
        task, model, ds, dataset_hash, recipe, demo_selector, k, seed, len(train), [s.id for s in train], prompt
    )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:  # data-parallel copies multiply the effective batch: another adapter
        settings["processes"] = world
    old = read_manifest(out)
    if old and not force and old.get("settings") == settings and (out / "adapter_config.json").is_file():
        return out

    import torch

    convs = training_conversations(
        task, train, demo_selector, k, seed, selector_options, prompt, shuffle_labels=recipe.shuffle_labels
    )
    convs = [convs[i] for i in balanced_draw(train, recipe.balance, seed)]
    t_load = time.perf_counter()
    from ...models.hf import quiet_peft

    with torch_threads(), quiet_peft():  # the caller's own thread count comes back afterwards
        torch.manual_seed(seed)
        from ...models import load_for_training

        load_options: dict[str, Any] = {}
        if world > 1 and torch.cuda.is_available():  # accelerate launch / torchrun: one replica per GPU
            load_options["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        if recipe.quantize == "4bit":
            load_options["quantization_config"] = qlora_quantization()
        base, processor = load_for_training(model, **load_options)
        if recipe.quantize == "4bit":
            from peft import prepare_model_for_kbit_training

            base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=recipe.gradient_checkpointing)
        tokenizer = getattr(processor, "tokenizer", processor)
        hub_vlm = spec.modality == "image" and not tiny
        from peft import get_peft_model

        load_s = time.perf_counter() - t_load

        on_gpu = torch.cuda.is_available()
        bf16 = bool(recipe.bf16)
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
        common: dict[str, Any] = dict(
            output_dir=str(work / "trainer"),
            num_train_epochs=recipe.epochs,
            learning_rate=recipe.learning_rate,
            per_device_train_batch_size=recipe.batch_size,
            gradient_accumulation_steps=recipe.grad_accum,
            weight_decay=recipe.weight_decay,
            lr_scheduler_type=recipe.scheduler,
            warmup_steps=recipe.warmup_steps,
            optim=optim,
            bf16=bf16,
            use_cpu=not on_gpu,
            logging_steps=recipe.logging_steps,
            save_strategy="no",
            report_to=[],
            seed=seed,
            data_seed=seed,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            disable_tqdm=not progress,
        )
        collator = (HubVLMCollator if hub_vlm else Collator)(processor, recipe.max_length, recipe.loss_on)
        from trl import SFTConfig, SFTTrainer

        # transformers 5 renamed gradient_checkpointing to activation_checkpointing (the old
        # name warns); use whichever this version has.
        ckpt = (
            "activation_checkpointing"
            if "activation_checkpointing" in SFTConfig.__dataclass_fields__
            else "gradient_checkpointing"
        )
        common[ckpt] = recipe.gradient_checkpointing
        if recipe.gradient_checkpointing:
            common[f"{ckpt}_kwargs"] = {"use_reentrant": False}
        trainer_cls = SFTTrainer
        # the shared-prefix trainer scores answer positions only: not with a whole-sequence loss
        if recipe.share_prefix and not recipe.gradient_checkpointing and not hub_vlm and recipe.loss_on != "sequence":
            trainer_cls = shared_prefix_trainer(SFTTrainer)  # type: ignore[assignment]  # a subclass made at run time

        def make_trainer(model: Any, callbacks: list, **args_over: Any) -> Any:
            args = SFTConfig(
                **{**common, **args_over}, max_length=recipe.max_length, dataset_kwargs={"skip_prepare_dataset": True}
            )
            trainer = trainer_cls(
                model=model,
                args=args,
                train_dataset=as_dataset(convs),
                data_collator=collator,
                processing_class=tokenizer,
                callbacks=callbacks,
            )
            if not progress:  # the caller (the runner) shows its own progress; the loss curve is in the manifest
                from transformers.trainer_callback import PrinterCallback

                trainer.remove_callback(PrinterCallback)
            return trainer

        t0 = time.perf_counter()
        align: dict[str, Any] = {}
        if recipe.word_align_steps:
            if not tiny:
                raise ValueError("word_align_steps: word alignment is for tiny-vlm (it trains its projector)")
            align["words"] = align_projector_to_words(base, processor, train, spec.labels, recipe)
        if recipe.align_epochs:
            if not tiny:
                raise ValueError("align_epochs: a projector-alignment stage is for tiny-vlm (it trains its projector)")
            align.update(align_projector(base, make_trainer, recipe, str(work / "align")))
        peft_model = get_peft_model(base, lora_config(base, recipe, spec.modality == "image", tiny))
        clock = step_clock()
        callbacks = [clock] + ([time_budget(recipe.time_budget_s)] if recipe.time_budget_s else [])
        trainer = make_trainer(peft_model, callbacks)
        result = trainer.train()
        train_s = time.perf_counter() - t0
        if any(getattr(c, "hit", False) for c in callbacks):
            shutil.rmtree(work, ignore_errors=True)
            raise TrainingCutShort(
                f"adapter {out.name}: its time guard (sft time_budget_s={recipe.time_budget_s:g}) stopped "
                f"training after {trainer.state.global_step} of {trainer.state.max_steps} steps ({train_s:.0f} s); "
                "an adapter cut short depends on the machine's speed, so none was saved. Raise or remove "
                "time_budget_s."
            )

        if not trainer.is_world_process_zero():
            return out
        adapter_dir = work / "adapter"
        if tiny:
            from ...models.tinyvlm import save_adapter

            save_adapter(trainer.model, adapter_dir)
        else:
            trained: Any = trainer.model  # a peft model (transformers' stubs say Module | None)
            trained.save_pretrained(str(adapter_dir))
            tokenizer.save_pretrained(str(adapter_dir))
        curve = [
            {
                "step": h["step"],
                "epoch": round(h.get("epoch", 0.0), 4),
                "loss": round(h["loss"], 5),
                "t_s": clock.times.get(h["step"]),
            }
            for h in trainer.state.log_history
            if "loss" in h
        ]
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        manifest = {
            "settings": settings,
            "dataset_path": str(ds.root),
            "profile": resolve_profile(profile),
            "train_loss_curve": curve,
            **({"align": align} if align else {}),
            "train_loss": round(float(result.training_loss), 5),
            "steps": trainer.state.global_step,
            "epochs_done": round(float(trainer.state.epoch or 0.0), 4),
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
            "resolved": {
                "optim": optim,
                "bf16": bf16,
                "device": "cuda" if on_gpu else "cpu",
                "threads": torch.get_num_threads(),
                "trainer": type(trainer).__name__,
            },
            "versions": library_versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (adapter_dir / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        # swap in the finished adapter last: an interrupted run never leaves a half adapter
        if out.exists():
            shutil.rmtree(out)
        os.replace(adapter_dir, out)
        shutil.rmtree(work, ignore_errors=True)
        return out
