"""The manifest's content hash covers the dataset's own files only (issue 11): files a
builder writes beside them after the manifest (``released/``, validation sheets) leave
``validate`` passing, while a changed sample line or image fails it."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.data import content_hash, load_dataset
from ptychobench.data.dataset import dataset_files

runner = CliRunner()


def _validate(root) -> tuple[int, str]:
    res = runner.invoke(app, ["validate", str(root)])
    return res.exit_code, " ".join(res.output.split())


def test_files_written_beside_the_dataset_do_not_change_the_hash(tiny_dataset):
    before = content_hash(tiny_dataset)
    (tiny_dataset / "released" / "images").mkdir(parents=True)
    (tiny_dataset / "released" / "images" / "x.png").write_bytes(b"png")
    (tiny_dataset / "released" / "artifacts").mkdir()
    (tiny_dataset / "released" / "artifacts" / "train.jsonl").write_text("{}\n")
    (tiny_dataset / "validation").mkdir()
    (tiny_dataset / "validation" / "sheet.png").write_bytes(b"png")
    (tiny_dataset / "validation.md").write_text("# validation\n")
    assert content_hash(tiny_dataset) == before
    assert all(p.relative_to(tiny_dataset).parts[0] in ("artifacts", "params") for p in dataset_files(tiny_dataset))
    assert _validate(tiny_dataset)[0] == 0


def test_a_changed_sample_line_or_image_fails_validation(tiny_dataset):
    path = tiny_dataset / "params" / "test.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["text"] += " edited"
    path.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    code, out = _validate(tiny_dataset)
    assert code == 2 and "content hash differs from the files" in out


def test_a_changed_image_fails_validation(tiny_dataset):
    image = load_dataset(tiny_dataset).samples("artifacts", "train")[0].image
    image.write_bytes(image.read_bytes() + b"\0")  # still a readable PNG, other bytes
    code, out = _validate(tiny_dataset)
    assert code == 2 and "content hash differs" in out


def test_the_shipped_sim_v1_manifest_matches_its_files():
    ds = load_dataset("sim-v1", check_images=False)
    assert ds.manifest["content_hash"] == content_hash(ds.root)
