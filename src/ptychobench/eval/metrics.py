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

Beside these, the numbers the authors' released scripts compute (docs/paper.md), so a
user can show both side by side:
- ``macro_*_present``: macro averages over the labels present in the test set's gold only
  (a label nobody has and nobody predicts scores 0 in the fixed-space macro).
- ``*_with_none``: the variant that counts "No obvious artifacts" as a class, over all 12
  labels, as the authors' bootstrap scorer (``evaluation/bootstrap.py``) does.
- ``*_boot_mean`` / ``*_boot_std``: the mean and (population) standard deviation of the
  bootstrap distribution of micro-F1, the "mean ± std" the paper reports, beside the point
  estimate and percentile CI.
- :func:`released_scores`: the authors' inference-script metrics, binarised over the union
  of the strings seen in gold and prediction (unknown strings included, each a label of its
  own), micro and macro over that union.
- ``cohens_d_authors`` in :class:`PairedComparison`: the authors' effect size, the mean of
  the bootstrap differences over their standard deviation (not a textbook Cohen's d: it
  grows with the test set like a z-score of the difference), and ``p_value_authors``,
  their two-sided share 2 * min(P(diff > 0), P(diff <= 0)).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Collection, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import f1_score, precision_recall_fscore_support

N_RESAMPLES = 10_000


def binarize(label_sets: Sequence[Collection[str]], labels: Sequence[str]) -> np.ndarray:
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
    micro_f1_boot_mean: float | None = None
    micro_f1_boot_std: float | None = None
    #: macro averages over the labels with gold support in these samples (how many: present_labels)
    macro_precision_present: float = 0.0
    macro_recall_present: float = 0.0
    macro_f1_present: float = 0.0
    present_labels: int = 0
    #: "No obvious artifacts" counted as a class (the authors' bootstrap scorer); None when
    #: the task scores every label anyway
    micro_f1_with_none: float | None = None
    macro_f1_with_none: float | None = None
    micro_f1_with_none_boot_mean: float | None = None
    micro_f1_with_none_boot_std: float | None = None
    per_label_f1: dict[str, float] = field(default_factory=dict)
    per_label_support: dict[str, int] = field(default_factory=dict)
    per_type_micro_f1: dict[str, float] = field(default_factory=dict)
    per_type_n: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def bootstrap_ci(
    y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of micro-F1 over samples."""
    return bootstrap_stats(y_true, y_pred, n_resamples, seed, level)[:2]


def bootstrap_stats(
    y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float, float]:
    """Percentile bootstrap CI of micro-F1 over samples, and the bootstrap distribution's
    mean and population std (the authors' "mean ± std"): (low, high, mean, std)."""
    if len(y_true) < 2:
        f = float(_f1(*(c.sum() for c in per_sample_counts(y_true, y_pred))))
        return (f, f, f, 0.0)
    tp, fp, fn = per_sample_counts(y_true, y_pred)

    def micro_f1(tp, fp, fn, axis=-1):
        return _f1(tp.sum(axis=axis), fp.sum(axis=axis), fn.sum(axis=axis))

    res = stats.bootstrap(
        (tp, fp, fn),
        micro_f1,
        paired=True,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    dist = np.asarray(res.bootstrap_distribution)
    return (
        float(res.confidence_interval.low),
        float(res.confidence_interval.high),
        float(dist.mean()),
        float(dist.std()),
    )


def present_macro(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float, int]:
    """Macro precision, recall and F1 over the labels with gold support (and how many)."""
    present = np.flatnonzero(y_true.sum(0) > 0)
    if not len(present):
        return 0.0, 0.0, 0.0, 0
    p, r, f, _ = precision_recall_fscore_support(
        y_true[:, present], y_pred[:, present], average="macro", zero_division=0
    )
    return float(p), float(r), float(f), int(len(present))


def released_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """The authors' inference-script metrics: label strings binarised over the sorted union
    of those seen in gold and predictions (an unknown predicted string is a label of its
    own, a false positive), then scikit-learn's micro and macro precision, recall and F1
    with ``zero_division=0``. Pass the label lists with "No obvious artifacts" removed, as
    their parser does."""
    if len(gold) != len(pred) or not gold:
        raise ValueError("released_scores needs the same, non-empty number of gold and predicted label lists")
    seen = sorted(set().union(*map(set, gold), *map(set, pred)))
    if not seen:  # nothing anywhere: scikit-learn would be handed a 0-column matrix
        return {f"{a}_{m}": 0.0 for a in ("micro", "macro") for m in ("precision", "recall", "f1")}
    y_true, y_pred = binarize(gold, seen), binarize(pred, seen)
    out = {}
    for avg in ("micro", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
    return out


def score(
    gold: Sequence[frozenset[str]],
    pred: Sequence[frozenset[str]],
    labels: Sequence[str],
    sample_types: Sequence[str] | None = None,
    parse_ok: Sequence[bool] | None = None,
    errors: Sequence[str | None] | None = None,
    ci: bool = True,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    all_labels: Sequence[str] | None = None,
) -> Scores:
    """Scores over ``labels``; with ``all_labels`` (the task's whole space, when it leaves a
    label unscored) also the variant that counts every label, "No obvious artifacts" included."""
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
    boot = bootstrap_stats(y_true, y_pred, n_resamples, seed) if ci else None
    Pp, Pr, Pf, n_present = present_macro(y_true, y_pred)
    with_none: dict = {}
    if all_labels is not None and list(all_labels) != labels:
        yt, yp = binarize(gold, all_labels), binarize(pred, all_labels)
        wb = bootstrap_stats(yt, yp, n_resamples, seed) if ci else None
        with_none = dict(
            micro_f1_with_none=float(f1_score(yt, yp, average="micro", zero_division=0)),
            macro_f1_with_none=float(f1_score(yt, yp, average="macro", zero_division=0)),
            micro_f1_with_none_boot_mean=wb[2] if wb else None,
            micro_f1_with_none_boot_std=wb[3] if wb else None,
        )
    return Scores(
        n=len(gold),
        micro_precision=float(mp),
        micro_recall=float(mr),
        micro_f1=float(mf),
        macro_precision=float(Mp),
        macro_recall=float(Mr),
        macro_f1=float(Mf),
        exact_match=float((y_true == y_pred).all(1).mean()),
        parse_failures=int(sum(1 for ok in (parse_ok or []) if not ok)),
        errors=int(sum(1 for e in (errors or []) if e)),
        micro_f1_ci=boot[:2] if boot else None,
        micro_f1_boot_mean=boot[2] if boot else None,
        micro_f1_boot_std=boot[3] if boot else None,
        macro_precision_present=Pp,
        macro_recall_present=Pr,
        macro_f1_present=Pf,
        present_labels=n_present,
        **with_none,
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
    #: the authors' definition: mean / std (population) of the bootstrap differences
    cohens_d_authors: float | None = None
    #: the authors' p-value: 2 * min(P(diff > 0), 1 - P(diff > 0)) over the resamples
    p_value_authors: float | None = None
    diff_boot_mean: float | None = None
    diff_boot_std: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def paired_bootstrap(
    gold: Sequence[frozenset[str]],
    pred_a: Sequence[frozenset[str]],
    pred_b: Sequence[frozenset[str]],
    labels: Sequence[str],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> PairedComparison:
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
    sd = float(diffs.std())
    above = float((diffs > 0).mean())
    return PairedComparison(
        n=n,
        micro_f1_a=fa,
        micro_f1_b=fb,
        diff=fa - fb,
        diff_ci=(float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha))),
        p_value=p,
        cohens_d=cohen,
        cohens_d_authors=float(diffs.mean()) / sd if sd > 0 else 0.0,  # their code gives 0 without spread
        p_value_authors=min(2 * above, 2 - 2 * above),
        diff_boot_mean=float(diffs.mean()),
        diff_boot_std=sd,
    )
