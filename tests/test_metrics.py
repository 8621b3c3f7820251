import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from ptychobench.eval.metrics import binarize, bootstrap_ci, paired_bootstrap, score
from ptychobench.tasks import ARTIFACTS


def _random_sets(rng, n, labels, p):
    return [frozenset(lab for lab in labels if rng.random() < p) for _ in range(n)]


def test_metrics_equal_sklearn_on_100_random_cases():
    rng = np.random.default_rng(0)
    labels = list(ARTIFACTS.scored_labels)
    for case in range(100):
        n = int(rng.integers(1, 60))
        gold = _random_sets(rng, n, labels, rng.uniform(0.02, 0.5))
        pred = _random_sets(rng, n, labels, rng.uniform(0.0, 0.5))
        s = score(gold, pred, labels, ci=False)
        yt, yp = binarize(gold, labels), binarize(pred, labels)
        for avg in ("micro", "macro"):
            assert getattr(s, f"{avg}_f1") == pytest.approx(f1_score(yt, yp, average=avg, zero_division=0)), case
            assert getattr(s, f"{avg}_precision") == pytest.approx(
                precision_score(yt, yp, average=avg, zero_division=0)
            )
            assert getattr(s, f"{avg}_recall") == pytest.approx(recall_score(yt, yp, average=avg, zero_division=0))
        per = f1_score(yt, yp, average=None, zero_division=0)
        assert [s.per_label_f1[lab] for lab in labels] == pytest.approx(list(per))
        assert s.exact_match == pytest.approx(np.mean([g == p for g, p in zip(gold, pred)]))


def test_unscored_label_is_dropped_and_failures_count():
    gold = [frozenset({"No obvious artifacts"}), frozenset({"Blurring"})]
    pred = [frozenset({"No obvious artifacts"}), frozenset()]
    s = score(gold, pred, ARTIFACTS.scored_labels, parse_ok=[True, False], errors=[None, "boom"], ci=False)
    assert s.micro_f1 == 0.0 and s.parse_failures == 1 and s.errors == 1 and s.n == 2


def test_per_type_breakdown():
    gold = [frozenset({"Blurring"}), frozenset({"Phase ramp"})]
    pred = [frozenset({"Blurring"}), frozenset()]
    s = score(gold, pred, ARTIFACTS.scored_labels, sample_types=["ic", "cell"], ci=False)
    assert s.per_type_micro_f1 == {"cell": 0.0, "ic": 1.0}


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    labels = list(ARTIFACTS.scored_labels)
    gold = _random_sets(rng, 79, labels, 0.2)
    pred = [frozenset(set(g) if rng.random() < 0.6 else set()) for g in gold]
    yt, yp = binarize(gold, labels), binarize(pred, labels)
    a = bootstrap_ci(yt, yp, seed=7)
    b = bootstrap_ci(yt, yp, seed=7)
    c = bootstrap_ci(yt, yp, seed=8)
    assert a == b and a != c
    f = f1_score(yt, yp, average="micro")
    assert a[0] < f < a[1] and a[1] - a[0] < 0.5


def test_paired_bootstrap_tells_a_real_difference_from_none():
    rng = np.random.default_rng(2)
    labels = list(ARTIFACTS.scored_labels)
    gold = _random_sets(rng, 80, labels, 0.25)
    good = [g if rng.random() < 0.9 else frozenset() for g in gold]
    bad = [frozenset() if rng.random() < 0.7 else g for g in gold]
    cmp = paired_bootstrap(gold, good, bad, labels, seed=0)
    assert cmp.diff > 0.3 and cmp.p_value < 0.01 and cmp.cohens_d > 0.5
    assert cmp.diff_ci[0] > 0
    same = paired_bootstrap(gold, good, good, labels, seed=0)
    assert same.diff == 0 and same.p_value == 1.0 and same.cohens_d == 0.0
    again = paired_bootstrap(gold, good, bad, labels, seed=0)
    assert again == cmp


def test_effect_size_has_the_sign_of_the_micro_f1_difference():
    # mostly nothing to find: a model that always answers "nothing" is right per sample on
    # most samples, yet finds nothing (micro-F1 0); one that finds the defects with a few
    # false alarms has the higher micro-F1, and the effect size must say so
    labels = list(ARTIFACTS.scored_labels)
    gold = [frozenset({labels[i % 3]}) if i % 5 == 0 else frozenset() for i in range(100)]
    silent = [frozenset()] * 100
    finder = [g or (frozenset({labels[4]}) if i % 3 == 0 else frozenset()) for i, g in enumerate(gold)]
    cmp = paired_bootstrap(gold, silent, finder, labels, seed=0)
    assert cmp.micro_f1_a == 0 and cmp.micro_f1_b > 0.5
    assert cmp.diff < 0 and cmp.cohens_d < -0.5 and cmp.p_value < 0.01
