"""Do two runs hold the same predictions and scores? For checking that a refactor left
behaviour unchanged: run the same config with the old and the new code into two folders,
then compare.

    OMP_NUM_THREADS=1 PTYCHOBENCH_HOME=/tmp/h-old PYTHONPATH=<old checkout>/src \
        .venv/bin/python -m ptychobench.cli run benchmarks/equivalence.yaml --out /tmp/eq-old
    OMP_NUM_THREADS=1 PTYCHOBENCH_HOME=/tmp/h-new \
        .venv/bin/python -m ptychobench.cli run benchmarks/equivalence.yaml --out /tmp/eq-new
    .venv/bin/python benchmarks/compare_runs.py /tmp/eq-old /tmp/eq-new

Compares, per (cell, sample): the reply, the parsed labels, the error; and per cell the
micro/macro F1 and CI. Exits 1 on any difference, listing the first ones.
"""

from __future__ import annotations

import sys

from ptychobench.eval.score import score_records
from ptychobench.eval.store import read_run

FIELDS = ("reply", "labels", "gold", "error", "parse_ok")


def main(a: str, b: str) -> int:
    ra = {(r["config"], r["sample_id"]): r for r in read_run(a)}
    rb = {(r["config"], r["sample_id"]): r for r in read_run(b)}
    diffs = []
    for key in sorted(set(ra) | set(rb)):
        if key not in ra or key not in rb:
            diffs.append(f"{key}: only in {'A' if key in ra else 'B'}")
            continue
        for f in FIELDS:
            if ra[key].get(f) != rb[key].get(f):
                diffs.append(f"{key} {f}: {ra[key].get(f)!r} != {rb[key].get(f)!r}")
    sa = {s.config: s.scores.as_dict() for s in score_records(ra.values())}
    sb = {s.config: s.scores.as_dict() for s in score_records(rb.values())}
    for config in sorted(set(sa) & set(sb)):
        for k in ("micro_f1", "macro_f1", "micro_f1_ci"):
            if sa[config].get(k) != sb[config].get(k):
                diffs.append(f"{config} {k}: {sa[config].get(k)} != {sb[config].get(k)}")
    print(f"{len(ra)} and {len(rb)} predictions in {len(sa)} and {len(sb)} cells; {len(diffs)} difference(s)")
    for d in diffs[:30]:
        print("  " + d)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
