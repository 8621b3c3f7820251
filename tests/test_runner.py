import json
from pathlib import Path

import pytest
import yaml

from ptychobench.report import write_report
from ptychobench.runner import ConfigError, Runner, expand, parse_config, parse_shard, shard_cells
from ptychobench.evaluate import score_records
from ptychobench.store import read_run


def _cfg(dataset, **extra):
    data = {
        "name": "t", "dataset": str(dataset), "seeds": [0], "experiments": [
            {"task": "params", "baselines": ["knn-vote", "text-probe"]},
            {"task": "artifacts", "baselines": ["knn-vote"]},
        ], **extra}
    return parse_config(data, "test.yaml")


@pytest.mark.parametrize("bad, message", [
    ({"experiments": [{"task": "params", "model": "m", "strategies": ["magic"]}]}, "unknown strategy 'magic'"),
    ({"experiments": [{"task": "params", "model": "m", "strategies": ["icl"], "k": [0]}]}, "icl strategies need a k > 0"),
    ({"experiments": [{"task": "nope", "model": "m"}]}, "task must be"),
    ({"experiments": [{"task": "params"}]}, "needs a 'model' or 'baselines'"),
    ({"experiments": [{"task": "params", "baselines": ["vision-probe"]}]}, "vision-probe needs images"),
    ({"experimnts": []}, "unknown key(s) ['experimnts']"),
    ({"experiments": [{"task": "params", "model": "m", "selectors": ["best"]}]}, "unknown selector 'best'"),
])
def test_bad_configs_fail_clearly(bad, message):
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "x", "dataset": "d", **bad}, "my.yaml")
    assert message in str(e.value) and "my.yaml" in str(e.value)


def test_grid_expansion_and_shards_partition_it():
    cfg = parse_config({"name": "x", "dataset": "d", "seeds": [0, 1], "train_sizes": [8, "all"], "experiments": [
        {"task": "params", "model": "m", "strategies": ["zero-shot", "icl", "sft", "sft+icl"],
         "selectors": ["random", "knn"], "k": [0, 1, 3]},
        {"task": "params", "baselines": ["knn-vote"]}]}, "x.yaml")
    cells = expand(cfg)
    names = [c.config for c in cells]
    assert len(names) == len(set(names))
    # zero-shot once; icl, sft+icl: 2 selectors x 2 k x 2 seeds x 2 sizes; sft: 2 x 2; baseline 2 x 2
    assert len(cells) == 1 + 16 + 4 + 16 + 4
    parts = [shard_cells(cells, (i, 3)) for i in range(3)]
    assert sorted(c.config for p in parts for c in p) == sorted(names)
    for p in parts:  # an adapter's cells stay on one shard
        for q in parts:
            if p is not q:
                assert not {c.group for c in p} & {c.group for c in q}
    with pytest.raises(ConfigError):
        parse_shard("3/2")


def test_baseline_grid_runs_reruns_from_store_and_shards_merge(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset)
    one = Runner(cfg, tmp_path / "one").run()
    assert one["ran"] == 3
    again = Runner(cfg, tmp_path / "one").run()
    assert again["ran"] == 0
    for i in range(2):
        Runner(cfg, tmp_path / "sharded", shard=(i, 2)).run()
    assert sorted((tmp_path / "sharded").glob("predictions-shard*")) != []
    a = {r.config: r.scores.as_dict() for r in score_records(read_run(tmp_path / "one"))}
    b = {r.config: r.scores.as_dict() for r in score_records(read_run(tmp_path / "sharded"))}
    assert a == b and len(a) == 3
    paths = write_report(tmp_path / "one")
    text = paths["md"].read_text()
    assert "## Main table" in text and "knn-vote" in text and "★" in text
    assert "data:image/png;base64," in paths["html"].read_text()
    scores = json.loads(paths["scores"].read_text())
    assert {s["config"] for s in scores} == set(a)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_report(tiny_dataset, tmp_path):
    import random
    import shutil
    import signal
    import subprocess
    import sys
    import time

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"name": "k", "dataset": str(tiny_dataset), "seeds": [0, 1], "experiments": [
        {"task": "params", "baselines": ["knn-vote", "text-probe"]},
        {"task": "artifacts", "baselines": ["knn-vote", "vision-probe"]}]}))
    cmd = [sys.executable, "-m", "ptychobench.cli", "run", str(cfg)]
    t0 = time.perf_counter()
    subprocess.run(cmd + ["--out", str(tmp_path / "whole")], check=True, capture_output=True)
    whole_s = time.perf_counter() - t0
    rng, kills, frac = random.Random(0), 0, 0.6
    killed = tmp_path / "killed"
    while True:
        p = subprocess.Popen(cmd + ["--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # kill at a random point of a run (later runs have less left to do)
            assert p.wait(timeout=max(0.5, whole_s * frac * rng.uniform(0.6, 1.0))) == 0
            if kills:
                break
            shutil.rmtree(killed)  # finished before any kill: start over, kill sooner
            frac /= 2
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills += 1
            frac = 0.6 + 0.2 * kills  # each resume has less left to do, startup stays
            assert kills < 30
    assert kills >= 1
    whole = json.loads((tmp_path / "whole" / "scores.json").read_text())
    resumed = json.loads((killed / "scores.json").read_text())
    assert whole == resumed and len(whole) == 8


def test_learning_curve_sweep_is_nested_and_plotted(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, train_sizes=[4, 8, "all"])
    Runner(cfg, tmp_path / "lc").run()
    metas = [r.meta for r in score_records(read_run(tmp_path / "lc"))]
    assert sorted({m["n_train"] for m in metas}) == [4, 8, 12]
    paths = write_report(tmp_path / "lc")
    assert (tmp_path / "lc" / "report_files" / "learning_curve_params.png").is_file()
    assert "micro-F1 against training-set size" in paths["html"].read_text()
