"""Generation time against torch thread count, on an idle CPU and on a busy one.

Eight zero-shot parameter prompts from the shipped sim-v1 test split through smollm2-135m
(bf16, one batch, 40 new tokens), timed with every thread count from 1 to all cores, twice
each; then the same with ``--busy`` other processes spinning on the cores. Also prints the
count :func:`ptychobench.models.cpu.cpu_threads` picks in each state.

    .venv/bin/python benchmarks/bench_threads.py --busy 2
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time


def _spin() -> None:
    while True:
        pass


def _time_all(backend, convs, config, counts: list[int]) -> dict[int, list[float]]:
    import torch

    out: dict[int, list[float]] = {t: [] for t in counts}
    for _ in range(2):
        for t in counts:
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            backend.generate(convs, config)
            out[t].append(round(time.perf_counter() - t0, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--busy", type=int, default=2, help="spinning processes for the busy measurement")
    ap.add_argument("--n", type=int, default=8)
    args = ap.parse_args()

    from ptychobench.data import load_dataset
    from ptychobench.models import GenerationConfig, load_backend
    from ptychobench.models.cpu import cpu_threads
    from ptychobench.tasks import get_task

    task = get_task("params")
    convs = [task.render(s) for s in load_dataset("sim-v1").samples("params", "test")[: args.n]]
    backend = load_backend("smollm2-135m", dtype="bfloat16")
    config = GenerationConfig(max_new_tokens=40)
    counts = sorted({1, max(1, (os.cpu_count() or 1) // 2), os.cpu_count() or 1})
    print(
        f"idle: seconds per batch of {args.n} by threads {_time_all(backend, convs, config, counts)}; "
        f"cpu_threads() picks {cpu_threads()}",
        flush=True,
    )
    spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in spinners:
        p.start()
    try:
        time.sleep(1)
        print(
            f"{args.busy} busy processes: seconds by threads {_time_all(backend, convs, config, counts)}; "
            f"cpu_threads() picks {cpu_threads()}",
            flush=True,
        )
    finally:
        for p in spinners:
            p.terminate()


if __name__ == "__main__":
    main()
