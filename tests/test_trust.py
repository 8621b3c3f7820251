"""Trust, third round (issue 26): each test reproduces one numbered defect of the audit and
shows it fixed. The test names carry the defect's number."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import ptychobench.models as models
from ptychobench.cli import app
from ptychobench.data import load_dataset
from ptychobench.data.released import export_released, import_released
from ptychobench.errors import ConfigError, DatasetError, StoreError
from ptychobench.eval.store import read_run
from ptychobench.models.base import Generation
from ptychobench.run import Runner, load_config, parse_config


def _clear_failure(res, *where) -> None:
    assert isinstance(res.exception, SystemExit), f"{res.exception!r} for {where}\n{res.output}"
    assert res.exit_code == 2, (res.exit_code, res.output, where)
    assert "Traceback" not in res.output and res.output.count("error:") == 1, (res.output, where)


def _baseline_cfg(dataset: Path, **top) -> dict:
    return {
        "name": "t",
        "dataset": str(dataset),
        "experiments": [{"task": "params", "baselines": ["type-only"]}],
        **top,
    }


# ------------------------------------------------------------------ 1. YAML alias bomb


def _alias_bomb(indent: str, levels: int = 9) -> str:
    """Nine levels of nine aliases each: 651 bytes that expand to 9**9 strings."""
    lines = [f'{indent}a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"{indent}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("key", ["probe_options", "backend_options"])
def test_01_yaml_alias_bomb_is_refused_at_parse(tiny_dataset, tmp_path, key):
    exp = (
        "  - task: params\n    baselines: [type-only]\n    probe_options:\n      rule:\n"
        if key == "probe_options"
        else "  - task: params\n    model: openai:m\n    backend_options:\n      kind:\n"
    )
    text = f"name: t\ndataset: {tiny_dataset}\nexperiments:\n" + exp + _alias_bomb(" " * 8)
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert len(text) < 2000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path)
    assert time.perf_counter() - t0 < 5
    _clear_failure(CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o")]))
    assert not (tmp_path / "o").exists()


def test_01_yaml_small_aliases_still_work(tiny_dataset, tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(
        f"name: t\ndataset: {tiny_dataset}\nexperiments:\n"
        "  - &e {task: params, baselines: [type-only], probe_options: &o {rule: majority}}\n"
        "  - {task: artifacts, baselines: [type-only], probe_options: *o}\n"
    )
    cfg = load_config(path)
    assert cfg.experiments[1].probe_options == {"rule": "majority"}


# ------------------------------------------------------------------ 2. same-named images


def _released_with_twins(tmp_path: Path, tiny_dataset: Path) -> Path:
    released = export_released(tiny_dataset, tmp_path / "released")
    f = released / "artifacts" / "train.json"
    recs = json.loads(f.read_text())
    a, b = recs[0], recs[1]
    img_a = released / "images" / a["messages"][0]["content"][1]["image_path"].split("/")[-1]
    img_b = released / "images" / b["messages"][0]["content"][1]["image_path"].split("/")[-1]
    (released / "images" / "a").mkdir()
    (released / "images" / "b").mkdir()
    for i, (old, sub) in enumerate(((img_a, "a"), (img_b, "b"))):
        old.unlink()
        Image.fromarray(np.full((16, 16), 40 + 100 * i, np.uint8)).save(released / "images" / sub / "x.png")
    a["messages"][0]["content"][1]["image_path"] = "/data/upload/a/x.png"
    b["messages"][0]["content"][1]["image_path"] = "/data/upload/b/x.png"
    f.write_text(json.dumps(recs))
    return released


def test_02_same_named_images_in_sub_folders_get_their_own_picture(tiny_dataset, tmp_path):
    released = _released_with_twins(tmp_path, tiny_dataset)
    ds = import_released(released, tmp_path / "out", images=released / "images")
    a, b = ds.samples("artifacts", "train")[:2]
    assert a.image.read_bytes() == (released / "images" / "a" / "x.png").read_bytes()
    assert b.image.read_bytes() == (released / "images" / "b" / "x.png").read_bytes()
    assert a.image.read_bytes() != b.image.read_bytes()


def test_02_same_named_images_that_cannot_be_told_apart_are_an_error(tiny_dataset, tmp_path):
    released = _released_with_twins(tmp_path, tiny_dataset)
    f = released / "artifacts" / "train.json"
    recs = json.loads(f.read_text())
    for r in recs[:2]:
        r["messages"][0]["content"][1]["image_path"] = "x.png"
    f.write_text(json.dumps(recs))
    res = CliRunner().invoke(
        app, ["import", str(released), "--images", str(released / "images"), "--out", str(tmp_path / "o")]
    )
    _clear_failure(res)
    assert "several files" in res.output


def test_02_annotate_import_uses_the_same_lookup(tiny_dataset, tmp_path):
    from ptychobench.annotate.importer import import_export

    ds = load_dataset(tiny_dataset)
    imgs = tmp_path / "imgs"
    (imgs / "a").mkdir(parents=True)
    (imgs / "b").mkdir()
    s0, s1 = ds.samples("artifacts", "train")[:2]
    (imgs / "a" / "x.png").write_bytes(s0.image.read_bytes())
    (imgs / "b" / "x.png").write_bytes(s1.image.read_bytes())
    tasks = [
        {
            "id": i,
            "data": {"image": "/data/local-files/?d=x.png", "ptychobench_id": f"s{i}"},
            "annotations": [{"completed_by": 1, "result": [_choice("Blurring")]}],
        }
        for i in range(2)
    ]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    with pytest.raises(DatasetError, match="several files"):
        import_export(export, tmp_path / "out", images=imgs, task="artifacts")


def _choice(*labels: str) -> dict:
    return {"type": "choices", "from_name": "artifacts", "to_name": "image", "value": {"choices": list(labels)}}


# ------------------------------------------------------------------ 3. stale predictions after an edit


def test_03_editing_the_dataset_files_redoes_the_cells(tiny_dataset, tmp_path):
    cfg = parse_config(_baseline_cfg(tiny_dataset), "c.yaml")
    out = tmp_path / "run"
    first = Runner(cfg, out).run()
    assert first["ran"] == 1
    test = tiny_dataset / "params" / "test.jsonl"
    rows = [json.loads(line) for line in test.read_text().splitlines()]
    for r in rows:  # every gold label edited; manifest.json left as it was
        r["labels"] = ["L"]
    test.write_text("".join(json.dumps(r) + "\n" for r in rows))
    again = Runner(cfg, out).run()
    assert again["ran"] == 1, "the cell was reused after the dataset's files changed"
    golds = {tuple(r["gold"]) for r in read_run(out)}
    assert golds == {("L",)}


# ------------------------------------------------------------------ 4. secrets

TOKEN = "tok3nAsUserName9"
KEY = "sk-proj-echoedKey12345"
USER, PASS = "alice", "p4ssw0rd-basic"


class EchoingBackend:
    """A server that echoes the key and the Basic credentials in its error text."""

    def __init__(self, **options):
        self.options = options

    def fingerprint(self):
        return {"backend": "openai", "model": "m", "base_url": f"http://{TOKEN}@localhost:9/v1"}

    def generate(self, batch, config):
        basic = base64.b64encode(f"{USER}:{PASS}".encode()).decode()
        return [
            Generation(error=f"Incorrect API key provided: {KEY}. proxy said: Authorization {basic} refused")
            for _ in batch
        ]


def test_04_every_known_secret_value_is_scrubbed_everywhere(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "load_backend", lambda model, adapter=None, **o: EchoingBackend(**o))
    monkeypatch.setenv("MY_PROXY_PASSWORD", PASS)
    monkeypatch.setenv("PROXY_USER", USER)
    cfg = {
        "name": "t",
        "dataset": str(tiny_dataset),
        "experiments": [
            {
                "task": "params",
                "model": "openai:m",
                "backend_options": {"base_url": f"http://{TOKEN}@localhost:9/v1", "api_key": KEY},
            }
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--allow-failures"])
    assert res.exit_code == 0, res.output
    written = "\n".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    basic = base64.b64encode(f"{USER}:{PASS}".encode()).decode()
    for secret in (TOKEN, KEY, PASS, basic):
        assert secret not in written, f"{secret} written"
        assert secret not in res.output, f"{secret} shown"
    assert "Incorrect API key provided" in (out / "predictions.jsonl").read_text()


def test_04_scrubber_knows_values_not_only_shapes():
    from ptychobench.secrets import remember, remember_url, scrub

    remember_url("https://userX123:pw-abc-999@host/v1")
    remember("plain-key-without-shape-42")
    b64 = base64.b64encode(b"userX123:pw-abc-999").decode()
    text = f"denied plain-key-without-shape-42 for userX123 ({b64}) at http://other@host"
    clean = scrub(text)
    for s in ("plain-key-without-shape-42", "userX123", b64, "pw-abc-999", "other@"):
        assert s not in clean, clean


# ------------------------------------------------------------------ 5. symlink escape


def test_05_a_symlink_out_of_the_dataset_is_refused(tiny_dataset, tmp_path):
    outside = tmp_path / "secret.png"
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(outside)
    split = tiny_dataset / "artifacts" / "train.jsonl"
    first = json.loads(split.read_text().splitlines()[0])
    image = tiny_dataset / "artifacts" / first["image"]
    image.unlink()
    image.symlink_to(outside)
    _clear_failure(CliRunner().invoke(app, ["validate", str(tiny_dataset)]))
    res = CliRunner().invoke(app, ["export", str(tiny_dataset), "--out", str(tmp_path / "x")])
    _clear_failure(res)
    copied = [p for p in (tmp_path / "x").rglob("*.png")] if (tmp_path / "x").exists() else []
    assert all(p.read_bytes() != outside.read_bytes() for p in copied)


# ------------------------------------------------------------------ 7. option values at parse


@pytest.mark.parametrize(
    "exp",
    [
        {"task": "params", "baselines": ["knn-vote"], "probe_options": {"n_neighbors": -4}},
        {"task": "params", "model": "openai:m", "backend_options": {"concurrency": "abc"}},
        {"task": "params", "model": "openai:m", "backend_options": {"base_url": 12345}},
        {"task": "params", "model": "tiny-lm", "strategies": ["sft"], "sft": {"learning_rate": "nan"}},
        {"task": "params", "model": "tiny-lm", "strategies": ["sft"], "sft": {"learning_rate": float("nan")}},
        {
            "task": "params",
            "model": "tiny-lm",
            "strategies": ["icl"],
            "k": [1],
            "selectors": ["knn-diverse"],
            "selector_options": {"lam": 7},
        },
    ],
)
def test_07_option_values_are_checked_when_the_config_is_parsed(tiny_dataset, exp):
    with pytest.raises(ConfigError):
        parse_config({"name": "t", "dataset": str(tiny_dataset), "experiments": [exp]}, "c.yaml")


@pytest.mark.parametrize("seeds", [[-1], [2**40], []])
def test_07_seeds_out_of_range_are_refused(tiny_dataset, seeds):
    with pytest.raises(ConfigError, match="seeds"):
        parse_config(_baseline_cfg(tiny_dataset, seeds=seeds), "c.yaml")


# ------------------------------------------------------------------ 12. re-import keeps stale files


def test_12_reimport_leaves_no_stale_split_file(tiny_dataset, tmp_path):
    released = export_released(tiny_dataset, tmp_path / "released")
    out = tmp_path / "out"
    import_released(released, out, images=released / "images")
    stale = out / "params" / "test-old.jsonl"
    stale.write_text((out / "params" / "test.jsonl").read_text().replace('"id": "p', '"id": "old-p'))
    ghost = out / "artifacts" / "images" / "ghost.png"
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(ghost)
    ds = import_released(released, out, images=released / "images")
    assert not stale.exists() and not ghost.exists()
    assert ds.split_names("params") == ["train", "test"]


# ------------------------------------------------------------------ 13. one lock per run folder


def test_13_a_shard_and_an_unsharded_run_exclude_each_other(tiny_dataset, tmp_path, monkeypatch):
    import threading

    import ptychobench.strategies as strategies

    out = tmp_path / "run"
    cfg = parse_config(_baseline_cfg(tiny_dataset), "c.yaml")
    started, release = threading.Event(), threading.Event()
    real = strategies.fit_predict_probe

    def slow(*a, **k):
        started.set()
        release.wait(60)
        return real(*a, **k)

    monkeypatch.setattr(strategies, "fit_predict_probe", slow)
    owner = threading.Thread(target=lambda: Runner(cfg, out).run())
    owner.start()
    try:
        assert started.wait(60)
        with pytest.raises(ConfigError, match="another ptychobench run"):
            Runner(cfg, out, shard=(0, 1)).run()
        with pytest.raises(ConfigError, match="another ptychobench run"):
            Runner(cfg, out).run()
    finally:
        release.set()
        owner.join()
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == len(load_dataset(tiny_dataset).samples("params", "test"))


def test_13_shards_of_one_run_share_the_folder_and_other_counts_wait(tmp_path):
    from ptychobench.run.lock import FolderLock

    out = tmp_path / "run"
    with FolderLock(out, (0, 2)), FolderLock(out, (1, 2)):  # shards of one run: side by side
        with pytest.raises(ConfigError, match="another ptychobench run"):
            FolderLock(out).acquire()
        with pytest.raises(ConfigError, match="another shard count"):
            FolderLock(out, (0, 3)).acquire()
        with pytest.raises(ConfigError, match="another ptychobench run"):
            FolderLock(out, (1, 2)).acquire()
    with FolderLock(out):
        pass


# ------------------------------------------------------------------ 14. limits and empty grids


@pytest.mark.parametrize("shard", ["0/100000", "0/10000000000"])
def test_14_shard_counts_are_bounded(tiny_dataset, tmp_path, shard):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_baseline_cfg(tiny_dataset)))
    _clear_failure(CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "o"), "--shard", shard]))


@pytest.mark.parametrize("args", [["--cluster", "bogus"], ["--hours", "nan"], ["--hours", "-1"]])
def test_14_submit_options_are_checked(tiny_dataset, tmp_path, args):
    pytest.importorskip("submitit")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_baseline_cfg(tiny_dataset)))
    res = CliRunner().invoke(app, ["submit", str(path), "--shards", "1", "--out", str(tmp_path / "o"), *args])
    _clear_failure(res, args)


@pytest.mark.parametrize(
    "change",
    [
        {"seeds": []},
        {"experiments": [{"task": "params", "model": "tiny-lm", "strategies": []}]},
        {"experiments": [{"task": "params", "model": "tiny-lm", "strategies": ["icl"], "k": []}]},
        {"train_sizes": []},
    ],
)
def test_14_empty_grids_are_refused(tiny_dataset, change):
    with pytest.raises(ConfigError):
        parse_config(_baseline_cfg(tiny_dataset, **change), "c.yaml")


def test_14_store_labels_outside_the_label_space_are_refused(tmp_path):
    rec = {"config": "c", "sample_id": "s", "task": "params", "gold": ["A"], "labels": ["Z9"], "version": 3}
    (tmp_path / "predictions.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(StoreError, match="label space"):
        read_run(tmp_path)


# ------------------------------------------------------------------ 6, 10, 15. the report

HOSTILE = "$\\undefinedmacro{$<b onmouseover=alert(1)>"


class AnswerA:
    def __init__(self, **options):
        pass

    def fingerprint(self):
        return {"backend": "fake", "model": "fake"}

    def generate(self, batch, config):
        return [Generation(text="<answer>A</answer>") for _ in batch]


def _hostile_run(tiny_dataset: Path, tmp_path: Path, monkeypatch, name: str = HOSTILE) -> Path:
    """A run whose experiment name and sample types are ``name`` (mathtext, raw HTML)."""
    for split in ("train", "test"):
        f = tiny_dataset / "params" / f"{split}.jsonl"
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        for i, r in enumerate(rows):
            r["sample_type"] = name if i % 2 else name.replace("$", "")
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(models, "load_backend", lambda model, adapter=None, **o: AnswerA(**o))
    cfg = {
        "name": "t",
        "dataset": str(tiny_dataset),
        "experiments": [
            {"task": "params", "model": "openai:m", "name": name, "backend_options": {"base_url": "http://h:1/v1"}},
            {"task": "params", "baselines": ["type-only"]},
        ],
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_06_mathtext_in_names_and_sample_types_does_not_crash_the_report(tiny_dataset, tmp_path, monkeypatch):
    out = _hostile_run(tiny_dataset, tmp_path, monkeypatch)
    assert (out / "report.html").is_file() and (out / "report_files" / "forest.png").is_file()


def test_15_report_md_has_no_raw_html_from_names(tiny_dataset, tmp_path, monkeypatch):
    out = _hostile_run(tiny_dataset, tmp_path, monkeypatch, name="<b onmouseover=alert(1)>")
    md = (out / "report.md").read_text()
    outside_code = "".join(part for i, part in enumerate(md.split("`")) if i % 2 == 0)
    assert "<b onmouseover" not in outside_code and "&lt;b onmouseover" in outside_code
    assert "<b onmouseover" not in (out / "report.html").read_text()


def test_10_a_report_killed_midway_leaves_the_previous_set_whole(tiny_dataset, tmp_path, monkeypatch):
    import ptychobench.report.write as write

    cfg = parse_config(_baseline_cfg(tiny_dataset), "c.yaml")
    out = tmp_path / "run"
    Runner(cfg, out).run()
    write.write_report(out)
    before = {n: (out / n).read_bytes() for n in ("report.md", "report.html", "scores.json")}
    store = out / "predictions.jsonl"
    rec = json.loads(store.read_text().splitlines()[0])
    store.write_text(store.read_text() + json.dumps({**rec, "labels": ["B"], "sample_id": rec["sample_id"]}) + "\n")

    def killed(*a, **k):
        raise KeyboardInterrupt  # a kill after scores.json is written, before the pages

    monkeypatch.setattr(write, "browser_html", killed)
    with pytest.raises(KeyboardInterrupt):
        write.write_report(out)
    after = {n: (out / n).read_bytes() for n in before}
    assert after == before, "a killed report left a mixed set"
    assert not [p for p in out.iterdir() if p.name.startswith(".report-")]
    monkeypatch.undo()
    write.write_report(out)
    assert (out / "scores.json").read_bytes() != before["scores.json"]


# ------------------------------------------------------------------ 8. malformed Label Studio JSON

BAD_LS = [
    [{"data": "x", "annotations": []}],
    [{"data": {"image": 5}, "annotations": [5]}],
    [{"data": {}, "annotations": [{"result": "x"}]}],
    [{"data": {}, "annotations": [{"result": [{"type": "choices", "value": "Blurring"}]}]}],
    [{"data": {}, "annotations": [{"result": [{"type": "choices", "value": {"choices": [5, None]}}]}]}],
    [{"data": {}, "annotations": [{"completed_by": [1], "result": []}]}],
    [{"data": {}, "annotations": {"a": 1}}],
]


@pytest.mark.parametrize("case", range(len(BAD_LS) + 2))
@pytest.mark.parametrize("command", ["import", "agreement"])
def test_08_malformed_label_studio_exports_are_one_clear_error(tmp_path, case, command):
    export = tmp_path / "export.json"
    if case < len(BAD_LS):
        export.write_text(json.dumps(BAD_LS[case]))
    elif case == len(BAD_LS):
        export.write_bytes(b"\xff\xfe[{]")
    else:
        export.mkdir()  # a folder given as the export
    args = ["annotate", command, str(export)] + (["--out", str(tmp_path / "o")] if command == "import" else [])
    _clear_failure(CliRunner().invoke(app, args), case, command)


def test_08_agreement_out_on_a_file_is_one_clear_error(tmp_path):
    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                {
                    "id": 1,
                    "data": {"text": "t", "ptychobench_task": "params"},
                    "annotations": [
                        {
                            "completed_by": 1,
                            "result": [{"type": "choices", "from_name": "options", "value": {"choices": ["A"]}}],
                        }
                    ],
                }
            ]
        )
    )
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    _clear_failure(CliRunner().invoke(app, ["annotate", "agreement", str(export), "--out", str(blocker)]))


# ------------------------------------------------------------------ 9. hostile files


def _png_bomb(path: Path, side: int = 20000) -> Path:
    """A PNG whose header claims side x side pixels (a few dozen bytes on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )
    return path


def test_09_png_bomb_in_a_dataset_is_refused(tiny_dataset):
    first = json.loads((tiny_dataset / "artifacts" / "test.jsonl").read_text().splitlines()[0])
    _png_bomb(tiny_dataset / "artifacts" / first["image"])
    res = CliRunner().invoke(app, ["validate", str(tiny_dataset)])
    _clear_failure(res)
    assert "pixels" in res.output


def test_09_png_bomb_on_import_and_in_diagnose_is_refused(tiny_dataset, tmp_path):
    released = export_released(tiny_dataset, tmp_path / "released")
    name = json.loads((released / "artifacts" / "train.json").read_text())[0]["messages"][0]["content"][1]["image_path"]
    _png_bomb(released / "images" / name.split("/")[-1])
    res = CliRunner().invoke(
        app, ["import", str(released), "--images", str(released / "images"), "--out", str(tmp_path / "o")]
    )
    _clear_failure(res)
    _clear_failure(CliRunner().invoke(app, ["diagnose", str(_png_bomb(tmp_path / "bomb.png"))]))


def test_09_deeply_nested_json_is_refused(tiny_dataset, tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    split = tiny_dataset / "params" / "test.jsonl"
    split.write_text(split.read_text() + '{"id": "deep", "labels": ["A"], "metadata": ' + deep + "}\n")
    _clear_failure(CliRunner().invoke(app, ["validate", str(tiny_dataset)]))
    export = tmp_path / "ls.json"
    export.write_text(deep)
    _clear_failure(CliRunner().invoke(app, ["annotate", "agreement", str(export)]))


@pytest.mark.parametrize("kind", ["huge-npy", "huge-npz", "bool", "scan-step-nan"])
def test_09_hostile_diagnose_inputs_are_one_clear_error(tmp_path, kind):
    path = tmp_path / "x.npy"
    args: list[str] = []
    if kind == "huge-npy":
        with path.open("wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<c16", "fortran_order": False, "shape": (70000, 70000)})
            f.write(b"\0" * 64)
    elif kind == "huge-npz":
        import zipfile

        path = tmp_path / "x.npz"
        with zipfile.ZipFile(path, "w") as z, z.open("object.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    elif kind == "bool":
        np.save(path, np.eye(64, dtype=bool))
    else:
        np.save(path, np.exp(1j * np.random.default_rng(0).normal(size=(64, 64))))
        args = ["--scan-step", "nan"]
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["diagnose", str(path), "--advisor", "none", *args])
    _clear_failure(res, kind)
    assert time.perf_counter() - t0 < 20


# ------------------------------------------------------------------ 11. diagnose --html index collision


def test_11_an_input_named_index_keeps_its_card(tmp_path, tiny_dataset, monkeypatch):
    monkeypatch.setenv("PTYCHOBENCH_HOME", str(tmp_path / "home"))
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("index", "other"):
        np.save(folder / f"{name}.npy", np.exp(1j * rng.normal(size=(64, 64))).astype(np.complex64))
    cards = tmp_path / "cards"
    res = CliRunner().invoke(
        app, ["diagnose", str(folder), "--dataset", str(tiny_dataset), "--advisor", "none", "--html", str(cards)]
    )
    assert res.exit_code == 0, res.output
    index = (cards / "index.html").read_text()
    assert "<ul>" in index and "index.npy" in index
    linked = [p for p in cards.iterdir() if p.name not in ("index.html", "other.html")]
    assert len(linked) == 1 and "index.npy" in linked[0].read_text()


# ------------------------------------------------------------------ Label Studio round trip


def _ls_task(i: int, split: str | None, *anns: tuple) -> dict:
    data = {"text": f"sample {i}", "ptychobench_id": f"p{i}", "ptychobench_task": "params"}
    if split:
        data["split"] = split
    return {
        "id": i,
        "data": data,
        "annotations": [
            {
                "id": 10 * i + j,
                "completed_by": who,
                "was_cancelled": labels is None,
                "result": []
                if labels is None
                else [{"type": "choices", "from_name": "options", "value": {"choices": list(labels)}}],
            }
            for j, (who, labels) in enumerate(anns)
        ],
    }


def test_ls_blind_export_drops_sample_type(tiny_dataset, tmp_path):
    from ptychobench.annotate.export import export_project

    export_project(str(tiny_dataset), tmp_path / "ls", blind=True)
    for task in ("artifacts", "params"):
        tasks = json.loads((tmp_path / "ls" / task / "tasks.json").read_text())
        assert tasks and all("sample_type" not in t["data"] and "dataset_labels" not in t["data"] for t in tasks)


def test_ls_total_disagreement_is_no_sample_and_validate_refuses_empty_labels(tmp_path):
    from ptychobench.annotate.importer import import_export

    tasks = [_ls_task(i, "train" if i < 4 else "test", (1, ["A"]), (2, ["A"])) for i in range(6)]
    tasks.append(_ls_task(9, "test", (1, ["A"]), (2, ["B"])))  # total disagreement
    export = tmp_path / "e.json"
    export.write_text(json.dumps(tasks))
    r = import_export(export, tmp_path / "ds")
    assert "p9" not in {s.id for s in r.dataset.samples("params", "test")}
    assert [it.sample_id for it in r.no_consensus] == ["p9"]
    assert r.dataset.manifest["annotate"]["no_consensus"][0]["sample_id"] == "p9"
    f = tmp_path / "ds" / "params" / "test.jsonl"
    rows = [json.loads(line) for line in f.read_text().splitlines()]
    rows[0]["labels"] = []
    f.write_text("".join(json.dumps(x) + "\n" for x in rows))
    res = CliRunner().invoke(app, ["validate", str(tmp_path / "ds")])
    _clear_failure(res)
    assert "no labels" in res.output


def test_ls_test_only_export_is_not_resplit(tmp_path):
    from ptychobench.annotate.importer import import_export

    export = tmp_path / "e.json"
    export.write_text(json.dumps([_ls_task(i, "test", (1, ["A"])) for i in range(6)]))
    res = CliRunner().invoke(app, ["annotate", "import", str(export), "--out", str(tmp_path / "ds")])
    _clear_failure(res)
    assert "test" in res.output and "--test-fraction" in res.output
    r = import_export(export, tmp_path / "ds2", test_fraction=0.5)
    assert r.split_rule.startswith("random")


def test_ls_agreement_counts_a_raters_skip(tmp_path):
    export = tmp_path / "e.json"
    export.write_text(json.dumps([_ls_task(i, "test", (1, ["A"]), (2, ["A"] if i else None)) for i in range(4)]))
    res = CliRunner().invoke(app, ["annotate", "agreement", str(export), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "a" / "agreement.md").read_text()
    assert "1 skip(s) pressed" in md


def test_ls_one_project_per_rater_merges_by_sample(tmp_path):
    from ptychobench.annotate.importer import import_export

    first, second, again = tmp_path / "r1.json", tmp_path / "r2.json", tmp_path / "r1b.json"
    first.write_text(json.dumps([_ls_task(i, "train" if i < 4 else "test", (1, ["A"])) for i in range(6)]))
    second.write_text(json.dumps([_ls_task(i, "train" if i < 4 else "test", (2, ["A", "B"])) for i in range(6)]))
    again.write_text(json.dumps([_ls_task(0, "train", (1, ["C"]))]))
    r = import_export([first, second], tmp_path / "ds")
    s = r.dataset.samples("params", "train")[0]
    assert set(s.metadata["annotate"]["annotators"]) == {"user-1", "user-2"} and s.labels == frozenset({"A"})
    res = CliRunner().invoke(app, ["annotate", "agreement", str(first), str(second)])
    assert res.exit_code == 0, res.output
    _clear_failure(CliRunner().invoke(app, ["annotate", "agreement", str(first), str(again)]))
