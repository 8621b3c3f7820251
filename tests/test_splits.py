"""Further test splits (issue 11: ``test-ood``, a held-out instrument): datasets carry any
number of ``test-<word>`` splits beside the required train and test, no sample is in two
splits, and a run scores the split its config names, in cells of their own."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from conftest import make_samples
from ptychobench.data import DatasetError, load_dataset, write_dataset
from ptychobench.data.dataset import require_train
from ptychobench.data.released import export_released, import_released
from ptychobench.data.summary import dataset_table
from ptychobench.errors import ConfigError
from ptychobench.run import Runner, expand, parse_config
from ptychobench.run.plan import dataset_sizes, plan_run
from ptychobench.run.settings import settings_hash


def with_ood(tmp_path, n_ood: int = 4):
    """The tiny dataset plus a test-ood split: the first ``n_ood`` of extra samples per task."""
    base = make_samples(tmp_path)
    extra = [
        replace(s, id=f"ood-{s.id}", split="test-ood")
        for s in make_samples(tmp_path / "more", n_train=0, n_test=n_ood, seed=1)
    ]
    return base, extra


@pytest.fixture
def ood_dataset(tmp_path):
    base, extra = with_ood(tmp_path)
    return write_dataset(tmp_path / "ood", "ood", "1", base + extra)


def test_a_further_test_split_is_written_loaded_counted_and_exported(ood_dataset, tmp_path):
    ds = load_dataset(ood_dataset)
    assert ds.split_names("artifacts") == ["train", "test", "test-ood"]
    ood = ds.samples("params", "test-ood")
    assert len(ood) == 4 and {s.split for s in ood} == {"test-ood"}
    m = ds.manifest
    assert m["splits"]["artifacts"] == {"train": 12, "test": 6, "test-ood": 4}
    assert sum(m["label_counts"]["params"]["test-ood"].values()) == sum(len(s.labels) for s in ood)
    assert (ood_dataset / "artifacts" / "test-ood.jsonl").is_file()
    assert "+test-ood 4" in repr(ds)
    rows = [tuple(r) for r in zip(*(c._cells for c in dataset_table(m, ds.root).columns))]
    assert ("params", "test-ood", "4") in [r[:3] for r in rows]
    out = export_released(ds, tmp_path / "released")
    assert len(json.loads((out / "params" / "test-ood.json").read_text())) == 4
    back = import_released(out, tmp_path / "back", images=out / "images")
    for task in ("artifacts", "params"):
        assert back.split_names(task) == ["train", "test", "test-ood"]
        assert sorted(s.labels for s in back.samples(task, "test-ood")) == sorted(
            s.labels for s in ds.samples(task, "test-ood")
        )
    with pytest.raises(DatasetError, match="train split only"):
        require_train(ood[:1], "demos")


def test_validate_accepts_a_further_split_and_lists_it(ood_dataset):
    from typer.testing import CliRunner

    from ptychobench.cli import app

    res = CliRunner().invoke(app, ["validate", str(ood_dataset)])
    assert res.exit_code == 0, res.output
    assert "test-ood" in res.output
    res = CliRunner().invoke(app, ["datasets"])
    assert res.exit_code == 0


def test_a_dataset_without_further_splits_is_unchanged(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    assert ds.split_names("params") == ["train", "test"]
    assert set(ds.manifest["splits"]["params"]) == {"train", "test"}


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: (d / "params" / "dev.jsonl").write_text("{}\n"), "dev.jsonl: split 'dev' is not a split name"),
        (lambda d: (d / "params" / "test-OOD.jsonl").write_text("{}\n"), "split 'test-OOD' is not a split name"),
        (lambda d: (d / "artifacts" / "test.jsonl").unlink(), "test.jsonl: missing"),
        (lambda d: (d / "params" / "test-ood.jsonl").write_text(""), "the params/test-ood split is empty"),
    ],
)
def test_bad_split_files_fail_naming_the_file(ood_dataset, corrupt, message):
    corrupt(ood_dataset)
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(ood_dataset)


@pytest.mark.parametrize("other", ["train", "test"])
def test_a_sample_in_a_further_split_and_another_fails(ood_dataset, other):
    path = ood_dataset / "params" / "test-ood.jsonl"
    lines = path.read_text().splitlines()
    leaked = json.loads((ood_dataset / "params" / f"{other}.jsonl").read_text().splitlines()[0])["id"]
    rec = json.loads(lines[0])
    rec["id"] = leaked
    path.write_text("\n".join([json.dumps(rec), *lines[1:]]) + "\n")
    a, b = ("train", "test-ood") if other == "train" else ("test", "test-ood")
    with pytest.raises(DatasetError, match=f"in both {a} and {b}"):
        load_dataset(ood_dataset)


def test_write_refuses_a_bad_split_name(tmp_path):
    samples = make_samples(tmp_path)
    samples[0] = replace(samples[0], split="validation")
    with pytest.raises(DatasetError, match="split 'validation' is not a split name"):
        write_dataset(tmp_path / "bad", "bad", "1", samples)


def _cfg(dataset, **extra):
    data = {
        "name": "t",
        "dataset": str(dataset),
        "experiments": [
            {"task": "params", "baselines": ["type-only"]},
            {"task": "artifacts", "baselines": ["type-only"]},
        ],
        **extra,
    }
    return parse_config(data, "t.yaml")


@pytest.mark.parametrize("split", ["train", "Test", "test_ood", "ood", 3])
def test_config_split_must_be_a_test_split(tmp_path, split):
    with pytest.raises(ConfigError, match="split must be test or a further test split"):
        _cfg(tmp_path, split=split)


def test_the_split_names_the_cells_and_enters_the_settings_hash(ood_dataset):
    test, ood = _cfg(ood_dataset), _cfg(ood_dataset, split="test-ood")
    assert test.split == "test" and ood.split == "test-ood"
    names = [c.config for c in expand(ood)]
    assert all(n.endswith("/split-test-ood") for n in names)
    assert [c.config for c in expand(test)] == [n.removesuffix("/split-test-ood") for n in names]
    for a, b in zip(expand(test), expand(ood)):
        assert settings_hash(test, a, test.experiments[a.exp], "h") != settings_hash(
            ood, b, ood.experiments[b.exp], "h"
        )
    ds = load_dataset(ood_dataset)
    assert dataset_sizes(ds)["params"] == {"train": 12, "test": 6, "test-ood": 4}
    plan = plan_run(ood, ds, 1)
    assert sorted(c.config for c in plan.shards[0].cells) == sorted(names)


def test_a_run_scores_the_split_it_names_and_keeps_splits_apart(ood_dataset, tmp_path):
    from ptychobench.eval.score import score_records
    from ptychobench.eval.store import read_run
    from ptychobench.report import write_report

    run = tmp_path / "run"
    assert Runner(_cfg(ood_dataset), run).run()["ran"] == 2
    assert Runner(_cfg(ood_dataset, split="test-ood"), run).run()["ran"] == 2
    assert Runner(_cfg(ood_dataset, split="test-ood"), run).run()["ran"] == 0  # done: reused
    records = read_run(run)
    ood_ids = {s.id for t in ("artifacts", "params") for s in load_dataset(ood_dataset).samples(t, "test-ood")}
    for r in records:
        on_ood = r["config"].endswith("/split-test-ood")
        assert (r["sample_id"] in ood_ids) == on_ood
        assert r["components"]["dataset"]["split"] == ("test-ood" if on_ood else "test")
    n = {r.config: r.scores.n for r in score_records(records, ci=False)}
    assert n == {
        "params/type-only/type-only/-/k0/seed0/nall": 6,
        "artifacts/type-only/type-only/-/k0/seed0/nall": 6,
        "params/type-only/type-only/-/k0/seed0/nall/split-test-ood": 4,
        "artifacts/type-only/type-only/-/k0/seed0/nall/split-test-ood": 4,
    }
    md = write_report(run)["md"].read_text(encoding="utf-8")
    assert "the test-ood split" in md


def test_a_run_on_a_split_the_dataset_lacks_fails_before_anything_runs(ood_dataset, tmp_path):
    with pytest.raises(ConfigError, match=r"has no params/test-large split; its params splits: train, test, test-ood"):
        Runner(_cfg(ood_dataset, split="test-large"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_label_studio_tasks_keep_a_further_split_through_export_and_import(ood_dataset, tmp_path):
    from ptychobench.annotate.export import export_project
    from ptychobench.annotate.importer import _assign_splits
    from ptychobench.annotate.load import LabelledTask

    export_project(str(ood_dataset), tmp_path / "ls", split="test-ood", task="params")
    tasks = json.loads((tmp_path / "ls" / "params" / "tasks.json").read_text())
    assert len(tasks) == 4 and {t["data"]["split"] for t in tasks} == {"test-ood"}

    def item(sid, split):
        return LabelledTask(sid, sid, {"split": split}, {"a": frozenset({"K"})})

    items = [item("a", "train"), item("b", "test"), item("c", "test-ood")]
    splits, rule = _assign_splits(items, 0.2, 0, tmp_path / "x.json")
    assert splits == {"a": "train", "b": "test", "c": "test-ood"} and rule == "the splits the tasks carry"
    splits, rule = _assign_splits([*items[:2], item("c", "valid")], 0.5, 0, tmp_path / "x.json")
    assert rule.startswith("random") and set(splits.values()) == {"train", "test"}


def test_cross_task_leaks_are_listed_and_validate_warns(tmp_path, tiny_dataset):
    from typer.testing import CliRunner

    from ptychobench.cli import app
    from ptychobench.data.dataset import cross_task_leaks

    assert cross_task_leaks(load_dataset(tiny_dataset)) == []  # params ids differ ("p" prefix)
    base, extra = with_ood(tmp_path)
    # one experiment: artifacts test-ood and params train under one id (sim datasets share ids)
    shared = next(s for s in base if s.task == "params" and s.split == "train").id
    extra = [replace(s, id=shared) if s.task == "artifacts" and i == 0 else s for i, s in enumerate(extra)]
    root = write_dataset(tmp_path / "leaky", "leaky", "1", base + extra)
    assert cross_task_leaks(load_dataset(root)) == [(shared, "artifacts/test-ood", "params/train")]
    res = CliRunner().invoke(app, ["validate", str(root)])
    assert res.exit_code == 0 and "1 sample id(s) are in a test split of one task" in " ".join(res.output.split())
