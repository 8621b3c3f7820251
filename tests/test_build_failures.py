"""A reconstruction that fails (pty-chi diverges on an experiment) is recorded, counted and
replaced by the next experiment of its pool; it never stops or silently shrinks a build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ptychobench.sim import build as b
from ptychobench.sim import pipeline


def _done(work, unit, failed=False):
    js = work / f"{unit}.json"
    if failed:
        js.write_text(json.dumps({"failed": "RuntimeError: diverged", "experiment": {"defects": {}}}))
        return
    js.write_text(json.dumps({"metrics": {"error": 0.1}}))
    (work / f"{unit}.png").write_bytes(b"png")
    np.save(work / f"{unit}.npy", np.zeros(2))


def test_a_failed_image_unit_is_replaced_by_the_next(tmp_path):
    cfg = b.BuildConfig(n_visual=3, n_text=0, n_ood_visual=0, n_ood_text=0)
    work = tmp_path / ".work"
    work.mkdir()
    assert b.all_units(cfg, work) == ["exp0000", "exp0001", "exp0002"]
    _done(work, "exp0000")
    _done(work, "exp0001", failed=True)
    _done(work, "exp0002")
    assert b.unit_done(work, "exp0001", False) and b.unit_failed(work, "exp0001")
    assert b.all_units(cfg, work) == ["exp0000", "exp0001", "exp0002", "exp0003"]
    _done(work, "exp0003")
    assert b.all_units(cfg, work)[-1] == "exp0003"
    recs, failed = b.load_records(cfg, tmp_path)
    assert [r["unit"] for r in recs] == ["exp0000", "exp0002", "exp0003"]
    assert [r["unit"] for r in failed] == ["exp0001"]


def test_too_many_failures_stop_the_assembly(tmp_path):
    cfg = b.BuildConfig(n_visual=3, n_text=0, n_ood_visual=0, n_ood_text=0)
    work = tmp_path / ".work"
    work.mkdir()
    for i in range(3):
        _done(work, f"exp{i:04d}", failed=True)
    for i in range(3, 6):
        _done(work, f"exp{i:04d}")
    with pytest.raises(b.BuildError, match="3 of 6 reconstructions failed"):
        b.load_records(cfg, tmp_path)


def test_run_unit_records_a_diverged_reconstruction(tmp_path, monkeypatch):
    def diverge(exp, trials):
        raise RuntimeError("Storage size calculation overflowed")

    monkeypatch.setattr(pipeline, "run_experiment", diverge)
    cfg = b.BuildConfig(n_visual=1, n_text=0, n_ood_visual=0, n_ood_text=0, quick=True)
    b.run_unit(cfg.key(), "exp0000", False, str(tmp_path))
    rec = json.loads((tmp_path / "exp0000.json").read_text())
    assert rec["failed"].startswith("RuntimeError: Storage size")
    assert rec["experiment"]["seed"] == b.experiment_for(cfg, "exp0000").seed
    assert b.unit_done(tmp_path, "exp0000", True)
    assert not b._labelled(tmp_path, ["exp0000"])


def test_the_report_names_failed_units():
    from ptychobench.sim.report import _failed_section

    lines = _failed_section([{"unit": "exp0072", "failed": "RuntimeError: x", "experiment": {"defects": {"a": {}}}}], 9)
    text = "\n".join(lines)
    assert "1 of 10 experiments failed" in text and "exp0072 (defects: a)" in text
