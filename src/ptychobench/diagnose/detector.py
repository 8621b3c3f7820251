"""Artifact labels with probabilities for a user's rendered reconstruction.

The default detector is the ``vision-probe`` baseline (frozen image features + one logistic
regression per label, thresholds tuned on out-of-fold probabilities) fitted on the default
dataset's TRAIN split only. It is trained once and cached under the project's home folder
(``$PTYCHOBENCH_HOME/detectors``), keyed by the dataset's content hash, the backbone and
the viewer, so a new dataset or viewer trains a new one. Every image, training images
included, goes through :func:`ptychobench.sim.render.render_phase`, so the detector sees a
user's image as it saw its training data.

``knn-vote`` (labels of the nearest training images, vote fractions as probabilities) and
any model the runner knows (a preset, ``hf:``, ``openai:``, ``llamacpp:``, optionally with
a LoRA ``adapter``) can be named instead; a generative model gives labels without
probabilities.
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_atomic
from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS, get_task
from .decouple import single_defect_images
from .io import DiagnoseError

DEFAULT_DETECTOR = "vision-probe"
PROBE_DETECTORS = ("vision-probe", "knn-vote")
#: the size images are rendered at before the backbone resizes them (sim-v2's viewer size)
RENDER_SIZE = 256
CACHE_VERSION = 2
#: a rendered image whose features are less similar than this (cosine) to every training
#: image is unlike anything the detector learnt (measured in docs/diagnose.md)
NOVEL_SIMILARITY = 0.33


@dataclass
class Detection:
    labels: list[str]
    probabilities: dict[str, float] | None  # None: the detector gives no probabilities
    thresholds: dict[str, float | None] | None
    detector: str
    reply: str | None = None  # a generative model's raw answer
    similarity: float | None = None  # cosine similarity of the features to the nearest training image


def detectors_dir() -> Path:
    """Where fitted detectors are cached: ``$PTYCHOBENCH_HOME/detectors``."""
    from ..paths import home

    return home() / "detectors"


def render(data: np.ndarray) -> np.ndarray:
    """The one viewer (sim-v2's), at the size the dataset renders."""
    from ..sim.render import render_phase

    return render_phase(data, size=RENDER_SIZE)


# --------------------------------------------------------------------------- features


@dataclass
class ArrayFeatures:
    """Frozen backbone features of in-memory 8-bit images: the same networks and
    preprocessing as :class:`ptychobench.strategies.embeddings.ImageEmbedder`, without its
    file-based cache (a user's image is never written anywhere)."""

    backbone: str
    _emb: Any = field(default=None, init=False, repr=False)

    def __call__(self, images: list[np.ndarray], batch_size: int = 16) -> np.ndarray:
        import torch
        from PIL import Image

        from ..strategies.embeddings import ImageEmbedder, _cuda, efficientnet_pixels

        if self._emb is None:
            self._emb = ImageEmbedder(model=self.backbone, use_cache=False)
            self._emb._load()
        net, proc = self._emb._net, self._emb._proc
        device = "cuda" if _cuda() else "cpu"
        out = []
        for start in range(0, len(images), batch_size):
            pil = [Image.fromarray(im).convert("RGB") for im in images[start : start + batch_size]]
            with torch.no_grad():
                if proc is None:
                    x = efficientnet_pixels(pil).to(device)
                    feats = net.extract_features(x).mean(dim=(2, 3))
                else:
                    x = proc(images=pil, return_tensors="pt")["pixel_values"].to(device)
                    hidden = net(pixel_values=x).last_hidden_state
                    feats = torch.cat([hidden[:, 0], hidden[:, 1:].mean(dim=1)], dim=1)
            out.append(feats.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _read_grey(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


# --------------------------------------------------------------------------- probes


@dataclass
class ProbeDetector:
    """A fitted vision probe or kNN vote over rendered training images."""

    kind: str
    dataset: str
    backbone: str
    labels: list[str]
    probe: Any = None  # LinearProbe (vision-probe)
    train_X: np.ndarray | None = None  # normalised features (knn-vote, and the novelty check)
    train_Y: np.ndarray | None = None
    n_neighbors: int = 5
    n_added: int = 0  # single-defect images added to the train split (decouple.py)
    _features: ArrayFeatures | None = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        added = f" + {self.n_added} single-defect images" if self.n_added else ""
        return f"{self.kind} ({self.backbone}, fitted on {self.dataset} train{added})"

    def features(self) -> ArrayFeatures:
        if self._features is None:
            self._features = ArrayFeatures(self.backbone)
        return self._features

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_features"] = None
        return state

    def detect(self, images: list[np.ndarray]) -> list[Detection]:
        from ..strategies.embeddings import normalize

        X = self.features()(images)
        assert self.train_X is not None and self.train_Y is not None  # set when fitted
        sims = normalize(X) @ self.train_X.T
        if self.kind == "vision-probe":
            proba = self.probe.predict_proba(X)
            thr = self.probe.threshold_vector()
        else:
            proba = knn_vote(sims, self.train_Y, self.n_neighbors)
            thr = np.full(len(self.labels), 0.5 + 1e-9)  # a strict (weighted) majority
        out = []
        for p, s in zip(proba, sims.max(axis=1)):
            chosen = [lab for lab, v, t in zip(self.labels, p, thr) if v >= t]
            out.append(
                Detection(
                    labels=chosen or [NO_ARTIFACTS],
                    probabilities={lab: round(float(v), 4) for lab, v in zip(self.labels, p)},
                    thresholds={
                        lab: (round(float(t), 4) if np.isfinite(t) else None) for lab, t in zip(self.labels, thr)
                    },
                    detector=self.name,
                    similarity=round(float(s), 4),
                )
            )
        return out


def knn_vote(sims: np.ndarray, train_Y: np.ndarray, k: int) -> np.ndarray:
    """Labels' vote fractions among the ``k`` most similar training items, each vote
    weighted by its cosine similarity, so that equal counts are broken by distance (an
    unweighted vote ties every option at 1/k and picks the first)."""
    sims = np.atleast_2d(sims)
    k = min(k, sims.shape[1])
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    w = np.maximum(np.take_along_axis(sims, nearest, axis=1), 1e-6)
    return np.einsum("nk,nkl->nl", w, train_Y[nearest].astype(float)) / w.sum(axis=1, keepdims=True)


def _source_hash() -> str:
    """The viewer's and the probe's code: a change to either trains a new detector."""
    from ..sim import render as render_mod
    from ..strategies import probes
    from . import decouple

    h = hashlib.sha256()
    for mod in (render_mod, probes, decouple):
        h.update(inspect.getsource(mod).encode())
    return h.hexdigest()[:12]


def fit_probe_detector(
    kind: str, dataset: str | None = None, backbone: str | None = None, seed: int = 0, decouple: bool = True
) -> ProbeDetector:
    """Fit (no cache) on the artifact task's TRAIN split of ``dataset``, plus (``decouple``)
    single-defect images made from its clean train images (:mod:`.decouple`), so that a
    label is learnt on its own and not as the pair it usually comes with."""
    from ..data import load_dataset
    from ..data.registry import DEFAULT_DATASET
    from ..strategies.embeddings import DEFAULT_IMAGE_BACKBONE, normalize
    from ..strategies.probes import LinearProbe, label_matrix

    ds = load_dataset(dataset or DEFAULT_DATASET)
    train = ds.samples("artifacts", "train")
    backbone = backbone or DEFAULT_IMAGE_BACKBONE
    labels = [lab for lab in get_task("artifacts").labels if lab != NO_ARTIFACTS]
    det = ProbeDetector(kind=kind, dataset=ds.name, backbone=backbone, labels=labels)
    train = [s for s in train if s.image is not None]
    greys = [_read_grey(Path(s.image)) for s in train if s.image is not None]
    Y = label_matrix(train, labels)
    added = single_defect_images(greys, [s.labels for s in train], seed) if decouple else []
    X = det.features()([render(g) for g in greys] + [render(obj) for obj, _ in added])
    if added:
        extra = np.zeros((len(added), len(labels)), Y.dtype)
        for row, (_, lab) in zip(extra, added):
            row[labels.index(lab)] = 1
        Y = np.concatenate([Y, extra])
    det.n_added = len(added)
    if kind == "vision-probe":
        det.probe = LinearProbe(labels, seed=seed).fit(X, Y)
    det.train_X, det.train_Y = normalize(X), Y
    return det


def _cache_path(kind: str, dataset: str | None, backbone: str | None) -> Path:
    from ..data import load_dataset
    from ..data.registry import DEFAULT_DATASET
    from ..strategies.embeddings import DEFAULT_IMAGE_BACKBONE

    ds = load_dataset(dataset or DEFAULT_DATASET, check_images=False)
    key = "|".join(
        [
            kind,
            ds.manifest.get("content_hash", ""),
            str(ds.root),
            backbone or DEFAULT_IMAGE_BACKBONE,
            _source_hash(),
            str(CACHE_VERSION),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return detectors_dir() / f"{kind}-{ds.name}-{digest}.pkl"


def load_probe_detector(
    kind: str = DEFAULT_DETECTOR, dataset: str | None = None, backbone: str | None = None, refit: bool = False
) -> ProbeDetector:
    """The cached detector, fitted first when absent (or with ``refit``)."""
    path = _cache_path(kind, dataset, backbone)
    if path.is_file() and not refit:
        try:
            with path.open("rb") as f:
                det = pickle.load(f)
            if isinstance(det, ProbeDetector):
                return det
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # a torn or stale cache file: fit again
    det = fit_probe_detector(kind, dataset, backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, pickle.dumps(det))
    return det


# --------------------------------------------------------------------------- models


@dataclass
class ModelDetector:
    """Any model the runner knows, asked the artifact task's zero-shot question."""

    model: str
    adapter: str | None = None
    options: dict = field(default_factory=dict)
    _backend: Any = field(default=None, init=False, repr=False)

    @property
    def name(self) -> str:
        return self.model + (f" + adapter {self.adapter}" if self.adapter else "")

    def detect(self, images: list[np.ndarray]) -> list[Detection]:
        from PIL import Image

        from ..data import Sample
        from ..models import GREEDY, load_backend

        if self._backend is None:
            try:
                self._backend = load_backend(self.model, self.adapter, **self.options)
            except (ValueError, RuntimeError, ImportError, OSError) as e:
                raise DiagnoseError(f"detector {self.model!r}: cannot load ({e})") from None
        task = get_task("artifacts")
        out = []
        # the backends take image paths; the rendered images live only for this call
        with tempfile.TemporaryDirectory(prefix="ptychobench-diagnose-") as tmp:
            convs = []
            for i, im in enumerate(images):
                p = Path(tmp) / f"image{i}.png"
                Image.fromarray(im).save(p)
                convs.append(task.render(Sample(f"user{i}", "test", "artifacts", "unknown", "", p, frozenset())))
            gens = self._backend.generate(convs, GREEDY)
        for g in gens:
            if not g.ok:
                raise DiagnoseError(f"detector {self.name}: generation failed ({g.error})")
            parsed = task.parse(g.text)
            labels = [lab for lab in ARTIFACT_LABELS if lab in parsed.labels]
            out.append(
                Detection(
                    labels=labels or [NO_ARTIFACTS],
                    probabilities=None,
                    thresholds=None,
                    detector=self.name,
                    reply=g.text,
                )
            )
        return out


@lru_cache(maxsize=8)
def get_detector(
    name: str = DEFAULT_DETECTOR, adapter: str | None = None, dataset: str | None = None, backbone: str | None = None
):
    """A detector by name: ``vision-probe`` / ``knn-vote`` (cached fits) or a model."""
    if name in PROBE_DETECTORS:
        if adapter:
            raise DiagnoseError(f"--adapter applies to a model detector, not {name!r}")
        try:
            return load_probe_detector(name, dataset, backbone)
        except ImportError as e:
            raise DiagnoseError(f"detector {name!r}: {e}") from None
    if name == "text-probe":
        raise DiagnoseError("text-probe reads text; artifact detection needs vision-probe, knn-vote or a vision model")
    return ModelDetector(name, adapter)
