"""How often "more iterations" (K) was verified on the params TRAIN experiments, by how
much their loss still fell over the last quarter of the iterations: the evidence for
diagnose's convergence rule (``diagnose/convergence.py``) and its tuned threshold. Reads
only diagnose's shipped texts of the train experiments and their verified letters (no
test split, no reconstruction; seconds).

    PYTHONPATH=src python benchmarks/loss_rule.py [--dataset sim-v2]
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=None)
    args = ap.parse_args()

    from ptychobench.diagnose.advice import NO_CHANGE, own_train_samples
    from ptychobench.diagnose.convergence import STILL_FALLING, train_falls, tuned_threshold

    train = own_train_samples(args.dataset)
    drops, k = train_falls(train)
    none = np.array([NO_CHANGE in s.labels for s in train])
    n = len(drops)
    print(f"{n} train experiments; K verified in {k.sum()} ({100 * k.mean():.0f}%), ", end="")
    print(f"'No changes needed' in {none.sum()}")
    print(
        "| rule: fall over the last quarter >= | fires | K verified where it fires | "
        "'No changes needed' verified where it fires | K verified where it does not | F1 for K |"
    )
    print("|---|---|---|---|---|---|")
    for x in (0.02, 0.03, 0.04, 0.05, STILL_FALLING, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12):
        fire = drops >= x
        tp, fp, fn = int((fire & k).sum()), int((fire & ~k).sum()), int((~fire & k).sum())
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        mark = " (the rule)" if x == STILL_FALLING else ""
        print(
            f"| {100 * x:.3g}%{mark} | {fire.sum()} | {tp} of {fire.sum()} ({100 * tp / max(1, fire.sum()):.0f}%) | "
            f"{int((fire & none).sum())} | {fn} of {int((~fire).sum())} ({100 * fn / max(1, (~fire).sum()):.0f}%) | "
            f"{f1:.2f} |"
        )
    t = tuned_threshold(drops, k)
    print(
        f"tuned threshold (best F1 for K verified, the advisor's threshold rule): {100 * t:.3g}%; "
        f"shipped STILL_FALLING {100 * STILL_FALLING:.3g}%"
    )
    if not np.isclose(t, STILL_FALLING):
        raise SystemExit("the shipped threshold is not the tuned one: update diagnose/convergence.py")


if __name__ == "__main__":
    main()
