"""Issue 23: the number format is measured, not pinned; the default's cells carry no
wall-clock dependence; a time guard fails a cell instead of scoring a shorter adapter."""

from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")

from ptychobench.errors import TrainingCutShort
from ptychobench.models import precision
from ptychobench.run import Runner, parse_config
from ptychobench.run.config import load_config

CONFIGS = Path(precision.__file__).parents[1] / "configs"


@pytest.fixture
def fresh_probe(tmp_path, monkeypatch):
    monkeypatch.setenv("PTYCHOBENCH_CACHE", str(tmp_path / "cache"))
    precision.cpu_dtype_probe.cache_clear()
    yield
    precision.cpu_dtype_probe.cache_clear()


@pytest.mark.parametrize(
    "bf16_s, fp32_s, chosen", [(1.0, 2.0, "bfloat16"), (2.0, 1.0, "float32"), (0.9, 1.0, "float32")]
)
def test_the_probe_picks_bf16_only_where_it_is_clearly_faster(fresh_probe, monkeypatch, bf16_s, fp32_s, chosen):
    calls = []

    def fake(dtype, repeats=5):
        calls.append(dtype)
        return bf16_s if dtype == torch.bfloat16 else fp32_s

    monkeypatch.setattr(precision, "_time_linear", fake)
    assert precision.cpu_dtype_probe()["dtype"] == chosen
    assert precision.auto_dtype("cpu") == getattr(torch, chosen)
    assert precision.resolve_dtype("auto", "cpu") == getattr(torch, chosen)
    # an explicit dtype wins over the probe
    other = "float32" if chosen == "bfloat16" else "bfloat16"
    assert precision.resolve_dtype(other, "cpu") == getattr(torch, other)
    assert len(calls) == 2
    # measured once per machine and torch version: a new process reads the cached file
    precision.cpu_dtype_probe.cache_clear()
    again = precision.cpu_dtype_probe()
    assert again["dtype"] == chosen and len(calls) == 2
    assert chosen in precision.describe_choice("cpu") and again["capability"] in precision.describe_choice("cpu")


def test_the_probe_really_times_both_formats(fresh_probe):
    p = precision.cpu_dtype_probe()
    assert p["float32_ms"] > 0 and p["bfloat16_ms"] > 0
    assert p["dtype"] == ("bfloat16" if p["ratio"] <= precision.BF16_MAX_RATIO else "float32")
    assert p["capability"] == str(torch.backends.cpu.get_cpu_capability())


def test_isa_caps_in_the_environment_are_another_machine(fresh_probe, monkeypatch):
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    plain = precision._probe_path()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert precision._probe_path() != plain


def test_a_bad_dtype_name_is_one_clear_error():
    with pytest.raises(ValueError, match="dtype 'bf17'"):
        precision.resolve_dtype("bf17", "cpu")


def test_no_shipped_config_pins_a_number_format():
    for path in sorted(CONFIGS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        for exp in data.get("experiments", []):
            assert "dtype" not in (exp.get("backend_options") or {}), f"{path.name} pins a dtype"
            assert "bf16" not in (exp.get("sft") or {}), f"{path.name} pins bf16 training"


def test_the_defaults_cells_carry_no_wall_clock_dependence():
    from ptychobench.strategies.sft.recipe import recipe_for

    cfg = load_config("default")
    trained = [e for e in cfg.experiments if e.model and any(s.startswith("sft") for s in e.strategies)]
    assert trained, "the default fine-tunes"
    for exp in cfg.experiments:
        assert not any("time" in key or "budget" in key for key in exp.sft), exp.sft
        assert not any("time" in key for key in exp.backend_options), exp.backend_options
    for exp in trained:
        sft = {k: v for k, v in exp.sft.items() if k not in ("profile", "demo_selector", "k", "prompt")}
        for profile in ("cpu", "auto"):
            recipe = recipe_for(exp.sft.get("profile", profile), vision=exp.task == "artifacts", **sft)
            assert recipe.time_budget_s is None and recipe.max_train_samples is None


def test_a_training_cut_short_fails_its_cells_loudly_and_the_run_goes_on(tiny_dataset, tmp_path, monkeypatch):
    data = {
        "name": "t",
        "dataset": str(tiny_dataset),
        "seeds": [0],
        "max_failure_rate": 0.5,
        "experiments": [
            {"task": "params", "baselines": ["knn-vote"]},
            {"task": "params", "model": "smollm2-135m", "strategies": ["sft"], "sft": {"time_budget_s": 1}},
        ],
    }
    cfg = parse_config(data, "t.yaml")

    def cut(self, cell, exp, subset, progress):
        raise TrainingCutShort("adapter x: its time guard stopped training after 3 of 12 steps")

    def never(*a, **k):
        raise AssertionError("no model may be loaded for an untrained adapter")

    monkeypatch.setattr(Runner, "_train", cut)
    monkeypatch.setattr("ptychobench.models.load_backend", never)
    summary = Runner(cfg, tmp_path / "run").run()
    assert len(summary["failed"]) == 1 and "sft" in summary["failed"][0]
    from ptychobench.eval.store import read_run

    recs = read_run(tmp_path / "run")
    sft = [r for r in recs if r["config"] == summary["failed"][0]]
    assert sft and all("time guard" in r["error"] for r in sft)
    assert any(r["config"] != summary["failed"][0] and not r.get("error") for r in recs), "the baseline still ran"


@pytest.mark.parametrize("chosen, base_cells", [("bfloat16", True), ("float32", False)])
def test_the_default_is_smaller_where_the_cpu_runs_float32(monkeypatch, chosen, base_cells):
    """On an AVX2-only CPU (float32) the default leaves out the base model's cells and says
    why; the fine-tuned cells and the baselines stay, with the same keys."""
    monkeypatch.setattr("ptychobench.models.hf.pick_device", lambda device="auto": "cpu")
    monkeypatch.setattr(precision, "cpu_dtype_probe", lambda: {**_FAKE_PROBE, "dtype": chosen})
    cfg = load_config("default")
    strategies = {s for e in cfg.experiments if e.model == "smollm2-135m" for s in e.strategies}
    assert {"sft", "sft+icl"} <= strategies
    assert ("zero-shot" in strategies) is base_cells and ("icl" in strategies) is base_cells
    if base_cells:
        assert cfg.skipped == []
    else:
        assert len(cfg.skipped) == 1 and "needs bf16" in cfg.skipped[0][1] and "float32" in cfg.skipped[0][1]


def test_requires_names_a_known_capability(tmp_path):
    from ptychobench.errors import ConfigError

    data = {"name": "t", "dataset": "sim-v2", "experiments": [{"task": "params", "model": "smollm2-135m"}]}
    data["experiments"][0]["requires"] = ["gpu"]
    with pytest.raises(ConfigError, match="requires: choose from"):
        parse_config(data, "t.yaml")


_FAKE_PROBE = {
    "format": 1,
    "capability": "AVX2",
    "cpu": "test",
    "torch": "x",
    "float32_ms": 1.0,
    "bfloat16_ms": 5.0,
    "ratio": 5.0,
    "measured": "now",
}
