"""Closed loop (issue 12): advice rules, payoff by reconstruction, the cache, resume, rounds."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.data import load_dataset
from ptychobench.eval.record import PredictionRecord
from ptychobench.loop.advice import apply_advice
from ptychobench.loop.cache import ReconCache
from ptychobench.loop.payoff import dataset_scale, experiment_of, outcome, plan
from ptychobench.loop.rounds import run_loop
from ptychobench.sim.labels import GAIN_MARGIN
from ptychobench.sim.recon import ReconParams

runner = CliRunner()


def test_advice_rules():
    p = ReconParams(batch_size=10, momentum=True)
    a = apply_advice({"H", "N", "E", "K", "L"}, p, n_pos=40)
    assert a.contradictory == (("H", "N"),)  # both dropped
    assert a.not_applicable == ("E",)  # momentum already on
    assert a.applied == ("K",) and a.variants == [p.with_(n_epochs=p.n_epochs * 2)]
    b = apply_advice({"A", "H"}, p, n_pos=40)
    assert b.applied == ("A",) and b.subsumed == ("H",) and b.variants[0].batch_size == 40
    q = apply_advice({"Q", "K"}, p, n_pos=40)
    assert len(q.variants) == 2 and all(v.n_epochs == p.n_epochs * 2 for v in q.variants)
    assert not apply_advice({"L"}, p, n_pos=40).changes


@pytest.fixture(scope="module")
def quick(quick_build: Path):
    ds = load_dataset(quick_build, check_images=False)
    scale = dataset_scale(ds)
    assert scale in ("quick", "v2-quick")
    return ds, scale


def _all_params(ds):
    return ds.samples("params", "train") + ds.samples("params", "test")


def test_best_option_reproduces_and_harmful_is_harmed(quick, tmp_path):
    ds, scale = quick
    cache = ReconCache(tmp_path / "c")

    def gains_of(x):
        return {k: g for k, g in x.metadata["option_gains"].items() if g is not None}

    s = max(_all_params(ds), key=lambda x: max(gains_of(x).values()))
    h = min(_all_params(ds), key=lambda x: min(gains_of(x).values()))
    gains, hg = gains_of(s), gains_of(h)
    best = max(gains, key=gains.get)
    worst = min(hg, key=hg.get)
    assert hg[worst] <= -GAIN_MARGIN  # the quick build has a clearly harmful option
    plans = [plan("x", s, experiment_of(s, scale), [best]), plan("x", h, experiment_of(h, scale), [worst])]
    cache.ensure([j for p in plans for j in p.jobs(1)])
    good, bad = (outcome(p, cache, 1) for p in plans)
    assert -good["change"] >= gains[best] - GAIN_MARGIN
    assert good["improved"] or gains[best] < GAIN_MARGIN
    assert bad["harmed"] and not bad["improved"]


def _write_run(run: Path, ds, dataset: Path) -> None:
    (run / "configs").mkdir(parents=True)
    (run / "configs" / "config-0.yaml").write_text(f"name: t\ndataset: {dataset}\n")
    lines = []
    for s in ds.samples("params", "test"):
        gold = sorted(s.labels)
        for cfg, labels in (("params/gold", gold), ("params/contra", ["H", "N", "K"])):
            name = cfg.split("/")[1]
            meta = {"task": "params", "family": "baseline", "model": name, "strategy": name, "k": 0, "seed": 0}
            rec = PredictionRecord(cfg, s.id, "params", gold=gold, labels=labels, meta=meta)
            lines.append(json.dumps(rec.to_dict()))
    (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def payoff_run(quick, quick_build, tmp_path_factory):
    ds, _ = quick
    run = tmp_path_factory.mktemp("payoff") / "run"
    _write_run(run, ds, quick_build)
    res = runner.invoke(app, ["payoff", str(run), "--seeds", "1"])
    assert res.exit_code == 0, res.output
    return run, json.loads((run / "payoff.json").read_text())


def test_payoff_cli_counts_and_references(payoff_run):
    run, result = payoff_run
    cells = {c["config"]: c for c in result["cells"]}
    assert cells["params/contra"]["contradictory"] == len(
        [s for s in result["samples"] if s["config"] == "params/contra"]
    )
    assert {r["config"] for r in result["references"]} == {
        "ref: no change",
        "ref: always increase iterations (K)",
        "ref: gold labels jointly",
    }
    nochange = next(r for r in result["references"] if r["config"] == "ref: no change")
    assert nochange["mean_change"] == 0.0
    assert (run / "payoff.csv").read_text().startswith("config,")
    assert result["reconstructions"]["computed"] > 0


def test_payoff_rerun_hits_cache(payoff_run):
    run, first = payoff_run
    res = runner.invoke(app, ["payoff", str(run), "--seeds", "1"])
    assert res.exit_code == 0, res.output
    again = json.loads((run / "payoff.json").read_text())
    assert again["reconstructions"]["computed"] == 0 and again["reconstructions"]["cache_hits"] > 0
    assert again["samples"] == first["samples"]


def test_killed_payoff_resumes(payoff_run, tmp_path):
    run, first = payoff_run
    fresh = tmp_path / "run"
    shutil.copytree(run, fresh, ignore=shutil.ignore_patterns("payoff*"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ptychobench.cli", "payoff", str(fresh), "--seeds", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((fresh / "payoff-cache").glob("*/*.json")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list((fresh / "payoff-cache").glob("*/*.json")))
    assert done >= 1 and not (fresh / "payoff.json").exists()
    res = runner.invoke(app, ["payoff", str(fresh), "--seeds", "1"])
    assert res.exit_code == 0, res.output
    resumed = json.loads((fresh / "payoff.json").read_text())
    assert resumed["reconstructions"]["cache_hits"] >= done
    assert resumed["samples"] == first["samples"]


def test_not_simulated_is_skipped(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset, check_images=False)
    run = tmp_path / "run"
    _write_run(run, ds, tiny_dataset)
    res = runner.invoke(app, ["payoff", str(run), "--seeds", "1"])
    assert res.exit_code == 0 and "payoff skipped" in res.output and "not simulated" in res.output
    assert not (run / "payoff.json").exists()


def test_loop_three_rounds_rewrites_text(quick, tmp_path):
    ds, scale = quick
    samples = [(s, experiment_of(s, scale)) for s in ds.samples("params", "test")]
    seen: list[list[str]] = []

    def advisor(ss):
        seen.append([s.text for s in ss])
        return [frozenset({"K"}) for _ in ss]

    res = run_loop(samples, advisor, ReconCache(tmp_path / "c"), rounds=3, seeds=1, policies=())
    assert len(seen) == 3 and len(res["mean_error"]["advisor"]) == 4
    base = samples[0][1].params.n_epochs
    assert f"{base} iterations" in seen[0][0] and f"{4 * base} iterations" in seen[2][0]
    steps = res["samples"][samples[0][0].id]["advisor"]
    assert [x["round"] for x in steps] == [0, 1, 2, 3]


@pytest.mark.slow
def test_loop_cli_with_baseline(quick_build, tmp_path):
    out = tmp_path / "loop"
    args = ["loop", "--dataset", str(quick_build), "--baseline", "knn-vote", "--rounds", "3", "--out", str(out)]
    res = runner.invoke(app, [*args, "--policies", "fixed"])
    assert res.exit_code == 0, res.output
    d = json.loads((out / "loop.json").read_text())
    assert len(d["mean_error"]["fixed"]) == 4 and len(d["mean_error"]["advisor"]) == 4
    for t in d["samples"].values():
        steps = t["advisor"]
        assert len(steps) == 4 or "stopped" in steps[-1]


@pytest.mark.slow
@pytest.mark.parametrize("advisor", [["--model", "smollm2-135m"], ["--baseline", "text-probe"]])
def test_loop_cli_three_rounds_with_the_offline_model_and_the_text_probe(quick_build, tmp_path, advisor):
    """Issue 12: the loop runs 3 rounds for the offline model and the baselines on the quick
    dataset; every sample has its round-0 error and either 3 rounds or a stated stop."""
    out = tmp_path / "loop"
    args = ["loop", "--dataset", str(quick_build), *advisor, "--rounds", "3", "--out", str(out), "--policies", "none"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    d = json.loads((out / "loop.json").read_text())
    assert len(d["mean_error"]["advisor"]) == 4
    for t in d["samples"].values():
        steps = t["advisor"]
        assert steps[0]["round"] == 0 and (len(steps) == 4 or "stopped" in steps[-1])


def test_report_shows_payoff(payoff_run):
    from ptychobench.report import write_report

    run, _ = payoff_run
    paths = write_report(run)
    md = paths["md"].read_text()
    assert "## Payoff of parameter advice" in md and "ref: gold labels jointly" in md
    assert (run / "report_files" / "payoff_vs_f1.png").is_file()
    assert "Payoff of parameter advice" in paths["html"].read_text()


@pytest.mark.parametrize(
    "bad, msg",
    [({"payoff": "yes"}, "payoff must be true or false"), ({"payoff_seeds": 0}, "payoff_seeds must be a positive")],
)
def test_payoff_config_validated(bad, msg):
    from ptychobench.errors import ConfigError
    from ptychobench.run.config import parse_config

    data = {"name": "t", "dataset": "sim-v1", "experiments": [{"task": "params", "baselines": ["knn-vote"]}], **bad}
    with pytest.raises(ConfigError, match=msg):
        parse_config(data, "c.yaml")


def test_run_computes_payoff_on_a_simulated_dataset(quick_build, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"name: p\ndataset: {quick_build}\npayoff_seeds: 1\nexperiments:\n  - task: params\n    baselines: [knn-vote]\n"
    )
    out = tmp_path / "run"
    res = runner.invoke(app, ["run", str(cfg), "--out", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads((out / "payoff.json").read_text())
    assert [c["config"] for c in result["cells"]] == ["params/knn-vote/knn-vote/-/k0/seed0/nall"]
    assert "## Payoff of parameter advice" in (out / "report.md").read_text()
    cfg.write_text(cfg.read_text().replace("payoff_seeds: 1\n", "payoff: false\n"))
    off = tmp_path / "off"
    assert runner.invoke(app, ["run", str(cfg), "--out", str(off)]).exit_code == 0
    assert not (off / "payoff.json").exists()


def test_a_failed_reconstruction_stops_a_trajectory_and_is_counted(monkeypatch, tmp_path):
    """The fixed policy once averaged an inf into its round means when K diverged (txt0143
    on sim-v2): a failed reconstruction now keeps the last good error, stops that sample
    and is counted, for the advisor and the policies alike."""
    from types import SimpleNamespace

    from ptychobench.loop import rounds as rd

    exps = {sid: SimpleNamespace(params=SimpleNamespace(n_epochs=10), sid=sid) for sid in ("a", "b")}
    calls = {"n": 0}

    def fake_mean_error(cache, e, variants, seeds):
        calls["n"] += 1
        return (float("inf") if e.sid == "b" and calls["n"] > 2 else 0.5), variants[0]

    monkeypatch.setattr(rd, "mean_error", fake_mean_error)
    monkeypatch.setattr(rd, "candidates", lambda letter, params, n: [params])
    monkeypatch.setattr(rd, "_with_params", lambda e, p: e)
    cache = SimpleNamespace(ensure=lambda jobs, workers=1: None)
    traj = {sid: {k: [{"round": 0, "error": 0.5}] for k in ("advisor", "oracle", "fixed")} for sid in exps}
    rd._fixed({sid: (None, e) for sid, e in exps.items()}, traj, cache, rounds=3, seeds=1, workers=1)
    assert [x["error"] for x in traj["b"]["fixed"]] == [0.5, 0.5, 0.5]  # round 2 failed: round 1 stands
    assert traj["b"]["fixed"][-1]["stopped"] == rd.FAILED
    assert len(traj["a"]["fixed"]) == 4
    assert rd._means(traj, 3)["fixed"] == [0.5, 0.5, 0.5, 0.5]  # finite: the inf never reaches a mean
