"""sim-v3's artifact labeller: per-label classifiers fitted to a blind panel's majority.

Why: two rounds of hand-set thresholds on residuals against the truth did not reach what
raters see (issue 24: micro-F1 0.33-0.38 against raters who agree with each other at
0.86). So the labels are fitted to the raters, with the physics as evidence:

- :func:`features`: what the rendered image shows (the truth-free measurements of
  ``diagnose``, taken on the 8-bit image exactly as a user's PNG is read, with the scan
  lattice looked for whatever the scan pattern, since a spiral scan can leave a lattice
  imprint too), image measurements of streaks, grain and appearance (contrast, detail per
  scale, sharpness, the rim, periodicity, patchiness: :func:`appearance`), the residuals against the
  truth that :mod:`.measure` already computes (:data:`RESIDUALS`), and a frozen image
  embedding (:func:`embedding`: the offline ImageNet EfficientNet-Lite0's mid-level block
  outputs, mean- and std-pooled), which sees the whole-picture look raters judge at a
  glance (lines, a lattice, no structure) that the hand-made measurements miss
  (out-of-fold micro-F1 0.575 without it; see ``benchmarks/sim-v3-calib/README.md``).
- :func:`fit`: one standardised, class-balanced logistic regression per label
  (scikit-learn) on the panel's majority, its regularisation chosen per label by an
  inner cross-validation (:data:`CS`). Out-of-fold probabilities (stratified k-fold, the
  inner choice redone in each outer fold) give the labeller's cross-validated agreement
  with the panel. The gray zone (:func:`gray_zone`) leaves out the :data:`LEFT_OUT`
  share of calibration images whose least sure label is nearest the 0.5 decision; it is
  set from the probabilities alone, so the agreement on the kept images is not tuned
  to the panel's labels. An image unsure of any label is left out of the shipped splits.
- :func:`save` / :func:`load`: the fitted models as JSON (the shared feature means and
  scales, per-label coefficients, cut-offs, cross-validated figures): a versioned, reviewable file inside the package,
  no pickle. :func:`Labeller.probabilities` recomputes what scikit-learn would.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset, DatasetError, Sample
from ..tasks import ARTIFACT_LABELS, NO_ARTIFACTS

LABELLER_VERSION = "3.1"
#: the labeller fitted on the calibration panel (``benchmarks/labeller_panel.py --labeller``)
SHIPPED = Path(__file__).with_name(f"labeller-{LABELLER_VERSION}.json")
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
#: new image measurements (:func:`streaks_and_grain`, :func:`appearance`)
APPEARANCE = (
    "std", "iqr", "p90", "entropy", "sat", "band1", "band2", "band4", "band8", "band16", "lowvar",
    "grad_p99", "grad_ratio", "lap_var", "sharp", "border_fine", "border_grad", "flat_noise",
    "flat_noise_rel", "rowcol", "ac_peak", "spec_peak", "spec_top", "bg_blotch", "tile_mean_sd",
    "tile_std_cv", "tile_std_min",
)  # fmt: skip
EXTRA = ("streak_concentration", "grain", "speckle", *APPEARANCE)
#: heavy-tailed features enter as log(1 + x)
LOG = {"res_grid_peak", "res_grid_truth_peak", "res_vortices", "res_lines_concentration", "img_grid_peak"}
#: EfficientNet-Lite0 block -> its output channels: the last block of stages 2-6 (strides
#: 4-16 at 256 px: grain, edges, lattices and shapes; the 1280-wide head adds nothing here)
BLOCKS = {2: 24, 4: 40, 7: 80, 10: 112, 14: 192}
EMBED_PX = 256  # the encoder sees the image at the size a rater's sheet shows it
EMBEDDING = tuple(f"emb_b{b}_{stat}{k}" for b, c in BLOCKS.items() for stat in ("mean", "std") for k in range(c))
FEATURES = (
    *(f"res_{k}" for k in RESIDUALS),
    *(f"img_{k}" for k in IMAGE),
    *(f"img_{k}" for k in EXTRA),
    *EMBEDDING,
)
MIN_POSITIVES = 5  # a label the panel gave fewer times is not learnt (and never assigned)
LEFT_OUT = 0.25  # share of calibration images the gray zone leaves out (the least sure ones)
CS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # inverse regularisation strengths tried per label (inner CV)
FOLDS = 5
INNER_FOLDS = 3


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


def appearance(img: np.ndarray) -> dict[str, float]:
    """What a rater's eye takes in at a glance of the 8-bit image (:data:`APPEARANCE`).

    Contrast (grey-level spread, entropy, clipped share), detail per scale (share of the
    energy in Gaussian bands of 1-16 px: grain at the fine end, blotches at the coarse
    end), edge sharpness (gradient peaks, Laplacian), the border against the centre (the
    ragged rim of a scan), grain on flat areas, row/column streaks, periodicity (the
    autocorrelation and spectral peaks of the detail) and the spread of local mean and
    local detail over an 8 x 8 tiling (a non-uniform background)."""
    from scipy import ndimage

    a = img.astype(np.float64) / 255.0
    n0, n1 = a.shape
    p5, p25, p75, p95 = np.percentile(a, [5, 25, 75, 95])
    h = np.bincount(img.ravel(), minlength=256) / img.size
    out = {
        "std": a.std(),
        "iqr": p75 - p25,
        "p90": p95 - p5,
        "entropy": -(h[h > 0] * np.log2(h[h > 0])).sum(),
        "sat": ((img <= 2) | (img >= 253)).mean(),
    }
    energy, prev = [], a
    for s in (1, 2, 4, 8, 16):
        g = ndimage.gaussian_filter(a, s)
        energy.append(((prev - g) ** 2).mean())
        prev = g
    e = np.array(energy) + 1e-12
    out |= {f"band{s}": v / e.sum() for s, v in zip((1, 2, 4, 8, 16), e)}
    out["lowvar"] = ((prev - prev.mean()) ** 2).mean() / (a.var() + 1e-12)
    gm = np.hypot(ndimage.sobel(a, 0), ndimage.sobel(a, 1))
    a2 = ndimage.gaussian_filter(a, 2)
    gm2 = np.hypot(ndimage.sobel(a2, 0), ndimage.sobel(a2, 1))
    out |= {
        "grad_p99": np.percentile(gm, 99),
        "grad_ratio": np.percentile(gm, 99) / (gm.mean() + 1e-9),
        "lap_var": ndimage.laplace(a).var() / (a.var() + 1e-12),
        "sharp": np.percentile(gm, 99) / (np.percentile(gm2, 99) + 1e-9),
    }
    b = max(n0 // 10, 4)
    rim = np.zeros_like(a, bool)
    rim[:b] = rim[-b:] = True
    rim[:, :b] = rim[:, -b:] = True
    fine = a - ndimage.gaussian_filter(a, 1.0)
    flat = gm2 < np.percentile(gm2, 30)
    out |= {
        "border_fine": np.sqrt((fine[rim] ** 2).mean()) / (np.sqrt((fine[~rim] ** 2).mean()) + 1e-9),
        "border_grad": gm[rim].mean() / (gm[~rim].mean() + 1e-9),
        "flat_noise": np.median(np.abs(fine[flat])) * 1.4826,
    }
    out["flat_noise_rel"] = out["flat_noise"] / (out["p90"] + 1e-9)
    hp = a - ndimage.gaussian_filter(a, 3)
    out["rowcol"] = (hp.mean(1).var() + hp.mean(0).var()) / (hp.var() + 1e-12)
    f = np.fft.fft2(hp)
    ac = np.fft.fftshift(np.real(np.fft.ifft2(np.abs(f) ** 2)))
    ac /= ac[n0 // 2, n1 // 2] + 1e-12
    yy, xx = np.mgrid[:n0, :n1]
    rr = np.hypot(yy - n0 // 2, xx - n1 // 2)
    ps = (np.abs(np.fft.fftshift(f)) ** 2)[(rr / n0 > 0.02) & (rr / n0 < 0.35)]
    out |= {
        "ac_peak": ac[(rr > 5) & (rr < n0 / 4)].max(),
        "spec_peak": np.log(ps.max() / (np.median(ps) + 1e-20) + 1e-20),
        "spec_top": np.sort(ps)[-20:].sum() / (ps.sum() + 1e-20),
        "bg_blotch": ndimage.gaussian_filter(a, 12).std() / (a.std() + 1e-9),
    }
    t = a[: n0 // 8 * 8, : n1 // 8 * 8].reshape(8, n0 // 8, 8, n1 // 8)
    stds = t.std((1, 3))
    out |= {
        "tile_mean_sd": t.mean((1, 3)).std(),
        "tile_std_cv": stds.std() / (stds.mean() + 1e-9),
        "tile_std_min": stds.min() / (stds.mean() + 1e-9),
    }
    return {k: float(out[k]) for k in APPEARANCE}


@functools.cache
def _encoder() -> tuple[Any, dict[int, Any]]:
    """The frozen encoder, loaded once per process, and the block outputs it leaves behind
    on each forward pass (forward hooks on :data:`BLOCKS`)."""
    from ..models.assets import load_efficientnet_lite0

    net = load_efficientnet_lite0()
    taps: dict[int, Any] = {}
    for b in BLOCKS:
        net._blocks[b].register_forward_hook(lambda _m, _i, out, b=b: taps.__setitem__(b, out))
    return net, taps


def embedding(image: np.ndarray) -> np.ndarray:
    """:data:`EMBEDDING` of an 8-bit image: each block's output channels averaged and
    their spread over the image (std: texture strength, e.g. grain or a lattice), as the
    rater sees it (grey, :data:`EMBED_PX` wide)."""
    import torch
    from PIL import Image

    from ..strategies.embeddings import efficientnet_pixels

    net, taps = _encoder()
    with torch.no_grad():
        net.extract_features(efficientnet_pixels([Image.fromarray(image)], EMBED_PX))
        out = [torch.cat([taps[b].mean((2, 3)), taps[b].std((2, 3))], 1)[0] for b in BLOCKS]
    return torch.cat(out).double().numpy()


def features(metrics: dict[str, Any], image: np.ndarray, step_px_image: float) -> dict[str, float]:
    """Every feature of one reconstruction: its residual metrics (:mod:`.measure`), its
    8-bit rendered ``image`` and the scan step in that image's pixels."""
    from ..diagnose.io import to_recon
    from ..diagnose.measure import measure

    ms, _ = measure(to_recon(image, "rendered image"), scan_step=step_px_image)
    out = {f"res_{k}": float(metrics[k]) for k in RESIDUALS}
    out |= {f"img_{k}": float(ms[k].value or 0.0) for k in IMAGE}
    out |= {f"img_{k}": v for k, v in streaks_and_grain(image).items()}
    out |= {f"img_{k}": v for k, v in appearance(image).items()}
    out = {k: (math.log1p(max(v, 0.0)) if k in LOG else v) for k, v in out.items()}
    return out | dict(zip(EMBEDDING, embedding(image).tolist()))


def matrix(rows: list[dict[str, float]]) -> np.ndarray:
    """Features in :data:`FEATURES` order, one row per reconstruction."""
    return np.array([[r[k] for k in FEATURES] for r in rows], dtype=np.float64)


def sample_features(sample: Sample) -> dict[str, float]:
    """:func:`features` of a built dataset's artifact sample: its stored metrics, its image,
    and the scan step in image pixels (the instrument's step on the field, scaled to the
    rendered size)."""
    from PIL import Image

    from ..sim.defects import Experiment, instrument_for

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


def read_panel(majority: Sequence[Path | str]) -> dict[str, frozenset[str]]:
    """``sample_id -> labels`` of a panel rated in parts (one ``majority.csv`` per packet);
    an image in two parts is refused."""
    labels: dict[str, frozenset[str]] = {}
    for path in majority:
        part = read_majority(path)
        twice = sorted(set(part) & set(labels))
        if twice:
            raise DatasetError(f"{path}: sample {twice[0]!r} is also in an earlier majority file")
        labels |= part
    return labels


@dataclass
class PanelFeatures:
    """:data:`FEATURES` of a calibration build's rated images, one row per id. Saved beside
    the panel (``benchmarks/sim-v3-calib/features.npz``) so the labeller can be refitted,
    and its figures rerun, without the build (hours of simulation)."""

    ids: list[str]
    x: np.ndarray
    dataset: str
    content_hash: str | None

    def rows(self, ids: Sequence[str], where: str) -> np.ndarray:
        index = {i: k for k, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in index]
        if missing:
            raise DatasetError(f"{where}: sample {missing[0]!r} has no features (not in {self.dataset!r})")
        return self.x[[index[i] for i in ids]]


def panel_features(dataset: Dataset, ids: Sequence[str], where: str = "panel") -> PanelFeatures:
    """:func:`sample_features` of a calibration dataset's samples ``ids`` (``where``: the
    files that named them, for the error)."""
    by_id = {s.id: s for sp in dataset.split_names("artifacts") for s in dataset.samples("artifacts", sp)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DatasetError(f"{where}: sample {missing[0]!r} is not in dataset {dataset.name!r} ({dataset.root})")
    x = matrix([sample_features(by_id[i]) for i in ids])
    return PanelFeatures(list(ids), x, dataset.name, dataset.manifest.get("content_hash"))


def save_features(pf: PanelFeatures, path: Path | str) -> Path:
    """As ``.npz`` (float32: ~1 MB for 340 images), with the feature names to check on load."""
    path = Path(path)
    meta = json.dumps({"dataset": pf.dataset, "content_hash": pf.content_hash})
    with path.open("wb") as f:
        np.savez_compressed(f, ids=np.array(pf.ids), x=pf.x.astype(np.float32), names=np.array(FEATURES), meta=meta)
    return path


def load_features(path: Path | str) -> PanelFeatures:
    """A file written by :func:`save_features`; one clear error for anything else."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            names, ids, x, meta = list(z["names"]), [str(i) for i in z["ids"]], z["x"], json.loads(str(z["meta"]))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such features file") from None
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: not a labeller features file ({e})") from None
    if names != list(FEATURES):
        raise DatasetError(f"{path}: features of another labeller version; recompute them from the build")
    return PanelFeatures(ids, x.astype(np.float64), meta["dataset"], meta["content_hash"])


def fit_panel(source: Dataset | PanelFeatures, majority: Sequence[Path | str], seed: int = 0) -> Labeller:
    """The labeller fitted to a panel's majority (every rated sample; one ``majority.csv``
    per packet of a panel rated in parts), on a calibration dataset or its saved features."""
    labels = read_panel(majority)
    ids = sorted(labels)
    where = ", ".join(str(p) for p in majority)
    pf = panel_features(source, ids, where) if isinstance(source, Dataset) else source
    x = pf.rows(ids, where)
    return fit(x, [labels[i] for i in ids], seed=seed, trained_on=provenance(pf, majority))


def provenance(pf: PanelFeatures, majority: Sequence[Path | str]) -> dict[str, Any]:
    """What a labeller was fitted on (its file's ``trained_on``): the build, and the panel
    files by hash, so a test can tell a stale file from a refit."""
    import hashlib

    n = len(read_panel(majority))
    digests = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in majority]
    return {"dataset": pf.dataset, "content_hash": pf.content_hash, "majority_sha256": digests, "n": n}


# --------------------------------------------------------------------------- model


@dataclass
class LabelModel:
    """One label's logistic model on the standardised features, and its gray zone."""

    label: str
    coef: list[float]
    intercept: float
    lo: float
    hi: float
    positives: int
    cv: dict[str, Any] = field(default_factory=dict)

    def probability(self, z: np.ndarray) -> np.ndarray:
        """``z``: standardised features (:meth:`Labeller.standardise`)."""
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))


@dataclass
class Labeller:
    version: str
    features: list[str]
    mean: list[float]  # the standardisation, the same for every label (one fit on the panel)
    scale: list[float]
    models: list[LabelModel]
    not_learnt: dict[str, int]  # label -> panel positives, too few to learn
    cv: dict[str, Any]
    trained_on: dict[str, Any]

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(x) - np.asarray(self.mean)) / np.asarray(self.scale)

    def probabilities(self, x: np.ndarray) -> dict[str, np.ndarray]:
        z = self.standardise(x)
        return {m.label: m.probability(z) for m in self.models}

    def label(self, x: np.ndarray) -> list[tuple[frozenset[str], frozenset[str]]]:
        """(labels, unsure labels) per row; labels are "No obvious artifacts" when none holds."""
        probs = self.probabilities(np.atleast_2d(x))
        out = []
        for i in range(np.atleast_2d(x).shape[0]):
            sure = {m.label for m in self.models if probs[m.label][i] >= m.hi}
            unsure = {m.label for m in self.models if m.lo <= probs[m.label][i] < m.hi}
            out.append((frozenset(sure or {NO_ARTIFACTS}), frozenset(unsure)))
        return out


def gray_zone(oof: np.ndarray, share: float = LEFT_OUT) -> tuple[float, float]:
    """(lo, hi), the same for every label: an image is unsure when any label's probability
    lies within a logit margin ``w`` of the 0.5 decision, ``w`` set so that ``share`` of the
    calibration images (columns of ``oof``: out-of-fold probabilities of the learnt labels)
    are unsure. The cut-offs use the probabilities only, not the panel's labels, so the
    agreement measured on the images they keep is not tuned to those labels."""
    p = np.clip(oof, 1e-12, 1 - 1e-12)
    margin = np.abs(np.log(p / (1 - p))).min(axis=1)
    w = float(np.quantile(margin, share)) if share > 0 else 0.0
    return float(1 / (1 + math.exp(w))), float(1 / (1 + math.exp(-w)))


def _kappa(a: np.ndarray, b: np.ndarray) -> float | None:
    from ..annotate.agreement import kappa

    return kappa(a.astype(int), b.astype(int))


def _model(seed: int) -> Any:
    """One label's model: standardised features, class-balanced logistic regression (most
    labels are rare, and a rare label must not be learnt as "never"), its L2 strength
    chosen by an inner CV on log-loss (~100-350 images, ~950 features)."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)
    lr = LogisticRegressionCV(Cs=list(CS), cv=inner, scoring="neg_log_loss", class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), lr)


def learnable(y: np.ndarray) -> bool:
    pos = int(y.sum())
    return pos >= MIN_POSITIVES and len(y) - pos >= MIN_POSITIVES


def out_of_fold(x: np.ndarray, panel: list[frozenset[str]], seed: int = 0) -> np.ndarray:
    """Out-of-fold probabilities (images x :data:`SCORED`; 0 for a label not learnt):
    stratified k-fold per label, the inner choice of C redone in each outer fold (nested),
    so no image's own rating reaches its prediction."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from ..eval.metrics import binarize

    y_all = binarize(panel, list(SCORED))
    oof = np.zeros(y_all.shape)
    for j in range(len(SCORED)):
        y = y_all[:, j]
        if learnable(y):
            pos = int(y.sum())
            folds = StratifiedKFold(min(FOLDS, pos, len(y) - pos), shuffle=True, random_state=seed)
            oof[:, j] = cross_val_predict(_model(seed), x, y, cv=folds, method="predict_proba")[:, 1]
    return oof


def fit(
    x: np.ndarray,
    panel: list[frozenset[str]],
    seed: int = 0,
    trained_on: dict | None = None,
    oof: np.ndarray | None = None,
    cross_validate: bool = True,
    names: Sequence[str] = FEATURES,
) -> Labeller:
    """Per-label models fitted to the panel's majority (module doc), with out-of-fold
    figures (:func:`out_of_fold`, or ``oof`` if already computed): micro-F1 and per-label
    kappa of all images, and of the sure ones. ``cross_validate=False`` skips them (and
    the gray zone: lo = hi = 0.5), for a fit judged on other data. ``names``: the columns
    of ``x`` (another set than :data:`FEATURES` makes a labeller :func:`load` refuses)."""
    from ..eval.metrics import binarize

    if x.shape[1] != len(names):
        raise ValueError(f"{x.shape[1]} feature columns for {len(names)} names")
    y_all = binarize(panel, list(SCORED))
    if oof is None and cross_validate:
        oof = out_of_fold(x, panel, seed)
    fitted, not_learnt = [], {}
    for j, label in enumerate(SCORED):
        if learnable(y_all[:, j]):
            fitted.append((j, label, int(y_all[:, j].sum()), _model(seed).fit(x, y_all[:, j])))
        else:
            not_learnt[label] = int(y_all[:, j].sum())
    learnt = [j for j, *_ in fitted]
    lo, hi = gray_zone(oof[:, learnt]) if learnt and oof is not None else (0.5, 0.5)
    models = []
    for j, label, pos, full in fitted:
        lr = full[1]
        cv: dict[str, Any] = {"C": float(np.ravel(lr.C_)[0])}
        if oof is not None:
            p, y = oof[:, j], y_all[:, j]
            sure = (p < lo) | (p >= hi)
            cv |= {
                "f1": _micro_f1(p >= 0.5, y.astype(bool)),
                "kappa": _kappa(p >= 0.5, y),
                "kappa_sure": _kappa((p >= hi)[sure], y[sure]) if sure.any() else None,
                "unsure": int((~sure).sum()),
            }
        models.append(LabelModel(label, lr.coef_[0].tolist(), float(lr.intercept_[0]), lo, hi, pos, cv))
    # every label's scaler is fitted on the same x: one standardisation for all
    scaler = fitted[0][3][0] if fitted else None
    mean = scaler.mean_.tolist() if scaler is not None else x.mean(0).tolist()
    scale = scaler.scale_.tolist() if scaler is not None else np.ones(x.shape[1]).tolist()
    summary = _cv_summary(oof, y_all, learnt, [(lo, hi)] * len(learnt)) if oof is not None else {}
    return Labeller(
        LABELLER_VERSION, list(names), mean, scale, models, not_learnt, summary, trained_on or {"n": len(panel)}
    )


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


def _rounded(v: Any) -> Any:
    """Floats to 7 significant digits (probabilities move by ~1e-7): a file of ~150 kB."""
    if isinstance(v, float):
        return float(f"{v:.7g}")
    if isinstance(v, list):
        return [_rounded(u) for u in v]
    if isinstance(v, dict):
        return {k: _rounded(u) for k, u in v.items()}
    return v


def save(labeller: Labeller, path: Path | str) -> Path:
    """Indented JSON, each list of numbers on one line (a reviewable diff per label)."""
    import re

    path = Path(path)
    text = json.dumps(_rounded(asdict(labeller)), indent=1)
    text = re.sub(r"\[\s+([-0-9.eE+,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")
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
    source: str,
    out: Path,
    majority: list[Path],
    seed: int = 0,
    save_features_to: Path | None = None,
) -> None:
    """Fit the labeller to a panel's majority.csv files and write it. SOURCE: the calibration
    build (its images are measured and embedded, a few minutes) or a features file that
    --save-features-to wrote (seconds to load; the fit itself takes minutes).

    Example: python -m ptychobench.labelling.labeller CALIB_BUILD OUT.json part1/majority.csv part2/majority.csv
    """
    import typer

    from ..data import load_dataset

    try:
        if source.endswith(".npz"):
            pf = load_features(source)
        else:
            ids = sorted(read_panel(majority))
            pf = panel_features(load_dataset(source), ids, ", ".join(map(str, majority)))
        if save_features_to is not None:
            save_features(pf, save_features_to)
        lab = fit_panel(pf, majority, seed=seed)
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
