"""diagnose on inputs whose truth is known (issue 25): a pure 20-rad phase ramp (complex
.npy, its PNG render, and unwrapped as float .npy and .tif), the ramp with 6 vortices, a
15-px scan grid, a clean specimen, a photograph, an amplitude map.

The labels the measurements decide (ramp, vortices, grid) and the "is this a
reconstruction?" checks hold whatever the detector is, so most tests fit the probes on the
tiny test dataset; the ones that depend on what the detector learnt (a clean specimen, a
grey photograph) fit it on sim-v2 and are slow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

pytest.importorskip("efficientnet_lite_pytorch")

N = 128
YY, XX = np.mgrid[0:N, 0:N]
RAMP_RAD = 20.0
VORTICES = [(30.5, 30.5, 1), (40.5, 90.5, 1), (90.5, 40.5, 1), (100.5, 100.5, -1), (64.5, 64.5, 1), (20.5, 70.5, 1)]


def _noise(seed: int = 0) -> np.ndarray:
    return 0.02 * np.random.default_rng(seed).standard_normal((N, N))


def specimen(seed: int = 1) -> np.ndarray:
    """A phase object: a dozen smooth discs of 1 rad."""
    rng = np.random.default_rng(seed)
    out = np.zeros((N, N))
    for _ in range(12):
        cy, cx, r = rng.uniform(15, 113), rng.uniform(15, 113), rng.uniform(4, 12)
        out += np.hypot(YY - cy, XX - cx) < r
    return ndimage.gaussian_filter(out, 1.0)


def ramp_phase() -> np.ndarray:
    return RAMP_RAD * XX / N + _noise()


def with_vortices(field: np.ndarray) -> np.ndarray:
    for cy, cx, q in VORTICES:
        z = (XX - cx) + 1j * (YY - cy)
        field = field * (z / np.abs(z)) ** q * (1 - np.exp(-(np.abs(z) ** 2) / 4))
    return field


def grid_object(step: float = 15.0) -> np.ndarray:
    grid = 0.3 * np.cos(2 * np.pi * XX / step) * np.cos(2 * np.pi * YY / step)
    return np.exp(1j * (specimen() + grid + _noise()))


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    import tifffile

    from ptychobench.sim.render import render_phase

    d = tmp_path / "cases"
    d.mkdir()
    out = {
        "ramp.npy": d / "ramp.npy",
        "ramp.png": d / "ramp.png",
        "ramp_float.npy": d / "ramp_float.npy",
        "ramp_float.tif": d / "ramp_float.tif",
        "ramp_vortices.npy": d / "ramp_vortices.npy",
        "grid.npy": d / "grid.npy",
        "clean.npy": d / "clean.npy",
        "photo.jpg": d / "photo.jpg",
        "amplitude.npy": d / "amplitude.npy",
    }
    ramp = np.exp(1j * ramp_phase())
    np.save(out["ramp.npy"], ramp.astype(np.complex64))
    Image.fromarray(render_phase(ramp)).save(out["ramp.png"])
    np.save(out["ramp_float.npy"], ramp_phase())
    tifffile.imwrite(out["ramp_float.tif"], ramp_phase().astype(np.float32))
    np.save(out["ramp_vortices.npy"], with_vortices(ramp).astype(np.complex64))
    np.save(out["grid.npy"], grid_object())
    np.save(out["clean.npy"], np.exp(1j * (specimen() + _noise())))
    from sklearn.datasets import load_sample_image

    Image.fromarray(load_sample_image("china.jpg")).save(out["photo.jpg"])  # a photograph of a building
    np.save(out["amplitude.npy"], 0.6 + 0.3 * specimen() / specimen().max())
    return out


def _diag(paths, dataset, **kw):
    from ptychobench.diagnose.api import diagnose_many

    return {Path(d.name).name: d for d in diagnose_many([str(p) for p in paths], dataset=dataset, advisor=None, **kw)}


def test_labels_follow_the_decisive_measurements(files, tiny_dataset: Path, diagnose_home: Path) -> None:
    keys = ["ramp.npy", "ramp.png", "ramp_float.npy", "ramp_float.tif", "ramp_vortices.npy"]
    ds = _diag([files[k] for k in keys], str(tiny_dataset))
    for k in keys:
        assert "Phase ramp" in ds[k].labels, (k, ds[k].labels, ds[k].notes)
    # the measurements themselves are unchanged: 20 rad end to end, 6 vortices of balance +4
    assert ds["ramp.npy"].measurements["ramp"].value == pytest.approx(RAMP_RAD * (N - 1) / N, rel=0.02)
    assert ds["ramp_float.npy"].measurements["ramp"].value == pytest.approx(RAMP_RAD * (N - 1) / N, rel=0.02)
    v = ds["ramp_vortices.npy"]
    assert v.measurements["vortices"].value == 6 and v.measurements["vortex_balance"].value == 4
    assert "Singularity artifacts" in v.labels
    assert "Singularity artifacts" not in ds["ramp.npy"].labels  # no vortex counted: none
    # wherever the detector said otherwise, one line says so
    for d in ds.values():
        for lab in ("Phase ramp", "Singularity artifacts"):
            if (lab in d.labels) != (lab in d.detector_labels):
                assert sum(n.startswith(lab + ":") for n in d.notes) == 1, (lab, d.notes)


def test_grid_follows_the_lattice_peak(files, tiny_dataset: Path, diagnose_home: Path) -> None:
    ds = _diag([files["grid.npy"], files["clean.npy"]], str(tiny_dataset), scan_step=15)
    assert ds["grid.npy"].measurements["grid_peak"].value >= 100
    assert "Grid artifacts" in ds["grid.npy"].labels
    assert ds["clean.npy"].measurements["grid_peak"].value < 100
    assert ds["clean.npy"].measurements["vortices"].value == 0


def test_not_a_reconstruction_gets_warnings_and_no_labels(
    files, tiny_dataset: Path, diagnose_home: Path, tmp_path
) -> None:
    from ptychobench.diagnose.io import DiagnoseError

    ds = _diag([files["photo.jpg"], files["amplitude.npy"]], str(tiny_dataset))
    for k in ("photo.jpg", "amplitude.npy"):
        assert ds[k].warnings and ds[k].labels == [], (k, ds[k].warnings)
    assert "colour" in ds["photo.jpg"].warnings[0]
    assert "amplitude" in ds["amplitude.npy"].warnings[0]
    forced = _diag([files["photo.jpg"]], str(tiny_dataset), force=True)["photo.jpg"]
    assert forced.warnings and forced.labels
    # an RGB file whose channels are equal is a grey image saved as RGB: no warning
    grey = tmp_path / "grey_rgb.png"
    g = np.asarray(Image.open(files["ramp.png"]))
    Image.fromarray(np.stack([g, g, g], -1)).save(grey)
    assert not _diag([grey], str(tiny_dataset))["grey_rgb.png"].warnings
    const = tmp_path / "const.npy"
    np.save(const, np.full((64, 64), 0.5))
    with pytest.raises(DiagnoseError, match="same value"):
        _diag([const], str(tiny_dataset))


def test_cli_prints_warnings_and_notes(files, tiny_dataset: Path, diagnose_home: Path) -> None:
    from typer.testing import CliRunner

    from ptychobench.cli import app

    r = CliRunner().invoke(
        app,
        [
            "diagnose",
            str(files["photo.jpg"]),
            str(files["ramp.npy"]),
            "--dataset",
            str(tiny_dataset),
            "--advisor",
            "none",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "colour" in r.output
    assert "withheld" in r.output


def test_card_shows_the_warnings_and_notes(files, tiny_dataset: Path, diagnose_home: Path, tmp_path: Path) -> None:
    """The HTML card says what the terminal says: every warning and every note."""
    from html import escape

    from ptychobench.diagnose.api import diagnose_many
    from ptychobench.diagnose.card import card_html

    photo, ramp = diagnose_many(
        [str(files["photo.jpg"]), str(files["ramp_vortices.npy"])], dataset=str(tiny_dataset), advisor="text-probe"
    )
    assert photo.warnings and ramp.notes  # what the card must show
    for d in (photo, ramp):
        html = card_html(d)
        for line in d.warnings:
            assert f"warning: {escape(line)}" in html
        for line in d.notes:
            assert f"note: {escape(line)}" in html
    assert ramp.advice is not None and ramp.advice.generic
    assert "Generic parameter advice" in card_html(ramp)


def test_advice_rules(tmp_path: Path, tiny_dataset: Path, diagnose_home: Path) -> None:
    from ptychobench.diagnose.advice import CurrentParams, _recon_fields, advise, no_change_rule
    from ptychobench.diagnose.io import to_recon
    from ptychobench.diagnose.measure import measure

    assert no_change_rule({"L", "J"}, clean=False)[0] == {"J"}
    assert no_change_rule({"J", "K"}, clean=True)[0] == {"L"}
    m, _ = measure(to_recon(np.exp(1j * (specimen() + _noise())), "clean"))
    generic = advise("clean", ["No obvious artifacts"], m, None, "text-probe", dataset=str(tiny_dataset))
    assert generic.generic and generic.chosen == ["L"] and "generic" in generic.notes[0]
    assert generic.options[0].letter == "L"
    cur = CurrentParams({**_recon_fields(), "batching": "compact"}, {"near_field": True, "n_positions": 200})
    adv = advise("ramp", ["Phase ramp"], m, cur, "knn-vote", dataset=str(tiny_dataset))
    assert not adv.generic
    assert adv.chosen and not {"M", "O", "Q", "V"} & set(adv.chosen)  # far-field only; already compact
    assert adv.chosen == ["L"] or "L" not in adv.chosen  # never beside a change
    assert "Near-field" in adv.text and "holograms" in adv.text
    blocked = {o.letter: o.evidence[0] for o in adv.options if not o.chosen}
    for letter in set(blocked) & {"M", "O", "Q"}:
        assert "near-field" in blocked[letter]


def test_knn_vote_breaks_ties_by_distance() -> None:
    from ptychobench.diagnose.detector import knn_vote

    sims = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    Y = np.eye(5)
    p = knn_vote(sims, Y, 5)[0]
    assert list(np.argsort(-p)) == [0, 1, 2, 3, 4] and p.sum() == pytest.approx(1)


@pytest.mark.slow
def test_sim_v2_detector_on_truth_known_cases(files, diagnose_home: Path, tmp_path: Path) -> None:
    """With the shipped detector (sim-v2 + single-defect images): a clean specimen is clean,
    a pure ramp is a phase ramp to the detector too, a grey photograph is flagged."""
    grey = tmp_path / "photo_grey.png"
    Image.open(files["photo.jpg"]).convert("L").save(grey)
    ds = _diag([files["clean.npy"], files["ramp.npy"], grey], None)
    assert ds["clean.npy"].labels == ["No obvious artifacts"], ds["clean.npy"].probabilities
    assert "Phase ramp" in ds["ramp.npy"].detector_labels, ds["ramp.npy"].probabilities
    assert ds["photo_grey.png"].warnings and not ds["photo_grey.png"].labels


def test_advisor_is_fitted_on_diagnose_texts_of_train_only(
    tiny_dataset: Path, diagnose_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where diagnose's own texts of the train experiments are shipped, the advisor is fitted
    on them (the kind of text it reads at use), with the dataset's labels; a row naming an
    experiment outside the train split is refused."""
    import json

    from ptychobench.diagnose import advice
    from ptychobench.diagnose.io import DiagnoseError

    texts = tmp_path / "advisor_texts"
    texts.mkdir()
    monkeypatch.setattr(advice, "OWN_TEXTS_DIR", texts)
    base = advice.load_probe_advisor("text-probe", str(tiny_dataset))
    assert not base.own_texts and "diagnose's texts" not in base.name
    ids = [m["sample_id"] for m in base.train_meta]
    rows = [
        {"id": sid, "text": f"Reconstruction log, sample array0\nVisible artifacts: Phase ramp {i}."}
        for i, sid in enumerate(ids)
    ]
    (texts / "tiny-train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    own = advice.load_probe_advisor("text-probe", str(tiny_dataset))
    assert own.own_texts and "diagnose's texts of tiny train" in own.name
    assert [m["sample_id"] for m in own.train_meta] == ids and (own.train_Y == base.train_Y).all()
    assert not np.allclose(own.train_X, base.train_X)  # fitted on the other texts
    (texts / "tiny-train.jsonl").write_text(json.dumps({"id": "ptest000", "text": "a test experiment"}))
    with pytest.raises(DiagnoseError, match="not an experiment of the params train split"):
        advice.load_probe_advisor("text-probe", str(tiny_dataset))


def test_expected_gain_rule(tiny_dataset: Path, diagnose_home: Path) -> None:
    """An option the probe finds likely is not advised when, at its probability, the train
    experiments measured a larger error on average; with nothing left the advice is "No
    changes needed", and each shown option states its expected error change."""
    import dataclasses

    from ptychobench.diagnose.advice import CurrentParams, _recon_fields, expected_gains, load_probe_advisor

    assert expected_gains({"K": (0.2, -0.1)}, ["K", "Q"], np.array([0.5, 0.9]))[0] == pytest.approx(0.05)
    assert np.isnan(expected_gains({"K": (0.2, -0.1)}, ["K", "Q"], np.array([0.5, 0.9]))[1])
    adv = load_probe_advisor("text-probe", str(tiny_dataset))
    cur = CurrentParams(_recon_fields(), {"n_positions": 200})
    text = "Sample train000: a zone plate, data error stalls at 0.0."
    helpful = dataclasses.replace(adv, gains={lab: (0.3, 0.1) for lab in adv.labels})
    harmful = dataclasses.replace(adv, gains={lab: (-0.5, -0.5) for lab in adv.labels})
    good = helpful.advise(text, cur)
    assert good.chosen and good.chosen != ["L"]
    assert any("expected error change" in e for o in good.options for e in o.evidence)
    bad = harmful.advise(text, cur)
    assert bad.chosen == ["L"]
    assert any("not advised" in n for n in bad.notes) and any("no changes advised" in n for n in bad.notes)
