"""Blind rating panel (issue 24): a packet of numbered sheets with the brief and no key,
the key kept outside, raters' CSVs read back to sample ids, their majority and agreement."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ptychobench.annotate import AnnotateError
from ptychobench.annotate.agreement import measure
from ptychobench.annotate.cli import app
from ptychobench.annotate.panel import panel, rater_brief, read_ratings, write_packet
from ptychobench.data import Sample, load_dataset, write_dataset
from ptychobench.tasks import ARTIFACT_LABELS, NO_ARTIFACTS

runner = CliRunner()
SCORED = [lab for lab in ARTIFACT_LABELS if lab != NO_ARTIFACTS]


@pytest.fixture
def eleven(tmp_path) -> Path:
    """11 images over three splits, each a distinct flat grey, so a tile can be traced."""
    raw = tmp_path / "raw"
    raw.mkdir()
    samples = []
    for i in range(11):
        split = "train" if i < 6 else ("test" if i < 9 else "test-ood")
        path = raw / f"img{i}.png"
        Image.fromarray(np.full((32, 32), 20 * i + 10, np.uint8)).save(path)
        samples.append(Sample(f"s{i:02d}", split, "artifacts", "cells", "", path, frozenset({NO_ARTIFACTS})))
    return write_dataset(tmp_path / "eleven", "eleven", "1", samples)


def write_ratings(path: Path, rows: list[tuple[int, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "labels"])
        w.writerows(rows)
    return path


def test_the_brief_defines_every_label_once_and_the_answer_format():
    brief = rater_brief()
    for label in ARTIFACT_LABELS:
        assert sum(line.startswith(f"| {label} |") for line in brief.splitlines()) == 1, label
    assert "number,labels" in brief and "No obvious artifacts" in brief


def test_packet_holds_numbered_sheets_brief_and_template_and_no_key(eleven, tmp_path):
    ds = load_dataset(eleven)
    out, key = tmp_path / "packet", tmp_path / "key.csv"
    p = write_packet(ds, out, key, seed=5, cols=2, rows=2)
    assert len(p.samples) == 11 and {s.split for s in p.samples} == {"train", "test", "test-ood"}
    assert [s.name for s in p.sheets] == [f"sheet-{i:02d}.png" for i in range(1, math.ceil(11 / 4) + 1)]
    assert {f.name for f in out.iterdir()} == {*(s.name for s in p.sheets), "BRIEF.md", "ratings-template.csv"}
    text = " ".join(f.read_text(errors="ignore") for f in out.iterdir() if f.suffix != ".png")
    assert not any(s.id in text for s in p.samples)  # no id in the brief or the template
    assert "11 images, numbered 1 to 11, on 3 sheets" in (out / "BRIEF.md").read_text()
    rows = list(csv.reader((out / "ratings-template.csv").open()))
    assert rows == [["number", "labels"], *([str(i), ""] for i in range(1, 12))]
    keyrows = list(csv.reader(key.open()))
    assert keyrows[0] == ["number", "sample_id"] and [r[1] for r in keyrows[1:]] == [s.id for s in p.samples]
    # tile k of sheet 1 is the image the key names for number k (flat greys: 20 i + 10)
    with Image.open(p.sheets[0]) as im:
        assert not {k for k in im.info if k not in ("dpi", "gamma")}  # no text chunk
        px = np.asarray(im.convert("L"))
    for k, (x, y) in enumerate([(8, 8), (272, 8)]):
        sid = keyrows[1 + k][1]
        assert px[y + 128, x + 128] == 20 * int(sid[1:]) + 10
    assert [s.id for s in write_packet(ds, tmp_path / "p2", tmp_path / "k2.csv", seed=5).samples] == [
        s.id for s in p.samples
    ]  # seeded
    assert [s.id for s in p.samples] != sorted(s.id for s in p.samples)  # shuffled, for this seed


def test_packet_refuses_a_key_inside_it_an_old_key_or_old_sheets(eleven, tmp_path):
    ds = load_dataset(eleven)
    out = tmp_path / "packet"
    with pytest.raises(AnnotateError, match="the key must be outside the packet folder"):
        write_packet(ds, out, out / "sub" / "key.csv")
    assert not out.exists()
    write_packet(ds, out, tmp_path / "key.csv", n=3)
    with pytest.raises(AnnotateError, match="already exists"):
        write_packet(ds, tmp_path / "other", tmp_path / "key.csv")
    with pytest.raises(AnnotateError, match="sheets of an earlier review"):
        write_packet(ds, out, tmp_path / "key2.csv")
    with pytest.raises(AnnotateError, match="--n 12: dataset 'eleven' has 11 artifacts images"):
        write_packet(ds, tmp_path / "p3", tmp_path / "key3.csv", n=12)


def test_majority_and_agreement_from_three_random_raters(eleven, tmp_path):
    """Random raters: the panel's majority is the per-label vote count > 1.5, and two
    raters with the same answers have micro-F1 1."""
    p = write_packet(load_dataset(eleven), tmp_path / "packet", tmp_path / "key.csv", seed=1)
    rng = np.random.default_rng(0)
    ticks = rng.random((3, 11, len(SCORED))) < 0.3
    ticks[1] = ticks[0]  # raters a and b agree on everything
    files = []
    for r, name in enumerate(["a", "b", "c"]):
        rows = []
        for i in range(11):
            labs = [lab for j, lab in enumerate(SCORED) if ticks[r, i, j]]
            rows.append((i + 1, ";".join(labs) or NO_ARTIFACTS))
        files.append(write_ratings(tmp_path / f"{name}.csv", rows))
    contents = panel(tmp_path / "key.csv", files)
    assert [it.sample_id for it in contents.items] == [s.id for s in p.samples]
    votes = ticks.sum(0)
    for i, it in enumerate(contents.items):
        want = {lab for j, lab in enumerate(SCORED) if votes[i, j] >= 2}
        assert it.consensus == frozenset(want or {NO_ARTIFACTS})
    result = measure(contents)
    pair = {(x["a"], x["b"]): x for x in result.pairs}
    assert pair[("a", "b")]["micro_f1"] == 1.0
    assert pair[("a", "c")]["micro_f1"] == pair[("b", "c")]["micro_f1"] < 1.0
    assert result.alpha is not None and result.alpha < 1.0


@pytest.mark.parametrize(
    "rows, message",
    [
        ([(1, "Moire"), (2, "Blurring"), (3, "Blurring")], "row 2 (number 1): unknown label 'Moire'"),
        ([(1, "Blurring"), (1, "Blurring"), (3, "Blurring")], "row 3: number 1 is rated twice"),
        ([(1, "Blurring"), (2, "Blurring")], "1 of the packet's 3 numbers are not rated (3)"),
        ([(1, "Blurring"), (2, ""), (3, "Blurring")], "row 3 (number 2): no labels"),
        ([(1, "Blurring;No obvious artifacts"), (2, "Blurring"), (3, "x")], "'No obvious artifacts' together with"),
        ([(1, "Blurring"), (2, "Blurring"), (4, "Blurring")], "row 4: number 4 is outside the packet's 1..3"),
        ([(1, "Blurring"), ("two", "Blurring"), (3, "Blurring")], "row 3: number 'two' is not a whole number"),
    ],
)
def test_bad_ratings_are_one_error_naming_file_and_row(tmp_path, rows, message):
    path = write_ratings(tmp_path / "r1.csv", rows)
    with pytest.raises(AnnotateError) as e:
        read_ratings(path, 3)
    assert str(e.value).startswith(str(path)) and message in str(e.value)


def test_ratings_accept_any_spelling_the_label_space_knows(tmp_path):
    path = write_ratings(tmp_path / "r.csv", [(2, "grid artifacts ; Noisy Artifacts"), (1, "no obvious artifacts")])
    assert read_ratings(path, 2) == [frozenset({NO_ARTIFACTS}), frozenset({"Grid artifacts", "Noisy artifacts"})]
    (tmp_path / "h.csv").write_text("number,label\n1,Blurring\n")
    with pytest.raises(AnnotateError, match="expected the header number,labels"):
        read_ratings(tmp_path / "h.csv", 1)


def test_cli_packet_then_panel(eleven, tmp_path):
    out, key = tmp_path / "packet", tmp_path / "key.csv"
    res = runner.invoke(app, ["packet", str(eleven), "--out", str(out), "--key", str(key), "--n", "4"])
    assert res.exit_code == 0, res.output
    assert "4 images on 1 sheets (9 per sheet)" in " ".join(res.output.split())
    a = write_ratings(
        tmp_path / "a.csv", [(1, "Blurring"), (2, "Phase ramp"), (3, NO_ARTIFACTS), (4, "Halo artifacts")]
    )
    b = write_ratings(
        tmp_path / "b.csv", [(1, "Blurring"), (2, NO_ARTIFACTS), (3, NO_ARTIFACTS), (4, "Halo artifacts")]
    )
    c = write_ratings(
        tmp_path / "c.csv", [(1, "Noisy artifacts"), (2, "Phase ramp"), (3, "Blurring"), (4, NO_ARTIFACTS)]
    )
    res = runner.invoke(app, ["panel", str(key), str(a), str(b), str(c), "--out", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    ids = [r[1] for r in list(csv.reader(key.open()))[1:]]
    majority = list(csv.DictReader((tmp_path / "res" / "majority.csv").open()))
    assert [r["sample_id"] for r in majority] == ids
    assert [r["labels"] for r in majority] == ["Blurring", "Phase ramp", NO_ARTIFACTS, "Halo artifacts"]
    assert majority[0]["votes"] == "Noisy artifacts 1/3; Blurring 2/3"
    assert (tmp_path / "res" / "agreement.md").is_file() and (tmp_path / "res" / "agreement.json").is_file()
    res = runner.invoke(app, ["panel", str(key), str(a), str(tmp_path / "nope.csv"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "nope.csv: no such ratings file" in res.output and "Traceback" not in res.output


def test_a_panel_in_parts_never_shows_an_image_twice(eleven, tmp_path):
    ds = load_dataset(eleven)
    first = write_packet(ds, tmp_path / "p1", tmp_path / "k1.csv", n=4, seed=2)
    second = write_packet(ds, tmp_path / "p2", tmp_path / "k2.csv", seed=2, exclude_keys=[tmp_path / "k1.csv"])
    assert len(second.samples) == 7 and not {s.id for s in first.samples} & {s.id for s in second.samples}
    res = runner.invoke(
        app,
        ["packet", str(eleven), "--out", str(tmp_path / "p3"), "--key", str(tmp_path / "k3.csv")]
        + ["--exclude-key", str(tmp_path / "k1.csv"), "--exclude-key", str(tmp_path / "k2.csv")],
    )
    assert res.exit_code == 2 and "has no artifacts images to rate" in " ".join(res.output.split())
