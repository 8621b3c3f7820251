"""diagnose end to end: the Python API, the cached detector, advice, JSON and the HTML card.

The probes are fitted on the tiny test dataset (real EfficientNet-Lite0 and MiniLM
features), with the project's home folder in the test's temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ptychobench.tasks import ARTIFACT_LABELS, PARAM_OPTIONS

pytest.importorskip("efficientnet_lite_pytorch")


def _recon(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    phase = 0.5 * ((yy - 32) ** 2 + (xx - 30) ** 2 < 200) + 0.05 * xx + 0.05 * rng.standard_normal((64, 64))
    path = tmp_path / "user" / "recon.npy"
    path.parent.mkdir()
    np.save(path, np.exp(1j * phase)[None].astype(np.complex64))
    return path


def test_api_diagnosis_and_cached_detector(
    tmp_path: Path, tiny_dataset: Path, diagnose_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ptychobench
    from ptychobench.diagnose import detector

    path = _recon(tmp_path)
    d = ptychobench.diagnose(path, dataset=str(tiny_dataset), advisor=None, scan_step=8)
    assert set(d.labels) <= set(ARTIFACT_LABELS) and d.labels
    assert set(d.probabilities) == set(ARTIFACT_LABELS) - {"No obvious artifacts"}
    assert all(0 <= p <= 1 for p in d.probabilities.values())
    assert d.measurements["ramp"].value == pytest.approx(0.05 * 64, rel=0.1)
    assert d.image.dtype == np.uint8 and d.image.shape == (256, 256)
    cached = list((diagnose_home / "detectors").glob("vision-probe-tiny-*.pkl"))
    assert len(cached) == 1
    # a second process (fresh in-memory cache) loads the fit instead of training again
    detector.get_detector.cache_clear()
    monkeypatch.setattr(detector, "fit_probe_detector", lambda *a, **k: pytest.fail("refitted"))
    again = ptychobench.diagnose(np.load(path), dataset=str(tiny_dataset), advisor=None)
    assert again.probabilities == d.probabilities
    assert sorted(p.name for p in tmp_path.joinpath("user").iterdir()) == ["recon.npy"]  # nothing written beside it


def test_params_yaml_and_ptychi_dump(tmp_path: Path) -> None:
    from ptychobench.diagnose.advice import advice_text, load_params
    from ptychobench.diagnose.io import DiagnoseError

    y = tmp_path / "p.yaml"
    y.write_text(
        "n_epochs: 200\nbatch_size: 16\nposition_correction: true\nsample_type: zone plate\n"
        "n_positions: 400\ndetector_px: 128\nloss: [1.0, 0.5, 0.4, 0.39, 0.389]\n"
    )
    cur = load_params(y)
    assert cur.params["n_epochs"] == 200 and cur.params["position_correction"] is True
    text = advice_text("recon.npy", ["Phase ramp"], {}, cur)
    assert "200 iterations" in text and "batch size: 16 (25 batches per iteration)" in text
    assert "Sample type: zone plate." in text and "Visible artifacts in the reconstructed phase: Phase ramp." in text
    assert "position correction: on" in text and "trend:" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_epoch: 3\n")
    with pytest.raises(DiagnoseError, match=r"bad\.yaml.*unknown parameter.*n_epoch"):
        load_params(bad)
    bad.write_text("momentum: 3\n")
    with pytest.raises(DiagnoseError, match="momentum must be bool"):
        load_params(bad)
    ptychi = pytest.importorskip("ptychi.api")
    o = ptychi.LSQMLOptions()
    o.reconstructor_options.num_epochs = 77
    o.reconstructor_options.batch_size = 12
    o.reconstructor_options.momentum_acceleration_gain = 0.5
    o.probe_position_options.optimizable = True
    dump = tmp_path / "options.json"
    dump.write_text(json.dumps(o.get_dict(), default=str))
    cur = load_params(dump)
    assert (
        cur.params["n_epochs"],
        cur.params["batch_size"],
        cur.params["momentum"],
        cur.params["position_correction"],
    ) == (77, 12, True, True)
    assert any("probe modes" in n for n in cur.notes)


def test_cli_json_html_and_advice(tmp_path: Path, tiny_dataset: Path, diagnose_home: Path) -> None:
    from ptychobench.cli import app

    path = _recon(tmp_path)
    card = tmp_path / "out" / "card.html"
    res = CliRunner().invoke(
        app,
        [
            "diagnose",
            str(path),
            "--json",
            "--dataset",
            str(tiny_dataset),
            "--advisor",
            "knn-vote",
            "--scan-step",
            "8",
            "--html",
            str(card),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out) == 1
    d = out[0]
    assert d["name"].endswith("recon.npy") and d["kind"] == "complex" and d["shape"] == [64, 64]
    assert set(d["labels"]) <= set(ARTIFACT_LABELS)
    m = d["measurements"]
    for key in ("ramp", "vortices", "grid_peak", "background", "noise"):
        assert m[key]["unit"] and m[key]["meaning"] and m[key]["value"] is not None
    adv = d["advice"]
    assert adv["advisor"].startswith("knn-vote") and "Current reconstruction parameters:" in adv["text"]
    assert adv["options"] and all(o["letter"] in PARAM_OPTIONS and o["evidence"] for o in adv["options"])
    assert any(o["chosen"] for o in adv["options"])
    html = card.read_text()
    assert html.startswith("<!doctype html>") and "data:image/png;base64," in html
    assert "Phase ramp" in html and "<script" not in html and "http" not in html
    assert sorted(p.name for p in card.parent.iterdir()) == ["card.html"]


def test_cli_folder_table_and_bad_file(tmp_path: Path, tiny_dataset: Path, diagnose_home: Path) -> None:
    from ptychobench.cli import app

    path = _recon(tmp_path)
    np.save(path.parent / "second.npy", np.load(path)[0] * np.exp(0.3j))
    cards = tmp_path / "cards"
    res = CliRunner().invoke(
        app, ["diagnose", str(path.parent), "--dataset", str(tiny_dataset), "--advisor", "none", "--html", str(cards)]
    )
    assert res.exit_code == 0, res.output
    assert "recon.npy" in res.output and "second.npy" in res.output and "Phase ramp" in res.output
    assert sorted(p.name for p in cards.iterdir()) == ["index.html", "recon.html", "second.html"]
    assert "second.html" in (cards / "index.html").read_text()
    bad = tmp_path / "broken.h5"
    bad.write_bytes(b"not hdf5")
    res = CliRunner().invoke(app, ["diagnose", str(bad), "--dataset", str(tiny_dataset)])
    assert res.exit_code == 2
    assert "broken.h5" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(app, ["diagnose", str(path), "--half", str(bad), "--dataset", str(tiny_dataset)])
    assert res.exit_code == 2 and "broken.h5" in res.output


class _FakeBackend:
    """Answers like a model; records the images it was shown and whether they existed."""

    def __init__(self, reply: str) -> None:
        self.reply, self.seen = reply, []

    def fingerprint(self) -> dict:
        return {"model": "fake"}

    def generate(self, batch, config=None):
        from ptychobench.models import Generation
        from ptychobench.models.base import image_paths

        for conv in batch:
            self.seen += [(p, Path(p).is_file()) for p in image_paths(conv)]
        return [Generation(text=self.reply) for _ in batch]


def test_model_detector_and_advisor_through_the_backend_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    from ptychobench import models as backends
    from ptychobench.diagnose.advice import ModelAdvisor
    from ptychobench.diagnose.detector import ModelDetector

    fake = _FakeBackend("I see a ramp. <answer>[Phase ramp, Singularity artifacts]</answer>")
    monkeypatch.setattr(backends, "load_backend", lambda model, adapter=None, **kw: fake)
    img = np.full((256, 256), 128, np.uint8)
    (det,) = ModelDetector("some-vlm").detect([img])
    assert det.labels == ["Phase ramp", "Singularity artifacts"] and det.probabilities is None
    assert det.reply.startswith("I see a ramp")
    assert len(fake.seen) == 1 and fake.seen[0][1]  # the image existed while the model looked
    assert not Path(fake.seen[0][0]).exists()  # and is gone afterwards
    fake.reply = "<answer>G, K</answer>"
    adv = ModelAdvisor("some-llm").advise("Reconstruction log ...")
    assert adv.chosen == ["G", "K"] and adv.reply == "<answer>G, K</answer>"
