"""The baselines: frozen-feature probes and knn-vote beat a constant predictor."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from ptychobench.data import Sample, load_dataset, write_dataset
from ptychobench.eval.metrics import binarize
from ptychobench.strategies import fit_predict_probe
from ptychobench.strategies.probes import best_f1_threshold
from ptychobench.tasks import NO_ARTIFACTS, get_task

# Which symptom in the text or image goes with which label: learnable, with noise.
IMAGE_DEFECTS = ["Grid artifacts", "Noisy artifacts", "Phase ramp", "Blurring", "Line artifacts"]
TEXT_CUES = {
    "G": "the scan positions look jittered and features are doubled",
    "J": "the probe looks partially coherent with a hazy halo",
    "K": "the data error is still falling at the last iteration",
    "N": "updates oscillate wildly between epochs",
    "U": "the photon counts are very high",
    "M": "the diffraction patterns are off-centre on the detector",
}
FILLER = [
    "The sample is an integrated circuit.",
    "The sample is a battery particle.",
    "Energy 10 keV.",
    "Energy 8.8 keV.",
    "Scanned with a Fresnel zone plate.",
    "The reconstruction used 200 iterations.",
    "Batch size 96.",
    "Batch size 40.",
]


def _image(rng: np.random.Generator, defects: set[str], n: int = 96) -> Image.Image:
    yy, xx = np.mgrid[0:n, 0:n] / n
    obj = np.zeros((n, n))
    for _ in range(rng.integers(3, 7)):  # blobs: a plausible object
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15)
        obj += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    if "Phase ramp" in defects:
        obj += 2.0 * (xx * rng.uniform(0.5, 1) + yy * rng.uniform(-1, 1))
    if "Grid artifacts" in defects:
        period = int(rng.integers(6, 10))
        obj += 0.6 * ((np.arange(n)[:, None] % period == 0) | (np.arange(n)[None, :] % period == 0))
    if "Line artifacts" in defects:
        for row in rng.integers(0, n, 3):
            obj[row, :] += 1.5
    if "Noisy artifacts" in defects:
        obj += rng.normal(0, 0.6, obj.shape)
    obj = (obj - obj.min()) / (np.ptp(obj) + 1e-9)
    im = Image.fromarray((255 * obj).astype(np.uint8))
    if "Blurring" in defects:
        im = im.filter(ImageFilter.GaussianBlur(3))
    return im


def learnable_samples(root: Path, n_train: int = 48, n_test: int = 32, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    (root / "raw").mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            sid = f"{split}{i:03d}"
            defects = {d for d in IMAGE_DEFECTS if rng.random() < 0.3}
            path = root / "raw" / f"{sid}.png"
            _image(rng, defects).save(path)
            out.append(Sample(sid, split, "artifacts", "synthetic", "", path, frozenset(defects or {NO_ARTIFACTS}), {}))
            cues = [c for c in TEXT_CUES if rng.random() < 0.3] or [str(rng.choice(list(TEXT_CUES)))]
            parts = [TEXT_CUES[c] for c in cues] + list(rng.choice(FILLER, 2, replace=False))
            rng.shuffle(parts)
            out.append(
                Sample(f"p{sid}", split, "params", "synthetic", ". ".join(parts) + ".", None, frozenset(cues), {})
            )
    return out


@pytest.fixture(scope="session")
def learnable_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learnable")
    return write_dataset(root / "ds", "learnable", "1", learnable_samples(root))


def micro_f1(gold, pred, labels) -> float:
    yt, yp = binarize(gold, labels), binarize(pred, labels)
    tp = int((yt & yp).sum())
    fp, fn = int((~yt & yp).sum()), int((yt & ~yp).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def best_constant_f1(train, test, labels) -> float:
    """The best micro-F1 any single label set reaches on the test split when predicted for
    every sample (an oracle upper bound on constant predictors, chosen on test)."""
    gold = [s.labels for s in test]
    counts = {label: sum(label in s.labels for s in train) for label in labels}
    ranked = sorted(labels, key=lambda x: -counts[x])
    candidates = [frozenset(ranked[:m]) for m in range(1, len(ranked) + 1)]
    candidates += [frozenset(c) for c in itertools.combinations(labels, 2)]
    return max(micro_f1(gold, [c] * len(test), labels) for c in candidates)


@pytest.mark.parametrize(
    "task,kind",
    [("artifacts", "vision-probe"), ("artifacts", "knn-vote"), ("params", "text-probe"), ("params", "knn-vote")],
)
def test_probes_beat_a_constant_predictor(learnable_dataset, task, kind):
    ds = load_dataset(learnable_dataset)
    train, test = ds.samples(task, "train"), ds.samples(task, "test")
    spec = get_task(task)
    pred = fit_predict_probe(task, train, test, kind, seed=0)
    assert len(pred) == len(test)
    f1 = micro_f1([s.labels for s in test], pred, spec.scored_labels)
    const = best_constant_f1(train, test, spec.scored_labels)
    assert f1 > const + 0.05, f"{kind} micro-F1 {f1:.3f} vs best constant {const:.3f}"


def test_no_obvious_artifacts_is_exclusive(learnable_dataset):
    ds = load_dataset(learnable_dataset)
    train, test = ds.samples("artifacts", "train"), ds.samples("artifacts", "test")
    for kind in ("vision-probe", "knn-vote"):
        for labels in fit_predict_probe("artifacts", train, test, kind):
            assert labels  # never empty: "no artifacts" is said explicitly
            assert NO_ARTIFACTS not in labels or labels == {NO_ARTIFACTS}
    for labels in fit_predict_probe(
        "params", ds.samples("params", "train"), ds.samples("params", "test"), "text-probe"
    ):
        assert labels  # a recommendation always names at least one option


def test_probe_refuses_test_samples_in_train(learnable_dataset):
    ds = load_dataset(learnable_dataset)
    train, test = ds.samples("params", "train"), ds.samples("params", "test")
    with pytest.raises(ValueError, match="train split only"):
        fit_predict_probe("params", [*train, test[0]], test, "text-probe")
    with pytest.raises(ValueError, match="unknown probe"):
        fit_predict_probe("params", train, test, "svm")
    with pytest.raises(ValueError, match="image task"):
        fit_predict_probe("params", train, test, "vision-probe")


def test_threshold_maximises_f1():
    y = np.array([0, 0, 1, 1, 1, 0])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9, 0.35])
    t = best_f1_threshold(y, s)
    assert 0.2 < t <= 0.3  # all three positives with one false positive (F1 .857) beats 2/2 (F1 .8)
    assert best_f1_threshold(np.zeros(3, int), np.array([0.1, 0.2, 0.3])) == np.inf


@pytest.mark.parametrize(
    "task,kind", [("artifacts", "vision-probe"), ("artifacts", "knn-vote"), ("params", "text-probe")]
)
def test_probes_beat_a_constant_predictor_on_sim_v1(task, kind):
    from ptychobench.data import DatasetError

    try:
        ds = load_dataset("sim-v1")
    except DatasetError:
        pytest.skip("the shipped sim-v1 dataset is not installed")
    train, test = ds.samples(task, "train"), ds.samples(task, "test")
    spec = get_task(task)
    f1 = micro_f1([s.labels for s in test], fit_predict_probe(task, train, test, kind), spec.scored_labels)
    const = best_constant_f1(train, test, spec.scored_labels)
    assert f1 > const, f"{kind} micro-F1 {f1:.3f} vs best constant {const:.3f}"
