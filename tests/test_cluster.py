"""Cluster runs: --shard auto from Slurm/PBS environments, each shard's GPUs, the
cost-balanced plan of the paper grid, per-cell log lines, and submitit's local executor
running a grid as separate jobs whose merged scores equal one process's."""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.errors import ConfigError
from ptychobench.run import Runner, expand, load_config, parse_config
from ptychobench.run.plan import dataset_sizes, make_plan, params_b, resources, shard_resources
from ptychobench.run.scheduler import detect_shard, resolve_shard, shard_devices

# ----------------------------------------------------------------- --shard auto


@pytest.mark.parametrize(
    "env, want",
    [
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1", "PTYCHOBENCH_SHARDS": "4"}, (2, 4)),  # resubmitted
        ({"PBS_ARRAY_INDEX": "1", "PTYCHOBENCH_SHARDS": "3"}, (1, 3)),  # PBS Pro
        ({"PBS_ARRAYID": "0", "PTYCHOBENCH_SHARDS": "2"}, (0, 2)),  # Torque
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}, (3, 4)),  # srun -n 4
        ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, (1, 2)),  # torchrun
    ],
)
def test_shard_auto_reads_the_scheduler(env, want):
    assert detect_shard(env) == want
    assert resolve_shard("auto", env) == want


def test_shard_auto_count_and_clear_errors():
    assert resolve_shard("auto/5", {"PBS_ARRAY_INDEX": "4"}) == (4, 5)
    assert resolve_shard("auto/4", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "1"}) == (2, 4)
    assert resolve_shard("1/3", {}) == (1, 3) and resolve_shard(None, {}) is None
    for env, text, msg in [
        ({}, "auto", "no job array"),
        ({"PBS_ARRAY_INDEX": "1"}, "auto", "does not say how many shards"),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "auto", "number the array from 0"),
        ({"SLURM_ARRAY_TASK_ID": "x"}, "auto", "not an integer"),
        ({"PBS_ARRAY_INDEX": "1"}, "auto/zero", "expected auto or auto/N"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            resolve_shard(text, env)


def test_each_shard_takes_its_own_gpus():
    four = ["0", "1", "2", "3"]
    # torchrun / accelerate: one copy per GPU by local rank
    assert shard_devices((1, 4), env={"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, devices=four) == ["1"]
    # srun -n 2 on a 4-GPU node: two GPUs each, by SLURM_LOCALID
    env = {"SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NTASKS": "2"}
    assert shard_devices((1, 2), env=env, devices=four) == ["2", "3"]
    # shards started by hand on one node: by shard index, wrapping around
    assert shard_devices((5, 8), gpus_per_shard=1, env={}, devices=four) == ["1"]
    assert shard_devices((1, 2), gpus_per_shard=2, env={}, devices=four) == ["2", "3"]
    # the scheduler already gave this task only its GPUs, or nothing asked: left alone
    assert shard_devices((3, 4), gpus_per_shard=1, env={}, devices=["7"]) is None
    assert shard_devices((3, 4), env={}, devices=four) is None


def test_run_shard_auto_under_simulated_slurm_and_pbs(tiny_dataset, tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {
                "name": "c",
                "dataset": str(tiny_dataset),
                "experiments": [
                    {"task": "params", "baselines": ["knn-vote"]},
                    {"task": "artifacts", "baselines": ["knn-vote"]},
                ],
            }
        )
    )
    for k in (
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "PBS_ARRAY_INDEX",
        "RANK",
        "WORLD_SIZE",
        "SLURM_PROCID",
        "SLURM_NTASKS",
        "PTYCHOBENCH_SHARDS",
        "LOCAL_RANK",
    ):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--shard", "auto"])
    assert r.exit_code == 0, r.output
    assert "shard 1/2" in r.output and (tmp_path / "run" / "predictions-shard1of2.jsonl").is_file()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    monkeypatch.setenv("PBS_ARRAY_INDEX", "0")
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--shard", "auto/2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "predictions-shard0of2.jsonl").is_file()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    scores = json.loads((tmp_path / "run" / "scores.json").read_text())
    assert r.exit_code == 0 and len(scores) == 2  # both shards merged
    monkeypatch.delenv("PBS_ARRAY_INDEX")
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(tmp_path / "run"), "--shard", "auto"])
    assert r.exit_code == 2 and "no job array" in r.output and "Traceback" not in r.output


def test_run_pins_each_shard_to_its_gpus(tiny_dataset, tmp_path, monkeypatch):
    import os

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        json.dumps(
            {"name": "c", "dataset": str(tiny_dataset), "experiments": [{"task": "params", "baselines": ["knn-vote"]}]}
        )
    )
    for k in ("LOCAL_RANK", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    r = CliRunner().invoke(
        app, ["run", str(cfg), "--out", str(tmp_path / "r"), "--shard", "1/2", "--gpus-per-shard", "2"]
    )
    assert r.exit_code == 0, r.output
    assert "shard 1/2, GPUs 2,3" in r.output and os.environ["CUDA_VISIBLE_DEVICES"] == "2,3"


# ----------------------------------------------------------------- the plan


def test_model_sizes_and_resources():
    assert params_b("llama-3.1-70b") == 70 and params_b("llama-3.2-11b-vision") == 11
    assert params_b("smollm2-135m") == pytest.approx(0.135) and params_b("hf:org/Foo-7B-Instruct") == 7
    assert resources("llama-3.2-90b-vision").gpus == 3 and resources("llama-3.1-8b").gpus == 1
    assert resources("smollm2-135m").gpus == 0 and resources("gpt-4o").gpus == 0 and resources(None).gpus == 0


def test_plan_balances_the_paper_grid_over_four_shards():
    cfg = load_config("paper")
    from ptychobench.data import load_dataset

    cells = expand(cfg)
    plan = make_plan(cfg, cells, 4, dataset_sizes(load_dataset(cfg.dataset, check_images=False)))
    mean = plan.mean
    assert all(abs(s.cost - mean) <= 0.25 * mean for s in plan.shards), [round(s.cost / mean, 3) for s in plan.shards]
    names = sorted(c.config for s in plan.shards for c in s.cells)
    assert names == sorted(c.config for c in cells)  # every cell exactly once
    for g in {c.group for c in cells if c.uses_adapter}:  # an adapter trains on one shard only
        assert sum(any(c.group == g for c in s.cells) for s in plan.shards) == 1
    assert sum("llama-3.1-70b" in s.models for s in plan.shards) == 1  # the 70B model loads once
    # the 90B is fine-tuned once per seed (paper.yaml, QLoRA): each adapter group is the
    # largest unit and keeps its own shard, and the base model's cells join one of them
    groups_90b = {c.group for c in cells if c.model == "llama-3.2-90b-vision" and c.uses_adapter}
    assert sum("llama-3.2-90b-vision" in s.models for s in plan.shards) <= len(groups_90b) + 1
    # a shard's job asks for its largest model's GPUs
    assert max(shard_resources(s, cfg).gpus for s in plan.shards) == 3
    # deterministic: every array task computes the same plan
    again = make_plan(cfg, cells, 4, dataset_sizes(load_dataset(cfg.dataset, check_images=False)))
    assert [[c.config for c in s.cells] for s in again.shards] == [[c.config for c in s.cells] for s in plan.shards]


def test_plan_with_more_shards_than_groups_leaves_some_empty(tiny_dataset):
    from ptychobench.data import load_dataset

    cfg = _baseline_cfg(tiny_dataset)
    cells = expand(cfg)
    plan = make_plan(cfg, cells, 5, dataset_sizes(load_dataset(tiny_dataset)))
    assert sorted(len(s.cells) for s in plan.shards) == [0, 0, 1, 1, 1]
    assert sorted(c.config for s in plan.shards for c in s.cells) == sorted(c.config for c in cells)


def test_run_plan_prints_the_table_and_runs_nothing(tmp_path):
    r = CliRunner().invoke(
        app, ["run", "paper", "--plan", "--shards", "4", "--out", str(tmp_path / "p")], env={"COLUMNS": "200"}
    )
    assert r.exit_code == 0, r.output
    assert "plan of paper: 4 shards" in r.output and "llama-3.1-70b" in r.output
    assert re.search(r"largest shard \+\d+\.\d% of the mean", r.output)
    assert "artifacts/llama-3.2-90b-vision/icl/knn/k7/seed2/nall" in r.output  # the per-cell listing
    assert not (tmp_path / "p").exists()


# ----------------------------------------------------------------- logs under a scheduler


def _baseline_cfg(dataset, seeds=(0,)):
    return parse_config(
        {
            "name": "b",
            "dataset": str(dataset),
            "seeds": list(seeds),
            "experiments": [
                {"task": "params", "baselines": ["knn-vote", "text-probe"]},
                {"task": "artifacts", "baselines": ["knn-vote"]},
            ],
        },
        "b.yaml",
    )


def test_one_log_line_per_finished_cell_off_a_terminal(tiny_dataset, tmp_path):
    buf = io.StringIO()
    Runner(_baseline_cfg(tiny_dataset), tmp_path / "r", console=Console(file=buf, width=300)).run()
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("cell ")]
    assert len(lines) == 3
    for ln in lines:
        assert re.fullmatch(r"cell \S+ n=6 time=\d+\.\ds errors=0", ln), ln
    buf = io.StringIO()
    Runner(_baseline_cfg(tiny_dataset), tmp_path / "t", console=Console(file=buf, force_terminal=True)).run()
    assert "errors=" not in buf.getvalue()  # a terminal gets the live bars instead


# ----------------------------------------------------------------- submitit


def test_submitit_local_runs_three_jobs_and_merges_like_one_process(tiny_dataset, tmp_path):
    pytest.importorskip("submitit")
    from ptychobench.eval.score import score_records
    from ptychobench.eval.store import read_run

    cfg = tmp_path / "b.yaml"
    cfg.write_text(
        json.dumps(
            {
                "name": "b",
                "dataset": str(tiny_dataset),
                "seeds": [0, 1],
                "experiments": [
                    {"task": "params", "baselines": ["knn-vote", "text-probe"]},
                    {"task": "artifacts", "baselines": ["knn-vote"]},
                ],
            }
        )
    )
    r = CliRunner().invoke(
        app,
        ["submit", str(cfg), "--shards", "3", "--cluster", "local", "--hours", "0.2", "--out", str(tmp_path / "jobs")],
    )
    assert r.exit_code == 0, r.output
    assert len(re.findall(r"^shard \d/3: job \d+", r.output, re.M)) == 3 and "report:" in r.output
    assert len([p for p in (tmp_path / "jobs" / "jobs").iterdir() if p.name.isdigit()]) == 3  # three submitit jobs
    stores = sorted(p.name for p in (tmp_path / "jobs").glob("predictions-shard*of3.jsonl"))
    assert stores == [f"predictions-shard{i}of3.jsonl" for i in range(3)]
    Runner(load_config(str(cfg)), tmp_path / "one").run()
    one = {r.config: r.scores.as_dict() for r in score_records(read_run(tmp_path / "one"))}
    merged = {r.config: r.scores.as_dict() for r in score_records(read_run(tmp_path / "jobs"))}
    assert merged == one and len(one) == 6
    from ptychobench.report import write_report

    single = json.loads(write_report(tmp_path / "one")["scores"].read_text())
    assert json.loads((tmp_path / "jobs" / "scores.json").read_text()) == single
    assert (tmp_path / "jobs" / "report.html").is_file()
    logs = "".join(p.read_text() for p in (tmp_path / "jobs" / "jobs").rglob("*_log.out"))
    assert len(re.findall(r"^cell \S+ n=6 time=", logs, re.M)) == 6  # the jobs' logs: one line per cell


# ----------------------------------------------------------------- examples/


def test_example_scripts_parse_and_configs_load():
    import subprocess
    from pathlib import Path

    examples = Path(__file__).parent.parent / "examples"
    scripts = sorted(p for p in examples.iterdir() if p.suffix in (".sh", ".sbatch", ".qsub"))
    assert {p.suffix for p in scripts} == {".sh", ".sbatch", ".qsub"}
    for p in scripts:
        r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
        assert r.returncode == 0, f"{p.name}: {r.stderr}"
    for p in examples.glob("*.yaml"):
        assert expand(load_config(str(p)))
    array = (examples / "slurm-array.sbatch").read_text()
    assert "--array=0-3" in array and "--shard auto/4" in array
    assert "#PBS -J 0-3" in (examples / "pbs-array.qsub").read_text()
