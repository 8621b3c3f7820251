import os

import pytest

torch = pytest.importorskip("torch")

from ptychobench.models.cpu import cpu_threads, torch_threads


def test_thread_choice_is_a_valid_count_and_the_callers_comes_back(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch_threads() as n:
            assert n == torch.get_num_threads()
            assert n == len(os.sched_getaffinity(0))
        assert torch.get_num_threads() == 1
        assert cpu_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)


def test_the_users_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    with torch_threads() as n:
        assert n == before == torch.get_num_threads()


def test_the_count_does_not_depend_on_the_machines_load(monkeypatch):
    """Issue 23: results depend on the thread count, so it is fixed by the machine (its
    cores, or the user's OMP_NUM_THREADS), never timed against whatever else is running."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    assert cpu_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads() == 1
