"""sim-v3's artifact labeller: per-label classifiers fitted to a blind panel's majority.

Why: two rounds of hand-set thresholds on residuals against the truth did not reach what
raters see (issue 24: micro-F1 0.33-0.38 against raters who agree with each other at
0.86). So the labels are fitted to the raters, with the physics as evidence:

- :func:`features`: what the rendered image shows (the truth-free measurements of
  ``diagnose``, taken on the 8-bit image exactly as a user's PNG is read, with the scan
  lattice looked for whatever the scan pattern, since a spiral scan can leave a lattice
  imprint too), image measurements of streaks and grain, and the residuals against the
  truth that :mod:`.measure` already computes (:data:`RESIDUALS`).
- :func:`fit`: one standardised, class-balanced logistic regression per label
  (scikit-learn) on the panel's majority. Out-of-fold probabilities (stratified k-fold)
  give the labeller's cross-validated agreement with the panel and place each label's
  gray zone: two cut-offs on calibration data only, ``lo`` the highest at which the
  images below it are absent-label at ``SURE`` or better, ``hi`` the lowest at which the
  images above it carry the label at ``SURE`` or better. A probability in ``[lo, hi)`` is
  unsure; an image unsure of any label is left out of the shipped splits.
- :func:`save` / :func:`load`: the fitted models as JSON (means, scales, coefficients,
  cut-offs, cross-validated figures): a versioned, reviewable file inside the package,
  no pickle. :func:`Labeller.probabilities` recomputes what scikit-learn would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, DatasetError, Sample
from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS

LABELLER_VERSION = "3.0"
SCORED = tuple(lab for lab in ARTIFACT_LABELS if lab != NO_ARTIFACTS)
#: residuals against the truth (keys of :func:`.measure.metrics`) used as features
RESIDUALS = (
    "error",
    "ramp",
    "ramp_rad",
    "corr",
    "corr_fit",
    "contrast",
    "fine_structure",
    "blur_px",
    "noise",
    "background",
    "halo",
    "grid",
    "grid_peak",
    "grid_truth_peak",
    "lines",
    "lines_concentration",
    "vortices",
    "distortion_px",
    "display_rad",
    "specimen_display_rad",
    "truth_display_rad",
)
#: truth-free measurements of the image (keys of ``diagnose.measure.measure``)
IMAGE = ("ramp_rel", "phase_range", "background_rel", "noise_rel", "grid_peak", "grid_amp")
#: new image measurements (:func:`streaks_and_grain`)
EXTRA = ("streak_concentration", "grain", "speckle")
#: heavy-tailed features enter as log(1 + x)
LOG = {"res_grid_peak", "res_grid_truth_peak", "res_vortices", "res_lines_concentration", "img_grid_peak"}
FEATURES = (*(f"res_{k}" for k in RESIDUALS), *(f"img_{k}" for k in IMAGE), *(f"img_{k}" for k in EXTRA))
MIN_POSITIVES = 5  # a label the panel gave fewer times is not learnt (and never assigned)
SURE = 0.9  # agreement with the panel required outside the gray zone
FOLDS = 5


# --------------------------------------------------------------------------- features


def streaks_and_grain(img: np.ndarray) -> dict[str, float]:
    """Three image measurements the diagnose set lacks.

    streak_concentration: high-pass power gathered in one direction of the spectrum
    (peak of the angular histogram over its mean; ~1-2 for isotropic texture, large for
    straight streaks). grain: RMS of the finest detail (image minus a 1-px Gaussian) over
    the RMS of the image's detail at 3 px. speckle: share of pixels that differ from the
    median of their 3x3 neighbourhood by more than 8% of the grey range."""
    from scipy import ndimage

    a = img.astype(np.float64) / 255.0
    n0, n1 = a.shape
    hp = a - ndimage.gaussian_filter(a, 4.0)
    win = np.outer(np.hanning(n0), np.hanning(n1))
    ps = np.abs(np.fft.fftshift(np.fft.fft2(hp * win))) ** 2
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(n0)), np.fft.fftshift(np.fft.fftfreq(n1)), indexing="ij")
    fr = np.hypot(fy, fx)
    band = (fr > 4.0 / min(n0, n1)) & (fr < 0.4)
    bins = np.minimum((np.mod(np.arctan2(fy, fx), np.pi) / np.pi * 90).astype(int), 89)
    h = np.bincount(bins[band], weights=ps[band], minlength=90)
    h = h + np.roll(h, 1) + np.roll(h, -1)
    fine = a - ndimage.gaussian_filter(a, 1.0)
    mid = a - ndimage.gaussian_filter(a, 3.0)
    return {
        "streak_concentration": float(h.max() / (h.mean() + 1e-20)),
        "grain": float(np.sqrt((fine**2).mean()) / (np.sqrt((mid**2).mean()) + 1e-9)),
        "speckle": float((np.abs(a - ndimage.median_filter(a, 3)) > 0.08).mean()),
    }


def features(metrics: dict[str, Any], image: np.ndarray, step_px_image: float) -> dict[str, float]:
    """Every feature of one reconstruction: its residual metrics (:mod:`.measure`), its
    8-bit rendered ``image`` and the scan step in that image's pixels."""
    from ..diagnose.io import to_recon
    from ..diagnose.measure import measure

    ms, _ = measure(to_recon(image, "rendered image"), scan_step=step_px_image)
    out = {f"res_{k}": float(metrics[k]) for k in RESIDUALS}
    out |= {f"img_{k}": float(ms[k].value or 0.0) for k in IMAGE}
    out |= {f"img_{k}": v for k, v in streaks_and_grain(image).items()}
    return {k: (math.log1p(max(v, 0.0)) if k in LOG else v) for k, v in out.items()}


def matrix(rows: list[dict[str, float]]) -> np.ndarray:
    """Features in :data:`FEATURES` order, one row per reconstruction."""
    return np.array([[r[k] for k in FEATURES] for r in rows], dtype=np.float64)


def sample_features(sample: Sample) -> dict[str, float]:
    """:func:`features` of a built dataset's artifact sample: its stored metrics, its image,
    and the scan step in image pixels (the instrument's step on the field, scaled to the
    rendered size)."""
    from PIL import Image

    from .defects import Experiment, instrument_for

    where = f"sample {sample.id}"
    meta = sample.metadata
    if "metrics" not in meta or "experiment" not in meta or sample.image is None:
        raise DatasetError(f"{where}: not a simulated artifact sample (no metrics, experiment or image)")
    exp = Experiment.from_dict(meta["experiment"])
    g = exp.geometry
    with Image.open(sample.image) as im:
        image = np.asarray(im.convert("L"))
    return features(meta["metrics"], image, instrument_for(exp).step_px * image.shape[0] / g.roi)


def read_majority(path: Path | str) -> dict[str, frozenset[str]]:
    """``sample_id -> labels`` of a panel's ``majority.csv`` (``annotate panel``)."""
    import csv

    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such majority file (annotate panel writes majority.csv)") from None
    if not rows or not {"sample_id", "labels"} <= set(rows[0]):
        raise DatasetError(f"{path}: expected columns sample_id,labels (annotate panel's majority.csv)")
    return {r["sample_id"]: frozenset(x for x in r["labels"].split(";") if x) for r in rows}


def fit_panel(dataset: Dataset, majority: Sequence[Path | str], seed: int = 0) -> Labeller:
    """The labeller fitted to a calibration dataset's panel majority (every rated sample;
    one ``majority.csv`` per packet of a panel rated in parts)."""
    import hashlib

    by_id = {s.id: s for sp in dataset.split_names("artifacts") for s in dataset.samples("artifacts", sp)}
    labels: dict[str, frozenset[str]] = {}
    for path in majority:
        part = read_majority(path)
        twice = sorted(set(part) & set(labels))
        if twice:
            raise DatasetError(f"{path}: sample {twice[0]!r} is also in an earlier majority file")
        missing = sorted(set(part) - set(by_id))
        if missing:
            raise DatasetError(f"{path}: sample {missing[0]!r} is not in dataset {dataset.name!r} ({dataset.root})")
        labels |= part
    ids = sorted(labels)
    x = matrix([sample_features(by_id[i]) for i in ids])
    trained_on = {
        "dataset": dataset.name,
        "content_hash": dataset.manifest.get("content_hash"),
        "majority_sha256": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in majority],
        "n": len(ids),
    }
    return fit(x, [labels[i] for i in ids], seed=seed, trained_on=trained_on)


# --------------------------------------------------------------------------- model


@dataclass
class LabelModel:
    """One label's logistic model on standardised features, and its gray zone."""

    label: str
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    lo: float
    hi: float
    positives: int
    cv: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> np.ndarray:
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))


@dataclass
class Labeller:
    version: str
    features: list[str]
    models: list[LabelModel]
    not_learnt: dict[str, int]  # label -> panel positives, too few to learn
    cv: dict[str, Any]
    trained_on: dict[str, Any]

    def probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return {m.label: m.probability(x) for m in self.models}

    def label(self, x: np.ndarray) -> list[tuple[frozenset[str], frozenset[str]]]:
        """(labels, unsure labels) per row; labels are "No obvious artifacts" when none holds."""
        probs = self.probabilities(np.atleast_2d(x))
        out = []
        for i in range(np.atleast_2d(x).shape[0]):
            sure = {m.label for m in self.models if probs[m.label][i] >= m.hi}
            unsure = {m.label for m in self.models if m.lo <= probs[m.label][i] < m.hi}
            out.append((frozenset(sure or {NO_ARTIFACTS}), frozenset(unsure)))
        return out


def gray_zone(p: np.ndarray, y: np.ndarray, sure: float = SURE) -> tuple[float, float]:
    """(lo, hi): ``hi`` the lowest cut-off with precision >= ``sure`` above it, ``lo`` the
    highest (at most ``hi``) with negative predictive value >= ``sure`` below it. Where no
    cut-off reaches ``sure`` on a side, that side is empty (hi = 1.0 + eps, lo = 0.0)."""
    cands = np.unique(np.concatenate([p, [0.0]]))
    hi = 1.0 + 1e-9
    for t in cands:
        above = p >= t
        if above.any() and y[above].mean() >= sure:
            hi = float(t)
            break
    lo = 0.0
    for t in cands[::-1]:
        below = p < t
        if t <= hi and below.any() and (1 - y[below]).mean() >= sure:
            lo = float(t)
            break
    return lo, hi


def _kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    from ..annotate.agreement import kappa

    return kappa(a.astype(int), b.astype(int))


def fit(x: np.ndarray, panel: list[frozenset[str]], seed: int = 0, trained_on: dict | None = None) -> Labeller:
    """Per-label models fitted to the panel's majority (module doc), with out-of-fold
    figures: micro-F1 and per-label kappa of all images, and of the sure ones."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ..eval.metrics import binarize

    def model():
        # balanced: most labels are rare, and a rare label must not be learnt as "never"
        return make_pipeline(StandardScaler(), LogisticRegression(C=0.5, class_weight="balanced", max_iter=5000))

    y_all = binarize(panel, list(SCORED))
    models, not_learnt = [], {}
    oof = np.zeros(y_all.shape)
    for j, label in enumerate(SCORED):
        y = y_all[:, j]
        pos = int(y.sum())
        if pos < MIN_POSITIVES or len(y) - pos < MIN_POSITIVES:
            not_learnt[label] = pos
            continue
        folds = StratifiedKFold(min(FOLDS, pos, len(y) - pos), shuffle=True, random_state=seed)
        oof[:, j] = cross_val_predict(model(), x, y, cv=folds, method="predict_proba")[:, 1]
        lo, hi = gray_zone(oof[:, j], y)
        full = model().fit(x, y)
        scaler, lr = full[0], full[1]
        sure = (oof[:, j] < lo) | (oof[:, j] >= hi)
        models.append(
            LabelModel(
                label,
                scaler.mean_.tolist(),
                scaler.scale_.tolist(),
                lr.coef_[0].tolist(),
                float(lr.intercept_[0]),
                lo,
                hi,
                pos,
                {
                    "kappa": _kappa(oof[:, j] >= 0.5, y),
                    "kappa_sure": _kappa((oof[:, j] >= hi)[sure], y[sure]) if sure.any() else None,
                    "unsure": int((~sure).sum()),
                },
            )
        )
    learnt = [SCORED.index(m.label) for m in models]
    cv = _cv_summary(oof, y_all, learnt, [(m.lo, m.hi) for m in models])
    return Labeller(LABELLER_VERSION, list(FEATURES), models, not_learnt, cv, trained_on or {"n": len(panel)})


def _micro_f1(pred: np.ndarray, truth: np.ndarray) -> float | None:
    tp = int((pred & truth).sum())
    den = int(pred.sum() + truth.sum())
    return 2 * tp / den if den else None


def _cv_summary(oof: np.ndarray, y: np.ndarray, learnt: list[int], zones: list[tuple[float, float]]) -> dict:
    """Out-of-fold agreement with the panel over every scored label (a label not learnt
    is never assigned, so its positives count as misses): at 0.5, and on the images with
    no unsure label, their labels taken at ``hi``."""
    truth = y.astype(bool)
    pred = np.zeros_like(truth)
    pred_hi = np.zeros_like(truth)
    unsure = np.zeros(len(y), bool)
    for j, (lo, hi) in zip(learnt, zones):
        pred[:, j] = oof[:, j] >= 0.5
        pred_hi[:, j] = oof[:, j] >= hi
        unsure |= (oof[:, j] >= lo) & (oof[:, j] < hi)
    keep = ~unsure
    return {
        "n": len(y),
        "micro_f1": _micro_f1(pred, truth),
        "sure_n": int(keep.sum()),
        "sure_micro_f1": _micro_f1(pred_hi[keep], truth[keep]) if keep.any() else None,
        "left_out_per_label": {
            SCORED[j]: int(((oof[:, j] >= lo) & (oof[:, j] < hi)).sum()) for j, (lo, hi) in zip(learnt, zones)
        },
    }


# --------------------------------------------------------------------------- file


def save(labeller: Labeller, path: Path | str) -> Path:
    path = Path(path)
    path.write_text(json.dumps(asdict(labeller), indent=1) + "\n", encoding="utf-8")
    return path


def load(path: Path | str) -> Labeller:
    """A labeller file written by :func:`save`; one clear error for anything else."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        models = [LabelModel(**m) for m in d.pop("models")]
        lab = Labeller(models=models, **d)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such labeller file") from None
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as e:
        raise DatasetError(f"{path}: not a labeller file ({e})") from None
    if lab.features != list(FEATURES):
        raise DatasetError(f"{path}: labeller {lab.version} was fitted on other features; refit it")
    return lab


def main(
    dataset: str,
    out: Path,
    majority: list[Path],
    seed: int = 0,
) -> None:
    """Fit the labeller to a panel's majority.csv files on a calibration dataset and write it.

    Example: python -m ptychobench.sim.labeller /work/calib/build src/ptychobench/sim/labeller-3.0.json a/majority.csv
    """
    import typer

    from ..data import load_dataset

    try:
        lab = fit_panel(load_dataset(dataset), majority, seed=seed)
    except DatasetError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    save(lab, out)
    cv = lab.cv
    typer.echo(
        f"wrote {out}: {len(lab.models)} labels learnt, not learnt {lab.not_learnt}; out-of-fold micro-F1 "
        f"{cv['micro_f1']}, {cv['sure_n']} of {cv['n']} images sure (micro-F1 there {cv['sure_micro_f1']}); "
        f"left out per label {cv['left_out_per_label']}"
    )


if __name__ == "__main__":  # pragma: no cover
    import typer

    typer.run(main)
