"""An adapter's manifest: the settings that made it (a rerun with the same settings reuses
it) and how far its training went (the report shows it beside the adapter's cells)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...models.base import ADAPTER_MANIFEST as MANIFEST
from .recipe import FORMAT_VERSION, Recipe, recipe_settings


def settings_of(
    task: str,
    model: str,
    ds: Any,
    dataset_hash: str,
    recipe: Recipe,
    demo_selector: str | None,
    k: int,
    seed: int,
    n_samples: int,
    train_ids: Sequence[str],
    prompt: str = "ours",
) -> dict:
    return {
        **({"prompt": prompt} if prompt != "ours" else {}),  # older adapters (ours) keep their settings
        "format_version": FORMAT_VERSION,
        "task": task,
        "base_model": model,
        "dataset": {"name": ds.name, "content_hash": dataset_hash},
        "demo_selector": demo_selector if k else None,
        "k": k if demo_selector else 0,
        "seed": seed,
        "train_samples": n_samples,
        "train_ids_sha256": hashlib.sha256("\n".join(train_ids).encode()).hexdigest()[:16],
        "recipe": recipe_settings(recipe),
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
    return {
        "steps": m.get("steps"),
        "epochs_done": m.get("epochs_done"),
        "epochs_planned": recipe.get("epochs"),
        "stopped_by_time_budget": bool(m.get("stopped_by_time_budget")),
        "time_budget_s": recipe.get("time_budget_s"),
        "wall_time_s": m.get("wall_time_s"),
        "train_loss": m.get("train_loss"),
        "train_samples": m.get("settings", {}).get("train_samples"),
        "optim": (m.get("resolved") or {}).get("optim"),
        "loss_on": recipe.get("loss_on", "answer"),
        "train_vision": recipe.get("train_vision"),
        "quantize": recipe.get("quantize"),
    }


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "transformers", "peft", "trl", "accelerate"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out
