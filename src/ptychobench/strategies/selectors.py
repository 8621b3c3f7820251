"""In-context demonstration selectors: ``select(query, pool, k) -> demos``.

The pool is the train split, always: every selector refuses a pool sample whose split is not
``"train"`` and never returns the query itself (both raise :class:`ValueError`), so a test
sample can never leak into a prompt, whatever the caller passes. Selection is
deterministic: the random parts draw from a generator seeded by ``(seed, query id)``, and
the pool is sorted by id first, so neither the pool's order nor the order in which queries
are asked changes a query's demos.

- ``random``: k demos at random (the paper's RFS).
- ``sample-type``: random demos of the query's ``sample_type``, topped up at random from the
  rest of the pool (the paper's SSFS, "context-aware").
- ``knn``: the k most similar by embedding (cosine on normalised vectors); most similar first.
- ``knn-diverse``: maximal marginal relevance among the nearest candidates, where redundancy
  mixes embedding similarity and label-set overlap, so demos cover more of the label space.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..data import Sample
from ..data.dataset import require_train
from ..errors import ConfigError
from ..names import SELECTORS as SELECTOR_OPTIONS
from ..names import canonical_selector
from .embeddings import DEFAULT_IMAGE_BACKBONE, DEFAULT_TEXT_MODEL, Embedder, embedder_for, normalize

SELECTORS = tuple(SELECTOR_OPTIONS)


def check_pool(query: Sample, pool: Sequence[Sample], k: int) -> list[Sample]:
    """The candidates for ``query``: the pool minus the query, sorted by id, deduplicated.
    Raises ValueError for a non-train pool sample, a mixed-task pool or an impossible k."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    by_id: dict[str, Sample] = {}
    require_train(pool, "demo pool")
    for s in pool:
        if s.task != query.task:
            raise ValueError(f"demo pool holds sample {s.id!r} of task {s.task!r}, the query is {query.task!r}")
        by_id[s.id] = s
    candidates = [by_id[i] for i in sorted(by_id) if i != query.id]
    if k > len(candidates):
        raise ValueError(
            f"asked for {k} demos for {query.id!r} but the train pool holds only "
            f"{len(candidates)} other samples; lower k"
        )
    return candidates


def _check_demos(query: Sample, demos: list[Sample]) -> list[Sample]:
    # A second guard, after selection: cheap, and it makes the guarantee local to the output.
    require_train(demos, "selected demos")
    for d in demos:
        if d.id == query.id:
            raise ValueError(f"selector chose {d.id!r} ({d.split}) as a demo for {query.id!r}")
    return demos


@dataclass
class Selector:
    """Base class; subclasses implement :meth:`_choose` over checked candidates."""

    seed: int = 0
    name: str = field(default="", init=False)

    def rng(self, query: Sample) -> random.Random:
        # str seeds hash with SHA-512 inside `random`, so this is stable across processes
        return random.Random(f"{self.name}:{self.seed}:{query.task}:{query.id}")

    def select(self, query: Sample, pool: Sequence[Sample], k: int) -> list[Sample]:
        candidates = check_pool(query, pool, k)
        if k == 0:
            return []
        return _check_demos(query, list(self._choose(query, candidates, k)))

    def _choose(self, query: Sample, candidates: list[Sample], k: int) -> list[Sample]:  # pragma: no cover
        raise NotImplementedError

    def describe(self) -> dict:
        return {"selector": self.name, "seed": self.seed}


@dataclass
class RandomSelector(Selector):
    def __post_init__(self) -> None:
        self.name = "random"

    def _choose(self, query: Sample, candidates: list[Sample], k: int) -> list[Sample]:
        return self.rng(query).sample(candidates, k)


@dataclass
class SampleTypeSelector(Selector):
    def __post_init__(self) -> None:
        self.name = "sample-type"

    def _choose(self, query: Sample, candidates: list[Sample], k: int) -> list[Sample]:
        rng = self.rng(query)
        same = [c for c in candidates if c.sample_type == query.sample_type]
        other = [c for c in candidates if c.sample_type != query.sample_type]
        rng.shuffle(same)
        rng.shuffle(other)
        return (same + other)[:k]


@dataclass
class KnnSelector(Selector):
    """Nearest neighbours by cosine similarity of embeddings (the query's modality)."""

    text_model: str = DEFAULT_TEXT_MODEL
    image_backbone: str = DEFAULT_IMAGE_BACKBONE
    embedder: Embedder | None = None  # None: the task's default embedder (shared, cached)

    def __post_init__(self) -> None:
        self.name = "knn"

    def _embedder(self, query: Sample) -> Embedder:
        return self.embedder or embedder_for(query.task, text_model=self.text_model, image_backbone=self.image_backbone)

    def similarities(self, query: Sample, candidates: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(query-candidate cosine similarities, candidate unit vectors)."""
        emb = self._embedder(query)
        vecs = normalize(emb.embed([query, *candidates]))
        return vecs[1:] @ vecs[0], vecs[1:]

    def _choose(self, query: Sample, candidates: list[Sample], k: int) -> list[Sample]:
        sims, _ = self.similarities(query, candidates)
        # stable sort on -sim: equal similarities keep id order, so ties are deterministic
        order = np.argsort(-sims, kind="stable")[:k]
        return [candidates[i] for i in order]

    def describe(self) -> dict:
        emb = self.embedder.name if self.embedder else f"text:{self.text_model}|image:{self.image_backbone}"
        return {**super().describe(), "embedder": emb}


@dataclass
class KnnDiverseSelector(KnnSelector):
    """Maximal marginal relevance: each next demo maximises
    ``lam * sim(query, c) - (1 - lam) * max_{s chosen} redundancy(c, s)`` with
    ``redundancy = (1 - label_weight) * cos(c, s) + label_weight * jaccard(labels_c, labels_s)``,
    over the ``fetch_k`` nearest candidates (default ``max(4k, 20)``)."""

    lam: float = 0.5
    label_weight: float = 0.5
    fetch_k: int | None = None

    def __post_init__(self) -> None:
        self.name = "knn-diverse"
        if not 0.0 <= self.lam <= 1.0 or not 0.0 <= self.label_weight <= 1.0:
            raise ValueError("knn-diverse: lam and label_weight must lie in [0, 1]")

    def _choose(self, query: Sample, candidates: list[Sample], k: int) -> list[Sample]:
        sims, vecs = self.similarities(query, candidates)
        fetch = min(len(candidates), max(k, self.fetch_k or max(4 * k, 20)))
        near = list(np.argsort(-sims, kind="stable")[:fetch])
        chosen: list[int] = []
        while len(chosen) < k:
            best, best_score = None, -np.inf
            for i in near:
                if i in chosen:
                    continue
                redundancy = max((self._redundancy(candidates, vecs, i, j) for j in chosen), default=0.0)
                score = self.lam * sims[i] - (1.0 - self.lam) * redundancy
                if score > best_score + 1e-12:
                    best, best_score = i, score
            assert best is not None  # near holds at least k candidates
            chosen.append(best)
        return [candidates[i] for i in chosen]

    def _redundancy(self, candidates: list[Sample], vecs: np.ndarray, i: int, j: int) -> float:
        a, b = candidates[i].labels, candidates[j].labels
        jaccard = len(a & b) / len(a | b) if (a | b) else 1.0
        return (1.0 - self.label_weight) * float(vecs[i] @ vecs[j]) + self.label_weight * jaccard

    def describe(self) -> dict:
        return {**super().describe(), "lam": self.lam, "label_weight": self.label_weight}


_CLASSES: dict[str, type[Selector]] = {
    "random": RandomSelector,
    "sample-type": SampleTypeSelector,
    "knn": KnnSelector,
    "knn-diverse": KnnDiverseSelector,
}


def make_selector(name: str, seed: int = 0, **options) -> Selector:
    """A selector by name: random, sample-type, knn, knn-diverse (aliases: rfs, ssfs).
    Options: ``text_model``, ``image_backbone``, ``embedder`` (knn*); ``lam``,
    ``label_weight``, ``fetch_k`` (knn-diverse)."""
    key = canonical_selector(name)
    try:
        return _CLASSES[key](seed=seed, **options)
    except TypeError as e:
        raise ConfigError(f"selector {key!r}: bad option ({e})") from None


def demos_for(selector: Selector, pool: Sequence[Sample], k: int) -> Callable[[Sample], list[Sample]]:
    """A ``demos_for`` callable for :func:`ptychobench.eval.predict.predict`; the pool is
    checked once here so a leak fails before any generation."""
    pool = list(pool)
    require_train(pool, "demo pool")
    return lambda query: selector.select(query, pool, k)
