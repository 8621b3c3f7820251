"""Reconstructions per second and the cache's hit rate of ``ptychobench payoff`` on a run.

Usage: python benchmarks/payoff_bench.py RUN_DIR [--seeds 1] [--workers 2]

Runs the payoff twice: the first pass reconstructs what the cache lacks (rate = new
reconstructions / wall seconds), the second must hit the cache for everything. Both passes
write payoff.json/payoff.csv and the cache inside RUN_DIR only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ptychobench.cli.loop import compute_run_payoff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    for label in ("first pass", "rerun"):
        t0 = time.perf_counter()
        res = compute_run_payoff(a.run, a.dataset, a.seeds, a.workers)
        wall = time.perf_counter() - t0
        if res is None:
            return
        rc = res["reconstructions"]
        asked = rc["computed"] + rc["cache_hits"]
        rate = rc["computed"] / rc["seconds"] if rc["seconds"] > 0 and rc["computed"] else 0.0
        print(
            f"{label}: {wall:.1f} s wall, {rc['computed']} reconstructions in {rc['seconds']:.1f} s "
            f"({rate:.2f} per second, {a.workers} worker(s)), cache hit rate {rc['cache_hits'] / max(1, asked):.1%} "
            f"({rc['cache_hits']} of {asked})"
        )


if __name__ == "__main__":
    main()
