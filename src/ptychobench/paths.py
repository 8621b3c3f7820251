"""Every folder the tool writes outside a run folder, under one root.

``$PTYCHOBENCH_HOME`` (default ``~/.local/share/ptychobench``) holds the user's datasets
and trained adapters; ``$PTYCHOBENCH_CACHE`` (default ``$PTYCHOBENCH_HOME/cache``) holds
what can be recomputed: converted model weights and embeddings. One module, so moving the
tool's state (to scratch on a cluster, to a temporary folder in a test) is one variable.
"""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """The tool's own folder."""
    return Path(os.environ.get("PTYCHOBENCH_HOME", Path.home() / ".local/share/ptychobench"))


def cache_dir() -> Path:
    """Recomputable files; safe to delete."""
    env = os.environ.get("PTYCHOBENCH_CACHE")
    return Path(env) if env else home() / "cache"


def user_datasets_dir() -> Path:
    """Datasets that ``import`` and ``generate`` put here can be used by name."""
    return home() / "datasets"


def adapters_dir() -> Path:
    """LoRA adapters the runner trains, keyed by everything that made them."""
    return home() / "adapters"


def embeddings_dir() -> Path:
    """Per-(embedder, content) feature vectors for demo selection and probes."""
    return cache_dir() / "embeddings"


def models_dir() -> Path:
    """Offline model files converted once (e.g. SmolLM2 de-quantized from its GGUF)."""
    return cache_dir() / "models"
