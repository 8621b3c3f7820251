"""Label-set helpers every baseline shares: the indicator matrix of samples' labels, and
the task's "none"-label and at-least-one rule applied to chosen labels, so the probes and
``type-only`` answer in the same shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data import Sample
from ..tasks import NO_ARTIFACTS, Task


def none_label(task: Task) -> str | None:
    return NO_ARTIFACTS if NO_ARTIFACTS in task.labels else None


def label_matrix(samples: Sequence[Sample], labels: Sequence[str]) -> np.ndarray:
    return np.array([[label in s.labels for label in labels] for s in samples], dtype=int)


def finalize(
    task: Task, chosen: Sequence[set[str]], scores: np.ndarray | None, labels: Sequence[str], at_least_one: bool = True
) -> list[frozenset[str]]:
    """Apply the task's "none"-label rule and, where the task has none, at-least-one."""
    none = none_label(task)
    out = []
    for i, pred in enumerate(chosen):
        pred = set(pred) - ({none} if none else set())
        if not pred:
            if none:
                pred = {none}
            elif at_least_one and scores is not None and len(labels):
                pred = {labels[int(np.argmax(scores[i]))]}
        out.append(frozenset(pred))
    return out


def check_disjoint(train: Sequence[Sample], test: Sequence[Sample], task: Task, who: str) -> None:
    """Every sample is of ``task`` and no sample is in both train and test: the guard each
    fitted baseline (``who``: "probe", "type-only") runs before it fits, so a test sample
    can never teach the predictor that scores it."""
    for s in (*train, *test):
        if s.task != task.name:
            raise ValueError(f"{who} for {task.name!r} got sample {s.id!r} of task {s.task!r}")
    both = {s.id for s in train} & {s.id for s in test}
    if both:
        raise ValueError(f"{who}: sample(s) {sorted(both)[:5]} are in both train and test")
