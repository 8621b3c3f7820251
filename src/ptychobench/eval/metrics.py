"""Multi-label metrics over a task's fixed label space, with bootstrap statistics.

Choices (the paper's where it states them):
- Labels a task leaves unscored ("No obvious artifacts") are dropped from gold and
  prediction before scoring, as in the paper; a sample whose gold set becomes empty then
  only counts its false positives.
- Point estimates come from scikit-learn with ``zero_division=0``, over the task's fixed
  label space (not the union of labels seen, the released scripts' mistake).
- A parse failure or a generation error counts as an empty prediction, never as a skip.
- Confidence intervals: percentile bootstrap over test samples (10,000 resamples, seeded)
  of micro-F1, via ``scipy.stats.bootstrap``.
- Paired comparisons resample the same test samples for both runs: the p-value is the
  two-sided share of resampled differences on the other side of zero. Cohen's d is the
  paired (d_z) effect size of the micro-F1 difference: the difference over the per-sample
  spread its bootstrap standard error implies, d = diff / (SE * sqrt(n)). For a mean of
  per-sample scores this is the textbook d_z; for micro-F1, which is not a mean over
  samples, it keeps the sign and scale of the difference the table reports. (d_z of
  per-sample F1 can disagree in sign: a model that answers "nothing" on every sample scores
  micro-F1 0 but a sample F1 of 1 on each sample with nothing to find.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, precision_recall_fscore_support

N_RESAMPLES = 10_000


def binarize(label_sets: Sequence[frozenset[str] | set[str] | list[str]], labels: Sequence[str]) -> np.ndarray:
    """Indicator matrix (samples x labels) over a fixed label space; other labels dropped."""
    index = {label: j for j, label in enumerate(labels)}
    m = np.zeros((len(label_sets), len(labels)), dtype=np.int8)
    for i, s in enumerate(label_sets):
        for label in s:
            j = index.get(label)
            if j is not None:
                m[i, j] = 1
    return m


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)


def per_sample_counts(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = (y_true & y_pred).sum(1)
    fp = ((1 - y_true) & y_pred).sum(1)
    fn = (y_true & (1 - y_pred)).sum(1)
    return tp, fp, fn


@dataclass
class Scores:
    n: int
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    exact_match: float
    parse_failures: int
    errors: int
    micro_f1_ci: tuple[float, float] | None = None
    per_label_f1: dict[str, float] = field(default_factory=dict)
    per_label_support: dict[str, int] = field(default_factory=dict)
    per_type_micro_f1: dict[str, float] = field(default_factory=dict)
    per_type_n: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = N_RESAMPLES,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of micro-F1 over samples."""
    if len(y_true) < 2:
        f = float(_f1(*(c.sum() for c in per_sample_counts(y_true, y_pred))))
        return (f, f)
    tp, fp, fn = per_sample_counts(y_true, y_pred)

    def micro_f1(tp, fp, fn, axis=-1):
        return _f1(tp.sum(axis=axis), fp.sum(axis=axis), fn.sum(axis=axis))

    res = stats.bootstrap(
        (tp, fp, fn), micro_f1, paired=True, vectorized=True, n_resamples=n_resamples,
        confidence_level=level, method="percentile", rng=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def score(gold: Sequence[frozenset[str]], pred: Sequence[frozenset[str]], labels: Sequence[str],
          sample_types: Sequence[str] | None = None, parse_ok: Sequence[bool] | None = None,
          errors: Sequence[str | None] | None = None, ci: bool = True,
          n_resamples: int = N_RESAMPLES, seed: int = 0) -> Scores:
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold label sets but {len(pred)} predictions")
    labels = list(labels)
    y_true, y_pred = binarize(gold, labels), binarize(pred, labels)
    if len(gold) == 0:
        raise ValueError("nothing to score: no samples")
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="micro", zero_division=0)
    Mp, Mr, Mf, _ = precision_recall_fscore_support(y_true, y_pred, average="macro", zero_division=0)
    per_label = f1_score(y_true, y_pred, average=None, zero_division=0)
    types = list(sample_types) if sample_types is not None else ["all"] * len(gold)
    per_type, per_type_n = {}, {}
    for t in sorted(set(types)):
        rows = np.array([x == t for x in types])
        tp, fp, fn = per_sample_counts(y_true[rows], y_pred[rows])
        per_type[t] = float(_f1(tp.sum(), fp.sum(), fn.sum()))
        per_type_n[t] = int(rows.sum())
    return Scores(
        n=len(gold),
        micro_precision=float(mp), micro_recall=float(mr), micro_f1=float(mf),
        macro_precision=float(Mp), macro_recall=float(Mr), macro_f1=float(Mf),
        exact_match=float((y_true == y_pred).all(1).mean()),
        parse_failures=int(sum(1 for ok in (parse_ok or []) if not ok)),
        errors=int(sum(1 for e in (errors or []) if e)),
        micro_f1_ci=bootstrap_ci(y_true, y_pred, n_resamples, seed) if ci else None,
        per_label_f1={label: float(f) for label, f in zip(labels, per_label)},
        per_label_support={label: int(s) for label, s in zip(labels, y_true.sum(0))},
        per_type_micro_f1=per_type,
        per_type_n=per_type_n,
    )


@dataclass
class PairedComparison:
    n: int
    micro_f1_a: float
    micro_f1_b: float
    diff: float  # a - b
    diff_ci: tuple[float, float]
    p_value: float
    cohens_d: float | None  # None where the difference has no spread (every resample equal) but is not 0

    def as_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(gold: Sequence[frozenset[str]], pred_a: Sequence[frozenset[str]],
                     pred_b: Sequence[frozenset[str]], labels: Sequence[str],
                     n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95) -> PairedComparison:
    """Compare two runs on the same test samples (same order)."""
    if not (len(gold) == len(pred_a) == len(pred_b)) or not gold:
        raise ValueError("paired comparison needs the same, non-empty list of samples in both runs")
    y = binarize(gold, labels)
    a, b = binarize(pred_a, labels), binarize(pred_b, labels)
    ca, cb = per_sample_counts(y, a), per_sample_counts(y, b)
    fa = float(_f1(*(c.sum() for c in ca)))
    fb = float(_f1(*(c.sum() for c in cb)))
    rng = np.random.default_rng(seed)
    n = len(gold)
    idx = rng.integers(0, n, size=(n_resamples, n))
    da = _f1(*(c[idx].sum(1) for c in ca))
    db = _f1(*(c[idx].sum(1) for c in cb))
    diffs = da - db
    alpha = (1 - level) / 2
    p = min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean())))
    se = float(diffs.std(ddof=1))
    cohen = (fa - fb) / (se * np.sqrt(n)) if se > 0 else (0.0 if fa == fb else None)
    return PairedComparison(
        n=n, micro_f1_a=fa, micro_f1_b=fb, diff=fa - fb,
        diff_ci=(float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))),
        p_value=p, cohens_d=cohen,
    )
