"""The bad-input corpus (tests/fixtures/bad/, its README says what goes where): every
file fed to the command that reads it ends in one clear error line and exit 2: 0
tracebacks, 0 silent accepts, and nothing written where it should not be."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.data.released import export_released

BAD = Path(__file__).parent / "fixtures" / "bad"


def _cases(folder: str) -> list[Path]:
    return sorted(p for p in (BAD / folder).iterdir() if p.is_file())


def _clear_failure(res, case: Path) -> None:
    assert isinstance(res.exception, SystemExit), f"{case.name}: {res.exception!r}\n{res.output}"
    assert res.exit_code == 2, (case.name, res.exit_code, res.output)
    assert "Traceback" not in res.output and res.output.count("error:") == 1, (case.name, res.output)


@pytest.mark.parametrize("case", _cases("configs"), ids=lambda p: p.name)
def test_bad_configs(case, tiny_dataset, tmp_path):
    path = tmp_path / case.name
    raw = case.read_bytes().replace(b"DATASET", str(tiny_dataset).encode())
    path.write_bytes(raw)
    out = tmp_path / "out"
    _clear_failure(CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-report"]), case)
    assert not out.exists()


@pytest.mark.parametrize("command", ["import", "agreement"])
@pytest.mark.parametrize("case", _cases("labelstudio"), ids=lambda p: p.name)
def test_bad_labelstudio_exports(case, command, tmp_path):
    out = tmp_path / "out"
    args = ["annotate", command, str(case)] + (["--out", str(out)] if command == "import" else [])
    _clear_failure(CliRunner().invoke(app, args), case)
    assert not out.exists()


@pytest.mark.parametrize("case", _cases("diagnose"), ids=lambda p: p.name)
def test_bad_diagnose_inputs(case, tmp_path):
    path = tmp_path / case.name
    shutil.copyfile(case, path)
    _clear_failure(CliRunner().invoke(app, ["diagnose", str(path), "--advisor", "none"]), case)


@pytest.mark.parametrize("command", ["score", "report"])
@pytest.mark.parametrize("case", _cases("stores"), ids=lambda p: p.name)
def test_bad_stores(case, command, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(case, run / "predictions.jsonl")
    _clear_failure(CliRunner().invoke(app, [command, str(run)]), case)
    assert sorted(p.name for p in run.iterdir()) == ["predictions.jsonl"]


@pytest.mark.parametrize("case", _cases("splits"), ids=lambda p: p.name)
def test_bad_split_lines(case, tiny_dataset):
    split = tiny_dataset / "params" / "test.jsonl"
    split.write_bytes(split.read_bytes() + case.read_bytes())
    _clear_failure(CliRunner().invoke(app, ["validate", str(tiny_dataset)]), case)


@pytest.mark.parametrize("case", _cases("released"), ids=lambda p: p.name)
def test_bad_released_files(case, tiny_dataset, tmp_path):
    released = export_released(tiny_dataset, tmp_path / "released")
    shutil.copyfile(case, released / "artifacts" / "train.json")
    out = tmp_path / "imported"
    res = CliRunner().invoke(app, ["import", str(released), "--images", str(released / "images"), "--out", str(out)])
    _clear_failure(res, case)
    assert not out.exists()
