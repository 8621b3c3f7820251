"""Torch thread counts on a CPU that other work may share.

OpenMP threads wait for each other at every kernel, so on a busy machine one descheduled
thread stalls the rest. Measured on this project's 2-core machine with two other busy
processes: smollm2-135m generated 8 replies in 14 s with 1 thread and 16-112 s with 2 (idle:
10 s and 5 s; benchmarks/bench_threads.py, docs/backends.md); a training step took 4 s with
1 thread and 43 s with 2. So the thread count is chosen by a quick timing rather than fixed
at the number of cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager


def cpu_threads(repeats: int = 3) -> int:
    """Threads for torch on the CPU, chosen by timing a small matmul workload with 1, half
    and all cores (well under a second). More threads must be clearly faster to be chosen."""
    import torch

    n = os.cpu_count() or 1
    if n == 1:
        return 1
    before = torch.get_num_threads()
    a = torch.randn(384, 384)
    timings: dict[int, list[float]] = {t: [] for t in sorted({1, max(1, n // 2), n})}
    try:
        for _ in range(repeats):
            for t, times in timings.items():
                torch.set_num_threads(t)
                a @ a  # warm-up at this thread count
                start = time.perf_counter()
                for _ in range(8):
                    a @ a
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    median = {t: sorted(v)[len(v) // 2] for t, v in timings.items()}
    best = 1
    for t in sorted(median):
        if median[t] < 0.75 * median[best]:
            best = t
    return best


@contextmanager
def torch_threads() -> Iterator[int]:
    """Run a block of CPU torch work with the thread count :func:`cpu_threads` picks now,
    and give the caller's count back afterwards. Does nothing where CUDA is there or
    ``OMP_NUM_THREADS`` is set (the user's choice wins)."""
    import torch

    before = torch.get_num_threads()
    if torch.cuda.is_available() or "OMP_NUM_THREADS" in os.environ:
        yield before
        return
    torch.set_num_threads(cpu_threads())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
