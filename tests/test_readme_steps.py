"""The README is a test: its "Your data in five steps" run as written (the example record
becomes a small released dataset, the commands run through the CLI), its Python section
runs against the result, and its config reference lists exactly the keys the config
parser accepts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ptychobench.run.config import Experiment, RunConfig
from ptychobench.tasks import ARTIFACT_LABELS

README = Path(__file__).resolve().parent.parent / "README.md"
SRC = Path(__file__).resolve().parent.parent / "src"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def released_files(example: dict, folder: Path, n_train: int = 24, n_test: int = 10) -> None:
    """train.json / test.json of records shaped exactly like the README's, and their images."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    types = ["integrated circuit", "battery particle", "zone plate"]
    for split, n in (("train", n_train), ("test", n_test)):
        recs = []
        for i in range(n):
            sid = f"{split}_{i:03d}"
            rec = json.loads(json.dumps(example))
            user, answer = rec["messages"][0]["content"], rec["messages"][1]["content"][0]
            image = next(p for p in user if p["type"] == "image")
            old_name = Path(image["image_path"]).name
            image["image_path"] = image["image_path"].replace(old_name, f"{sid}.png")
            labels = [ARTIFACT_LABELS[(i + j) % 11] for j in range(1 + i % 2)]
            answer["text"] = f"<answer>[{', '.join(labels)}]</answer>"
            rec["metadata"] = {**rec["metadata"], "sample_id": sid, "sample_type": types[i % 3]}
            Image.fromarray(rng.integers(0, 255, (32, 32), dtype=np.uint8)).save(folder / "images" / f"{sid}.png")
            recs.append(rec)
        (folder / f"{split}.json").write_text(json.dumps(recs))


def run_cli(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    args = shlex.split(line.split("#", 1)[0])
    assert args[0] == "ptychobench", line
    return subprocess.run(
        [sys.executable, "-m", "ptychobench.cli", *args[1:]],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_five_steps_run_as_written(tmp_path: Path):
    steps = section("Your data in five steps")
    (example_json,) = blocks(steps, "json")
    example = json.loads(example_json)
    assert len(example_json.strip().splitlines()) <= 10, "the README promises a ten-line example"
    assert len(example) == 1
    # step 1 and 2: the images folder and the two files the README names
    assert "mydata/images/" in steps and "mydata/train.json" in steps and "mydata/test.json" in steps
    released_files(example[0], tmp_path / "mydata")
    # step 4: the config, written as shown
    (config,) = blocks(steps, "yaml")
    assert "my.yaml" in steps
    (tmp_path / "my.yaml").write_text(config)
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PTYCHOBENCH_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
        "COLUMNS": "120",
    }
    # steps 3 and 5: every command line, in order
    commands = [ln.strip() for b in blocks(steps, "bash") for ln in b.splitlines() if ln.strip()]
    assert [c.split()[1] for c in commands] == ["import", "validate", "run"]
    for line in commands:
        r = run_cli(line, tmp_path, env)
        assert r.returncode == 0, f"{line}\n{r.stdout}\n{r.stderr}"
    report = tmp_path / "runs" / "mine" / "report.html"
    assert report.is_file() and "pb-data" in report.read_text()
    assert "runs/mine/report.html" in steps
    scores = json.loads((tmp_path / "runs" / "mine" / "scores.json").read_text())
    assert {s["meta"]["model"] for s in scores} == {"vision-probe", "knn-vote"}
    assert all(s["n"] == 10 for s in scores)


@pytest.mark.slow
def test_python_section_runs(tmp_path: Path):
    """The Python section, run after the five steps in the same folder (loads tiny-vlm)."""
    test_five_steps_run_as_written(tmp_path)
    (code,) = blocks(section("Python"), "python")
    env = {
        **os.environ,
        "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "PTYCHOBENCH_HOME": str(tmp_path / "home"),
        "OMP_NUM_THREADS": "1",
    }
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "micro_f1" in r.stdout and "knn-vote" in r.stdout


def test_python_section_names_real_functions():
    """Without running a model: every ``pb.`` name the Python section calls exists."""
    import ptychobench as pb

    (code,) = blocks(section("Python"), "python")
    for name in set(re.findall(r"\bpb\.(\w+)\(", code)):
        assert callable(getattr(pb, name, None)), f"README calls pb.{name}, which ptychobench lacks"


def table_keys(text: str) -> list[str]:
    return re.findall(r"^\| `(\w+)` \|", text, re.M)


#: RunConfig fields the parser fills in, not keys a user writes
INTERNAL = {"source", "raw", "skipped"}


def test_config_reference_lists_every_key():
    ref = section("Config reference")
    run_part, exp_part = ref.split("Each experiment:", 1)
    assert sorted(table_keys(run_part)) == sorted(f.name for f in fields(RunConfig) if f.name not in INTERNAL)
    assert sorted(table_keys(exp_part)) == sorted(f.name for f in fields(Experiment))


def test_readme_opens_with_the_two_commands():
    first = README.read_text(encoding="utf-8").split("```", 2)[1]
    assert "make run" in first and "make test" in first
