"""Torch thread counts on a CPU: fixed by the machine, never by its load.

The thread count changes the order of floating-point reductions, and with it LoRA training
(measured, issue 23: the same params adapter trained with 1 and with 2 threads gave losses
2.654 and 2.625 at its first logged step and different replies) and near-tie greedy tokens.
An earlier version timed 1, half and all cores before each block of work and took the
fastest, which on a busy machine can be several times faster (benchmarks/bench_threads.py:
8 replies in 14 s with 1 thread and 16-112 s with 2, with two other busy processes), but
made the results depend on what else was running. So the count is every core this process
may use, and ``OMP_NUM_THREADS`` (set it to 1 on a shared machine) is the user's way to trade.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def cpu_threads() -> int:
    """Threads for torch on the CPU: ``OMP_NUM_THREADS`` where set, else every core this
    process may use (its CPU affinity, which a scheduler's allocation narrows)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads() -> Iterator[int]:
    """Run a block of CPU torch work with :func:`cpu_threads` threads, and give the caller's
    count back afterwards (a library caller may have set its own). Does nothing where CUDA is there or
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
