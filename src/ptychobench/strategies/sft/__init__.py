"""LoRA fine-tuning (TRL ``SFTTrainer`` + PEFT), in small parts: ``recipe`` (hyper-parameters,
profiles, target layers), ``examples`` (prompts + answers, collators), ``prefix`` (the
shared-prefix loss), ``callbacks``, ``manifest`` (what made an adapter), ``train``."""

from .examples import training_conversations
from .manifest import MANIFEST, read_manifest, training_summary
from .prefix import shared_prefix_length, shared_prefix_loss
from .recipe import PROFILES, PROJECTIONS, Recipe, lora_targets, recipe_for, resolve_profile
from .train import train_adapter

__all__ = [
    "MANIFEST",
    "PROFILES",
    "PROJECTIONS",
    "Recipe",
    "lora_targets",
    "read_manifest",
    "recipe_for",
    "resolve_profile",
    "shared_prefix_length",
    "shared_prefix_loss",
    "train_adapter",
    "training_conversations",
    "training_summary",
]
