"""Blind review tooling (issue 11): numbered contact sheets with no labels or ids, an empty
review.csv for the rater, and the rater's labels scored against the dataset's."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from ptychobench.annotate import AnnotateError
from ptychobench.annotate.cli import app
from ptychobench.annotate.review import draw, score_review, to_markdown, write_sheets
from ptychobench.data import DatasetError, Sample, load_dataset, write_dataset
from ptychobench.tasks import NO_ARTIFACTS

runner = CliRunner()

#: (dataset labels, rater labels) of four test images, figures worked out by hand below
CASES = [
    ({"Phase ramp", "Blurring"}, "Phase ramp"),
    ({"Noisy artifacts"}, "noisy artifacts"),  # any spelling the label space knows
    ({NO_ARTIFACTS}, "Blurring"),
    ({"Phase ramp"}, NO_ARTIFACTS),
]


@pytest.fixture
def known(tmp_path) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    samples = []
    for i in range(8):
        split, j = ("train", i) if i < 4 else ("test", i - 4)
        path = raw / f"{split}{j}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 60), dtype=np.uint8)).save(path)
        labels = CASES[j][0] if split == "test" else {NO_ARTIFACTS}
        samples.append(Sample(f"{split}{j}", split, "artifacts", "foam", "", path, frozenset(labels)))
    return write_dataset(tmp_path / "known", "known", "1", samples)


def fill(table: Path, labels_of: dict[str, str]) -> None:
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    with table.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["number", "sample_id", "labels"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "labels": labels_of[r["sample_id"]]})


def test_sheets_are_numbered_images_only_and_the_csv_is_empty(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    out = tmp_path / "review"
    result = write_sheets(ds, out, n=10, seed=3, split="train", cols=2, rows=2)
    assert [p.name for p in result.sheets] == ["sheet-01.png", "sheet-02.png", "sheet-03.png"]
    assert {p.name for p in out.iterdir()} == {
        "sheet-01.png",
        "sheet-02.png",
        "sheet-03.png",
        "review.csv",
        "review.json",
    }
    with Image.open(result.sheets[0]) as im:
        # 2 x 2 tiles of 256 px (the 16 px images enlarged), 8 px gaps, a caption row under each
        assert im.size == (2 * 264 + 8, 2 * (256 + 42 + 8) + 8)
        px = np.asarray(im.convert("L"))
    first = np.asarray(Image.open(result.samples[0].image).convert("L"))
    assert np.array_equal(px[8 : 8 + 256 : 16, 8 : 8 + 256 : 16], first)  # pixel for pixel, no smoothing
    with Image.open(result.sheets[2]) as im:
        assert im.size[1] == 306 + 8  # the last sheet holds the remaining 2 images in one row
    rows = list(csv.reader((out / "review.csv").open(encoding="utf-8")))
    assert rows[0] == ["number", "sample_id", "labels"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in range(1, 11)]
    assert [r[1] for r in rows[1:]] == [s.id for s in result.samples]
    assert all(r[2] == "" for r in rows[1:])
    assert len({r[1] for r in rows[1:]}) == 10 and {s.split for s in result.samples} == {"train"}
    again = draw(ds, "artifacts", "train", 10, 3)
    assert [s.id for s in again] == [s.id for s in result.samples]  # seeded
    assert [s.id for s in draw(ds, "artifacts", "train", 10, 4)] != [s.id for s in again]
    with pytest.raises(AnnotateError, match="already exists"):
        write_sheets(ds, out, n=2)
    (out / "review.csv").unlink()
    with pytest.raises(AnnotateError, match="sheets of an earlier review"):
        write_sheets(ds, out, n=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 7}, "has only 6 artifacts/test images; ask for at most 6"),
        ({"n": 0}, "draw at least one image"),
        ({"n": 2, "task": "params"}, "review sheets show images; the params task is text"),
        ({"n": 2, "split": "test-ood"}, "has no artifacts/test-ood split"),
    ],
)
def test_bad_requests_fail_clearly(tiny_dataset, tmp_path, kwargs, message):
    with pytest.raises(DatasetError, match=message):  # AnnotateError is one
        write_sheets(load_dataset(tiny_dataset), tmp_path / "r", **kwargs)
    assert not (tmp_path / "r" / "review.csv").exists()


def test_scores_worked_out_by_hand(known, tmp_path):
    ds = load_dataset(known)
    sheets = write_sheets(ds, tmp_path / "r", n=4, seed=0)
    fill(sheets.csv, {f"test{j}": rater for j, (_, rater) in enumerate(CASES)})
    r = score_review(sheets.csv, ds)
    assert r.n == 4 and r.splits == {"test": 4}
    # dataset's scored labels: PR(0), Bl(0), Noisy(1), PR(3); the rater chose PR(0), Noisy(1)
    assert r.visibly_right_counts == (2, 4) and r.visibly_right == pytest.approx(0.5)
    # rater's scored labels: PR(0), Noisy(1), Bl(2): tp 2, dataset-only 2, rater-only 1
    assert r.micro_f1 == pytest.approx(4 / 7)
    assert r.rater_seen == pytest.approx(2 / 3)
    assert r.exact == 1
    row = {x["label"]: x for x in r.per_label}
    assert (row["Phase ramp"]["both"], row["Phase ramp"]["only_dataset"], row["Phase ramp"]["only_rater"]) == (1, 1, 0)
    assert (row["Blurring"]["both"], row["Blurring"]["only_dataset"], row["Blurring"]["only_rater"]) == (0, 1, 1)
    order = sorted(range(4), key=lambda j: [s.id for s in sheets.samples].index(f"test{j}"))
    rater_pr = [1 if "Phase ramp" == CASES[j][1] else 0 for j in order]
    ds_pr = [1 if "Phase ramp" in CASES[j][0] else 0 for j in order]
    assert row["Phase ramp"]["kappa"] == pytest.approx(cohen_kappa_score(rater_pr, ds_pr))
    assert row["Line artifacts"]["kappa"] is None  # nobody ticked it: undefined
    assert not row[NO_ARTIFACTS]["scored"] and row[NO_ARTIFACTS]["only_dataset"] == 1
    md = to_markdown(r)
    assert md.startswith("## Blind review") and "2 of the dataset's 4 labels (0.50)" in md and "missed" in md
    assert "| Phase ramp | 1 | 1 | 0 |" in md


def test_a_rater_who_agrees_fully_scores_one(known, tmp_path):
    ds = load_dataset(known)
    sheets = write_sheets(ds, tmp_path / "r", n=4, seed=1)
    fill(sheets.csv, {f"test{j}": "; ".join(sorted(labels)) for j, (labels, _) in enumerate(CASES)})
    r = score_review(sheets.csv, ds)
    assert r.micro_f1 == 1.0 and r.visibly_right == 1.0 and r.exact == 4
    assert "met" in to_markdown(r) and "missed" not in to_markdown(r)


@pytest.mark.parametrize(
    "labels_of, message",
    [
        ({"test0": "Moire"}, "row 2 (number 1): unknown label 'Moire'; the artifacts task's labels"),
        ({"test0": ""}, "1 row(s) have no labels (rows 2)"),
    ],
)
def test_bad_rater_labels_are_one_line_naming_csv_row_and_label(known, tmp_path, labels_of, message):
    sheets = write_sheets(load_dataset(known), tmp_path / "r", n=4, seed=0)
    first = sheets.samples[0].id
    fill(sheets.csv, {s.id: "Blurring" for s in sheets.samples} | {first: next(iter(labels_of.values()))})
    res = runner.invoke(app, ["review-score", str(known), str(sheets.csv)])
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"review.csv: {message}" in out
    assert not (tmp_path / "r" / "validation-review.md").exists()


def test_a_sample_the_dataset_lacks_or_a_bad_header_fails(known, tmp_path):
    ds = load_dataset(known)
    bad = tmp_path / "bad.csv"
    bad.write_text("number,sample_id,labels\n1,nope,Blurring\n")
    with pytest.raises(AnnotateError, match="row 2 \\(number 1\\): sample 'nope' is not in the artifacts task"):
        score_review(bad, ds)
    bad.write_text("n,id\n1,test0\n")
    with pytest.raises(AnnotateError, match="expected a header with columns number,sample_id,labels"):
        score_review(bad, ds)


def test_cli_round_trip_writes_only_where_told(known, tmp_path):
    out = tmp_path / "r"
    res = runner.invoke(app, ["review-sheets", str(known), "--n", "4", "--seed", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    fill(out / "review.csv", {f"test{j}": "; ".join(sorted(labels)) for j, (labels, _) in enumerate(CASES)})
    res = runner.invoke(app, ["review-score", str(known), str(out / "review.csv")])
    assert res.exit_code == 0, res.output
    assert "micro-F1 between the dataset's and the rater's labels: 1.000" in " ".join(res.output.split())
    assert (out / "validation-review.md").read_text().startswith("## Blind review")
    md = tmp_path / "elsewhere.md"
    res = runner.invoke(app, ["review-score", str(known), str(out / "review.csv"), "--out", str(md)])
    assert res.exit_code == 0 and md.is_file()
    res = runner.invoke(app, ["review-sheets", str(known), "--n", "4", "--task", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--task" in res.output and not (tmp_path / "x").exists()
