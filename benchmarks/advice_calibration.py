"""Reliability of diagnose's advice probabilities on a held-out split.

The advisor (``text-probe`` or ``knn-vote``, as ``diagnose`` caches it: fitted on the
dataset's params TRAIN split, Platt-calibrated on its out-of-fold probabilities) scores
every option of every held-out text; the table bins the probabilities and compares the
mean probability in each bin with how often the option is a verified label there. Raw
(the probe's class-balanced logistic regressions) and calibrated side by side, with the
Brier score and the expected calibration error (ECE, bin-weighted |mean p - frequency|).

The advisor reads diagnose's texts at use: ``--texts`` takes them for the held-out
experiments from ``benchmarks/diagnose_payoff.py``'s ``letters.json`` (diagnose's text of
each test experiment's current reconstruction); without it the dataset's own texts are
scored.

    PYTHONPATH=src python benchmarks/advice_calibration.py --dataset sim-v2 --split test \
        --texts runs/diagnose-payoff/letters.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

BINS = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0001])


def table(p: np.ndarray, y: np.ndarray) -> tuple[list[tuple], float, float]:
    rows = []
    ece = 0.0
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        m = (p >= lo) & (p < hi)
        if m.any():
            rows.append((lo, min(hi, 1.0), int(m.sum()), float(p[m].mean()), float(y[m].mean())))
            ece += m.mean() * abs(p[m].mean() - y[m].mean())
    return rows, float(((p - y) ** 2).mean()), float(ece)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="sim-v2")
    ap.add_argument("--split", default="test")
    ap.add_argument("--advisor", default="text-probe")
    ap.add_argument("--texts", type=Path, default=None, help="diagnose's texts of the held-out experiments")
    args = ap.parse_args()

    from ptychobench.data import load_dataset
    from ptychobench.diagnose.advice import _embed_texts, calibrate, get_advisor
    from ptychobench.diagnose.detector import knn_vote
    from ptychobench.strategies.embeddings import normalize
    from ptychobench.strategies.probes import label_matrix

    adv = get_advisor(args.advisor, None, args.dataset)
    ds = load_dataset(args.dataset, check_images=False)
    held = ds.samples("params", args.split)
    texts = [s.text for s in held]
    kind = "the dataset's texts"
    if args.texts:
        own = json.loads(args.texts.read_text())
        held = [s for s in held if s.id in own]
        texts = [own[s.id]["text"] for s in held]
        kind = f"diagnose's texts ({args.texts})"
    X = _embed_texts(texts)
    Y = label_matrix(held, adv.labels).astype(float)
    if adv.kind == "text-probe":
        raw = adv.probe.predict_proba(X)
    else:
        raw = knn_vote(normalize(X) @ adv.train_X.T, adv.train_Y, 5)
    cal = np.stack([calibrate(adv.calibration, adv.labels, r) for r in raw])
    print(f"{adv.name}; held-out {args.dataset} {args.split}, {kind}: {len(held)} texts x {len(adv.labels)} options\n")
    print("| probability bin | n raw | mean p raw | frequency raw | n calibrated | mean p | frequency |")
    print("|---|---|---|---|---|---|---|")
    tr, br, er = table(raw.ravel(), Y.ravel())
    tc, bc, ec = table(cal.ravel(), Y.ravel())
    keyed = {(lo, hi): (n, mp, f) for lo, hi, n, mp, f in tc}
    for lo, hi, n, mp, f in tr:
        c = keyed.pop((lo, hi), None)
        cs = f"{c[0]} | {c[1]:.3f} | {c[2]:.3f}" if c else "0 | | "
        print(f"| {lo:.2f}-{hi:.2f} | {n} | {mp:.3f} | {f:.3f} | {cs} |")
    for (lo, hi), (n, mp, f) in sorted(keyed.items()):
        print(f"| {lo:.2f}-{hi:.2f} | 0 | | | {n} | {mp:.3f} | {f:.3f} |")
    print(f"\nBrier score raw {br:.4f}, calibrated {bc:.4f}; ECE raw {er:.4f}, calibrated {ec:.4f}")
    print(f"base rate of a verified option: {Y.mean():.3f}")


if __name__ == "__main__":
    main()
