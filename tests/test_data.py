import json

import pytest

from ptychobench.data import DatasetError, content_hash, load_dataset, write_dataset


def test_roundtrip_and_manifest(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    m = ds.manifest
    assert m["tasks"] == ["artifacts", "params"]
    assert m["splits"] == {"artifacts": {"train": 12, "test": 6}, "params": {"train": 12, "test": 6}}
    assert m["content_hash"] == content_hash(tiny_dataset)
    total = sum(m["label_counts"]["params"]["train"].values())
    assert total == sum(len(s.labels) for s in ds.samples("params", "train"))
    s = ds.samples("artifacts", "test")[0]
    assert s.image.is_file() and s.image.parent == (tiny_dataset / "artifacts" / "images").resolve()
    again = write_dataset(tiny_dataset.parent / "copy", "tiny", "1", [x for k in ds.splits for x in ds.splits[k]])
    assert content_hash(again) == m["content_hash"]


def _edit_line(path, lineno, fn):
    lines = path.read_text().splitlines()
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: _edit_line(d / "params/train.jsonl", 2, lambda ln: ln[:-5]), "train.jsonl:2: not valid JSON"),
        (
            lambda d: _edit_line(
                d / "artifacts/test.jsonl", 3, lambda ln: json.dumps({**json.loads(ln), "labels": ["Moire"]})
            ),
            "test.jsonl:3: sample 'test002' has unknown label(s) ['Moire']",
        ),
        (lambda d: (d / "artifacts/images/train001.png").unlink(), "image of sample 'train001' not found"),
        (
            lambda d: (d / "artifacts/images/train002.png").write_bytes(b"not a png"),
            "image of sample 'train002' is unreadable",
        ),
        (
            lambda d: _edit_line(
                d / "params/test.jsonl", 2, lambda ln: json.dumps({**json.loads(ln), "id": "ptest000"})
            ),
            "test.jsonl:2: duplicate sample id 'ptest000'",
        ),
        (
            lambda d: _edit_line(
                d / "params/test.jsonl", 1, lambda ln: json.dumps({**json.loads(ln), "id": "ptrain000"})
            ),
            "in both train and test",
        ),
        (lambda d: (d / "params/test.jsonl").write_text(""), "params/test.jsonl: the params/test split is empty"),
        (lambda d: (d / "manifest.json").write_text("{"), "manifest.json: not valid JSON"),
    ],
)
def test_bad_datasets_fail_with_a_message_naming_file_and_problem(tiny_dataset, corrupt, message):
    corrupt(tiny_dataset)
    with pytest.raises(DatasetError) as e:
        load_dataset(tiny_dataset)
    assert message in str(e.value)


def test_unknown_dataset_name_lists_known_ones(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder or name"):
        load_dataset("does-not-exist-anywhere")
