"""sim-v3's labeller (issue 24): features of a reconstruction, per-label models fitted to a
panel's majority, the gray zone, and the JSON file the package ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from ptychobench.data import DatasetError
from ptychobench.labelling import labeller as lb
from ptychobench.tasks import NO_ARTIFACTS


@pytest.fixture(scope="module")
def specimen():
    from ptychobench.sim.objects import make_object
    from ptychobench.sim.perturb import FIELD

    return make_object("catalyst nanoparticles", np.random.default_rng(11), FIELD)


def _features(recon, truth):
    from ptychobench.sim.measure import centre_crop, metrics, project
    from ptychobench.sim.perturb import ROI, STEP
    from ptychobench.sim.render import render_phase

    m = metrics(recon, truth, roi=ROI, step_px=STEP, scan="spiral")
    image = render_phase(centre_crop(project(recon), ROI), size=2 * ROI)
    return lb.features(m, image, 2 * STEP), image


def test_features_are_every_name_finite_and_see_noise_and_streaks(specimen):
    rng = np.random.default_rng(0)
    clean, _ = _features(specimen, specimen)
    assert list(clean) == list(lb.FEATURES) and all(np.isfinite(v) for v in clean.values())
    noisy, _ = _features(specimen * np.exp(1j * 0.5 * rng.standard_normal(specimen.shape)), specimen)
    assert noisy["img_grain"] > clean["img_grain"] and noisy["img_speckle"] > clean["img_speckle"]
    n = specimen.shape[-1]
    streak = ndimage.gaussian_filter1d(rng.standard_normal((n, n)), 12, axis=0)  # vertical streaks
    streaked, _ = _features(specimen * np.exp(1j * 0.6 * streak / streak.std()), specimen)
    assert streaked["img_streak_concentration"] > 1.5 * clean["img_streak_concentration"]


#: the synthetic panel's columns: the machinery, not the feature set (two of them informative)
NARROW = lb.FEATURES[:40]


def _panel(n: int, seed: int):
    """Features and a panel majority from a known rule: Blurring where feature 0 is high,
    Noisy where feature 1 is, each with some rater disagreement near the boundary;
    Halo on only 3 images (too few to learn)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, len(NARROW)))
    blur = x[:, 0] + 0.3 * rng.standard_normal(n) > 0.5
    noisy = x[:, 1] + 0.3 * rng.standard_normal(n) > 0.0
    panel = []
    for i in range(n):
        labs = {"Blurring"} if blur[i] else set()
        labs |= {"Noisy artifacts"} if noisy[i] else set()
        labs |= {"Halo artifacts"} if i < 3 else set()
        panel.append(frozenset(labs or {NO_ARTIFACTS}))
    return x, panel


def test_fit_learns_the_panel_and_its_gray_zone_holds_on_new_data(tmp_path):
    x, panel = _panel(300, 0)
    lab = lb.fit(x, panel, trained_on={"panel": "synthetic"}, names=NARROW)
    assert {m.label for m in lab.models} == {"Blurring", "Noisy artifacts"}
    assert lab.not_learnt["Halo artifacts"] == 3 and lab.not_learnt["Grid artifacts"] == 0
    assert lab.cv["micro_f1"] > 0.8  # out of fold
    assert lab.cv["sure_n"] == 300 - round(lb.LEFT_OUT * 300) and lab.cv["sure_micro_f1"] >= lab.cv["micro_f1"]
    for m in lab.models:
        assert 0.0 <= m.lo <= m.hi <= 1.0 and m.cv["unsure"] == lab.cv["left_out_per_label"][m.label]
    # on fresh images from the same rule the sure decisions agree with the panel
    x2, panel2 = _panel(400, 1)
    out = lab.label(x2)
    for m in lab.models:
        decided = [
            (m.label in labs, m.label in truth) for (labs, unsure), truth in zip(out, panel2) if m.label not in unsure
        ]
        agree = np.mean([a == b for a, b in decided])
        assert agree >= 0.9, (m.label, agree)
    assert all(labs == {NO_ARTIFACTS} or NO_ARTIFACTS not in labs for labs, _ in out)
    # the file: refused when fitted on other features, or not a labeller at all
    with pytest.raises(DatasetError, match="labeller.json: labeller 3.1 was fitted on other features"):
        lb.load(lb.save(lab, tmp_path / "labeller.json"))
    (tmp_path / "bad.json").write_text('{"version": "3.0"}')
    with pytest.raises(DatasetError, match="bad.json: not a labeller file"):
        lb.load(tmp_path / "bad.json")


def test_probability_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, panel = _panel(120, 2)
    y = np.array(["Blurring" in p for p in panel])
    lab = lb.fit(x, panel, cross_validate=False, names=NARROW)
    model = next(m for m in lab.models if m.label == "Blurring")
    assert model.cv["C"] in lb.CS  # chosen by the inner cross-validation
    lr = LogisticRegression(C=model.cv["C"], class_weight="balanced", max_iter=5000)
    ref = make_pipeline(StandardScaler(), lr).fit(x, y)
    assert np.allclose(lab.probabilities(x)["Blurring"], ref.predict_proba(x)[:, 1], atol=1e-3)  # solver tolerance


def test_gray_zone_leaves_out_the_least_sure_share():
    rng = np.random.default_rng(3)
    p = rng.random((400, 3))
    lo, hi = lb.gray_zone(p, share=0.25)
    assert 0 < lo < 0.5 < hi < 1 and np.isclose(lo, 1 - hi)  # symmetric about the decision
    unsure = ((p >= lo) & (p < hi)).any(axis=1)
    assert abs(unsure.mean() - 0.25) < 0.01
    # the images left out are the ones with a label nearest 0.5
    margin = np.abs(p - 0.5).min(axis=1)
    assert margin[unsure].max() <= margin[~unsure].min() + 1e-9
    assert lb.gray_zone(p, share=0.0) == (0.5, 0.5)  # nothing left out


def test_fit_panel_reads_a_built_dataset_and_its_majority(tmp_path, specimen):
    """A small dataset as the build writes it (metrics, experiment, image), half of it
    noisy, and a majority.csv saying so: the labeller learns Noisy artifacts from it."""
    import csv

    from PIL import Image

    from ptychobench.data import Sample, load_dataset, write_dataset
    from ptychobench.sim.defects import draw_experiment, instrument_for
    from ptychobench.sim.measure import centre_crop, metrics, project
    from ptychobench.sim.render import render_phase

    rng = np.random.default_rng(5)
    truth = centre_crop(specimen, 96)
    exp = draw_experiment(0, seed=1, rng=np.random.default_rng(1), scale="v2-quick")
    samples, rows = [], []
    for i in range(12):
        noisy = i % 2 == 1
        recon = truth * np.exp(1j * (0.6 if noisy else 0.02) * rng.standard_normal(truth.shape))
        m = metrics(recon, truth, roi=exp.geometry.roi, step_px=instrument_for(exp).step_px, scan=exp.scan)
        path = tmp_path / f"s{i}.png"
        Image.fromarray(render_phase(centre_crop(project(recon), exp.geometry.roi), size=160)).save(path)
        meta = {"metrics": {k: v for k, v in m.items() if k != "shift_px"}, "experiment": exp.to_dict()}
        split = "test" if i >= 10 else "train"
        samples.append(Sample(f"s{i:02d}", split, "artifacts", "cells", "", path, frozenset({NO_ARTIFACTS}), meta))
        rows.append((f"s{i:02d}", "Noisy artifacts" if noisy else NO_ARTIFACTS))
    ds = load_dataset(write_dataset(tmp_path / "ds", "ds", "1", samples))
    s0 = ds.samples("artifacts", "train")[0]
    step = instrument_for(exp).step_px * 160 / exp.geometry.roi
    with Image.open(s0.image) as im:
        assert lb.sample_features(s0) == lb.features(s0.metadata["metrics"], np.asarray(im.convert("L")), step)
    majority = tmp_path / "majority.csv"
    with majority.open("w", newline="") as f:
        csv.writer(f).writerows([("sample_id", "labels", "votes"), *((a, b, "") for a, b in rows)])
    lab = lb.fit_panel(ds, [majority])
    assert [m.label for m in lab.models] == ["Noisy artifacts"] and lab.trained_on["n"] == 12
    assert lab.models[0].cv["kappa"] == 1.0  # out of fold, every image right
    (tmp_path / "other.csv").write_text("sample_id,labels\nzz,Blurring\n")
    with pytest.raises(DatasetError, match="other.csv: sample 'zz' is not in dataset 'ds'"):
        lb.fit_panel(ds, [tmp_path / "other.csv"])


# --------------------------------------------------------------------------- the shipped panel

PANEL = Path(__file__).parents[1] / "benchmarks" / "sim-v3-calib"
MAJORITY = [PANEL / "part1" / "majority.csv", PANEL / "part2" / "majority.csv"]
#: the figures of benchmarks/sim-v3-calib/labeller.md (benchmarks/labeller_panel.py)
OUT_OF_FOLD = 0.643
HELD_OUT = 0.525


@pytest.fixture(scope="module")
def shipped():
    """The calibration panel as shipped: every rated image's features and the majority."""
    panel = lb.read_panel(MAJORITY)
    ids = sorted(panel)
    return ids, lb.load_features(PANEL / "features.npz").rows(ids, "features.npz"), panel


def _micro(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * (pred & truth).sum() / (pred.sum() + truth.sum())


def test_fitted_on_part1_it_agrees_with_part2s_other_raters(shipped):
    """Held out by part (other images, other raters): the labeller fitted on part 1 agrees
    with part 2's majority at the figure documented in benchmarks/sim-v3-calib/README.md
    (0.525; the labeller without the embedding reached 0.466), far above a constant labeller."""
    from ptychobench.eval.metrics import binarize

    ids, x, panel = shipped
    part1 = set(lb.read_majority(MAJORITY[0]))
    tr = [k for k, i in enumerate(ids) if i in part1]
    te = [k for k, i in enumerate(ids) if i not in part1]
    lab = lb.fit(x[tr], [panel[ids[k]] for k in tr], cross_validate=False)
    truth = binarize([panel[ids[k]] for k in te], list(lb.SCORED)).astype(bool)
    probs = lab.probabilities(x[te])
    pred = np.zeros_like(truth)
    for j, label in enumerate(lb.SCORED):
        pred[:, j] = probs[label] >= 0.5 if label in probs else False
    const = np.zeros_like(truth)
    const[:, int(np.argmax(binarize([panel[ids[k]] for k in tr], list(lb.SCORED)).sum(0)))] = True
    assert _micro(pred, truth) >= HELD_OUT - 0.03, _micro(pred, truth)
    assert _micro(pred, truth) > _micro(const, truth) + 0.2


def test_the_shipped_file_is_the_fit_of_the_shipped_panel(shipped, tmp_path):
    """labeller-3.1.json was fitted on these majority files and these features: its
    standardisation and (for two labels) its probabilities are what a refit gives."""
    import hashlib

    from sklearn.linear_model import LogisticRegression

    ids, x, panel = shipped
    lab = lb.load(lb.SHIPPED)
    assert lab.version == lb.LABELLER_VERSION and lab.trained_on["n"] == len(ids)
    assert lab.trained_on["majority_sha256"] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in MAJORITY]
    assert np.allclose(lab.mean, x.mean(0), rtol=1e-5, atol=1e-6)
    assert lab.cv["micro_f1"] >= OUT_OF_FOLD - 0.01  # the documented out-of-fold figure
    again = lb.load(lb.save(lab, tmp_path / "again.json"))  # a save rounds to 7 digits
    for label, p in lab.probabilities(x).items():
        assert np.allclose(again.probabilities(x)[label], p, atol=1e-5)
    z = lab.standardise(x)
    for m in lab.models[:2]:
        y = np.array([m.label in panel[i] for i in ids])
        ref = LogisticRegression(C=m.cv["C"], class_weight="balanced", max_iter=5000).fit(z, y)
        p, q = m.probability(z), ref.predict_proba(z)[:, 1]
        # the solver's tolerance on ~950 features: within 0.01, the same decisions
        assert np.allclose(p, q, atol=0.01) and ((p >= 0.5) == (q >= 0.5)).all(), m.label


def test_features_file_refused_when_foreign_or_stale(tmp_path, shipped):
    """A features file from another labeller version, or no features file at all: one
    clear error naming the file (the CLI prints it and exits 2)."""
    ids, x, _ = shipped
    pf = lb.PanelFeatures(ids[:3], x[:3], "calib", None)
    again = lb.load_features(lb.save_features(pf, tmp_path / "f.npz"))
    assert again.ids == ids[:3] and np.allclose(again.x, x[:3], rtol=1e-6)
    with pytest.raises(DatasetError, match="majority.csv: sample 'exp0003' has no features"):
        again.rows(["exp0003"], "majority.csv")
    np.savez(tmp_path / "old.npz", ids=np.array(ids[:3]), x=x[:3, :57], names=np.array(lb.FEATURES[:57]), meta="{}")
    with pytest.raises(DatasetError, match="old.npz: features of another labeller version"):
        lb.load_features(tmp_path / "old.npz")
    (tmp_path / "bad.npz").write_text("not numpy")
    with pytest.raises(DatasetError, match="bad.npz: not a labeller features file"):
        lb.load_features(tmp_path / "bad.npz")


# --------------------------------------------------------------------------- benchmark helpers


@pytest.fixture(scope="module")
def bench():
    """benchmarks/labeller_ideas.py and labeller_panel.py (scripts, not a package)."""
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        yield importlib.import_module("labeller_ideas"), importlib.import_module("labeller_panel")
    finally:
        sys.path.remove(str(Path(__file__).parents[1] / "benchmarks"))


def test_residues_count_the_ends_of_wrap_lines_not_the_phase_itself(bench):
    """A phase vortex, rendered as the build renders, leaves one wrap line ending inside the
    image (one residue), a vortex pair two; a smooth ramp that does not wrap leaves none,
    and neither does an image with no wrap jump."""
    from ptychobench.sim.render import render_phase

    ideas, _ = bench
    n = 128
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    for x0 in (-20, 0, 20):
        assert ideas.residues(render_phase(np.exp(1j * np.arctan2(yy, xx - x0)), size=256)) == 1
    pair = np.exp(1j * (np.arctan2(yy, xx - 25) - np.arctan2(yy, xx + 25)))
    assert ideas.residues(render_phase(pair, size=256)) == 2
    ramp = render_phase(np.exp(1j * 0.03 * xx), size=256)  # 3.8 rad over the field: no wrap
    assert ideas.residues(ramp) == 0
    s = ideas.shape(ramp)
    assert list(s) == list(ideas.SHAPE) and s["wrap_px"] == 0 and s["plane_r2"] > 0.99
    vortex = ideas.shape(render_phase(np.exp(1j * np.arctan2(yy, xx)), size=256))
    assert vortex["wrap_px"] > 0 and vortex["residues"] == pytest.approx(np.log(2)) and vortex["plane_r2"] < 0.9


def test_kept_agreement_scores_only_the_images_outside_the_gray_zone(bench):
    """The gray-zone table: an image with any learnt label's probability in [lo, hi) is
    left out; micro-F1 and "clean" (no label) precision count the kept images only."""
    _, panel = bench
    p = np.array([[0.9, 0.1], [0.55, 0.1], [0.1, 0.1], [0.1, 0.2], [0.45, 0.8]])
    truth = np.array([[1, 0], [0, 0], [0, 0], [0, 1], [1, 1]])
    clean = np.array([False, True, True, False, False])
    # image 1 (0.55) and image 4 (0.45) are unsure on label 0; image 3 is given "clean" wrongly
    assert panel.kept_agreement(p, truth, clean, (0.4, 0.6), [0, 1]) == ["3 of 5", "0.667", "2 / 0.50"]
    # label 1 not learnt: its column is not looked at; nothing left out at (0.5, 0.5)
    assert panel.kept_agreement(p, truth, clean, (0.5, 0.5), [0])[0] == "5 of 5"
    ideas, _ = bench
    assert ideas.no_artifacts_precision(p >= 0.5, clean) == (2, 0.5)


@pytest.fixture(scope="module")
def clean_rule():
    """benchmarks/clean_rule.py: when the labeller may say "No obvious artifacts"."""
    import importlib
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    try:
        yield importlib.import_module("clean_rule")
    finally:
        sys.path.remove(str(Path(__file__).parents[1] / "benchmarks"))


def test_clean_cutoff_calls_the_most_images_clean_at_the_target_or_none(clean_rule):
    """The clean rule's cut-off: the loosest that keeps the panel's clean share among the
    no-label images it calls clean >= the target, with at least CLEAN_MIN of them; none
    (every no-label image unsure) when no cut-off does."""
    cr = clean_rule
    # 10 no-label images, the lowest label probability first: 6 clean, then a flawed one,
    # then 2 clean, then a flawed one; 2 labelled images (p_max >= lo) never count
    p_max = np.array([0.01, 0.03, 0.05, 0.07, 0.09, 0.11, 0.13, 0.15, 0.17, 0.19, 0.6, 0.7])
    clean = np.array([1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1], bool)
    score = np.zeros(len(p_max))
    cut = cr.clean_cutoffs(p_max, score, clean, 0.5, 0.90, "max")
    # max < 0.2 would give 8 of 10 (0.80); max < 0.18 gives 8 of 9 (0.89); max < 0.14 gives 6 of 7 (0.86);
    # max < 0.12 gives 6 of 6: the most images at >= 0.90
    assert cut.max_below == pytest.approx(0.12) and cut.holds(p_max, score).sum() == 6
    assert cr.clean_cutoffs(p_max, score, clean, 0.5, 0.85, "max").max_below == pytest.approx(0.18)  # 8 of 9
    # too few images reach the target: never clean
    few = clean.copy()
    few[[1, 3]] = False
    never = cr.clean_cutoffs(p_max, score, few, 0.5, 0.90, "max")
    assert never.describe() == "never" and not never.holds(p_max, score).any()
    # a score rule: the images whose clean score is high, among the no-label ones only
    score = np.where(clean, 0.9, 0.3)
    score[10:] = 0.99  # labelled: not candidates, though their score is the highest
    cut = cr.clean_cutoffs(p_max, score, clean, 0.5, 0.90, "score")
    assert cut.max_below == 1.0 and 0.3 < cut.score_above <= 0.9
    assert cut.holds(p_max, score)[:10].sum() == 8


def test_clean_rule_cutoff_never_sees_the_scored_images(clean_rule):
    """Nested: a split's cut-off comes from the training part's inner probabilities and
    ratings only; the scored images' probabilities change what is called clean, never the
    cut-off (and their ratings are no argument at all)."""
    cr = clean_rule
    rng = np.random.default_rng(4)
    n = 200
    clean_tr = rng.random(n) < 0.2
    p_in = rng.random((n, 13)) * 0.6
    p_in[clean_tr, :11] *= 0.2  # clean training images: every label unlikely, clean model high
    p_in[:, 11] = np.where(clean_tr, 0.8 + 0.2 * rng.random(n), 0.6 * rng.random(n))
    outs = []
    for seed in (1, 2):
        p_te = np.random.default_rng(seed).random((50, 13))
        cut, given, sure = cr.split_rule("both", 0.9, p_in, p_te, clean_tr, 0.5, 0)
        assert (sure <= given).all() and (given == (p_te[:, :11].max(1) < 0.5)).all()
        outs.append(cut)
    assert outs[0] == outs[1] and outs[0].describe() != "never"
    # 3.1 (no rule): every no-label image is clean
    _, given, sure = cr.split_rule(None, 0.9, p_in, p_te, clean_tr, 0.5, 0)
    assert (given == sure).all()
