"""sim-v3 (issue 24): ``generate`` labels artifacts with the shipped labeller, leaves the
images it is unsure of out of the splits (the gray zone) and counts them; sim-v2 builds
keep their configuration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ptychobench.sim.build import QUICK, RECIPES, BuildConfig

#: intercepts (every coefficient 0) whose probabilities are known whatever the image
KNOWN = {"Blurring": 3.0, "Noisy artifacts": -3.0, "Grid artifacts": 0.0}


def _known_labeller(tmp_path: Path) -> Path:
    """The shipped labeller with its models replaced by constants: p(Blurring) = 0.95,
    p(Noisy) = 0.05, p(Grid) = 0.5 (inside the gray zone), every other label -10 (0.00005)."""
    from ptychobench.labelling import labeller as lb

    lab = lb.load(lb.SHIPPED)
    for m in lab.models:
        m.coef = [0.0] * len(m.coef)
        m.intercept = KNOWN.get(m.label, -10.0)
    return lb.save(lab, tmp_path / "known.json")


def _unit(tmp_path: Path, unit: str = "exp0000") -> tuple[BuildConfig, Path]:
    """One reconstructed quick-build image unit in a fresh work folder."""
    from ptychobench.sim.build import run_unit

    cfg = BuildConfig(quick=True, labelling=3, **QUICK)
    work = tmp_path / "ds" / ".work"
    work.mkdir(parents=True)
    run_unit(cfg.key(), unit, False, str(work))
    return cfg, work


def test_v3_labels_are_the_labellers_decision_on_the_reconstruction(tmp_path):
    from ptychobench.labelling.apply import ShippedLabelling
    from ptychobench.sim.build import decision

    _, work = _unit(tmp_path)
    labelling = ShippedLabelling(_known_labeller(tmp_path))
    d = decision(work, "exp0000", labelling)
    p = d["probabilities"]
    assert p["Blurring"] == pytest.approx(1 / (1 + math.exp(-3.0)), abs=1e-6)
    assert p["Grid artifacts"] == pytest.approx(0.5, abs=1e-6)
    assert d["labels"] == ["Blurring"]  # sure: >= hi; Noisy (0.05) is not a label
    assert d["unsure"] == ["Grid artifacts"]  # in [lo, hi): the gray zone
    cached = json.loads((work / "exp0000.labels.json").read_text())
    assert cached["labels"] == ["Blurring"] and cached["labelling_version"] == labelling.version
    # the shipped labeller itself: its decision is a function of the same features
    shipped = decision(work, "exp0000", ShippedLabelling())
    assert shipped["key"] != d["key"]  # another labeller file decides again, never reuses the cache
    assert set(shipped["probabilities"]) == {m.label for m in ShippedLabelling().labeller.models}


class _UnsureOf:
    """A labelling unsure of Halo on the units named, sure of Blurring on every unit."""

    version = "test"
    fingerprint = "unsure-of"

    def __init__(self, units: set[str]) -> None:
        self.units = units

    def rules(self) -> dict:
        return {
            "labelling_version": self.version,
            "labeller": {
                "file": "test.json",
                "sha256": self.fingerprint,
                "trained_on": {"n": 1},
                "cross_validated": {},
                "not_learnt": {},
            },
            "gray_zone": {"Halo artifacts": [0.4, 0.6]},
        }

    def decide(self, unit, metrics, image, experiment) -> dict:
        unsure = ["Halo artifacts"] if unit in self.units else []
        return {"labels": ["Blurring"], "unsure": unsure, "probabilities": {"Blurring": 0.9, "Halo artifacts": 0.5}}


def test_gray_zone_images_are_left_out_replaced_and_counted(tmp_path):
    from ptychobench.data import load_dataset
    from ptychobench.sim.build import build

    cfg = BuildConfig(n_visual=3, n_text=0, n_ood_visual=0, n_ood_text=0, quick=True, labelling=3, name="sim-v3")
    out = build(cfg, tmp_path / "ds", labelling=_UnsureOf({"exp0001"}))
    ds = load_dataset(out)
    ids = sorted(s.id for sp in ds.split_names("artifacts") for s in ds.samples("artifacts", sp))
    assert ids == ["exp0000", "exp0002", "exp0003"]  # exp0001 left out, the next experiment run in its place
    assert all(s.labels == {"Blurring"} for sp in ds.split_names("artifacts") for s in ds.samples("artifacts", sp))
    gray = ds.manifest["generator"]["gray_zone"]
    assert gray["judged"] == 4 and gray["left_out"] == 1 and gray["units"] == ["exp0001"]
    assert gray["per_label"] == {"Halo artifacts": 1}
    assert ds.manifest["version"] == RECIPES["sim-v3"].version
    report = (out / "validation.md").read_text()
    assert "Images judged: 4; left out: 1" in report and "| Halo artifacts | 1 |" in report


def test_v3_needs_the_labeller_and_v2_keeps_its_configuration(tmp_path):
    from ptychobench.sim.build import BuildError, run_units

    assert "labelling" not in BuildConfig().key()  # a sim-v2 build's config.json and manifest unchanged
    assert BuildConfig(labelling=3).key()["labelling"] == 3
    assert BuildConfig(labelling=3).recipe.name == "sim-v3" and BuildConfig().recipe.name == "sim-v2"
    with pytest.raises(BuildError, match="ptychobench generate sim-v3"):
        run_units(BuildConfig(quick=True, labelling=3, **QUICK), tmp_path / "ds", workers=1)


def test_generate_refuses_an_unknown_dataset_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from ptychobench.cli import app

    res = CliRunner().invoke(app, ["generate", "sim-v9", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "sim-v2 or sim-v3" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_fresh_quick_v3_build_passes_validate(tmp_path):
    """`generate sim-v3 --quick`, as the docs time it, then `validate` (the sibling of
    test_sim's quick-build check)."""
    from typer.testing import CliRunner

    from ptychobench.cli import app
    from ptychobench.data import load_dataset

    out = tmp_path / "q3"
    res = CliRunner().invoke(app, ["generate", "sim-v3", "--out", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    ds = load_dataset(out)
    assert ds.name == "sim-v3" and ds.manifest["generator"]["rules"]["labelling_version"] == "3.1"
    assert ds.manifest["splits"]["artifacts"] == {"train": 10, "test": 2, "test-ood": 3}
    gray = ds.manifest["generator"]["gray_zone"]
    assert gray["judged"] == 15 + gray["left_out"]  # every left-out image was replaced
    shipped = {s.id for sp in ds.split_names("artifacts") for s in ds.samples("artifacts", sp)}
    assert not shipped & set(gray["units"])
    res = CliRunner().invoke(app, ["validate", str(out)])
    assert res.exit_code == 0, res.output
