import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from ptychobench.eval.score import score_records
from ptychobench.eval.store import PredictionStore, read_run

WORKER = Path(__file__).with_name("_store_worker.py")


def _run(dataset, store, delay, kill_after=None):
    p = subprocess.Popen([sys.executable, str(WORKER), str(dataset), str(store), str(delay)])
    if kill_after is None:
        assert p.wait(timeout=120) == 0
        return True
    try:
        p.wait(timeout=kill_after)
        return True
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        return False


def _comparable(records):
    return sorted(
        (r["config"], r["sample_id"], r["reply"], tuple(r["labels"]), r["parse_ok"], r["prompt_hash"]) for r in records
    )


def test_sigkill_midway_then_resume_equals_uninterrupted_run(tiny_dataset, tmp_path):
    whole = tmp_path / "whole" / "predictions.jsonl"
    _run(tiny_dataset, whole, 0.0)
    killed = tmp_path / "killed" / "predictions.jsonl"
    rng = random.Random(0)
    kills = 0
    while not _run(tiny_dataset, killed, 0.05, kill_after=rng.uniform(1.2, 2.5)):
        kills += 1
        assert kills < 40
    assert kills >= 1, "the worker was never killed: the test proves nothing"
    a, b = read_run(whole.parent), read_run(killed.parent)
    assert len(a) == len(b) == 2 * 18
    assert _comparable(a) == _comparable(b)
    lines = killed.read_text().splitlines()
    keys = [(json.loads(ln)["config"], json.loads(ln)["sample_id"]) for ln in lines]
    assert len(keys) == len(set(keys)), "a resumed run duplicated a line"
    sa = {r.config: r.scores.as_dict() for r in score_records(a)}
    sb = {r.config: r.scores.as_dict() for r in score_records(b)}
    assert sa == sb


def test_torn_last_line_is_cut_and_redone(tmp_path):
    path = tmp_path / "predictions.jsonl"
    store = PredictionStore(path)
    store.append({"config": "c", "sample_id": "s1", "labels": []})
    with path.open("a") as f:
        f.write('{"config": "c", "sample_id": "s2", "lab')  # a writer killed mid-line
    again = PredictionStore(path)
    assert again.is_done("c", "s1") and not again.is_done("c", "s2")
    assert path.read_text().endswith("}\n")
    again.append({"config": "c", "sample_id": "s2", "labels": ["A"]})
    assert [json.loads(ln)["sample_id"] for ln in path.read_text().splitlines()] == ["s1", "s2"]


def test_errors_are_stored_counted_and_retried(tmp_path):
    store = PredictionStore(tmp_path / "predictions.jsonl")
    store.append({"config": "c", "sample_id": "s1", "task": "params", "gold": [], "labels": [], "error": "timeout"})
    assert not store.is_done("c", "s1") and len(store) == 1
    store.append(
        {"config": "c", "sample_id": "s1", "task": "params", "gold": [], "labels": [], "error": None, "reply": "ok"}
    )
    assert store.is_done("c", "s1")
    assert read_run(tmp_path)[0]["reply"] == "ok"
