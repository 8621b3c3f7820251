"""The ``type-only`` baseline: what a predictor that knows only the sample type scores.

Why: a dataset whose labels follow the specimen type rewards a model for recognising the
specimen, not the artifact or the fix (issue 11: on sim-v1 a type-only predictor scored
micro-F1 0.42 against 0.335 for the best constant set). Reporting this baseline beside the
others shows how much of any score the type alone explains; compared with the best
constant label set (:func:`best_constant_set`) it measures the confound.

Fit on the train split only. Two rules (``rule=``, a ``probe_options`` key in a config):

- ``best-set`` (default): for each ``sample_type``, the label set that a constant
  predictor would choose on that type's train samples: the type's most frequent labels,
  as many as give the highest micro-F1 on those samples. It is :func:`best_constant_set`
  applied per type, so "type-only minus best constant" is what knowing the type adds.
- ``majority``: the labels carried by at least half of the type's train samples (a
  per-label majority, as ``knn-vote`` with every same-type sample as a neighbour).

Why ``best-set`` is the default, over the majority rule and over "the type's most
frequent whole label set": the most frequent whole set is ill-defined where most sets are
unique (parameter labels: the mode is a tie broken by chance), and the majority rule
understates the confound it is meant to measure, because few labels reach half of a
type's samples even where the type predicts them well. Measured on sim-v1's test split
(micro-F1; best constant set fit on train 0.315 for artifacts, 0.357 for params):
``majority`` 0.196 / 0.275, most frequent whole set 0.250 / 0.250, ``best-set`` 0.382 /
0.323: only ``best-set`` shows the artifact labels' dependence on the type.

A type not seen in train gets the rule applied to all train samples. The task's "none"
label is never modelled: for artifacts, "No obvious artifacts" is predicted exactly when
the type's set is empty (no label reaches the half, or the type's train samples carry no
other label); for params (no "none" label) the type's most frequent label is predicted
instead of an empty set (``at_least_one=True``, as the probes do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..data import Sample
from ..data.dataset import require_train
from ..names import TYPE_ONLY_RULES
from ..tasks import NO_ARTIFACTS, get_task
from .labelsets import check_disjoint, finalize, label_matrix

#: ``majority``: a label is predicted for a type when at least this share of its train samples carry it
SHARE = 0.5
RULES = TYPE_ONLY_RULES


@dataclass
class TypeOnly:
    """A fitted type-only predictor: a label set per type, and one for unseen types."""

    labels: list[str]  # the modelled labels (the task's, without "No obvious artifacts")
    per_type: dict[str, frozenset[str]]
    fallback: frozenset[str]
    frequency: dict[str, np.ndarray]  # per type: each label's share of its train samples
    overall: np.ndarray

    def sets_for(self, samples: Sequence[Sample]) -> tuple[list[set[str]], np.ndarray]:
        chosen = [set(self.per_type.get(s.sample_type, self.fallback)) for s in samples]
        freqs = np.array([self.frequency.get(s.sample_type, self.overall) for s in samples])
        return chosen, freqs.reshape(len(samples), len(self.labels))


def _rule_set(samples: Sequence[Sample], labels: list[str], rule: str) -> frozenset[str]:
    if rule == "majority":
        share = label_matrix(samples, labels).mean(axis=0)
        return frozenset(labels[j] for j in np.flatnonzero(share >= SHARE))
    best, f1 = best_constant_set([s.labels for s in samples], labels)
    return best if f1 > 0 else frozenset()  # no label of the type's samples: the "none" answer


def fit_type_only(task: str, train: Sequence[Sample], rule: str = "best-set") -> TypeOnly:
    """The rule (module doc) fit per sample type on ``train``."""
    spec = get_task(task)
    if rule not in RULES:
        raise ValueError(f"type-only: rule {rule!r}; choose one of {', '.join(RULES)}")
    if not train:
        raise ValueError("type-only: the train split is empty")
    require_train(train, "type-only fit")
    labels = [label for label in spec.labels if label != NO_ARTIFACTS]
    by_type: dict[str, list[Sample]] = {}
    for s in train:
        by_type.setdefault(s.sample_type, []).append(s)
    return TypeOnly(
        labels,
        {t: _rule_set(group, labels, rule) for t, group in by_type.items()},
        _rule_set(train, labels, rule),
        {t: label_matrix(group, labels).mean(axis=0) for t, group in by_type.items()},
        label_matrix(train, labels).mean(axis=0),
    )


def fit_predict_type_only(
    task: str,
    train: Sequence[Sample],
    test: Sequence[Sample],
    at_least_one: bool = True,
    rule: str = "best-set",
) -> list[frozenset[str]]:
    """A label set for each of ``test``, in order, from its sample type alone (module doc)."""
    spec = get_task(task)
    check_disjoint(train, test, spec, "type-only")
    model = fit_type_only(task, train, rule)
    chosen, freqs = model.sets_for(test)
    return finalize(spec, chosen, freqs, model.labels, at_least_one)


def best_constant_set(gold: Sequence[frozenset[str]], labels: Sequence[str]) -> tuple[frozenset[str], float]:
    """The label set with the highest micro-F1 over ``labels`` when predicted for every
    sample of ``gold``, and that micro-F1: the optimum over all sets, not a search. A
    constant set C of m labels on n samples scores ``2 * sum(count of C's labels) /
    (n * m + all positives)``, so for each m the m most frequent labels are best, and the
    best m is found by trying each. Ties go to the smaller set, then the task's label order."""
    labels = list(labels)
    if not gold or not labels:
        return frozenset(), 0.0
    counts = np.array([sum(label in g for g in gold) for label in labels], dtype=float)
    order = np.argsort(-counts, kind="stable")
    m = np.arange(1, len(labels) + 1)
    f1 = 2 * np.cumsum(counts[order]) / (len(gold) * m + counts.sum())
    k = int(np.argmax(f1 >= f1.max() - 1e-12))  # the first (smallest) best size
    return frozenset(labels[j] for j in order[: k + 1]), float(f1[k])
