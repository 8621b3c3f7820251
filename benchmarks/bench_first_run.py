"""The embedded default's first run, timed the way a new user meets it (issue 23).

Runs ``ptychobench run [CONFIG]`` in a fresh process with empty ``PTYCHOBENCH_HOME`` and
``PTYCHOBENCH_CACHE`` (model conversion, embeddings, adapters, predictions, payoff and report
all computed anew) and prints the CPU capability, the dtype ``auto`` chose, the seconds of
each cell and of each adapter's training, the payoff's, and the whole run's. The run's own
log is kept beside the run folder (``OUT.log``).

    .venv/bin/python benchmarks/bench_first_run.py --out /tmp/first-run
    .venv/bin/python benchmarks/bench_first_run.py --out /tmp/first-run-avx2 --emulate-avx2

``--emulate-avx2`` caps torch's kernels (``ATEN_CPU_CAPABILITY=avx2``) and oneDNN's
(``ONEDNN_MAX_CPU_ISA=AVX2``) at AVX2 on a newer CPU: the code paths of an AVX2-only machine,
not its clock or caches, so name it as emulated wherever its times are written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CELL = re.compile(r"^cell (?P<config>\S+) n=(?P<n>\d+) time=(?P<s>[\d.]+)s errors=(?P<errors>\d+)")
PAYOFF = re.compile(r"^payoff: (?P<new>\d+) reconstructions new, (?P<hits>\d+) from the cache \((?P<s>\d+) s\)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default="default", help="a shipped config name or a YAML file")
    ap.add_argument("--out", type=Path, required=True, help="the run folder (emptied first)")
    ap.add_argument("--emulate-avx2", action="store_true", help="cap torch and oneDNN at AVX2 (see above)")
    args = ap.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    state = Path(tempfile.mkdtemp(prefix="ptychobench-first-run-"))
    env = {**os.environ, "PTYCHOBENCH_HOME": str(state / "home"), "PTYCHOBENCH_CACHE": str(state / "cache")}
    env.pop("OMP_NUM_THREADS", None)  # the tool picks its own threads, as for a user
    if args.emulate_avx2:
        env.update(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2")
    exe = Path(sys.executable).with_name("ptychobench")
    cmd = [str(exe), "run", args.config, "--out", str(args.out)]
    log_path = args.out.with_name(args.out.name + ".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log_path.open("w") as log:
        rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True).returncode
    wall = time.perf_counter() - start
    log_text = log_path.read_text(errors="replace")

    cells = [m.groupdict() for line in log_text.splitlines() if (m := CELL.match(line.strip()))]
    payoff = next((m.groupdict() for line in log_text.splitlines() if (m := PAYOFF.match(line.strip()))), None)
    dtype_line = next((line.strip() for line in log_text.splitlines() if line.strip().startswith("dtype auto")), "")
    adapters = []
    for manifest in sorted((state / "home" / "adapters").glob("*/ptychobench_adapter.json")):
        m = json.loads(manifest.read_text())
        adapters.append((manifest.parent.name, m.get("steps"), m.get("load_time_s"), m.get("wall_time_s")))

    import torch

    print(f"command: {' '.join(cmd)}{'  (emulated AVX2)' if args.emulate_avx2 else ''}")
    print(f"torch CPU capability: {torch.backends.cpu.get_cpu_capability()} (this process, without the caps)")
    print(dtype_line or "dtype auto: not reported (no local model cell ran)")
    print(f"exit code {rc}; whole run {wall:.0f} s ({wall / 60:.1f} min)")
    print("\n| cell | test samples | seconds | errors |\n|---|---|---|---|")
    for c in cells:
        print(f"| {c['config']} | {c['n']} | {float(c['s']):.1f} | {c['errors']} |")
    print("\n| adapter | steps | load s | train s |\n|---|---|---|---|")
    for name, steps, load_s, train_s in adapters:
        print(f"| {name} | {steps} | {load_s} | {train_s} |")
    if payoff:
        print(f"\npayoff: {payoff['new']} reconstructions, {payoff['s']} s")
    print(f"\nlog: {log_path}; state: {state}")
    sys.exit(rc)


if __name__ == "__main__":
    main()
