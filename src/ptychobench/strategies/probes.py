"""Baselines that need no language model: frozen-feature probes and retrieval by vote.

- ``vision-probe`` (the paper's DINOv3 classifier): frozen image features of a backbone
  (offline EfficientNet-Lite0 by default; DINOv2/DINOv3 by ``transformers`` hub id via
  ``backbone=``), one-vs-rest logistic regression, and per-label decision thresholds tuned
  for F1 on out-of-fold probabilities of the train split (stratified k-fold): each label's
  own F1 first, then jointly for micro-F1 (``objective="micro"``, the default; ``"label"``
  stops after the first stage).
- ``text-probe``: the same on MiniLM (or any sentence-transformers) text embeddings.
- ``knn-vote``: the labels a majority of the ``n_neighbors`` nearest train samples carry
  (cosine on embeddings of the task's modality): what retrieval alone gives.
- ``type-only`` (:mod:`.type_only`): a label set per sample type, fit on train; what
  knowing the specimen alone gives (no features, no embedder).

For a task with a "none" label (artifacts: "No obvious artifacts"), the probes model the
other labels and predict the "none" label exactly when nothing else is predicted, never
with other labels. For a task without one (params), an empty prediction is not an answer,
so the single most likely label is predicted instead (``at_least_one=True``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data import Sample
from ..data.dataset import require_train
from ..names import BASELINES
from ..tasks import Task, get_task
from .embeddings import DEFAULT_IMAGE_BACKBONE, DEFAULT_TEXT_MODEL, Embedder, embedder_for, normalize
from .labelsets import check_disjoint, finalize, label_matrix, none_label

PROBES = tuple(BASELINES)


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold (predict ``score >= t``) with the highest F1 on ``(y, scores)``;
    among ties, the one halfway to the next lower score, which generalises a little better
    than sitting exactly on a training point."""
    from sklearn.metrics import precision_recall_curve

    if y.sum() == 0:
        return np.inf
    precision, recall, thresholds = precision_recall_curve(y, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))[: len(thresholds)]
    t = float(thresholds[int(np.argmax(f1))])
    lower = scores[scores < t]
    return (t + float(lower.max())) / 2 if lower.size else t


@dataclass
class LinearProbe:
    """One logistic regression per label on standardised features, with F1-tuned thresholds."""

    labels: Sequence[str]
    C: float = 1.0
    folds: int = 5
    seed: int = 0
    class_weight: str | None = "balanced"
    #: "micro": thresholds tuned jointly for micro-F1 over all labels (coordinate ascent from
    #: the per-label optima), so a rare, noisy label cannot buy its own F1 with false
    #: positives that cost the others; "label": each label's own F1.
    objective: str = "micro"
    models: dict[str, Any] = field(default_factory=dict, init=False)
    thresholds: dict[str, float] = field(default_factory=dict, init=False)
    constant: dict[str, float] = field(default_factory=dict, init=False)
    #: out-of-fold train probabilities per tuned label (for calibration, e.g. diagnose's advice)
    oof: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def _model(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            StandardScaler(),
            LogisticRegression(C=self.C, max_iter=5000, class_weight=self.class_weight, random_state=self.seed),
        )

    def fit(self, X: np.ndarray, Y: np.ndarray) -> LinearProbe:
        from sklearn.model_selection import StratifiedKFold, cross_val_predict

        if self.objective not in ("micro", "label"):
            raise ValueError(f"threshold objective must be 'micro' or 'label', not {self.objective!r}")
        n = len(X)
        oofs: dict[str, np.ndarray] = {}
        for j, label in enumerate(self.labels):
            y = Y[:, j]
            pos = int(y.sum())
            if pos in (0, n):  # nothing to learn: the label is always or never there
                self.constant[label] = float(pos == n)
                continue
            splits = min(self.folds, pos, n - pos)
            if splits >= 2:
                cv = StratifiedKFold(n_splits=splits, shuffle=True, random_state=self.seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    oof = cross_val_predict(self._model(), X, y, cv=cv, method="predict_proba")[:, 1]
                self.thresholds[label] = best_f1_threshold(y, oof)
                oofs[label] = oof
            else:  # a single positive (or negative): no fold can hold it out
                self.thresholds[label] = 0.5
            self.models[label] = self._model().fit(X, y)
        if self.objective == "micro" and oofs:
            self._tune_micro(Y, oofs)
        self.oof = oofs
        return self

    def _tune_micro(self, Y: np.ndarray, oofs: dict[str, np.ndarray], passes: int = 3) -> None:
        """Coordinate ascent on the out-of-fold micro-F1: each tuned label's threshold in
        turn is set to the candidate (its out-of-fold scores' midpoints, or never) that
        maximises micro-F1 of all labels together."""
        cols = {label: j for j, label in enumerate(self.labels)}
        tuned = list(oofs)
        y = Y[:, [cols[label] for label in tuned]].astype(bool)
        scores = np.stack([oofs[label] for label in tuned], axis=1)
        t = np.array([self.thresholds[label] for label in tuned])
        # labels without out-of-fold scores (always or never present, or a single positive)
        # are left out of the objective: their predictions do not depend on these thresholds

        def micro(pred: np.ndarray) -> float:
            tp = int((pred & y).sum())
            fp = int((pred & ~y).sum())
            fn = int((~pred & y).sum())
            return 2 * tp / max(2 * tp + fp + fn, 1)

        best = micro(scores >= t)
        for _ in range(passes):
            improved = False
            for j in range(len(tuned)):
                u = np.unique(scores[:, j])
                candidates = np.concatenate([(u[1:] + u[:-1]) / 2, [u[0] / 2, np.inf]])
                for c in candidates:
                    trial = t.copy()
                    trial[j] = c
                    f = micro(scores >= trial)
                    if f > best + 1e-9:
                        best, t, improved = f, trial, True
            if not improved:
                break
        for label, value in zip(tuned, t):
            self.thresholds[label] = float(value)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        cols = []
        for label in self.labels:
            if label in self.constant:
                cols.append(np.full(len(X), self.constant[label]))
            else:
                cols.append(self.models[label].predict_proba(X)[:, 1])
        return np.stack(cols, axis=1)

    def threshold_vector(self) -> np.ndarray:
        return np.array([0.5 if label in self.constant else self.thresholds[label] for label in self.labels])


def _check_splits(train: Sequence[Sample], test: Sequence[Sample], task: Task) -> None:
    if not train:
        raise ValueError("probe: the train split is empty")
    require_train(train, "probe fit")
    check_disjoint(train, test, task, "probe")


def probe_embedder(
    task: Task,
    kind: str,
    backbone: str = DEFAULT_IMAGE_BACKBONE,
    text_model: str = DEFAULT_TEXT_MODEL,
    modality: str | None = None,
) -> Embedder:
    if kind == "vision-probe":
        if task.modality != "image":
            raise ValueError(f"vision-probe needs an image task; {task.name!r} is {task.modality}")
        return embedder_for("image", image_backbone=backbone)
    if kind == "text-probe":
        return embedder_for("text", text_model=text_model)
    if kind == "knn-vote":
        return embedder_for(modality or task.modality, text_model=text_model, image_backbone=backbone)
    raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")


def fit_predict_probe(
    task: str,
    train: Sequence[Sample],
    test: Sequence[Sample],
    kind: str,
    seed: int = 0,
    *,
    backbone: str = DEFAULT_IMAGE_BACKBONE,
    text_model: str = DEFAULT_TEXT_MODEL,
    modality: str | None = None,
    C: float = 1.0,
    folds: int = 5,
    n_neighbors: int = 5,
    objective: str = "micro",
    at_least_one: bool = True,
    embedder: Embedder | None = None,
    rule: str = "best-set",
) -> list[frozenset[str]]:
    """Fit a probe on ``train`` and predict a label set for each of ``test``, in order.

    ``kind``: ``vision-probe`` (option ``backbone``: ``efficientnet-lite0`` or a hub id such
    as ``facebook/dinov2-small``), ``text-probe`` (option ``text_model``) or ``knn-vote``
    (options ``n_neighbors``, ``modality``) or ``type-only`` (no features: a label set per
    sample type; option ``rule``: ``best-set`` or ``majority``, see :mod:`.type_only`).
    ``embedder`` overrides the features (tests)."""
    spec = get_task(task)
    if kind not in PROBES:
        raise ValueError(f"unknown probe {kind!r}; choose one of {', '.join(PROBES)}")
    _check_splits(train, test, spec)
    if not test:
        return []
    if kind == "type-only":
        from .type_only import fit_predict_type_only

        return fit_predict_type_only(task, train, test, at_least_one, rule=rule)
    emb = embedder or probe_embedder(spec, kind, backbone, text_model, modality)
    X_train, X_test = emb.embed(list(train)), emb.embed(list(test))
    none = none_label(spec)
    labels = [label for label in spec.labels if label != none]
    Y = label_matrix(train, labels)

    if kind == "knn-vote":
        if n_neighbors < 1:
            raise ValueError("knn-vote: n_neighbors must be >= 1")
        k = min(n_neighbors, len(train))
        sims = normalize(X_test) @ normalize(X_train).T
        nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        votes = Y[nearest].sum(axis=1)  # (n_test, n_labels)
        chosen = [{labels[j] for j in np.flatnonzero(2 * v > k)} for v in votes]
        return finalize(spec, chosen, votes.astype(float), labels, at_least_one)

    probe = LinearProbe(labels, C=C, folds=folds, seed=seed, objective=objective).fit(X_train, Y)
    proba = probe.predict_proba(X_test)
    thresholds = probe.threshold_vector()
    chosen = [{labels[j] for j in np.flatnonzero(p >= thresholds)} for p in proba]
    margin = proba - np.where(np.isfinite(thresholds), thresholds, 1.0)
    return finalize(spec, chosen, margin, labels, at_least_one)
