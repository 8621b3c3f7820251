"""When may the sim-v3 labeller say "No obvious artifacts"? Rules measured against the
calibration panel (issue 24: the fresh panel asks its precision against the raters >= 0.90).

Labelling 3.1 gives "No obvious artifacts" to any image with no label; the panel majority
calls only about half of those clean out of fold (``ideas.md``). Each rule below calls an
image with no label *surely clean* only when the rule holds (:class:`CleanRule`); the other
no-label images are *unsure* (the gray zone: left out of the shipped splits). Rules
(:data:`RULES`): every learnt label's probability below a cut-off; a logistic model of the
panel's "No obvious artifacts" itself (the labels' model and features, ``labeller._model``)
above a cut-off; both; a model of a unanimous "clean"; the clean model's logit minus the
highest label's; a stacked clean model on every first-stage logit (label co-occurrence).

Every cut-off is chosen by :func:`clean_cutoffs` on *inner* out-of-fold probabilities of
the training images only (3-fold inside the training part), then applied to the scored
images' probabilities from models fitted on the whole training part (:func:`split_rule`
takes no scored image's rating: nested). Scored out of fold (5 folds of the 340 images)
and fitted on part 1 (111 images, raters 1-3), scored on part 2 (229, raters 4-6).

Two frames: "decision 0.5" (no label = every probability below 0.5, ``ideas.md``'s
baseline) and "shipped" (3.1's gray zone first: an image with a label between its
cut-offs is left out, lo/hi set by ``labeller.gray_zone`` on the training part's inner
probabilities; no label = every probability below lo).

The fits take 1-5 min on 2 shared cores; ``--cache`` keeps their probabilities so the
rules can be rescored in seconds. Example:

    OMP_NUM_THREADS=1 PYTHONPATH=src nice -n 19 python benchmarks/clean_rule.py \\
        --out benchmarks/sim-v3-calib/clean.md
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeller_panel import PANEL, PARTS, _cpu, micro, raters
from ptychobench.eval.metrics import binarize
from ptychobench.labelling import labeller as lb
from ptychobench.tasks import NO_ARTIFACTS

INNER = 3  # inner folds for the cut-off choice (inside each training part)
TARGETS = (0.90, 0.95)  # precision asked on the inner probabilities (0.95: a margin for the noise)
CLEAN_MIN = 5  # a cut-off must call at least this many training images clean
MAX_GRID = tuple(round(0.02 * k, 2) for k in range(1, 26))  # every label below: 0.02-0.50
SCORE_GRID = tuple(round(0.5 + 0.02 * k, 2) for k in range(25))  # a clean score above: 0.50-0.98
#: rule -> the cut-offs :func:`clean_cutoffs` chooses on its clean score (:func:`scores`)
RULES = {"max": "max", "model": "score", "both": "both", "unanimous": "score", "margin": "score", "stack": "score"}
NAMES = {
    "max": "every label's probability < c",
    "model": "clean model's probability >= c",
    "both": "both: every label < c1 and clean model >= c2",
    "unanimous": "model of a unanimous clean (3/3) >= c",
    "margin": "sigmoid(logit(clean model) - logit(highest label)) >= c",
    "stack": "stacked clean model on every first-stage logit >= c",
}


@dataclass
class CleanRule:
    """A no-label image is surely clean when every label's probability is below
    ``max_below`` and its clean score at least ``score_above``; ``max_below = 0``: never."""

    max_below: float = 1.0
    score_above: float = 0.0

    def holds(self, p_max: np.ndarray, score: np.ndarray) -> np.ndarray:
        return (np.asarray(p_max) < self.max_below) & (np.asarray(score) >= self.score_above)

    def describe(self) -> str:
        if self.max_below <= 0.0:
            return "never"
        parts = [f"max < {self.max_below:g}"] if self.max_below < 1.0 else []
        return " & ".join(parts + ([f"score >= {self.score_above:g}"] if self.score_above > 0.0 else []))


def clean_cutoffs(p_max: np.ndarray, score: np.ndarray, clean: np.ndarray, lo: float, target: float, kind: str):  # noqa: ANN201
    """Among the cut-offs of ``kind`` ("max", "score", "both": grids :data:`MAX_GRID`,
    :data:`SCORE_GRID`) that call at least :data:`CLEAN_MIN` no-label images (``p_max <
    lo``) clean with a share >= ``target`` that the panel (``clean``) calls clean, the one
    calling the most (ties: the higher precision, then the stricter); none: never."""
    grids = {
        "max": [(a, 0.0) for a in MAX_GRID],
        "score": [(1.0, b) for b in SCORE_GRID],
        "both": [(a, b) for a in MAX_GRID for b in SCORE_GRID],
    }
    p_max, clean = np.asarray(p_max), np.asarray(clean, bool)
    best: tuple | None = None
    for a, b in grids[kind]:
        called = (p_max < lo) & CleanRule(a, b).holds(p_max, score)
        n = int(called.sum())
        prec = float(clean[called].mean()) if n else 0.0
        if n >= CLEAN_MIN and prec >= target and (best is None or (n, prec, -a, b) > best[0]):
            best = ((n, prec, -a, b), CleanRule(a, b))
    return best[1] if best else CleanRule(0.0, 0.0)


# --------------------------------------------------------------------------- probabilities


def fitted(x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, seed: int) -> np.ndarray:
    """Probabilities on ``te`` (columns of ``y``) of 3.1's model fitted on ``tr``."""
    p = np.zeros((len(te), y.shape[1]))
    for j in range(y.shape[1]):
        if lb.learnable(y[tr, j]):
            p[:, j] = lb._model(seed).fit(x[tr], y[tr, j]).predict_proba(x[te])[:, 1]
    return p


def inner(x: np.ndarray, y: np.ndarray, tr: np.ndarray, seed: int) -> np.ndarray:
    """Out-of-fold probabilities of ``tr`` by :data:`INNER`-fold CV inside ``tr`` (stratified
    per column, as ``labeller.out_of_fold``)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    p = np.zeros((len(tr), y.shape[1]))
    for j in range(y.shape[1]):
        yj = y[tr, j]
        if lb.learnable(yj):
            k = min(INNER, int(yj.sum()), int(len(yj) - yj.sum()))
            folds = StratifiedKFold(k, shuffle=True, random_state=seed)
            p[:, j] = cross_val_predict(lb._model(seed), x[tr], yj, cv=folds, method="predict_proba")[:, 1]
    return p


def probabilities(x: np.ndarray, y: np.ndarray, splits: list, seed: int, cache: Path | None) -> list:
    """Per split (tr, te): (inner probabilities of tr, probabilities of te); cached."""
    if cache is not None and cache.exists():
        with np.load(cache) as z:
            if z["y"].shape == y.shape and (z["y"] == y).all() and int(z["seed"]) == seed:
                return [(z[f"in{k}"], z[f"te{k}"]) for k in range(len(splits))]
        sys.exit(f"error: {cache}: probabilities of another panel or seed; delete it or pass another --cache")
    out, t0 = [], time.time()
    for k, (tr, te) in enumerate(splits):
        out.append((inner(x, y, tr, seed), fitted(x, y, tr, te, seed)))
        print(f"split {k + 1}/{len(splits)} fitted, {time.time() - t0:.0f} s", flush=True)
    if cache is not None:
        arrays = {f"in{k}": a for k, (a, _) in enumerate(out)} | {f"te{k}": b for k, (_, b) in enumerate(out)}
        np.savez_compressed(cache, y=y, seed=seed, **arrays)
    return out


# --------------------------------------------------------------------------- rules


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def scores(rule: str, p_in: np.ndarray, p_te: np.ndarray, clean_in: np.ndarray, seed: int) -> tuple:
    """((p_max, clean score) of the training part's inner probabilities, the same of the
    scored images) for ``rule`` (:data:`RULES`); columns of ``p_*``: the 11 labels, the
    clean model, the unanimous-clean model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    m_in, m_te = p_in[:, :-2].max(1), p_te[:, :-2].max(1)
    if rule in ("max", "model", "both"):
        return (m_in, p_in[:, -2]), (m_te, p_te[:, -2])
    if rule == "unanimous":
        return (m_in, p_in[:, -1]), (m_te, p_te[:, -1])
    if rule == "margin":
        return (m_in, 1 / (1 + np.exp(logit(m_in) - logit(p_in[:, -2])))), (
            m_te,
            1 / (1 + np.exp(logit(m_te) - logit(p_te[:, -2]))),
        )
    # "stack": logistic on the first-stage logits, fitted on the inner ones; its own
    # training scores for the cut-off are 3-fold out of fold on them
    li, lt = logit(p_in[:, :-1]), logit(p_te[:, :-1])
    stack = LogisticRegression(class_weight="balanced", max_iter=2000)
    folds = StratifiedKFold(3, shuffle=True, random_state=seed)
    s_in = cross_val_predict(stack, li, clean_in, cv=folds, method="predict_proba")[:, 1]
    return (m_in, s_in), (m_te, stack.fit(li, clean_in).predict_proba(lt)[:, 1])


def split_rule(
    rule: str | None, target: float, p_in: np.ndarray, p_te: np.ndarray, clean_tr: np.ndarray, lo: float, seed: int
) -> tuple[CleanRule | None, np.ndarray, np.ndarray]:
    """(cut-offs, no label, surely clean) of the scored images of one split. The cut-offs
    see the training part only (``p_in``, ``clean_tr``): no scored image's rating is an
    argument. ``rule`` None: 3.1, every no-label image clean."""
    (m_in, s_in), (m_te, s_te) = scores(rule or "model", p_in, p_te, clean_tr, seed)
    given = m_te < lo
    if rule is None:
        return None, given, given
    cut = clean_cutoffs(m_in, s_in, clean_tr, lo, target, RULES[rule])
    return cut, given, given & cut.holds(m_te, s_te)


def clean_votes(rated: dict[str, dict[str, frozenset[str]]]) -> dict[str, int]:
    """sample id -> how many of its part's raters answered "No obvious artifacts"."""
    out: dict[str, int] = {}
    for _, names in PARTS.values():
        for r in names:
            for i, labels in rated[r].items():
                out[i] = out.get(i, 0) + (NO_ARTIFACTS in labels)
    return out


# --------------------------------------------------------------------------- report


def main() -> None:
    from sklearn.model_selection import KFold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=PANEL / "features.npz")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="keep the fitted probabilities here (.npz)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")
    t0 = time.time()
    majority = [PANEL / p / "majority.csv" for p in PARTS]
    panel = lb.read_panel(majority)
    ids = sorted(panel)
    x = lb.load_features(a.features).rows(ids, str(a.features))
    clean = np.array([NO_ARTIFACTS in panel[i] for i in ids])
    rated = raters()
    share = clean_votes(rated)
    unanimous = np.array([share[i] == 3 for i in ids])
    truth = binarize([panel[i] for i in ids], list(lb.SCORED)).astype(bool)
    y = np.column_stack([truth, clean, unanimous]).astype(int)
    part1 = np.array([i in set(lb.read_majority(majority[0])) for i in ids])
    splits = list(KFold(5, shuffle=True, random_state=a.seed).split(x))
    splits.append((np.where(part1)[0], np.where(~part1)[0]))
    probs = probabilities(x, y, splits, a.seed, a.cache)
    learnt = [j for j in range(len(lb.SCORED)) if lb.learnable(y[:, j])]
    lines = [
        '# sim-v3 labeller: when to say "No obvious artifacts"',
        "",
        f"`python {' '.join(sys.argv)}`; {len(ids)} images ({int(clean.sum())} clean by the panel majority,"
        f" {int(unanimous.sum())} unanimously; part 2: {int(clean[~part1].sum())} of {int((~part1).sum())}),"
        f" seed {a.seed}; CPU capability {_cpu()}; machine shared (2 cores, the lead's jobs beside it); {{elapsed}}",
        "",
        "Every cut-off chosen on the training part's inner 3-fold probabilities only (`clean_cutoffs`:"
        f" the cut-off calling the most training images clean whose inner precision reaches the target,"
        f' at least {CLEAN_MIN} of them; "never" (no image clean) if none does), then applied to the'
        " scored images' probabilities from models fitted on the whole training part."
        ' "clean": images called surely clean / the share of them the panel majority calls clean;'
        ' "unsure": no-label images the rule does not call clean (left out, gray zone).',
    ]
    rules: list[tuple[str, str | None, float]] = [("3.1: every no-label image clean", None, 0.0)]
    rules += [(f"{NAMES[r]} (target {t:.2f})", r, t) for t in TARGETS for r in RULES]
    kept: dict[str, list[str]] = {}
    for frame in ("decision 0.5", "shipped"):
        lines += ["", f"## Frame: {frame}", ""]
        lines += [
            "| rule | out of fold: clean / precision | unsure | cut-offs per fold"
            " | part 1 -> part 2: clean / precision | unsure | cut-off |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, rule, target in rules:
            n = len(ids)
            sure_oof, given_oof, keep_oof = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
            pred_oof, cuts = np.zeros(truth.shape, bool), []
            for k, ((tr, te), (p_in, p_te)) in enumerate(zip(splits, probs)):
                lo, hi = lb.gray_zone(p_in[:, learnt]) if frame == "shipped" else (0.5, 0.5)
                cut, given, sure = split_rule(rule, target, p_in, p_te, clean[tr], lo, a.seed)
                gray = ((p_te[:, learnt] >= lo) & (p_te[:, learnt] < hi)).any(1)
                keep, pred = ~gray & ~(given & ~sure), p_te[:, :-2] >= max(hi, 0.5)
                where = cut.describe() if cut else "-"
                if k < len(splits) - 1:
                    sure_oof[te], given_oof[te], pred_oof[te], keep_oof[te] = sure, given, pred, keep
                    cuts.append(where)
                else:
                    held = [_given(sure, clean[te]), str(int((given & ~sure).sum())), where]
                    held_kept = f"{int(keep.sum())} of {len(te)}, {micro(pred[keep], truth[te][keep]):.3f}"
            row = [name, _given(sure_oof, clean), str(int((given_oof & ~sure_oof).sum())), "; ".join(cuts), *held]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
            if frame == "shipped":
                f1 = micro(pred_oof[keep_oof], truth[keep_oof])
                kept[name] = [f"{int(keep_oof.sum())} of {n}", f"{f1:.3f}", held_kept]
    lines += [
        "",
        "## Shipped frame: the images kept (3.1's gray zone and the rule's unsure left out)",
        "",
        "Micro-F1 against the panel majority over the 11 scored labels, labels at the gray zone's hi.",
        "",
        "| rule | out of fold: kept | micro-F1 | part 1 -> part 2: kept, micro-F1 |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | " + " | ".join(v) + " |" for name, v in kept.items()]
    lines += ceiling(probs, splits, clean, len(ids))
    lines += raters_clean(rated)
    text = "\n".join(lines).replace("{elapsed}", f"{time.time() - t0:.0f} s") + "\n"
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")


def _given(sure: np.ndarray, clean: np.ndarray) -> str:
    n = int(sure.sum())
    return f"{n} / {clean[sure].mean():.2f}" if n else "0 / -"


def ceiling(probs: list, splits: list, clean: np.ndarray, n: int) -> list[str]:
    """What precision any cut-off could reach (optimistic: read off the scored images
    themselves): the panel's share clean among the k no-label images (decision 0.5) that
    each score ranks most surely clean, out of fold."""
    from sklearn.metrics import roc_auc_score

    p = np.zeros((n, probs[0][1].shape[1]))
    for (_, te), (_, p_te) in zip(splits[:-1], probs[:-1]):
        p[te] = p_te
    m = p[:, :-2].max(1)
    ranks = {
        "every label's probability (lowest first)": -m,
        "clean model": p[:, -2],
        "unanimous-clean model": p[:, -1],
        "logit(clean model) - logit(highest label)": logit(p[:, -2]) - logit(m),
    }
    ks = (5, 10, 15, 20, 30)
    out = [
        "",
        "## Ceiling: precision of the k images ranked most surely clean (out of fold, optimistic)",
        "",
        "Not a rule: the cut-off is read off the scored images. Among the no-label images"
        " (decision 0.5), the k with the best score; the share the panel majority calls clean."
        " AUC: how well the score ranks the panel's clean images first, over every image.",
        "",
        "| score | AUC (every image) | " + " | ".join(f"k={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for name, s in ranks.items():
        order = np.argsort(-np.where(m < 0.5, s, -np.inf), kind="stable")
        auc = roc_auc_score(clean, s)
        out.append(f"| {name} | {auc:.3f} | " + " | ".join(f"{clean[order[:k]].mean():.2f}" for k in ks) + " |")
    return out


def raters_clean(rated: dict[str, dict[str, frozenset[str]]]) -> list[str]:
    """The raters' own "No obvious artifacts" against each other: among the images one rater
    calls clean, the share each other rater of the part calls clean (what a perfect copy
    of one rater would score against a fresh rater)."""
    out = [
        "",
        '## The raters\' own "No obvious artifacts", against the other raters of their part',
        "",
        "| rater | images called clean | share another rater calls clean (each) | at least one other | both others |",
        "|---|---|---|---|---|",
    ]
    for _, names in PARTS.values():
        for r in names:
            others = [o for o in names if o != r]
            mine = [i for i, labs in rated[r].items() if NO_ARTIFACTS in labs]
            said = np.array([[NO_ARTIFACTS in rated[o][i] for o in others] for i in mine])
            each = ", ".join(f"{v:.2f}" for v in said.mean(0))
            out.append(f"| {r} | {len(mine)} | {each} | {said.any(1).mean():.2f} | {said.all(1).mean():.2f} |")
    return out


if __name__ == "__main__":
    main()
