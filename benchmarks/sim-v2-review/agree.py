"""Agreement of a blind review with a build's labels, or between two raters.

    python agree.py REVIEW.csv [OTHER.csv | -] [BUILD_DIR]

REVIEW.csv has columns number,sample_id,labels (labels separated by ";"). With OTHER.csv
the two raters are compared; otherwise the rater is compared with the labels that the
current rules (``ptychobench.sim.labels``) give the build's stored measurements
(``BUILD_DIR/.work/<unit>.json``, default ``runs/sim-v2``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score

from ptychobench.sim.labels import artifact_labels
from ptychobench.tasks import ARTIFACT_LABELS


def main() -> None:
    rows = list(csv.DictReader(open(sys.argv[1])))
    rater = [frozenset(r["labels"].split(";")) for r in rows]
    if len(sys.argv) > 2 and sys.argv[2] != "-":
        other = {r["number"]: frozenset(r["labels"].split(";")) for r in csv.DictReader(open(sys.argv[2]))}
        ref = [other[r["number"]] for r in rows]
    else:
        work = Path(sys.argv[3] if len(sys.argv) > 3 else "runs/sim-v2") / ".work"
        ref = [artifact_labels(json.loads((work / f"{r['sample_id']}.json").read_text())["metrics"]) for r in rows]
    tp = sum(len(g & m) for g, m in zip(ref, rater))
    fp = sum(len(m - g) for g, m in zip(ref, rater))
    fn = sum(len(g - m) for g, m in zip(ref, rater))
    exact = sum(g == m for g, m in zip(ref, rater))
    print(
        f"micro-F1 {2 * tp / (2 * tp + fp + fn):.3f}; reference labels the rater also chose: "
        f"{tp}/{tp + fn} = {tp / (tp + fn):.2f}; exact sets {exact}/{len(rows)}"
    )
    print("| label | both | only reference | only rater | kappa |\n|---|---|---|---|---|")
    kappas = []
    for lab in ARTIFACT_LABELS:
        y1 = [lab in g for g in ref]
        y2 = [lab in m for m in rater]
        both = sum(a and b for a, b in zip(y1, y2))
        only_ref = sum(a and not b for a, b in zip(y1, y2))
        only_rater = sum(b and not a for a, b in zip(y1, y2))
        k = cohen_kappa_score(y1, y2) if len(set(y1) | set(y2)) > 1 else float("nan")
        kappas.append(k)
        print(f"| {lab} | {both} | {only_ref} | {only_rater} | {k:.2f} |")
    print(f"mean per-label kappa {np.nanmean(kappas):.2f}")


if __name__ == "__main__":
    main()
