"""The report a scientist reads: headline, per-sample browser data, n in heatmaps,
baselines drawn as references, one self-contained file (no browser needed here; the
page's behaviour in Chromium is tests/test_report_browser.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ptychobench.eval.compare import Comparison
from ptychobench.report import write_report
from ptychobench.report.headline import comparison_sentence
from ptychobench.report.samples import sample_f1
from report_fixture import add_model_cells


def page_data(html: str) -> dict:
    m = re.search(r"<script type='application/json' id='pb-data'>(.*?)</script>", html, re.S)
    assert m, "the browser's data block is missing"
    return json.loads(m.group(1))


@pytest.fixture
def run(tmp_path: Path, tiny_dataset: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    add_model_cells(run_dir, tiny_dataset)
    return run_dir


def test_sample_f1_over_scored_labels():
    scored = ("a", "b", "c")
    assert sample_f1(["a", "b"], ["a"], scored) == pytest.approx(2 / 3)
    assert sample_f1([], [], scored) == 1.0
    assert sample_f1(["a"], [], scored) == 0.0
    assert sample_f1(["x"], ["x"], scored) == 1.0  # unscored labels ignored: both empty over the scored ones


def test_report_is_one_offline_file_with_every_sample(run: Path, tiny_dataset: Path):
    html = write_report(run)["html"].read_text()
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", html), "the page must not fetch anything"
    data = page_data(html)
    store = [json.loads(x) for x in (run / "predictions.jsonl").read_text().splitlines()]
    # every (task, sample) once, every record as one row with its reply intact
    assert len(data["samples"]) == len({(r["task"], r["sample_id"]) for r in store})
    assert sum(len(s["rows"]) for s in data["samples"]) == len(store)
    by_key = {(r["task"], r["sample_id"], r["config"]): r for r in store}
    cells = [c["config"] for c in data["cells"]]
    for s in data["samples"]:
        for row in s["rows"]:
            rec = by_key[(s["task"], s["id"], cells[row["c"]])]
            assert row["reply"] == rec["reply"] and row["labels"] == rec["labels"]
            assert row["demos"] == [f"{s['task']}/{d}" for d in rec["demos"]]
            assert (row["err"] is not None) == (rec["error"] is not None)
    # a reply holding "</script>" did not end the data block (the JSON above parsed), and it is
    # never markup in the page: the only <script> tags are the page's own two
    assert any("</script>" in r["reply"] for r in store)
    assert html.count("<script") == 2
    # images as embedded thumbnails; params samples as text; every demo resolved with its gold labels
    arts = [s for s in data["samples"] if s["task"] == "artifacts"]
    assert arts and all(s["img"].startswith("data:image/jpeg;base64,") for s in arts)
    assert all(s["text"] for s in data["samples"] if s["task"] == "params")
    assert data["demos"] and all("gold" in d for d in data["demos"].values())
    assert all(d["img"] for k, d in data["demos"].items() if k.startswith("artifacts/"))
    assert "Images and texts from the dataset" in data["note"]
    assert str(tiny_dataset.name) in data["note"]


def test_page_says_when_the_dataset_is_gone(run: Path, tiny_dataset: Path):
    shutil.rmtree(tiny_dataset)
    html = write_report(run)["html"].read_text()
    data = page_data(html)
    assert "not available on this machine" in data["note"]
    assert data["samples"] and all(s["img"] is None and s["text"] is None for s in data["samples"])
    assert all(s["id"] for s in data["samples"])


def test_page_refuses_a_dataset_with_another_hash(run: Path, tiny_dataset: Path):
    img = next((tiny_dataset / "artifacts" / "images").iterdir())
    img.write_bytes(img.read_bytes() + b"\0")  # same name, other content
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    manifest["content_hash"] = "0" * 64
    (tiny_dataset / "manifest.json").write_text(json.dumps(manifest))
    data = page_data(write_report(run)["html"].read_text())
    assert "content hash differs" in data["note"]
    assert all(s["img"] is None for s in data["samples"])


def test_headline_names_data_config_versions_and_machine(run: Path, tmp_path: Path):
    out = write_report(run)
    html, md = out["html"].read_text(), out["md"].read_text()
    manifest = json.loads((tmp_path / "tiny" / "manifest.json").read_text())
    for text in (html, md):
        head = text[: text.index("Summary")]
        assert manifest["content_hash"][:16] in head and "tiny" in head
        assert "ptychobench 0." in head and "python 3." in head and "CPU cores" in head
        assert "config.yaml" in head
        assert "forest.png" in head or "data:image/png" in head
    # the best model cell against the best baseline, in a sentence with the difference and its CI
    sentences = re.findall(r"<li>([^<]*the knn-vote baseline[^<]*)</li>", html)
    assert len(sentences) == 2  # one per task
    assert all(
        re.search(r"(beats|falls behind|not distinguishable|differ by).*\[[-+]?\d\.\d\d, [-+]?\d\.\d\d\]", s)
        for s in sentences
    )
    assert "limit" not in html[: html.index("Summary")]


def test_headline_warns_when_the_run_was_cut(tmp_path: Path, tiny_dataset: Path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    add_model_cells(run_dir, tiny_dataset, limit=4)
    html = write_report(run_dir)["html"].read_text()
    assert "only the first 4 test samples" in html[: html.index("Summary")]


def comp(diff: float, ci: tuple[float, float], p: float, n: int) -> Comparison:
    return Comparison("params", "SFT 0-shot vs base 0-shot", "a", "b", n, 0.5 + diff, 0.5, diff, ci, p, 1.0)


SFT = {"model": "m", "strategy": "sft", "family": "sft", "k": 0}
ZS = {"model": "m", "strategy": "zero-shot", "family": "zero-shot", "k": 0}


def test_comparisons_read_as_sentences():
    assert (
        comparison_sentence(comp(0.16, (0.07, 0.25), 0.002, 44), SFT, ZS)
        == "fine-tuned m beats base m zero-shot by 0.16 [0.07, 0.25] (p = 0.002, n = 44)."
    )
    assert comparison_sentence(comp(-0.1, (-0.2, -0.03), 0.01, 44), SFT, ZS).startswith(
        "fine-tuned m falls behind base m zero-shot by 0.10 [0.03, 0.20]"
    )
    assert "not distinguishable" in comparison_sentence(comp(0.05, (-0.05, 0.15), 0.3, 44), SFT, ZS)
    few = comparison_sentence(comp(0.4, (0.2, 0.6), 0.016, 4), SFT, ZS)
    assert "too few" in few and "beats" not in few
    icl = {"model": "m", "strategy": "icl", "family": "icl", "k": 3, "selector": "knn"}
    assert comparison_sentence(comp(0.1, (0.0, 0.2), 0.5, 30), icl, ZS).startswith("base m with 3 knn demos and")


def test_heatmaps_show_n_and_k_curves_show_baselines(run: Path, monkeypatch):
    """Every annotated heatmap value carries its n; each k curve panel draws every baseline."""
    from matplotlib.axes import Axes

    texts, hlines, vlines, ticks = [], [], [], []
    orig_text, orig_h, orig_v = Axes.text, Axes.axhline, Axes.axvline
    orig_x, orig_y = Axes.set_xticks, Axes.set_yticks
    monkeypatch.setattr(
        Axes,
        "set_xticks",
        lambda self, t, labels=None, **k: (ticks.extend(labels or []), orig_x(self, t, labels, **k))[1],
    )
    monkeypatch.setattr(
        Axes,
        "set_yticks",
        lambda self, t, labels=None, **k: (ticks.extend(labels or []), orig_y(self, t, labels, **k))[1],
    )
    monkeypatch.setattr(
        Axes, "text", lambda self, x, y, s, *a, **k: (texts.append(s), orig_text(self, x, y, s, *a, **k))[1]
    )
    monkeypatch.setattr(
        Axes, "axhline", lambda self, y=0, *a, **k: (hlines.append(k.get("label")), orig_h(self, y, *a, **k))[1]
    )
    monkeypatch.setattr(
        Axes, "axvline", lambda self, x=0, *a, **k: (vlines.append(k.get("label")), orig_v(self, x, *a, **k))[1]
    )
    write_report(run)
    values = [t for t in texts if re.match(r"^\d\.\d\d", str(t))]
    assert values and all(re.match(r"^\d\.\d\d\nn=\d+$", t) for t in values)
    # two panels (base, fine-tuned) per task, one knn-vote line in each
    assert sum("knn-vote (baseline)" in str(h) for h in hlines) == 4
    assert sum("best baseline: knn-vote" in str(v) for v in vlines) == 2
    assert (run / "report_files" / "forest.png").stat().st_size > 0
    # per-label support and per-type counts name each heatmap row or column
    assert sum(bool(re.search(r"\(n=\d+\)$", str(t))) for t in ticks) >= 4


def test_no_leftover_temporary_files(run: Path):
    write_report(run)
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_thumbnails_of_16_bit_and_float_images_keep_their_contrast(tmp_path: Path):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from ptychobench.report.samples import thumbnail

    ramp = np.tile(np.linspace(0, 60000, 200), (200, 1))
    for name, img in (
        ("a16.png", Image.fromarray(ramp.astype(np.uint16))),
        ("f.tif", Image.fromarray(ramp.astype(np.float32) / 60000 - 0.5)),
    ):
        img.save(tmp_path / name)
        uri = thumbnail(tmp_path / name)
        assert uri is not None
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as t:
            a = np.asarray(t.convert("L"), dtype=float)
            assert max(t.size) == 96
            assert a[:, :5].mean() < 30 and a[:, -5:].mean() > 225  # the whole ramp, not clipped white
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert thumbnail(tmp_path / "bad.png") is None
