"""Print (and with --out, write) the perturbation matrix of the sim-v2 labels.

    python benchmarks/perturbation_matrix.py --seeds 3 --out runs/perturbation

Numpy only, about 30 s per seed on one core. The validation report links the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ptychobench.sim.perturb import markdown, matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="folder for perturbation.md and perturbation.json")
    args = ap.parse_args()
    rows = matrix(seeds=args.seeds)
    md = markdown(rows)
    print(md)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "perturbation.md").write_text(md)
        (args.out / "perturbation.json").write_text(json.dumps(rows, indent=0))


if __name__ == "__main__":
    main()
