"""Malformed configs, datasets, released files and stores fed through the CLI: every one
ends in one clear error line and exit code 2, never a traceback, and nothing is written
where it should not be. Mutations are drawn from a seeded generator, each one invalid
by construction, so a failure names a reproducible case."""

from __future__ import annotations

import json
import random

import pytest
import yaml
from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.data.released import export_released

N_CASES = 24

#: per top-level config key: values that are wrong for it
BAD_TOP = {
    "name": [None, 0, [], {}, "", "../x", "a/b"],
    "dataset": [None, 0, [], {}, "", "/no/such/dataset"],
    "experiments": [None, 0, "x", [], [1], [{}], [{"task": 5}], [{"task": "params"}]],
    "seeds": ["abc", [None], [1.5], {}, [[1]]],
    "train_sizes": [0, -1, "some", [None], {}],
    "decoding": [None, 0, "nope", [], {}],
    "max_new_tokens": [0, -5, "x", 1.5, []],
    "batch_size": [0, -1, "x", None, []],
    "limit": [0, -3, "x", 1.5, []],
    "max_failure_rate": [-0.1, 2, "x", [], None],
    "no_such_key": [1],
}
#: per experiment key: values that are wrong for it
BAD_EXP = {
    "task": [None, 5, "x", [], {}],
    "model": [5, [], "nope", "hf:", "hf:/no/such/folder", "llamacpp:/x.gguf"],
    "strategies": ["magic", [None], [[1]], 5],
    "selectors": ["best", [5], [None]],
    "k": [-1, 99, "x", [1.5], [True]],
    "baselines": ["nope", [None], [[1]], "vision-probe"],
    "probe_options": ["x", {"nope": 1}, []],
    "selector_options": ["x", {"nope": 1}],
    "backend_options": ["x", {"nope": 1}, []],
    "sft": ["x", {"nope": 1}],
    "batch_size": [0, "x", -2],
    "adapter": [5, "/nope"],
    "bogus": [1],
}


def _assert_clear_failure(res, *where: str) -> None:
    assert isinstance(res.exception, SystemExit), f"{res.exception!r} for {where}\n{res.output}"
    assert res.exit_code == 2, (res.exit_code, res.output, where)
    assert "Traceback" not in res.output and res.output.count("error:") == 1, (res.output, where)


@pytest.mark.parametrize("case", range(N_CASES))
def test_fuzz_configs(case, tiny_dataset, tmp_path):
    rng = random.Random(case)
    data = {
        "name": "fuzz",
        "dataset": str(tiny_dataset),
        "seeds": [0],
        "experiments": [{"task": "params", "baselines": ["knn-vote"]}],
    }
    mutations = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            key = rng.choice(sorted(BAD_TOP))
            data[key] = rng.choice(BAD_TOP[key])
        elif (
            isinstance(data.get("experiments"), list)
            and data["experiments"]
            and isinstance(data["experiments"][0], dict)
        ):
            key = rng.choice(sorted(BAD_EXP))
            data["experiments"][0][key] = rng.choice(BAD_EXP[key])
        else:
            key = "experiments"
        mutations.append(key)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-report"])
    _assert_clear_failure(res, case, mutations, data)
    assert not out.exists(), f"a bad config wrote {out}"


@pytest.mark.parametrize("text", [b"name: [unclosed", b"\xff\xfe\x00binary", b"", b"- a\n- list\n", b"42"])
def test_fuzz_config_files(text, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    _assert_clear_failure(CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o")]), text)


def _bad_sample_line(rng: random.Random, task: str) -> str:
    good = {"id": "zz-new", "labels": [], "sample_type": "x", "text": "t", "metadata": {}}
    if task == "artifacts":
        good["image"] = "images/does-not-exist.png"  # replaced below unless the image is the mutation
    kind = rng.choice(["json", "list", "id", "labels", "metadata", "image", "missing"])
    if kind == "json":
        return '{"id": "x", "labels": [' if rng.random() < 0.5 else "not json at all"
    if kind == "list":
        return json.dumps([1, 2, 3])
    if kind == "id":
        good["id"] = rng.choice([None, [1], {}, True, ""])
    elif kind == "labels":
        good["labels"] = rng.choice(["A", [5], ["nope"], {"A": 1}, [None]])
    elif kind == "metadata":
        good["metadata"] = rng.choice(["x", [1], 5])
    elif kind == "image":
        good["image"] = rng.choice([5, "", "../../../../etc/passwd", "/etc/passwd", "images/missing.png"])
        task = "artifacts"
    else:
        del good[rng.choice(["id", "labels"])]
    return json.dumps(good)


@pytest.mark.parametrize("case", range(N_CASES))
def test_fuzz_datasets(case, tiny_dataset):
    rng = random.Random(1000 + case)
    kind = rng.choice(["line", "line", "line", "manifest", "bytes", "missing"])
    task = rng.choice(["artifacts", "params"])
    split = tiny_dataset / task / f"{rng.choice(['train', 'test'])}.jsonl"
    if kind == "line":
        lines = split.read_text().splitlines()
        line = _bad_sample_line(rng, task)
        if task == "params" and '"image"' in line and "does-not-exist" not in line:
            split = tiny_dataset / "artifacts" / split.name
            lines = split.read_text().splitlines()
        lines.insert(rng.randrange(len(lines) + 1), line)
        split.write_text("\n".join(lines) + "\n")
    elif kind == "manifest":
        (tiny_dataset / "manifest.json").write_text(
            rng.choice(
                [
                    "[]",
                    "{",
                    '{"name": 5, "tasks": ["params"]}',
                    '{"name": "x", "tasks": "params"}',
                    '{"name": "x", "tasks": ["nope"]}',
                    '{"name": "x", "tasks": []}',
                    '{"tasks": ["params"]}',
                ]
            )
        )
    elif kind == "bytes":
        split.write_bytes(b'{"id": "\xff\xfe", "labels": []}\n')
    else:
        split.unlink()
    _assert_clear_failure(CliRunner().invoke(app, ["validate", str(tiny_dataset)]), case, kind)


def _bad_released(rng: random.Random, recs: list) -> object:
    kind = rng.randrange(12)
    rec = json.loads(json.dumps(recs[0]))
    if kind == 0:
        return {"not": "a list"}
    if kind == 1:
        return []
    if kind == 2:
        return [5]
    if kind == 3:
        rec["messages"] = rng.choice([5, "x", [1, 2], [{"role": "user"}]])
    elif kind == 4:
        rec["messages"][0]["content"] = rng.choice([5, [5], [None]])
    elif kind == 5:
        rec["messages"][0]["content"][0]["text"] = rng.choice([5, [1], {}])
    elif kind == 6:
        rec["messages"][-1]["content"] = [{"type": "text", "text": rng.choice(["no tags", "<answer>[nope]</answer>"])}]
    elif kind == 7:
        rec["metadata"] = rng.choice(["x", [1], 5])
    elif kind == 8:
        rec["metadata"] = {"sample_id": rng.choice([[1], {"a": 1}, True])}
    elif kind == 9:
        rec["messages"][0]["content"][-1] = {"type": "image", "image_path": rng.choice([5, ["a"]])}
    elif kind == 10:
        rec["messages"][0]["content"][-1] = {"type": "image", "image_path": "/elsewhere/not-there.png"}
    else:
        return None
    return [rec] + recs[1:]


@pytest.mark.parametrize("case", range(N_CASES))
def test_fuzz_released_files(case, tiny_dataset, tmp_path):
    rng = random.Random(2000 + case)
    released = export_released(tiny_dataset, tmp_path / "released")
    f = released / "artifacts" / rng.choice(["train.json", "test.json"])
    bad = _bad_released(rng, json.loads(f.read_text()))
    if bad is None:
        f.write_bytes(b"\xff\xfe[" + f.read_bytes())
    else:
        f.write_text(json.dumps(bad))
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "imported"
    res = CliRunner().invoke(app, ["import", str(released), "--images", str(released / "images"), "--out", str(out)])
    _assert_clear_failure(res, case, bad if bad is None else str(bad)[:200])
    assert sorted(p.name for p in tmp_path.iterdir()) in (before, sorted(before + ["imported"]))


GOOD_RECORD = {
    "config": "params/m/zero-shot/-/k0/seed0/nall",
    "sample_id": "s1",
    "task": "params",
    "gold": ["A"],
    "labels": ["A"],
    "parse_ok": True,
    "version": 3,
}


def _bad_store_line(rng: random.Random) -> str:
    kind = rng.randrange(10)
    rec = dict(GOOD_RECORD, sample_id=f"s{rng.randrange(99)}")
    if kind == 0:
        return '{"config": "c", "sample_'[: rng.randrange(5, 20)] + "}"
    if kind == 1:
        return json.dumps([1, 2])
    if kind == 2:
        del rec[rng.choice(["config", "sample_id", "task", "gold", "labels"])]
    elif kind == 3:
        rec["gold"] = rng.choice(["A", [5], {}])
    elif kind == 4:
        rec["labels"] = rng.choice(["A", [None], 3])
    elif kind == 5:
        rec["version"] = rng.choice([99, "2", None])
    elif kind == 6:
        rec["task"] = rng.choice(["nope", 5])
    elif kind == 7:
        rec["parse_ok"] = "yes"
    elif kind == 8:
        rec["meta"] = [1]
    else:
        rec["config"] = 5
    return json.dumps(rec)


@pytest.mark.parametrize("case", range(N_CASES))
def test_fuzz_stores(case, tmp_path):
    rng = random.Random(3000 + case)
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps(dict(GOOD_RECORD, sample_id=f"s{i}")) for i in range(5)]
    kind = rng.choice(["line", "line", "line", "bytes", "shard"])
    if kind == "line":
        lines.insert(rng.randrange(len(lines) + 1), _bad_store_line(rng))
        (run / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    elif kind == "bytes":
        (run / "predictions.jsonl").write_bytes(b"\n".join(x.encode() for x in lines) + b"\n\xff\xfe\n")
    else:
        n = rng.randint(2, 4)
        (run / f"predictions-shard{rng.randrange(n)}of{n}.jsonl").write_text("\n".join(lines) + "\n")
    command = rng.choice(["report", "score"])
    _assert_clear_failure(CliRunner().invoke(app, [command, str(run)]), case, kind, command)
    assert not (run / "report.html").exists()
