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
            assert n in {1, max(1, os.cpu_count() // 2), os.cpu_count()}
        assert torch.get_num_threads() == 1
        assert 1 <= cpu_threads(repeats=1) <= os.cpu_count()
    finally:
        torch.set_num_threads(before)


def test_the_users_omp_num_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    with torch_threads() as n:
        assert n == before == torch.get_num_threads()
