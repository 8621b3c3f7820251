"""Before/after timing of the generation benchmark (issue 28), interleaved on one machine.

Runs ``ptychobench run benchmarks/generation.yaml`` (smollm2-135m at float32, sim-v1's 44
parameter test prompts, zero-shot, greedy, 32 new tokens, batch 8, payoff off) with the
baseline code and the new code in turns, A B A B ..., each in a fresh run folder, and
prints the median wall seconds and CPU seconds (user + system of the run's process) of
each side and their ratio, the CPU capability, and whether every run's replies are
identical. CPU seconds move less than wall seconds when other work shares the machine.

    git worktree add /tmp/gen-base 9c1831a
    PTYCHOBENCH_HOME=/tmp/gen-home HF_HUB_OFFLINE=1 python benchmarks/bench_generation.py \\
        --baseline /tmp/gen-base/src --runs 3 --json /tmp/gen-bench.json

Both sides share ``$PTYCHOBENCH_HOME`` (the converted model is made once, before timing,
by one untimed run of each side). Exits 1 when replies differ between any two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_once(src: Path, config: Path, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "ptychobench.cli", "run", str(config), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{src}: ptychobench run failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "load1": round(os.getloadavg()[0], 2)}


def replies(out: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines() if line.strip()]
    return {r["sample_id"]: r["reply"] for r in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", type=Path, required=True, help="the baseline checkout's src folder")
    ap.add_argument("--new", type=Path, default=HERE.parent / "src", help="the new code's src folder")
    ap.add_argument("--config", type=Path, default=HERE / "generation.yaml")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per side (interleaved)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gen-bench"), help="run folders go here")
    ap.add_argument("--json", type=Path, help="write the timings here")
    ap.add_argument(
        "--no-warm", dest="warm", action="store_false", help="skip the untimed first run of each side (model converted)"
    )
    args = ap.parse_args()

    import torch

    sides = {"baseline": args.baseline.resolve(), "new": args.new.resolve()}
    if args.warm:  # untimed: converts the model once and warms the file cache
        for name, src in sides.items():
            run_once(src, args.config, args.work / f"{name}-warm")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for i in range(args.runs):
        for name, src in sides.items():
            t = run_once(src, args.config, args.work / f"{name}-{i}")
            times[name].append(t)
            print(f"run {i} {name}: {t}", flush=True)

    seen = {f"{name}-{i}": replies(args.work / f"{name}-{i}") for name in sides for i in range(args.runs)}
    first = next(iter(seen.values()))
    identical = all(r == first for r in seen.values())
    med = {name: {k: statistics.median(t[k] for t in ts) for k in ("wall_s", "cpu_s")} for name, ts in times.items()}
    result = {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "runs": times,
        "median": med,
        "ratio_wall": round(med["baseline"]["wall_s"] / med["new"]["wall_s"], 3),
        "ratio_cpu": round(med["baseline"]["cpu_s"] / med["new"]["cpu_s"], 3),
        "replies": len(first),
        "replies_identical": identical,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
