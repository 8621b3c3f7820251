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
