"""Projector alignment: tiny-vlm's first training stage, the LLaVA way (issue 27).

tiny-vlm's projector starts from a random initialisation, so at the start of LoRA the
image tokens carry no usable signal; a short LoRA run on a split where half the answers
are "No obvious artifacts" then learns that answer for every image. Training the projector
alone first (the language model frozen, so only the mapping from image features into its
embedding space moves) gives the LoRA stage image tokens it can read."""

from __future__ import annotations

from typing import Any, Callable

from .recipe import Recipe


def align_projector(model: Any, make_trainer: Callable[..., Any], recipe: Recipe, output_dir: str) -> dict[str, Any]:
    """Train ``model``'s projector alone for ``recipe.align_epochs`` at
    ``recipe.align_learning_rate`` (every other parameter frozen, then as before); return
    the stage's steps and loss curve for the adapter's manifest. ``make_trainer(model,
    callbacks, **training_args)`` builds the same trainer the LoRA stage uses."""
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, p in model.named_parameters():
        p.requires_grad_(".projector." in f".{name}.")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("align_epochs: the model has no projector to align")
    try:
        trainer = make_trainer(
            model,
            [],
            num_train_epochs=recipe.align_epochs,
            learning_rate=recipe.align_learning_rate,
            output_dir=output_dir,
        )
        result = trainer.train()
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(before[name])
    curve = [{"step": h["step"], "loss": round(h["loss"], 5)} for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 5),
        "loss_curve": curve,
    }
