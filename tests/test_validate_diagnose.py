"""The diagnose validation benchmark's pure parts: pairing, correlation, scores, splits."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vd():
    spec = importlib.util.spec_from_file_location("validate_diagnose", ROOT / "benchmarks" / "validate_diagnose.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_pairs_name_sim_v2_metrics_and_diagnose_measurements(vd):
    """Every pair's truth side is a key sim-v2's measure.metrics returns, and its diagnose
    side a key diagnose.measure returns: a renamed metric breaks this, not the table."""
    import inspect

    import numpy as np

    from ptychobench.diagnose.io import to_recon
    from ptychobench.diagnose.measure import measure
    from ptychobench.sim import measure as sim_measure

    src = inspect.getsource(sim_measure.metrics)
    m, _ = measure(to_recon(np.exp(1j * np.random.default_rng(0).normal(0, 0.3, (48, 48))), "x"), scan_step=6.0)
    for mine, truth, _ in vd.PAIRS:
        assert f'"{truth}":' in src, truth
        assert mine in m, mine
    assert "ramp_rel" not in {t for _, t, _ in vd.PAIRS}  # sim-v1 names are gone
    assert "residues" not in {t for _, t, _ in vd.PAIRS}


def _row(i: int, scan: str = "raster") -> dict:
    measured = {"ramp": float(i), "noise_rel": float(i % 3), "grid_peak": float(i), "vortices": None}
    metrics = {"ramp_rad": 2.0 * i + 1, "noise": 1.0, "grid_peak": float(-i), "vortices": 3.0}
    return {"id": f"exp{i:04d}", "scan": scan, "measured": measured, "metrics": metrics}


def test_correlations(vd):
    rows = [_row(i, "raster" if i < 6 else "fermat") for i in range(10)]
    out = {c["measurement"]: c for c in vd.correlations(rows)}
    assert out["ramp"]["spearman"] == 1.0 and out["ramp"]["n"] == 10
    # grid pairs: raster scans only
    assert out["grid_peak"]["n"] == 6 and out["grid_peak"]["spearman"] == -1.0
    # a constant truth side has no correlation
    assert out["noise_rel"]["spearman"] is None and out["noise_rel"]["note"] == "constant"
    # a measurement diagnose could not make (None) is left out
    assert "vortices" not in out
    # fewer than 5 rows: no correlation reported
    assert vd.correlations(rows[:4]) == []


def test_label_scores_and_markdown(vd):
    gold = [frozenset({"Phase ramp"}), frozenset({"Blurring"}), frozenset({"Phase ramp", "Blurring"})]
    pred = [frozenset({"Phase ramp"}), frozenset({"Phase ramp"}), frozenset({"Phase ramp", "Blurring"})]
    s = vd.label_scores(gold, pred, n_resamples=50)
    assert s["n"] == 3
    assert s["per_label"]["Phase ramp"] == {"f1": 0.8, "support": 2, "predicted": 3}
    assert s["per_label"]["Blurring"]["f1"] == pytest.approx(0.667, abs=1e-3)
    rows = [_row(i) for i in range(6)]
    md = vd.markdown(
        [{"source": "toy test split", "detector": "d", "labels": s, "correlations": vd.correlations(rows)}]
    )
    assert "#### toy test split" in md
    assert "| Phase ramp | 0.8 | 2 | 3 |" in md
    assert "| ramp | ramp_rad (" in md and "| 6 | +1.00 |" in md


def test_split_options(vd):
    args = vd.parse_args(["--split", "test-ood", "--split", "test", "--split", "test-ood"])
    assert args.split == ["test-ood", "test"]
    assert vd.parse_args([]).split == ["test"]
    with pytest.raises(SystemExit):
        vd.parse_args(["--split", "train"])  # never the training split
    with pytest.raises(SystemExit, match="unknown"):
        vd.check_splits(["validation"])


def test_build_units_by_kind_and_by_assembled_split(vd, tmp_path):
    units = ["exp0000", "exp0001", "exp0002", "ood0000", "ood0001"]
    assert vd.build_units(tmp_path, units, "test-ood")[0] == ["ood0000", "ood0001"]
    chosen, how = vd.build_units(tmp_path, units, "test")
    assert chosen == ["exp0000", "exp0001", "exp0002"] and "not assembled" in how
    # an assembled build: the dataset's split files decide (exp0001 is in train)
    (tmp_path / "manifest.json").write_text("{}")
    (tmp_path / "artifacts").mkdir()
    lines = [json.dumps({"id": u}) for u in ("exp0000", "exp0002")]
    (tmp_path / "artifacts" / "test.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "artifacts" / "test-ood.jsonl").write_text(json.dumps({"id": "ood0001"}) + "\n")
    assert vd.build_units(tmp_path, units, "test")[0] == ["exp0000", "exp0002"]
    assert vd.build_units(tmp_path, units, "test-ood")[0] == ["ood0001"]


def test_bad_build_folder_is_one_line(vd, tmp_path):
    with pytest.raises(SystemExit, match="config.json: missing"):
        vd.validate_build(tmp_path, "test", "vision-probe", None)


def test_scan_step_in_image_pixels(vd):
    """A 256-px image of a 128-px field shows the step at twice its object-pixel size; the
    field comes from the experiment in the metadata when it is there."""
    assert vd._field_and_step({"instrument": {"step_px": 6.5}}, 256, 128) == 13.0
    exp = {
        "index": 0,
        "seed": 0,
        "sample_type": "zone plate",
        "instrument": "kb-microprobe",
        "scan": "raster",
        "defects": {},
        "params": {},
        "scale": "v2-quick",
    }
    from ptychobench.sim.defects import Experiment

    roi = Experiment.from_dict(exp).geometry.roi
    assert vd._field_and_step({"instrument": {"step_px": 5.0}, "experiment": exp}, 256, 999) == 5.0 * 256 / roi
    assert vd._field_and_step({}, 256, 128) is None


def test_detector_none_gives_measurements_only(vd):
    assert vd.detect_and_score("none", None, [], []) == ("none", None)
    rows = [_row(i) for i in range(6)]
    md = vd.markdown([{"source": "toy", "detector": "none", "labels": None, "correlations": vd.correlations(rows)}])
    assert "measurements only" in md and "| label | F1" not in md and "| ramp | ramp_rad (" in md
