"""Runs that cannot mislead (issue 15, integrity half): each test reproduces one problem
that was seen and shows it fixed."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

import ptychobench.models as models
from ptychobench.cli import app
from ptychobench.data import load_dataset
from ptychobench.data.dataset import safe_file_name
from ptychobench.data.released import import_released
from ptychobench.errors import ConfigError, DatasetError, ModelError
from ptychobench.eval.compare import MIN_N, Comparison
from ptychobench.eval.score import score_records
from ptychobench.eval.store import PredictionStore, read_run
from ptychobench.files import write_atomic
from ptychobench.models.base import Generation
from ptychobench.models.openai_api import OpenAIBackend, scrub_secrets
from ptychobench.report.words import run_warnings, summary_in_words
from ptychobench.run import Runner, parse_config
from ptychobench.run.lock import RunLock

SECRET = "sk-topsecretkey12345"
PASSWORD = "hunter2pw"


class FakeBackend:
    """Answers every prompt with option A (or fails, or babbles), counting its calls."""

    def __init__(self, mode: str = "ok", **options):
        self.mode, self.calls, self.options = mode, 0, options

    def fingerprint(self):
        return {"backend": "fake", "model": "fake", "base_url": f"http://user:{PASSWORD}@localhost:9/v1"}

    def generate(self, batch, config):
        self.calls += len(batch)
        if self.mode == "down":
            raise ConnectionError(
                f"connection refused: http://user:{PASSWORD}@localhost:9/v1 Authorization: Bearer {SECRET}"
            )
        text = "<answer>A</answer>" if self.mode == "ok" else "I cannot say"
        return [Generation(text=text) for _ in batch]


@pytest.fixture
def fake(monkeypatch):
    made: list[FakeBackend] = []
    mode = {"value": "ok"}

    def load(model, adapter=None, **options):
        b = FakeBackend(mode["value"], **options)
        made.append(b)
        return b

    monkeypatch.setattr(models, "load_backend", load)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return made, mode


def _cfg(dataset, **top):
    exp = {
        "task": "params",
        "model": "openai:local-model",
        "strategies": ["zero-shot"],
        "backend_options": {"base_url": f"http://user:{PASSWORD}@localhost:9/v1", "api_key": SECRET},
    }
    exp.update(top.pop("exp", {}))
    return {"name": "t", "dataset": str(dataset), "experiments": [exp], **top}


def _all_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------ cell keys and settings


def test_changed_settings_recompute_cells_and_keep_each_config(tiny_dataset, tmp_path, fake):
    made, _ = fake
    out = tmp_path / "run"
    first = Runner(parse_config(_cfg(tiny_dataset, max_new_tokens=50), "a.yaml"), out).run()
    assert first["ran"] == 1 and made[-1].calls == 6
    again = Runner(parse_config(_cfg(tiny_dataset, max_new_tokens=50), "a.yaml"), out).run()
    assert again["ran"] == 0
    # before: "all already in the store", predictions made with 50 tokens reused for 60
    changed = Runner(parse_config(_cfg(tiny_dataset, max_new_tokens=60), "a.yaml"), out).run()
    assert changed["ran"] == 1 and made[-1].calls == 6
    dtype = Runner(
        parse_config(
            _cfg(
                tiny_dataset,
                max_new_tokens=60,
                exp={"backend_options": {"base_url": "http://localhost:9/v1", "timeout_s": 5}},
            ),
            "a.yaml",
        ),
        out,
    ).run()
    assert dtype["ran"] == 1, "a changed base_url is a changed model"
    kept = sorted((out / "configs").glob("config-*.yaml"))
    assert len(kept) == 3, "each config the folder ran under is kept, none overwritten"
    assert {"max_new_tokens: 50", "max_new_tokens: 60"} <= {line for p in kept for line in p.read_text().splitlines()}
    recs = read_run(out)
    assert len(recs) == 6 and len({r["settings"] for r in recs}) == 1
    (res,) = score_records(recs)
    assert res.stale == 0 and res.scores.n == 6


def test_timeouts_and_retries_do_not_redo_work(tiny_dataset, tmp_path, fake):
    out = tmp_path / "run"
    Runner(parse_config(_cfg(tiny_dataset), "a.yaml"), out).run()
    cfg = _cfg(
        tiny_dataset,
        exp={
            "backend_options": {
                "base_url": f"http://user:{PASSWORD}@localhost:9/v1",
                "timeout_s": 9,
                "max_retries": 1,
                "api_key": "other",
            }
        },
    )
    assert Runner(parse_config(cfg, "a.yaml"), out).run()["ran"] == 0


def test_mixed_settings_score_the_newest_only():
    base = {"task": "params", "gold": ["A"], "sample_type": "x", "parse_ok": True}
    recs = [
        {**base, "config": "c", "sample_id": "1", "labels": ["A"], "settings": "old"},
        {**base, "config": "c", "sample_id": "2", "labels": [], "settings": "new"},
    ]
    (r,) = score_records(recs)
    assert r.scores.n == 1 and r.stale == 1 and r.scores.micro_f1 == 0.0
    from ptychobench.eval.compare import by_config

    assert list(by_config(recs)["c"]) == ["2"], "comparisons use the scored records only"


def test_old_store_versions_still_score_and_are_redone_on_rerun(tmp_path):
    path = tmp_path / "predictions.jsonl"
    v1 = {
        "config": "params/m/zero-shot/-/k0/seed0/nall",
        "sample_id": "s1",
        "task": "params",
        "gold": ["A"],
        "labels": ["A"],
        "parse_ok": True,
    }
    v2 = {**v1, "sample_id": "s2", "version": 2, "components": {}}
    path.write_text(json.dumps(v1) + "\n" + json.dumps(v2) + "\n")
    (r,) = score_records(read_run(tmp_path))
    assert r.scores.n == 2 and r.scores.micro_f1 == 1.0
    store = PredictionStore(path)
    assert store.is_done(v1["config"], "s1") and not store.is_done(v1["config"], "s1", "abc123")


# ------------------------------------------------------------------ failed cells


def test_server_down_fails_the_cell_exits_nonzero_and_is_never_starred(tiny_dataset, tmp_path, fake):
    made, mode = fake
    mode["value"] = "down"
    cfg = _cfg(tiny_dataset, exp={"task": "params", "baselines": ["knn-vote"]})
    cfg_path = tmp_path / "c.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(cfg_path), "--out", str(out)])
    assert res.exit_code == 1, res.output
    assert "failed" in res.output and "--allow-failures" in res.output
    md = (out / "report.md").read_text()
    starred = [line for line in md.splitlines() if "★" in line and line.startswith("|")]
    assert starred and all("knn-vote" in line for line in starred), "the all-error cell was starred"
    assert "Failed cell" in md and "(failed)" in md
    scores = {r.config: r for r in score_records(read_run(out))}
    bad = next(r for c, r in scores.items() if "zero-shot" in c)
    assert bad.failed and bad.scores.errors == 6 and bad.scores.parse_failures == 0, (
        "generation errors are not also counted as unparseable replies"
    )
    assert PASSWORD not in _all_text(out) and SECRET not in _all_text(out), "a secret was written"
    ok = CliRunner().invoke(app, ["run", str(cfg_path), "--out", str(out), "--allow-failures"])
    assert ok.exit_code == 0, ok.output


def test_a_model_that_loads_text_only_stops_the_image_cells(tiny_dataset, tmp_path, fake):
    made, _ = fake
    cfg = _cfg(tiny_dataset, exp={"task": "artifacts"})
    FakeBackend.vision = False
    try:
        with pytest.raises(ModelError, match="text-only"):
            Runner(parse_config(cfg, "a.yaml"), tmp_path / "r").run()
    finally:
        del FakeBackend.vision
    assert made and made[-1].calls == 0
    assert (tmp_path / "r" / "predictions.jsonl").read_text() == ""


def test_unparseable_replies_fail_the_cell(tiny_dataset, tmp_path, fake):
    _, mode = fake
    mode["value"] = "babble"
    runner = Runner(parse_config(_cfg(tiny_dataset, max_failure_rate=0.5), "a.yaml"), tmp_path / "r")
    summary = runner.run()
    assert len(summary["failed"]) == 1
    (r,) = score_records(read_run(tmp_path / "r"))
    assert r.scores.parse_failures == 6 and r.failed


# ------------------------------------------------------------------ small samples, limit


def _comp(n: int) -> Comparison:
    return Comparison("params", "SFT 0-shot vs base 0-shot", "a", "b", n, 0.2, 0.6, -0.4, (-0.6, -0.1), 0.016, -1.0)


def test_small_comparisons_carry_a_warning_not_a_verdict():
    assert "too few" in _comp(4).verdict and "significant" not in _comp(4).verdict
    assert _comp(MIN_N).verdict == "B better"
    from ptychobench.eval.metrics import score

    s = score([frozenset("A")] * 4, [frozenset("A")] * 4, ["A", "B"], ci=False)
    from ptychobench.eval.score import ConfigScores

    results = [ConfigScores("a", "params", {"family": "sft", "limit": 4}, s, list("1234"))]
    words = "\n".join(summary_in_words(results, [_comp(4)]))
    assert "significantly worse" not in words and "too few samples" in words
    assert "first 4 test sample" in words.split("\n")[0], "a limit run says so at the top"


def test_limit_is_recorded_for_the_report(tiny_dataset, tmp_path):
    cfg = parse_config(
        {
            "name": "t",
            "dataset": str(tiny_dataset),
            "limit": 3,
            "experiments": [{"task": "params", "baselines": ["knn-vote"]}],
        },
        "a.yaml",
    )
    Runner(cfg, tmp_path / "r").run()
    results = score_records(read_run(tmp_path / "r"))
    assert results[0].scores.n == 3 and any("first 3 test" in w for w in run_warnings(results))


# ------------------------------------------------------------------ config checks


@pytest.mark.parametrize(
    "top, message",
    [
        ({"limit": -3}, "limit must be a positive integer"),
        ({"seeds": ["abc"]}, "seeds must be integers"),
        ({"max_new_tokens": -5}, "max_new_tokens must be a positive integer"),
        ({"max_failure_rate": 2}, "max_failure_rate must be a number in 0..1"),
        ({"name": "../../escape"}, "must be a plain name"),
        ({"decoding": ["greedy"]}, "decoding must be a name"),
        ({"exp": {"model": "hf:/does/not/exist"}}, "model folder /does/not/exist does not exist"),
        ({"exp": {"task": "artifacts", "model": "llamacpp:/x.gguf", "backend_options": {}}}, "takes text only"),
        ({"exp": {"task": "artifacts", "model": "openai:gpt-3.5-turbo"}}, "takes text only"),
        ({"exp": {"model": ["not", "a", "string"]}}, "model must be a string"),
        ({"exp": {"strategies": [["zero-shot"]]}}, "unknown strategy"),
        ({"exp": {"task": ["params"]}}, "task must be one of"),
        (
            {"exp": {"model": "hf:org/m", "backend_options": {}, "adapter": "/does-not-exist"}},
            "'adapter' is used by the sft",
        ),
        (
            {"exp": {"model": "hf:org/m", "backend_options": {}, "adapter": "/does-not-exist", "strategies": ["sft"]}},
            "adapter folder /does-not-exist does not exist",
        ),
    ],
)
def test_config_mistakes_are_one_clear_error(top, message):
    with pytest.raises(ConfigError) as e:
        parse_config(_cfg("d", **top), "my.yaml")
    assert message in str(e.value) and "my.yaml" in str(e.value)


def test_adapter_folder_must_hold_an_adapter(tmp_path):
    exp = {"model": "hf:org/m", "backend_options": {}, "adapter": str(tmp_path), "strategies": ["sft"]}
    with pytest.raises(ConfigError, match="has no adapter_config.json"):
        parse_config(_cfg("d", exp=exp), "c.yaml")
    (tmp_path / "adapter_config.json").write_text("{}")
    parse_config(_cfg("d", exp=exp), "c.yaml")


def test_text_only_hf_folder_is_refused_for_images(tmp_path):
    folder = tmp_path / "llm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ConfigError, match="takes text only"):
        parse_config(_cfg("d", exp={"task": "artifacts", "model": f"hf:{folder}", "backend_options": {}}), "c.yaml")
    (folder / "config.json").write_text(json.dumps({"model_type": "llava", "vision_config": {}}))
    parse_config(_cfg("d", exp={"task": "artifacts", "model": f"hf:{folder}", "backend_options": {}}), "c.yaml")


def test_mistakes_stop_before_anything_runs_or_is_written(tiny_dataset, tmp_path, monkeypatch):
    import yaml

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for i, exp in enumerate(
        [{"task": "params", "model": "no-such-model"}, {"task": "params", "model": "gpt-4o"}]
    ):  # no key for api.openai.com
        cfg = {
            "name": "t",
            "dataset": str(tiny_dataset),
            "experiments": [{"task": "params", "baselines": ["knn-vote"]}, exp],
        }
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = tmp_path / f"out{i}"
        res = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert res.output.count("error:") == 1, res.output
        assert not out.exists(), "the baseline cells ran before the mistake was found"


# ------------------------------------------------------------------ paths


def _dataset_with_image(tiny_dataset: Path, image: str) -> Path:
    split = tiny_dataset / "artifacts" / "test.jsonl"
    lines = split.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["image"] = image
    split.write_text("\n".join([json.dumps(rec)] + lines[1:]) + "\n")
    return tiny_dataset


@pytest.mark.parametrize("image", ["/etc/passwd", "../../../../etc/passwd", "images/../../../outside.png"])
def test_dataset_image_paths_stay_inside_the_dataset(tiny_dataset, image):
    _dataset_with_image(tiny_dataset, image)
    with pytest.raises(DatasetError, match="outside the dataset folder"):
        load_dataset(tiny_dataset)


def test_safe_file_names():
    for sid in ["../../../../x", "/abs/x", ".hidden", "a/b\\c", "", "x" * 300, "ok-id_1.2"]:
        name = safe_file_name(sid)
        assert "/" not in name and "\\" not in name and not name.startswith(".") and 0 < len(name) <= 90
    assert safe_file_name("ok-id_1.2") == "ok-id_1.2"
    assert safe_file_name("a/b") != safe_file_name("a_b")


def test_import_with_hostile_ids_writes_only_inside_out(tiny_dataset, tmp_path):
    from ptychobench.data.released import export_released

    released = export_released(tiny_dataset, tmp_path / "released")
    for split in ("train", "test"):
        f = released / "artifacts" / f"{split}.json"
        recs = json.loads(f.read_text())
        recs[0]["metadata"]["sample_id"] = f"../../../../pwned-{split}"
        recs[1]["metadata"]["sample_id"] = str(tmp_path / f"abs-{split}")
        f.write_text(json.dumps(recs))
    (tmp_path / ".dotfile").write_text("keep me")
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "deep" / "imported"
    ds = import_released(released, out, images=released / "images")
    created = {p for p in tmp_path.rglob("*")} - before
    assert created and all(str(p).startswith(str(out)) or p == out.parent for p in created), created
    assert (tmp_path / ".dotfile").read_text() == "keep me"
    ids = {s.id for s in ds.samples("artifacts", "train")}
    assert "../../../../pwned-train" in ids  # the id is kept; only its file name is made safe


def test_released_wrong_types_are_one_clear_error(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "<answer>A</answer>"}]},
        ]
    }
    for bad in (
        [{**good, "metadata": "oops"}],
        [{"messages": ["user", "assistant"]}],
        [{**good, "metadata": {"sample_id": ["x"]}}],
        [{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}, good["messages"][1]]}],
    ):
        (src / "train.json").write_text(json.dumps(bad))
        (src / "test.json").write_text(json.dumps([good]))
        with pytest.raises(DatasetError):
            import_released(src, tmp_path / "out")
    (src / "train.json").write_bytes(b"\xff\xfe[not utf8")
    with pytest.raises(DatasetError, match="not UTF-8"):
        import_released(src, tmp_path / "out")


# ------------------------------------------------------------------ one writer, atomic files, secrets


def test_second_live_writer_is_refused_and_a_stale_lock_is_taken_over(tiny_dataset, tmp_path):
    lock_path = tmp_path / "run" / "predictions.lock"
    lock_path.parent.mkdir()
    lock_path.write_text("pid 999999 on a-dead-host\n")  # a killed run's leftover: no live flock
    with RunLock(lock_path):
        assert str(os.getpid()) in lock_path.read_text()
        cfg = parse_config(
            {"name": "t", "dataset": str(tiny_dataset), "experiments": [{"task": "params", "baselines": ["knn-vote"]}]},
            "a.yaml",
        )
        with pytest.raises(ConfigError, match="another ptychobench run .*pid"):
            Runner(cfg, tmp_path / "run").run()
        assert (
            not (tmp_path / "run" / "predictions.jsonl").exists()
            or (tmp_path / "run" / "predictions.jsonl").read_text() == ""
        )
        import yaml

        (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg.raw))
        res = _run_cli("run", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"))
        assert "another ptychobench run" in res.output and res.exit_code == 2
    assert Runner(cfg, tmp_path / "run").run()["ran"] == 1


def test_atomic_write_leaves_the_old_file_when_killed(tmp_path, monkeypatch):
    target = tmp_path / "scores.json"
    write_atomic(target, "old")

    def boom(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "new" * 1000)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["scores.json"]


def test_secrets_are_scrubbed():
    text = (
        f"POST http://bob:{PASSWORD}@10.0.0.1:8000/v1 failed; Authorization: Bearer {SECRET}; "
        f'"api_key": "{SECRET}" api_key=plainkey123'
    )
    clean = scrub_secrets(text)
    assert PASSWORD not in clean and SECRET not in clean and "plainkey123" not in clean
    assert "http://***:***@10.0.0.1:8000/v1" in clean
    tokens = '{"prompt_tokens": 12, "completion_tokens": 3}'
    assert scrub_secrets(tokens) == tokens
    b = OpenAIBackend("m", base_url=f"http://bob:{PASSWORD}@localhost:1/v1", api_key=SECRET, client=object())
    assert PASSWORD not in json.dumps(b.fingerprint())


def test_retry_after_is_never_shortened_by_jitter():
    class Resp:
        headers = {"retry-after": "7"}

    exc = Exception("429")
    exc.response = Resp()
    b = OpenAIBackend("m", base_url="http://localhost:1/v1", client=object(), backoff_s=1.0)
    assert min(b._delay(0, exc) for _ in range(200)) >= 7.0


# ------------------------------------------------------------------ clear errors through the CLI


def _run_cli(*args: str):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert "Traceback" not in res.output
    return res


def test_disk_full_and_read_only_folders_are_one_line(tiny_dataset, tmp_path, monkeypatch):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "t", "dataset": str(tiny_dataset), "experiments": [{"task": "params", "baselines": ["knn-vote"]}]}
        )
    )

    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    with monkeypatch.context() as m:
        m.setattr(PredictionStore, "append", full)
        res = _run_cli("run", str(path), "--out", str(tmp_path / "full"))
        assert "No space left on device" in res.output
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if "ro" in self.parts:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(Path, "mkdir", read_only)
        res = _run_cli("run", str(path), "--out", str(tmp_path / "ro" / "run"))
        assert "Permission denied" in res.output


def test_corrupt_png_and_non_utf8_are_one_line(tiny_dataset):
    png = next((tiny_dataset / "artifacts" / "images").glob("*.png"))
    good = png.read_bytes()
    png.write_bytes(good[:30])
    assert "unreadable" in _run_cli("validate", str(tiny_dataset)).output
    png.write_bytes(good)
    (tiny_dataset / "params" / "test.jsonl").write_bytes(b'{"id": "\xff"}\n')
    assert "UTF-8" in _run_cli("validate", str(tiny_dataset)).output


def test_report_on_bad_store_or_missing_shard_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    good = {"config": "c", "sample_id": "s", "task": "params", "gold": ["A"], "labels": ["A"]}
    (run / "predictions.jsonl").write_text(json.dumps(good) + "\n{broken\n")
    assert "corrupt prediction record" in _run_cli("report", str(run)).output
    (run / "predictions.jsonl").unlink()
    (run / "predictions-shard0of2.jsonl").write_text(json.dumps(good) + "\n")
    out = _run_cli("report", str(run)).output
    assert "predictions-shard1of2.jsonl missing" in out.replace("\n", "")
    assert _run_cli("score", str(run)).exit_code == 2


# ------------------------------------------------------------------ short reprs, score formats


def test_reprs_are_short(tiny_dataset, tmp_path):
    ds = load_dataset(tiny_dataset)
    assert len(repr(ds)) < 300 and "params 12/6" in repr(ds)
    cfg = parse_config(
        {"name": "t", "dataset": str(tiny_dataset), "experiments": [{"task": "params", "baselines": ["knn-vote"]}]},
        "a.yaml",
    )
    assert len(repr(cfg)) < 300 and len(repr(Runner(cfg, tmp_path / "r"))) < 300


def test_score_formats(tiny_dataset, tmp_path):
    cfg = parse_config(
        {"name": "t", "dataset": str(tiny_dataset), "experiments": [{"task": "params", "baselines": ["knn-vote"]}]},
        "a.yaml",
    )
    Runner(cfg, tmp_path / "r").run()
    runner = CliRunner()
    csv_out = runner.invoke(app, ["score", str(tmp_path / "r"), "--format", "csv"])
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0].startswith("task,config,model")
    assert {"n", "micro_f1", "failed"} <= set(csv_out.output.splitlines()[0].split(","))
    assert len(csv_out.output.splitlines()) == 2
    js = runner.invoke(app, ["score", str(tmp_path / "r"), "--format", "json"])
    assert json.loads(js.output)[0]["failed"] is False
    wide = runner.invoke(app, ["score", str(tmp_path / "r"), "--format", "wide"])
    assert "params/knn-vote/knn-vote/-/k0/seed0/nall" in wide.output
    assert runner.invoke(app, ["score", str(tmp_path / "r"), "--format", "xml"]).exit_code == 2
    narrow = runner.invoke(app, ["score", str(tmp_path / "r")], env={"COLUMNS": "80"})
    # issue 26: the narrow table names each cell in its row, in words, instead of its key
    assert any("params" in line and "knn-vote" in line for line in narrow.output.splitlines()), narrow.output
    assert max(len(line) for line in narrow.output.splitlines()) <= 80


def test_server_error_text_is_scrubbed_and_capped():
    from types import SimpleNamespace

    class Failing:
        def create(self, **kwargs):
            raise RuntimeError(
                f"400 from http://bob:{PASSWORD}@srv/v1: headers {{'Authorization': 'Bearer {SECRET}'}} "
                + "<html>"
                + "x" * 5000
            )

    client = SimpleNamespace(chat=SimpleNamespace(completions=Failing()))
    b = OpenAIBackend("m", base_url="http://srv/v1", client=client, max_retries=0)
    (g,) = b.generate([[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]])
    assert g.error and PASSWORD not in g.error and SECRET not in g.error and len(g.error) < 600


def test_lock_of_a_killed_process_is_taken_over(tmp_path):
    import signal
    import subprocess
    import sys

    lock_path = tmp_path / "predictions.lock"
    code = (
        "import sys, time; from ptychobench.run.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(120)"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(lock_path)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"pid {owner.pid}"):
            RunLock(lock_path).acquire()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    with RunLock(lock_path):  # the dead owner's lock file is still there; its lock is not
        assert f"pid {os.getpid()}" in lock_path.read_text()


def test_each_icl_cell_draws_demos_from_its_own_training_size(tiny_dataset, tmp_path, fake):
    """A base model's cells run in one group across training sizes; before, every ICL cell
    drew its demos from the group's first cell's subset (the learning-curve config's ICL
    curve was flat at 8 examples, each cell labelled with its own size)."""
    from ptychobench.run.grid import train_subset

    data = _cfg(tiny_dataset, train_sizes=[4, "all"], exp={"strategies": ["icl"], "selectors": ["knn"], "k": [2]})
    Runner(parse_config(data, "a.yaml"), tmp_path / "run").run()
    train = load_dataset(str(tiny_dataset)).samples("params", "train")
    recs = read_run(tmp_path / "run")
    sizes = {}
    for r in recs:
        size = r["meta"]["train_size"]
        pool = {s.id for s in train_subset(train, size, 0)}
        assert r["meta"]["n_train"] == len(pool), size
        assert set(r["demos"]) <= pool, size
        sizes.setdefault(size, set()).update(r["demos"])
    assert set(sizes) == {4, "all"} and len(train) > 4
    assert sizes["all"] - {s.id for s in train_subset(train, 4, 0)}, "the full-size cell uses demos beyond the 4"


def test_icl_predictions_from_the_shared_pool_are_not_reused(tiny_dataset):
    """Where a base model's cells span demo pools, the pool rule is in the settings (the
    stored predictions of the old rule are recomputed); a single-pool config keeps its hashes."""
    from ptychobench.run.grid import expand
    from ptychobench.run.settings import cell_settings

    exp = {"strategies": ["icl"], "selectors": ["knn"], "k": [1]}
    for sizes, seeds, spans in (
        ([4, "all"], [0], True),
        (["all"], [0, 1], False),
        ([4], [0, 1], True),
        (["all"], [0], False),
    ):
        cfg = parse_config(_cfg(tiny_dataset, train_sizes=sizes, seeds=seeds, exp=exp), "a.yaml")
        for cell in expand(cfg):
            s = cell_settings(cfg, cell, cfg.experiments[cell.exp], "h")
            assert ("pool" in s["selector"]) is spans, (sizes, seeds)
