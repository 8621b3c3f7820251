"""sim-v3's labeller against its calibration panel (issue 24): the figures of
``benchmarks/sim-v3-calib/README.md`` and the fitted file, from the shipped panel alone.

Reads ``benchmarks/sim-v3-calib/features.npz`` (every rated image's features, written by
``python -m ptychobench.labelling.labeller CALIB_BUILD OUT.json MAJ... --save-features-to``),
both parts' ``majority.csv``, keys and raters' CSVs. Writes (markdown, ``--out``):

1. out-of-fold agreement with the panel majority (5-fold, nested choice of C; no image's
   own rating reaches its prediction), per label and micro-F1, for three feature sets:
   the hand-made measurements and residuals, the EfficientNet-Lite0 embedding, both (the
   shipped labeller);
2. the shipped labeller's out-of-fold labels against each rater, beside the raters'
   agreement with each other (same images);
3. held out by part: fitted on part 1 (raters 1-3), scored on part 2 (raters 4-6, the
   test-ood instrument among its images), beside a constant labeller (part 1's most
   frequent label on every image);
4. the gray zone at several widths (:data:`SHARES` of the calibration images left out):
   micro-F1 and the precision of "No obvious artifacts" on the kept images, out of fold
   and held out by part (the fresh panel's targets apply to the shipped, kept images);
5. with ``--labeller PATH``: the labeller fitted on all images (the shipped file).

Example (about 15 min on 2 shared cores):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/labeller_panel.py \\
        --out benchmarks/sim-v3-calib/labeller.md --labeller src/ptychobench/labelling/labeller-3.1.json
"""

from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ptychobench.annotate.panel import read_key, read_ratings
from ptychobench.eval.metrics import binarize
from ptychobench.labelling import labeller as lb
from ptychobench.tasks import NO_ARTIFACTS

PANEL = Path(__file__).parent / "sim-v3-calib"
PARTS = {"part1": ("calib-key.csv", ("calib1-rater1", "calib1-rater2", "calib1-rater3")),
         "part2": ("calib2-key.csv", ("calib2-rater4", "calib2-rater5", "calib2-rater6"))}  # fmt: skip
SHARES = (0.0, 0.10, 0.25, 0.40)  # gray-zone widths reported (share of calibration images left out)


def micro(pred: np.ndarray, truth: np.ndarray) -> float:
    return lb._micro_f1(pred.astype(bool), truth.astype(bool)) or 0.0


def raters() -> dict[str, dict[str, frozenset[str]]]:
    """rater -> sample id -> labels, every part."""
    out = {}
    for part, (key, names) in PARTS.items():
        ids = read_key(PANEL / part / key)
        for name in names:
            out[name] = dict(zip(ids, read_ratings(PANEL / part / f"{name}.csv", len(ids))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, default=PANEL / "features.npz")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--labeller", type=Path, default=None, help="also write the labeller fitted on every image")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning, module="sklearn")  # 1.8's notices on LogisticRegressionCV
    t0 = time.time()
    majority = [PANEL / p / "majority.csv" for p in PARTS]
    panel = lb.read_panel(majority)
    ids = sorted(panel)
    pf = lb.load_features(a.features)
    x = pf.rows(ids, str(a.features))
    truth = binarize([panel[i] for i in ids], list(lb.SCORED))
    emb = np.array([f.startswith("emb_") for f in lb.FEATURES])
    lines = [
        "# sim-v3 labeller vs its calibration panel",
        "",
        f"`python {' '.join(sys.argv)}`;"
        f" {len(ids)} images, seed {a.seed}; {platform.machine()}"
        f" CPU capability {_cpu()}; {{elapsed}}",
        "",
        "## Out of fold (5-fold, C chosen inside each fold), F1 against the panel majority",
        "",
        "| label | positives | hand-made | embedding | both (shipped) |",
        "|---|---|---|---|---|",
    ]
    sets = {"hand-made": ~emb, "embedding": emb, "both": np.ones_like(emb)}
    oofs = {}
    for name, cols in sets.items():
        oofs[name] = lb.out_of_fold(x[:, cols], [panel[i] for i in ids], a.seed)
        print(f"{name}: out of fold done, {time.time() - t0:.0f} s", flush=True)
    for j, label in enumerate(lb.SCORED):
        f1 = [micro(o[:, j] >= 0.5, truth[:, j]) if lb.learnable(truth[:, j]) else None for o in oofs.values()]
        lines.append(f"| {label} | {int(truth[:, j].sum())} | " + " | ".join(_f(v) for v in f1) + " |")
    lines.append("| **micro-F1** | | " + " | ".join(f"**{micro(o >= 0.5, truth):.3f}**" for o in oofs.values()) + " |")
    pred = oofs["both"] >= 0.5
    rated = raters()
    lines += ["", "## The shipped labeller's out-of-fold labels against each rater (micro-F1)", ""]
    lines += ["| rater | images | labeller vs rater | rater vs the other raters of the part |", "|---|---|---|---|"]
    for part, (_, names) in PARTS.items():
        for name in names:
            r = rated[name]
            rows = [k for k, i in enumerate(ids) if i in r]
            rt = binarize([r[ids[k]] for k in rows], list(lb.SCORED))
            others = []
            for other in names:
                if other != name:
                    ot = binarize([rated[other][ids[k]] for k in rows], list(lb.SCORED))
                    others.append(f"{micro(ot, rt):.3f}")
            lines.append(f"| {name} | {len(rows)} | {micro(pred[rows], rt):.3f} | {', '.join(others)} |")
    pairs = [
        micro(
            binarize(list(rated[p].values()), list(lb.SCORED)),
            binarize([rated[q][i] for i in rated[p]], list(lb.SCORED)),
        )
        for _, names in PARTS.values()
        for p, q in itertools.combinations(names, 2)
    ]
    lines.append(f"\nRater vs rater, every pair: {min(pairs):.3f}-{max(pairs):.3f}.")
    # held out by part
    part1 = set(lb.read_majority(majority[0]))
    tr = [k for k, i in enumerate(ids) if i in part1]
    te = [k for k, i in enumerate(ids) if i not in part1]
    lines += ["", "## Held out by part: fitted on part 1, scored on part 2 (micro-F1)", ""]
    lines += ["| labeller | vs part-2 majority | vs raters 4, 5, 6 |", "|---|---|---|"]
    for name, cols in sets.items():
        names = [f for f, c in zip(lb.FEATURES, cols) if c]
        held = lb.fit(x[tr][:, cols], [panel[ids[k]] for k in tr], a.seed, cross_validate=False, names=names)
        p2 = _labels(held, x[te][:, cols])
        lines.append(f"| {name} | {micro(p2, truth[te]):.3f} | {_vs_raters(p2, [ids[k] for k in te], rated)} |")
    top = int(np.argmax(truth[tr].sum(0)))
    const = np.zeros((len(te), len(lb.SCORED)), bool)
    const[:, top] = True
    vs = _vs_raters(const, [ids[k] for k in te], rated)
    lines.append(f"| constant ({lb.SCORED[top]}) | {micro(const, truth[te]):.3f} | {vs} |")
    print(f"held out done, {time.time() - t0:.0f} s", flush=True)
    # a wider gray zone: what the shipped (sure) images agree at, against the share left out
    clean = np.array([NO_ARTIFACTS in panel[i] for i in ids])
    held_oof = lb.out_of_fold(x[tr], [panel[ids[k]] for k in tr], a.seed)
    full = lb.fit(x[tr], [panel[ids[k]] for k in tr], a.seed, cross_validate=False)
    probs = full.probabilities(x[te])
    p2 = np.column_stack([probs.get(label, np.zeros(len(te))) for label in lb.SCORED])
    learnt = [j for j in range(len(lb.SCORED)) if lb.learnable(truth[:, j])]
    learnt1 = [j for j, label in enumerate(lb.SCORED) if label in probs]
    lines += [
        "",
        "## The gray zone: agreement on the kept images against the share left out",
        "",
        "The cut-offs leave out the given share of the *calibration* images whose least sure label"
        " is nearest the 0.5 decision (`labeller.gray_zone`; out of fold: set on the out-of-fold"
        " probabilities themselves; part 1 -> part 2: set on part 1's out-of-fold probabilities, so"
        ' part 2\'s share left out may differ). "Clean" = no label given ("No obvious artifacts"):'
        " how many kept images get it, and the share of them the panel majority calls clean (issue"
        " 24's target: precision >= 0.90).",
        "",
        "| share left out (calibration) | out of fold: kept | micro-F1 | clean given / precision"
        " | part 1 -> part 2: kept | micro-F1 | clean given / precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for share in SHARES:
        row = [f"{share:.0%}"]
        for o, t, c, cal, cols in (
            (oofs["both"], truth, clean, oofs["both"], learnt),
            (p2, truth[te], clean[te], held_oof, learnt1),
        ):
            row += kept_agreement(o, t, c, lb.gray_zone(cal[:, cols], share), cols)
        lines.append("| " + " | ".join(row) + " |")
    if a.labeller:
        meta = lb.provenance(pf, majority)
        lab = lb.fit(x, [panel[i] for i in ids], a.seed, trained_on=meta, oof=oofs["both"])
        lb.save(lab, a.labeller)
        cv = lab.cv
        lines += [
            "",
            f"## The fitted file `{a.labeller.name}` (every image)",
            "",
            f"Out-of-fold micro-F1 {cv['micro_f1']:.3f}; the gray zone ({lb.LEFT_OUT:.0%} least sure left out,"
            f" p in [{lab.models[0].lo:.3f}, {lab.models[0].hi:.3f})) keeps {cv['sure_n']} of {cv['n']} images,"
            f" micro-F1 {cv['sure_micro_f1']:.3f} on them; left out per label: {cv['left_out_per_label']}."
            f" C per label: { {m.label: m.cv['C'] for m in lab.models} }.",
        ]
    text = "\n".join(lines).replace("{elapsed}", f"{time.time() - t0:.0f} s") + "\n"
    print(text)
    if a.out:
        a.out.write_text(text, encoding="utf-8")


def kept_agreement(p: np.ndarray, truth: np.ndarray, clean: np.ndarray, zone: tuple, cols: list[int]) -> list[str]:
    """[kept images, micro-F1 on them, "clean given / its precision"] of probabilities ``p``
    (images x scored labels) at the gray zone ``zone`` = (lo, hi) on the learnt ``cols``."""
    lo, hi = zone
    keep = ~((p[:, cols] >= lo) & (p[:, cols] < hi)).any(1)
    pred = p[keep] >= 0.5
    given = ~pred.any(1)
    prec = (given & clean[keep]).sum() / max(int(given.sum()), 1)
    return [f"{int(keep.sum())} of {len(p)}", f"{micro(pred, truth[keep]):.3f}", f"{int(given.sum())} / {prec:.2f}"]


def _labels(lab: lb.Labeller, x: np.ndarray) -> np.ndarray:
    probs = lab.probabilities(x)
    out = np.zeros((len(x), len(lb.SCORED)), bool)
    for j, label in enumerate(lb.SCORED):
        if label in probs:
            out[:, j] = probs[label] >= 0.5
    return out


def _vs_raters(pred: np.ndarray, ids: list[str], rated: dict) -> str:
    out = []
    for name in PARTS["part2"][1]:
        out.append(f"{micro(pred, binarize([rated[name][i] for i in ids], list(lb.SCORED))):.3f}")
    return ", ".join(out)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _cpu() -> str:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except ImportError:  # pragma: no cover
        return "unknown"


if __name__ == "__main__":
    main()
