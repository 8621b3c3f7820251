"""The ``type-only`` baseline: what a predictor that knows only the sample type scores.

Why: a dataset whose labels follow the specimen type rewards a model for recognising the
specimen, not the artifact or the fix (issue 11: on sim-v1 a type-only predictor scored
micro-F1 0.42 against 0.335 for the best constant set). Reporting this baseline beside the
others shows how much of any score the type alone explains.

The rule, fit on the train split only: for each ``sample_type``, the labels carried by at
least half of that type's train samples (a per-label majority, the same rule as
``knn-vote`` with every same-type sample as a neighbour). This is preferred over "the
type's most frequent whole label set" because it is well defined where every set is
unique (parameter labels: most sets occur once, so their mode is a tie broken by chance)
and it is the per-label decision that is right most often given the type alone.
A type not seen in train gets the same rule over all train samples. The task's "none"
label is never modelled: for artifacts, "No obvious artifacts" is predicted exactly when
no other label reaches the half; for params (no "none" label) the type's most frequent
label is predicted instead of an empty set (``at_least_one=True``, as the probes do).

:func:`best_constant_set` is the comparison the issue asks for: the best single label set
predicted for every sample, chosen with hindsight on the scored samples (an upper bound
on any constant predictor).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ..data import Sample
from ..data.dataset import require_train
from ..tasks import NO_ARTIFACTS, get_task
from .labelsets import finalize, label_matrix

#: a label is predicted for a type when at least this share of the type's train samples carry it
SHARE = 0.5


def _frequencies(samples: Sequence[Sample], labels: Sequence[str]) -> np.ndarray:
    return label_matrix(samples, labels).mean(axis=0)


def fit_type_only(task: str, train: Sequence[Sample]) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Per type and overall, each modelled label's share of train samples carrying it."""
    spec = get_task(task)
    if not train:
        raise ValueError("type-only: the train split is empty")
    require_train(train, "type-only fit")
    labels = [label for label in spec.labels if label != NO_ARTIFACTS]
    by_type: dict[str, list[Sample]] = {}
    for s in train:
        by_type.setdefault(s.sample_type, []).append(s)
    return {t: _frequencies(group, labels) for t, group in by_type.items()}, _frequencies(train, labels), labels


def fit_predict_type_only(
    task: str, train: Sequence[Sample], test: Sequence[Sample], at_least_one: bool = True
) -> list[frozenset[str]]:
    """A label set for each of ``test``, in order, from its sample type alone (module doc)."""
    spec = get_task(task)
    for s in (*train, *test):
        if s.task != spec.name:
            raise ValueError(f"type-only for {spec.name!r} got sample {s.id!r} of task {s.task!r}")
    both = {s.id for s in train} & {s.id for s in test}
    if both:
        raise ValueError(f"type-only: sample(s) {sorted(both)[:5]} are in both train and test")
    per_type, overall, labels = fit_type_only(task, train)
    freqs = np.array([per_type.get(s.sample_type, overall) for s in test]).reshape(len(test), len(labels))
    chosen = [{labels[j] for j in np.flatnonzero(f >= SHARE)} for f in freqs]
    return finalize(spec, chosen, freqs, labels, at_least_one)


def _micro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="micro", zero_division=0))


def best_constant_set(gold: Sequence[frozenset[str]], labels: Sequence[str]) -> tuple[frozenset[str], float]:
    """The single label set with the highest micro-F1 over ``labels`` when predicted for
    every sample of ``gold``, and that micro-F1. Candidates: every prefix of the labels
    ranked by frequency in ``gold`` (for micro-F1 a constant set is best built from the
    most frequent labels) and every pair, so a small search covers the usual optimum."""
    labels = list(labels)
    y = np.array([[label in g for label in labels] for g in gold], dtype=int).reshape(len(gold), len(labels))
    counts = y.sum(axis=0)
    ranked = [labels[j] for j in np.argsort(-counts, kind="stable")]
    candidates = [frozenset(ranked[:m]) for m in range(1, len(ranked) + 1)]
    candidates += [frozenset(c) for c in itertools.combinations(labels, 2)]
    best: frozenset[str] = frozenset()
    best_f1 = -1.0
    for c in candidates:
        pred = np.broadcast_to(np.array([label in c for label in labels], dtype=int), y.shape)
        f1 = _micro_f1(y, pred)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = c, f1
    return best, best_f1
