"""Seconds per sim-v3 labelling decision (issue 24): the shipped labeller on every image
unit of a build's ``.work`` folder, its decision caches removed first (they are remade).

Example: python benchmarks/bench_v3_labelling.py /tmp/q3
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(build: str) -> None:
    from ptychobench.labelling.apply import ShippedLabelling
    from ptychobench.sim.build import decision, is_image_unit

    work = Path(build) / ".work"
    units = sorted(p.stem for p in work.glob("*.png") if is_image_unit(p.stem))
    if not units:
        sys.exit(f"{work}: no image units (is {build} a generate build folder?)")
    for u in units:
        (work / f"{u}.labels.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    labelling = ShippedLabelling()
    decision(work, units[0], labelling)  # loads the encoder
    t1 = time.perf_counter()
    for u in units[1:]:
        decision(work, u, labelling)
    t2 = time.perf_counter()
    per = (t2 - t1) / max(1, len(units) - 1)
    print(f"{len(units)} decisions: first (loads the encoder) {t1 - t0:.2f} s, then {per:.3f} s each")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
