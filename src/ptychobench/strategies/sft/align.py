"""Projector alignment: tiny-vlm's first training stage, the LLaVA way (issue 27).

tiny-vlm's projector starts from a random initialisation, so at the start of LoRA the
image tokens carry no usable signal; a short LoRA run on a split where half the answers
are "No obvious artifacts" then learns that answer for every image. Training the projector
alone first (the language model frozen, so only the mapping from image features into its
embedding space moves) gives the LoRA stage image tokens it can read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable

from .recipe import Recipe


@contextmanager
def projector_only(model: Any, stage: str) -> Iterator[None]:
    """Within: only ``model``'s projector trains (every other parameter frozen); after, every
    parameter trains or not as before, also when the stage fails."""
    before = {name: p.requires_grad for name, p in model.named_parameters()}
    try:
        for name, p in model.named_parameters():
            p.requires_grad_(".projector." in f".{name}.")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError(f"{stage}: the model has no projector to align")
        yield
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(before[name])


def align_projector(model: Any, make_trainer: Callable[..., Any], recipe: Recipe, output_dir: str) -> dict[str, Any]:
    """Train ``model``'s projector alone for ``recipe.align_epochs`` at
    ``recipe.align_learning_rate`` (every other parameter frozen, then as before); return
    the stage's steps and loss curve for the adapter's manifest. ``make_trainer(model,
    callbacks, **training_args)`` builds the same trainer the LoRA stage uses."""
    with projector_only(model, "align_epochs"):
        trainer = make_trainer(
            model,
            [],
            num_train_epochs=recipe.align_epochs,
            learning_rate=recipe.align_learning_rate,
            output_dir=output_dir,
        )
        result = trainer.train()
    curve = [{"step": h["step"], "loss": round(h["loss"], 5)} for h in trainer.state.log_history if "loss" in h]
    return {
        "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 5),
        "loss_curve": curve,
    }


def align_projector_to_words(
    model: Any, processor: Any, samples: Sequence[Any], labels: Sequence[str], recipe: Recipe
) -> dict[str, Any]:
    """Word alignment (issue 27), before the other stages: train tiny-vlm's projector alone,
    on the frozen encoder's features of the train images (computed once), so that the mean
    of an image's tokens points, in the language model's input-embedding space, toward the
    words of its labels: a multi-label logistic readout whose directions are the label
    names' mean token embeddings (fixed), class-balanced, with the tokens kept at the
    embeddings' mean norm. No language-model pass, so 300 steps cost seconds where one
    language-model alignment step costs seconds. The readout's per-label offsets and
    sharpness are dropped afterwards: the language model reads the tokens. Measured:
    docs/strategies.md (micro-F1 0.225 -> 0.31 with it, sim-v2)."""
    import torch
    from torch.nn import functional as F

    backbone = model.model
    embeddings = backbone.language_model.get_input_embeddings().weight.detach().float()
    directions = F.normalize(label_words(embeddings, processor, labels), dim=-1)
    norm = embeddings.norm(dim=1).mean()
    with torch.no_grad():
        pixels = torch.stack([processor.preprocess_image(s.image) for s in samples])
        feats = backbone.grid_features(pixels).float()
    y = torch.tensor([[float(lab in s.labels) for lab in labels] for s in samples])
    share = y.mean(0).clamp(0.02, 0.98)
    bias = torch.zeros(len(labels), requires_grad=True)
    scale = torch.tensor(10.0, requires_grad=True)
    projector = backbone.projector
    opt = torch.optim.AdamW(
        [
            {"params": list(projector.parameters()), "weight_decay": 0.1},
            {"params": [bias, scale], "weight_decay": 0.0},
        ],
        lr=recipe.word_align_learning_rate,
    )
    curve = []
    with projector_only(model, "word_align_steps"):
        for step in range(recipe.word_align_steps):
            idx = torch.randint(0, len(samples), (min(32, len(samples)),))
            tokens = projector(F.dropout(feats[idx], 0.3).to(projector.fc1.weight.dtype)).float()
            logits = F.normalize(tokens.mean(1), dim=-1) @ directions.T * scale + bias
            weight = torch.where(y[idx] > 0, 0.5 / share, 0.5 / (1 - share))
            loss = F.binary_cross_entropy_with_logits(logits, y[idx], weight=weight)
            loss = loss + 0.1 * ((tokens.norm(dim=-1) / norm - 1) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 25 == 0 or step == recipe.word_align_steps - 1:
                curve.append({"step": step + 1, "loss": round(loss.item(), 5)})
    return {"steps": recipe.word_align_steps, "loss_curve": curve}


def label_words(embeddings: Any, processor: Any, labels: Sequence[str]) -> Any:
    """(n_labels, hidden): each label name's mean input embedding over its tokens."""
    import torch

    tokenizer = getattr(processor, "tokenizer", processor)
    return torch.stack([embeddings[tokenizer(lab, add_special_tokens=False)["input_ids"]].mean(0) for lab in labels])
