"""Models: one interface (``base.Backend``), four ways to run a model.

``load_backend(model, adapter=None, **options)`` takes

- a preset name (``presets.PRESETS``): ``smollm2-135m``, ``smollm2-135m-gguf``,
  ``tiny-vlm``, ``llama-3.2-11b-vision``, ``llama-3.2-90b-vision``, ``llama-3.1-8b``,
  ``llama-3.1-70b``, ``qwen2.5-vl-7b``, ``gpt-4o``, ...;
- ``hf:<hub id or local folder>``: transformers (``hf.HFBackend``);
- ``openai:<model>``: an OpenAI-compatible API; ``base_url``/``api_key`` from options or
  ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` (``openai_api.OpenAIBackend``);
- ``llamacpp:<path.gguf>``: llama.cpp (``llamacpp.LlamaCppBackend``).

Options go to the backend's constructor (``batch_size``, ``dtype``, ``device``,
``concurrency``, ``n_ctx``, ...). Heavy libraries are imported only when a backend loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ModelError
from .base import (
    DECODING_PRESETS,
    GREEDY,
    PAPER_SAMPLING,
    Backend,
    Conversation,
    Generation,
    GenerationConfig,
    Message,
)
from .catalog import PRESETS, SCHEMES, Preset, get_preset, resolve_model


def load_backend(model: str, adapter: str | Path | None = None, **options: Any) -> Backend:
    """A ready backend for a preset name or ``scheme:target`` string (see module doc)."""
    preset = get_preset(model)
    if preset is not None:
        return _load_preset(preset, adapter, options)
    scheme = resolve_model(model).backend
    target = model.partition(":")[2]
    if scheme == "hf":
        from .hf import HFBackend

        return HFBackend.load(target, adapter, **options)
    if adapter is not None:
        raise ModelError(f"{scheme}: backends take no adapter (serve the adapted model instead)")
    if scheme == "openai":
        from .openai_api import OpenAIBackend

        return OpenAIBackend(target, **options)
    from .llamacpp import LlamaCppBackend

    return LlamaCppBackend(target, **options)


def _load_preset(preset: Preset, adapter: str | Path | None, options: dict[str, Any]) -> Backend:
    if preset.backend == "tinyvlm":
        from .hf import HFBackend
        from .tinyvlm import load_tiny_vlm, tiny_vlm_revision

        batch_size = options.pop("batch_size", 8)
        model, processor = load_tiny_vlm(adapter, **options)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return HFBackend(
            model,
            processor,
            vision=True,
            name="tiny-vlm",
            revision=tiny_vlm_revision(base.config),
            adapter=adapter,
            batch_size=batch_size,
        )
    if preset.name == "smollm2-135m":
        from .assets import file_sha256, smollm2_gguf_path, smollm2_transformers_dir
        from .hf import HFBackend

        return HFBackend.load(
            str(smollm2_transformers_dir()),
            adapter,
            name=preset.name,
            revision=file_sha256(smollm2_gguf_path())[:16],
            **options,
        )
    if preset.backend == "llamacpp":
        from .assets import smollm2_gguf_path
        from .llamacpp import LlamaCppBackend

        if adapter is not None:
            raise ModelError(f"{preset.name}: llama.cpp takes no peft adapter; use smollm2-135m (transformers)")
        return LlamaCppBackend(smollm2_gguf_path(), name=preset.name, **options)
    return load_backend(f"{preset.backend}:{preset.model}", adapter, **options)


def load_for_training(model: str, adapter: str | Path | None = None, **options: Any) -> tuple[Any, Any]:
    """(model, tokenizer or processor) for fine-tuning, in train mode and float32 on the
    CPU. ``model``: a preset (``smollm2-135m``, ``tiny-vlm``, a paper model) or
    ``hf:<id or folder>``. With ``adapter``, that peft adapter is loaded trainable.

    - ``smollm2-135m``: a ``LlamaForCausalLM`` and its tokenizer (from the cached
      conversion of the shipped GGUF; ``presets.smollm2_transformers_dir()`` is its folder).
    - ``tiny-vlm``: a ``tinyvlm.TinyVLM`` and ``TinyVLMProcessor`` (``processor.collate``
      makes training batches; ``tinyvlm.lora_config()`` and ``tinyvlm.save_adapter``).
    """
    import torch

    if "dtype" not in options and not torch.cuda.is_available():
        # float32 master weights on the CPU: bf16 enters by autocast where the probe says so,
        # not through ``dtype: auto`` (bf16 LoRA weights and optimiser steps lose precision)
        options["dtype"] = "float32"
    preset = get_preset(model)
    if preset is not None and preset.backend == "tinyvlm":
        from .tinyvlm import load_tiny_vlm

        m, processor = load_tiny_vlm(adapter, for_training=True, **options)
        m.train()
        return m, processor
    if preset is not None and preset.name == "smollm2-135m":
        from .assets import smollm2_transformers_dir

        target = str(smollm2_transformers_dir())
    elif preset is not None and preset.backend == "hf":
        target = preset.model
    elif model.startswith("hf:"):
        target = model[3:]
    else:
        raise ModelError(
            f"{model!r} cannot be fine-tuned here: use a transformers model "
            "(smollm2-135m, tiny-vlm, a paper model preset or hf:<id>)"
        )
    from .hf import load_hf_model

    m, processor, _ = load_hf_model(target, adapter=adapter, for_training=True, **options)
    m.train()
    return m, processor


__all__ = [
    "DECODING_PRESETS",
    "GREEDY",
    "PAPER_SAMPLING",
    "PRESETS",
    "Backend",
    "Conversation",
    "Generation",
    "GenerationConfig",
    "Message",
    "Preset",
    "SCHEMES",
    "resolve_model",
    "load_backend",
    "load_for_training",
]
