import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ptychobench.errors import ConfigError
from ptychobench.eval.score import score_records
from ptychobench.eval.store import read_run
from ptychobench.report import write_report
from ptychobench.run import Runner, expand, parse_config, parse_shard, shard_cells


def _cfg(dataset, **extra):
    data = {
        "name": "t",
        "dataset": str(dataset),
        "seeds": [0],
        "experiments": [
            {"task": "params", "baselines": ["knn-vote", "text-probe"]},
            {"task": "artifacts", "baselines": ["knn-vote"]},
        ],
        **extra,
    }
    return parse_config(data, "test.yaml")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"experiments": [{"task": "params", "model": "hf:m", "strategies": ["magic"]}]}, "unknown strategy 'magic'"),
        (
            {"experiments": [{"task": "params", "model": "hf:m", "strategies": ["icl"], "k": [0]}]},
            "icl strategies need a k > 0",
        ),
        ({"experiments": [{"task": "nope", "model": "hf:m"}]}, "task must be"),
        ({"experiments": [{"task": "params"}]}, "needs a 'model' or 'baselines'"),
        (
            {"experiments": [{"task": "params", "baselines": ["vision-probe"]}]},
            "baseline 'vision-probe' reads image input",
        ),
        ({"experimnts": []}, "unknown key(s) ['experimnts']"),
        ({"experiments": [{"task": "params", "model": "hf:m", "selectors": ["best"]}]}, "unknown demo selector 'best'"),
    ],
)
def test_bad_configs_fail_clearly(bad, message):
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "x", "dataset": "d", **bad}, "my.yaml")
    assert message in str(e.value) and "my.yaml" in str(e.value)


def test_grid_expansion_and_shards_partition_it():
    cfg = parse_config(
        {
            "name": "x",
            "dataset": "d",
            "seeds": [0, 1],
            "train_sizes": [8, "all"],
            "experiments": [
                {
                    "task": "params",
                    "model": "hf:m",
                    "strategies": ["zero-shot", "icl", "sft", "sft+icl"],
                    "selectors": ["random", "knn"],
                    "k": [0, 1, 3],
                },
                {"task": "params", "baselines": ["knn-vote"]},
            ],
        },
        "x.yaml",
    )
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
    # the per-label picture leaves out (naming them) the labels no test sample has, whose
    # F1 of 0 would say nothing
    from ptychobench.data import load_dataset
    from ptychobench.tasks import PARAM_OPTIONS

    test = load_dataset(tiny_dataset).samples("params", "test")
    absent = [x for x in PARAM_OPTIONS if not any(x in s.labels for s in test)]
    assert absent  # 6 test samples cannot use all 24 options
    html_text = paths["html"].read_text()
    assert f"not in the test set, left out: {', '.join(absent)}" in html_text


def _cli(cfg: Path, out: Path, *extra: str, env: dict | None = None, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ptychobench.cli", "run", str(cfg), "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _finish(p: subprocess.Popen) -> None:
    err = p.communicate()[1]
    assert p.returncode == 0, err[-3000:]


def _run_with_kills(cfg: Path, out: Path, whole_s: float, env: dict | None = None) -> int:
    """Run ``cfg`` into ``out``, SIGKILL-ing it at random points until one run finishes
    after at least one kill; return the number of kills."""
    rng, kills, frac = random.Random(0), 0, 0.6
    while True:
        p = _cli(cfg, out, env=env)
        try:
            # kill at a random point of a run (later runs have less left to do)
            p.wait(timeout=max(0.5, whole_s * frac * rng.uniform(0.6, 1.0)))
            _finish(p)
            if kills:
                return kills
            shutil.rmtree(out)  # finished before any kill: start over, kill sooner
            frac /= 2
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.communicate()
            kills += 1
            frac = 0.6 + 0.2 * kills  # each resume has less left to do, startup stays
            assert kills < 30


def _timed_run(cfg: Path, out: Path, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    _finish(_cli(cfg, out, env=env))
    return time.perf_counter() - t0


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_report(tiny_dataset, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "k",
                "dataset": str(tiny_dataset),
                "seeds": [0, 1],
                "experiments": [
                    {"task": "params", "baselines": ["knn-vote", "text-probe"]},
                    {"task": "artifacts", "baselines": ["knn-vote", "vision-probe"]},
                ],
            }
        )
    )
    whole_s = _timed_run(cfg, tmp_path / "whole")
    assert _run_with_kills(cfg, tmp_path / "killed", whole_s) >= 1
    whole = json.loads((tmp_path / "whole" / "scores.json").read_text())
    resumed = json.loads((tmp_path / "killed" / "scores.json").read_text())
    assert whole == resumed and len(whole) == 8


def _outcome(run_dir: Path) -> tuple[dict, dict]:
    """What a run found, free of where it ran: the scores of each cell and each
    prediction's raw reply and parsed labels."""
    scores = {
        s["config"]: {k: v for k, v in s.items() if k != "meta"}
        for s in json.loads((run_dir / "scores.json").read_text())
    }
    replies = {
        (r["config"], r["sample_id"]): (r["reply"], r["labels"], r["parse_ok"], r["error"], r["demos"])
        for r in read_run(run_dir)
    }
    return scores, replies


@pytest.mark.slow
def test_model_grid_on_the_quick_dataset_end_to_end(quick_build, tmp_path):
    """The offline models through every strategy, on a freshly simulated dataset: one run,
    a run killed and resumed, and two shards give the same report."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "dataset": str(quick_build),
                # one params test sample: a cell's failure rate is 0% or 100%, and this test
                # compares whole, resumed and sharded runs, not the model's answers
                "max_failure_rate": 1.0,
                "max_new_tokens": 24,
                "batch_size": 2,
                "experiments": [
                    {
                        "task": "params",
                        "model": "smollm2-135m",
                        "strategies": ["zero-shot", "icl", "sft", "sft+icl"],
                        "selectors": ["random", "knn"],
                        "k": [0, 1],
                        "sft": {"epochs": 1},
                    },
                    {
                        "task": "artifacts",
                        "model": "tiny-vlm",
                        "strategies": ["zero-shot", "sft", "sft+icl"],
                        "selectors": ["knn"],
                        "k": [0, 1],
                        "sft": {"epochs": 1},
                    },
                    {"task": "artifacts", "baselines": ["knn-vote", "vision-probe"]},
                ],
            }
        )
    )
    # one thread: the same float reductions in every process, so every run and every
    # retraining gives the same weights and the same greedy replies
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole_env = {**env, "PTYCHOBENCH_HOME": str(tmp_path / "home-whole")}
    whole_s = _timed_run(cfg, tmp_path / "whole", whole_env)
    scores, replies = _outcome(tmp_path / "whole")
    assert len(scores) == 6 + 3 + 2
    assert len(replies) == 6 * 1 + 5 * 2  # params: 1 test sample; artifacts: 2
    adapters = sorted(p.parent.name for p in (tmp_path / "home-whole" / "adapters").glob("*/adapter_config.json"))
    assert [a.split("-")[0] for a in adapters] == ["artifacts", "params"]  # one per model, for SFT and SFT+ICL
    for config, s in scores.items():
        assert s["n"] == (1 if config.startswith("params") else 2)
        assert s["parse_failures"] + s["errors"] <= s["n"]
    report = (tmp_path / "whole" / "report.md").read_text()
    assert "smollm2-135m" in report and "tiny-vlm" in report and "sft+icl" in report
    adapter_section = report.split("## Fine-tuned adapters")[1].split("##")[0]
    assert adapter_section.count("| 1.00 / 1 | no |") == 2  # both trained their one epoch in full

    # killed at random points, with its own adapter cache (so a kill can land in fine-tuning)
    killed_env = {**env, "PTYCHOBENCH_HOME": str(tmp_path / "home-killed")}
    assert _run_with_kills(cfg, tmp_path / "killed", whole_s, killed_env) >= 1
    assert _outcome(tmp_path / "killed") == (scores, replies)

    # two shards, run side by side, merged by the report
    shards = [_cli(cfg, tmp_path / "sharded", "--shard", f"{i}/2", env=whole_env) for i in (0, 1)]
    for p in shards:
        _finish(p)
    subprocess.run(
        [sys.executable, "-m", "ptychobench.cli", "report", str(tmp_path / "sharded")],
        check=True,
        capture_output=True,
        env=env,
    )
    assert len(list((tmp_path / "sharded").glob("predictions-shard*of2.jsonl"))) == 2
    assert _outcome(tmp_path / "sharded") == (scores, replies)


def test_learning_curve_sweep_is_nested_and_plotted(tiny_dataset, tmp_path):
    cfg = _cfg(tiny_dataset, train_sizes=[4, 8, "all"])
    Runner(cfg, tmp_path / "lc").run()
    metas = [r.meta for r in score_records(read_run(tmp_path / "lc"))]
    assert sorted({m["n_train"] for m in metas}) == [4, 8, 12]
    paths = write_report(tmp_path / "lc")
    assert (tmp_path / "lc" / "report_files" / "learning_curve_params.png").is_file()
    assert "micro-F1 against training-set size" in paths["html"].read_text()


def test_report_says_how_far_each_adapter_trained(tmp_path):
    from ptychobench.eval.metrics import score
    from ptychobench.eval.score import ConfigScores
    from ptychobench.report.tables import adapter_rows
    from ptychobench.report.words import adapter_words

    s = score([frozenset({"K"})], [frozenset({"K"})], ["K"], ci=False)
    stopped = {
        "steps": 19,
        "epochs_done": 1.58,
        "epochs_planned": 3,
        "stopped_by_time_budget": True,
        "time_budget_s": 150,
        "wall_time_s": 155.0,
        "train_loss": 1.6,
        "train_samples": 91,
    }
    full = {**stopped, "steps": 36, "epochs_done": 3.0, "stopped_by_time_budget": False}
    results = [
        ConfigScores(
            f"params/m/{st}/x",
            "params",
            {"model": "m", "adapter": "/a/params-m", "adapter_training": stopped},
            s,
            ["1"],
        )
        for st in ("sft", "sft+icl")
    ]
    results.append(
        ConfigScores(
            "artifacts/v/sft/x",
            "artifacts",
            {"model": "v", "adapter": str(tmp_path / "gone"), "adapter_training": full},
            s,
            ["1"],
        )
    )
    results.append(ConfigScores("params/m/zero-shot/x", "params", {"model": "m"}, s, ["1"]))
    rows = adapter_rows(results)
    assert [(r["task"], r["cells"]) for r in rows] == [("artifacts", 1), ("params", 2)]
    words = " ".join(adapter_words(rows))
    assert "params adapter for m stopped at its 150 s time budget after 1.58 of 3 epochs" in words
    assert "artifacts" not in words  # trained fully: nothing to warn about


def test_learning_curve_ticks_are_the_training_sizes_in_plain_digits(tiny_dataset, tmp_path, monkeypatch):
    """The plots draw strings as written (no mathtext), so the log axis's own labels showed
    as raw "$\\mathdefault{2^{3}}$"; the ticks are now the sizes themselves."""
    import ptychobench.report.plots as plots

    seen: dict[str, list[str]] = {}
    save = plots._save

    def spy(fig, path, caption):
        if path.name.startswith("learning_curve"):
            fig.canvas.draw()
            seen[path.name] = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
        return save(fig, path, caption)

    monkeypatch.setattr(plots, "_save", spy)
    Runner(_cfg(tiny_dataset, train_sizes=[4, 8, "all"]), tmp_path / "lc").run()
    write_report(tmp_path / "lc")
    assert seen and all(labels == ["4", "8", "12"] for labels in seen.values()), seen
