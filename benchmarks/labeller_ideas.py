"""Ideas to raise the sim-v3 labeller's agreement with its calibration panel (issue 24),
each measured the same honest way: ``benchmarks/sim-v3-calib/README.md``'s table.

Every idea is scored twice against the panel majority (micro-F1 over the 11 scored
labels, and the precision of "No obvious artifacts", given when no label is assigned):

- out of fold: one 5-fold split of the 340 images shared by every idea (so ideas that
  look at all labels at once, a threshold or a stack, see the same folds); any choice
  (C, a threshold, a feature set) is made inside the training folds only (nested);
- held out by part: fitted on part 1 (111 images, raters 1-3), scored on part 2 (229
  images, raters 4-6, the test-ood instrument among them).

The baseline is labelling 3.1 (``labeller.py``: per-label class-balanced logistic
regression on every feature, C by an inner 3-fold CV, decision at 0.5); on these shared
folds it scores a little differently from ``labeller.md``'s per-label stratified folds.

New image measurements (:func:`shape`: wrap jumps and the phase residues where a wrap
line ends inside the image, plane and quadratic fits of the smoothed image, how much
of the image sits in one grey band) need the calibration build's images; ``--images
DIR`` measures them and writes ``sim-v3-calib/shape.npz`` so a rerun needs no build.

Example (about 10 min on 2 shared cores):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/labeller_ideas.py \\
        --out benchmarks/sim-v3-calib/ideas.md [--images /work/calib/build/artifacts/images]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from labeller_panel import PANEL, _cpu, micro, raters
from ptychobench.eval.metrics import binarize
from ptychobench.labelling import labeller as lb
from ptychobench.tasks import NO_ARTIFACTS

SHAPE = (
    "wrap_px",
    "residues",
    "plane_r2",
    "quad_r2",
    "plane_amp",
    "grey_near_median",
    "grey_peak",
    "bg_range",
    "spots",
)
WRAP_STEP = 0.3  # a grey step above this share of the range is read as a wrap (residues)
BLOCK = 16  # residues: tiles over which a wrap line's +/- pairs cancel
THRESHOLDS = np.linspace(0.2, 0.8, 25)  # decision cut-offs an inner CV may pick


# --------------------------------------------------------------------------- new measurements


def residues(img: np.ndarray, border: int = 8) -> int:
    """Phase residues of the 8-bit image read as a wrapped phase (black..white = one turn):
    2 x 2 pixel loops around which the wrapped differences add to a whole turn. A wrap
    line that crosses the image (a ramp wrapped by the viewer) has none; a wrap line that
    ends inside it has one at its end (what raters call a singularity). The render's
    bilinear resampling spreads a jump over ~2 pixels (steps of ~0.45 turn), so a step of
    more than :data:`WRAP_STEP` of the grey range counts as a wrap. Loops within
    ``border`` pixels of the edge are not counted (a line leaving the image is no end).
    Imperfect: the resampled jump can leave +/- pairs on either side of a tile border, so
    a steep wrapped ramp (a wrap line every ~20 px) counts tens of ends."""
    ph = img.astype(np.float64) / 255.0  # in turns

    def wrap(d: np.ndarray) -> np.ndarray:
        return d - np.sign(d) * (np.abs(d) > WRAP_STEP)

    loop = (
        wrap(ph[:-1, 1:] - ph[:-1, :-1])
        + wrap(ph[1:, 1:] - ph[:-1, 1:])
        + wrap(ph[1:, :-1] - ph[1:, 1:])
        + wrap(ph[:-1, :-1] - ph[1:, :-1])
    )
    charge = np.round(loop)[border:-border, border:-border]
    # a jump spread unevenly along a wrap line leaves +/- pairs a pixel apart: count the
    # BLOCK x BLOCK tiles whose net charge is not zero (an end of a wrap line)
    n0, n1 = (s // BLOCK * BLOCK for s in charge.shape)
    net = charge[:n0, :n1].reshape(n0 // BLOCK, BLOCK, n1 // BLOCK, BLOCK).sum((1, 3))
    return int((net != 0).sum())


def shape(img: np.ndarray) -> dict[str, float]:
    """:data:`SHAPE` of an 8-bit image: wrap jumps (share of near-full-range steps over
    2 px, the bilinear render spreads a jump on ~2 px) and residues (:func:`residues`,
    as log(1 + n)); the share of the smoothed image a plane or a quadratic explains and
    the plane's slope (a phase ramp; a curved background); the share of pixels within
    8% of the grey range of the median and the fullest of 32 grey bins (low contrast:
    a few outliers stretch the display window); the range of the 16-px low-pass (a
    non-uniform background) and the share of clipped pixels."""
    a = img.astype(np.float64) / 255.0
    jump = np.zeros_like(a, bool)
    jump[1:-1, :] |= np.abs(a[2:, :] - a[:-2, :]) > 0.6
    jump[:, 1:-1] |= np.abs(a[:, 2:] - a[:, :-2]) > 0.6
    s = ndimage.gaussian_filter(a, 4)[::4, ::4]
    yy, xx = np.mgrid[: s.shape[0], : s.shape[1]] / s.shape[0] - 0.5
    plane = np.stack([np.ones_like(xx), xx, yy], -1).reshape(-1, 3)
    quad = np.concatenate([plane, np.stack([xx * xx, yy * yy, xx * yy], -1).reshape(-1, 3)], 1)
    v = s.ravel()
    total = ((v - v.mean()) ** 2).sum() + 1e-12
    c1 = np.linalg.lstsq(plane, v, rcond=None)[0]
    c2 = np.linalg.lstsq(quad, v, rcond=None)[0]
    low = ndimage.gaussian_filter(a, 16)
    out = {
        "wrap_px": jump.mean(),
        "residues": np.log1p(residues(img)),
        "plane_r2": 1 - ((v - plane @ c1) ** 2).sum() / total,
        "quad_r2": 1 - ((v - quad @ c2) ** 2).sum() / total,
        "plane_amp": np.hypot(c1[1], c1[2]),
        "grey_near_median": (np.abs(a - np.median(a)) < 0.08).mean(),
        "grey_peak": (np.histogram(a, 32, (0, 1))[0] / a.size).max(),
        "bg_range": np.percentile(low, 98) - np.percentile(low, 2),
        "spots": ((a > 0.97) | (a < 0.03)).mean(),
    }
    return {k: float(out[k]) for k in SHAPE}


def shape_features(ids: list[str], images: Path | None, path: Path) -> np.ndarray:
    """:func:`shape` of every rated image, measured from ``images`` (the build's
    ``artifacts/images``) and saved to ``path``, or read back from ``path``."""
    if images is not None:
        from PIL import Image

        rows = []
        for i in ids:
            with Image.open(images / f"{i}.png") as im:
                rows.append([shape(np.asarray(im.convert("L")))[k] for k in SHAPE])
        np.savez_compressed(path, ids=np.array(ids), x=np.array(rows), names=np.array(SHAPE))
    if not path.exists():
        sys.exit(f"error: {path}: no shape measurements; pass --images DIR (the calibration build's images)")
    with np.load(path) as z:
        if list(z["ids"]) != ids or list(z["names"]) != list(SHAPE):
            sys.exit(f"error: {path}: measured on other images or other measurements; rerun with --images DIR")
        return z["x"]


# --------------------------------------------------------------------------- models


def logistic(x: np.ndarray, y: np.ndarray, seed: int, cv=None, scale: bool = True):  # noqa: ANN001, ANN201
    """Labelling 3.1's model (``lb._model``), or the same with the given inner splits, or
    (``scale=False``) on columns already standardised (and weighted) by the caller."""
    if cv is None and scale:
        return lb._model(seed).fit(x, y)
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cv = cv if cv is not None else StratifiedKFold(lb.INNER_FOLDS, shuffle=True, random_state=seed)
    lr = LogisticRegressionCV(Cs=list(lb.CS), cv=cv, scoring="neg_log_loss", class_weight="balanced", max_iter=5000)
    return make_pipeline(StandardScaler(), lr).fit(x, y) if scale else lr.fit(x, y)


def per_label(fit: Callable, x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
    """Probabilities on ``te`` of one model per learnable label fitted on ``tr``."""
    p = np.zeros((len(te), y.shape[1]))
    for j in range(y.shape[1]):
        if lb.learnable(y[tr, j]):
            p[:, j] = fit(x[tr], y[tr, j]).predict_proba(x[te])[:, 1]
    return p


def inner_oof(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """3-fold out-of-fold probabilities of the 3.1 model inside a training set (for a
    choice made on the training folds only: a threshold, a stack)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    p = np.zeros(y.shape)
    for j in range(y.shape[1]):
        if lb.learnable(y[:, j]):
            k = min(3, int(y[:, j].sum()), int(len(y) - y[:, j].sum()))
            folds = StratifiedKFold(k, shuffle=True, random_state=seed)
            p[:, j] = cross_val_predict(lb._model(seed), x, y[:, j], cv=folds, method="predict_proba")[:, 1]
    return p


def best_threshold(p: np.ndarray, y: np.ndarray) -> float:
    return float(THRESHOLDS[int(np.argmax([micro(p >= t, y) for t in THRESHOLDS]))])


class Idea:
    """An idea: ``predict(tr, te) -> labels of te`` (bool, images x labels), every choice
    made on ``tr`` only."""

    def __init__(self, x: np.ndarray, y: np.ndarray, extra: np.ndarray, rated: dict, ids: list[str], seed: int):
        self.x, self.y, self.extra, self.rated, self.ids, self.seed = x, y, extra, rated, ids, seed
        self.emb = np.array([f.startswith("emb_") for f in lb.FEATURES])

    def fit3(self, x: np.ndarray, y: np.ndarray):  # noqa: ANN201
        return logistic(x, y, self.seed)

    def base(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        return per_label(self.fit3, self.x, self.y, tr, te) >= 0.5

    def thresholds(self, tr: np.ndarray, te: np.ndarray, one: bool) -> np.ndarray:
        """Decision cut-offs picked on the training folds' own out-of-fold probabilities
        for micro-F1: one for every label, or one per label."""
        inner = inner_oof(self.x[tr], self.y[tr], self.seed)
        p = per_label(self.fit3, self.x, self.y, tr, te)
        if one:
            return p >= best_threshold(inner, self.y[tr])
        cut = [best_threshold(inner[:, j], self.y[tr, j]) for j in range(self.y.shape[1])]
        return p >= np.array(cut)

    def stack(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        """Label co-occurrence: a second logistic model per label on every label's
        first-stage logit (out of fold inside the training folds)."""
        from sklearn.linear_model import LogisticRegression

        def logit(p: np.ndarray) -> np.ndarray:
            p = np.clip(p, 1e-6, 1 - 1e-6)
            return np.log(p / (1 - p))

        inner, p = inner_oof(self.x[tr], self.y[tr], self.seed), per_label(self.fit3, self.x, self.y, tr, te)
        out = np.zeros_like(p, dtype=bool)
        for j in range(self.y.shape[1]):
            if lb.learnable(self.y[tr, j]):
                m = LogisticRegression(class_weight="balanced", max_iter=2000).fit(logit(inner), self.y[tr, j])
                out[:, j] = m.predict_proba(logit(p))[:, 1] >= 0.5
        return out

    def model(self, tr: np.ndarray, te: np.ndarray, kind: str) -> np.ndarray:
        """Another model class: gradient-boosted trees on the hand-made measurements (trees
        on ~950 embedding columns and 270 images overfit), or an RBF SVM (C by inner CV)."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.model_selection import GridSearchCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        if kind == "hgb":
            x = np.hstack([self.x[:, ~self.emb], self.extra])
            hgb = {"max_iter": 150, "learning_rate": 0.05, "max_depth": 3, "min_samples_leaf": 8}

            def fit(a: np.ndarray, b: np.ndarray):  # noqa: ANN202
                m = HistGradientBoostingClassifier(**hgb, class_weight="balanced", random_state=self.seed)
                return m.fit(a, b)
        else:
            x = self.x

            def fit(a: np.ndarray, b: np.ndarray):  # noqa: ANN202
                svc = SVC(class_weight="balanced", probability=True, random_state=self.seed)
                grid = GridSearchCV(svc, {"C": [0.3, 1, 3]}, cv=3, scoring="neg_log_loss")
                return make_pipeline(StandardScaler(), grid).fit(a, b)

        return per_label(fit, x, self.y, tr, te) >= 0.5

    def with_shape(self, tr: np.ndarray, te: np.ndarray, weight: float = 1.0) -> np.ndarray:
        """3.1's model with :func:`shape` added; ``weight`` > 1 scales the hand-made and
        shape columns after standardising (weaker L2 on them than on the embedding)."""
        x = np.hstack([self.x, self.extra])
        hand = np.r_[~self.emb, np.ones(self.extra.shape[1], bool)]
        if weight == 1.0:
            return per_label(self.fit3, x, self.y, tr, te) >= 0.5
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-12  # standardised on the training folds
        z = (x - mu) / sd
        z[:, hand] *= weight
        return per_label(lambda a, b: logistic(a, b, self.seed, scale=False), z, self.y, tr, te) >= 0.5

    def feature_set(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        """Per label, the feature set (hand-made + shape, embedding, all) with the best
        inner 3-fold log-loss on the training folds, refitted on it."""
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        x = np.hstack([self.x, self.extra])
        hand = np.r_[~self.emb, np.ones(self.extra.shape[1], bool)]
        sets = [hand, ~hand, np.ones_like(hand)]

        def fit(a: np.ndarray, b: np.ndarray):  # noqa: ANN202
            k = min(3, int(b.sum()), int(len(b) - b.sum()))
            cv = StratifiedKFold(k, shuffle=True, random_state=self.seed + 1)
            score = [
                cross_val_score(lb._model(self.seed), a[:, s], b, cv=cv, scoring="neg_log_loss").mean() for s in sets
            ]
            cols = sets[int(np.argmax(score))]
            m = lb._model(self.seed).fit(a[:, cols], b)
            return _Columns(m, cols)

        return per_label(fit, x, self.y, tr, te) >= 0.5

    def rater_rows(self, tr: np.ndarray, te: np.ndarray) -> np.ndarray:
        """Fit each rater's own answers (one row per image and rater, three per image)
        instead of the majority; C by an inner 3-fold CV grouped by image."""
        from sklearn.model_selection import GroupKFold

        rows = [(r, k) for r, ans in self.rated.items() for k in tr if self.ids[k] in ans]
        xr = self.x[[k for _, k in rows]]
        groups = np.array([k for _, k in rows])
        p = np.zeros((len(te), self.y.shape[1]))
        for j, label in enumerate(lb.SCORED):
            if lb.learnable(self.y[tr, j]):
                yr = np.array([label in self.rated[r][self.ids[k]] for r, k in rows])
                cv = list(GroupKFold(3).split(xr, yr, groups))
                p[:, j] = logistic(xr, yr, self.seed, cv).predict_proba(self.x[te])[:, 1]
        return p >= 0.5


class _Columns:
    """A fitted model that reads only some columns."""

    def __init__(self, model, cols: np.ndarray):  # noqa: ANN001
        self.model, self.cols = model, cols

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x[:, self.cols])


# --------------------------------------------------------------------------- scoring


def no_artifacts_precision(pred: np.ndarray, clean: np.ndarray) -> tuple[int, float]:
    """(images given "No obvious artifacts", i.e. no label, share of them the panel
    majority also calls clean)."""
    empty = ~pred.any(1)
    return int(empty.sum()), float((empty & clean).sum() / max(int(empty.sum()), 1))


def main() -> None:
    from sklearn.model_selection import KFold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=PANEL / "features.npz")
    ap.add_argument("--images", type=Path, default=None, help="the calibration build's artifacts/images")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="ideas to run (default: every one)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    t0 = time.time()
    majority = [PANEL / p / "majority.csv" for p in ("part1", "part2")]
    panel = lb.read_panel(majority)
    ids = sorted(panel)
    x = lb.load_features(a.features).rows(ids, str(a.features))
    y = binarize([panel[i] for i in ids], list(lb.SCORED)).astype(int)
    clean = np.array([NO_ARTIFACTS in panel[i] for i in ids])
    extra = shape_features(ids, a.images, PANEL / "shape.npz")
    idea = Idea(x, y, extra, raters(), ids, a.seed)
    ideas: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
        "3.1 (baseline): logistic, every feature, decision at 0.5": idea.base,
        "one decision threshold for every label, chosen by inner CV": lambda tr, te: idea.thresholds(tr, te, True),
        "a decision threshold per label, chosen by inner CV": lambda tr, te: idea.thresholds(tr, te, False),
        "label co-occurrence: stacked logistic on every label's probability": idea.stack,
        "HistGradientBoosting on the hand-made measurements + shape": lambda tr, te: idea.model(tr, te, "hgb"),
        "RBF SVM, C by inner CV": lambda tr, te: idea.model(tr, te, "svm"),
        "+ shape measurements (wraps, residues, fits, grey bands)": idea.with_shape,
        "+ shape, hand-made columns weighted x2 against the embedding": lambda tr, te: idea.with_shape(tr, te, 2.0),
        "feature set per label (hand-made, embedding, all) by inner CV": idea.feature_set,
        "each rater's answers as rows (not the majority)": idea.rater_rows,
    }
    if a.only:
        ideas = {k: v for k, v in ideas.items() if any(o in k for o in a.only)}
    part1 = np.array([i in set(lb.read_majority(majority[0])) for i in ids])
    folds = list(KFold(5, shuffle=True, random_state=a.seed).split(x))
    lines = [
        "# sim-v3 labeller: ideas against the calibration panel",
        "",
        f"`python {' '.join(sys.argv)}`; {len(ids)} images, seed {a.seed}; CPU capability {_cpu()};"
        " machine shared (2 cores); {elapsed}",
        "",
        'Micro-F1 against the panel majority (11 scored labels); "No obvious artifacts" = no label'
        " assigned: how many images get it, and the share of them the panel majority calls clean"
        f" (the panel: {int(clean.sum())} of {len(ids)}; part 2: {int(clean[~part1].sum())} of {int((~part1).sum())}).",
        "",
        "| idea | out of fold | part 1 -> part 2 | clean: given / precision (out of fold) | (part 2) |",
        "|---|---|---|---|---|",
    ]
    for name, predict in ideas.items():
        oof = np.zeros(y.shape, bool)
        for tr, te in folds:
            oof[te] = predict(tr, te)
        held = predict(np.where(part1)[0], np.where(~part1)[0])
        n1, p1 = no_artifacts_precision(oof, clean)
        n2, p2 = no_artifacts_precision(held, clean[~part1])
        row = f"| {name} | {micro(oof, y):.3f} | {micro(held, y[~part1]):.3f} | {n1} / {p1:.2f} | {n2} / {p2:.2f} |"
        lines.append(row)
        print(row, f"{time.time() - t0:.0f} s", flush=True)
    text = "\n".join(lines).replace("{elapsed}", f"{time.time() - t0:.0f} s") + "\n"
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
