"""``ptychobench train``: LoRA fine-tuning from the command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from ..data.registry import DEFAULT_DATASET
from ..errors import ConfigError
from .app import command, console


def _parse_set(items: list[str]) -> dict:
    """``--set key=value`` pairs -> Recipe overrides, values read as JSON where they parse."""

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
        help="cpu (a 2-core CPU), lowdata (cpu plus projector alignment, label-aware sampling and "
        "answers in random order), gpu (the paper's recipe), paper (the authors' exact recipe) or auto.",
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

    Example: ptychobench train --task params --model smollm2-135m --dataset sim-v2 --out adapters/smollm2-params
    Example: ptychobench train --task params --model llama-3.1-8b --profile gpu --out adapters/l8b --processes 4
    """

    from ..strategies.sft import MANIFEST, train_adapter

    if processes > 1 and "WORLD_SIZE" not in os.environ:
        from ..run.scheduler import relaunch_distributed

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
    finally:
        _leave_process_group()
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


def _leave_process_group() -> None:
    """Under torchrun, end this process's part of the process group before the interpreter
    exits: left to exit, gloo's threads were torn down mid-flight under load and the second
    process aborted ("terminate called without an active exception", SIGABRT) after training
    had finished, failing the run."""
    if "WORLD_SIZE" not in os.environ:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
