"""``score --format table|wide|csv|json`` and a dataset's one-line repr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ptychobench.cli import app
from ptychobench.data import load_dataset
from report_fixture import add_model_cells


@pytest.fixture
def run(tmp_path: Path, tiny_dataset: Path) -> Path:
    (tmp_path / "run").mkdir()
    add_model_cells(tmp_path / "run", tiny_dataset)
    return tmp_path / "run"


def score(run: Path, *args: str):
    return CliRunner().invoke(app, ["score", str(run), *args], env={"COLUMNS": "80"})


def test_csv_and_json_have_one_row_per_cell_with_its_settings(run: Path):
    csv = score(run, "--format", "csv")
    assert csv.exit_code == 0, csv.output
    df = pd.read_csv(io.StringIO(csv.output))
    assert len(df) == 12 and {"config", "model", "strategy", "k", "n", "micro_f1", "micro_f1_lo"} <= set(df.columns)
    assert (df.micro_f1_lo <= df.micro_f1).all() and (df.micro_f1 <= df.micro_f1_hi).all()
    js = score(run, "--format", "json")
    rows = json.loads(js.output)
    assert [r["config"] for r in rows] == list(df.config)


def test_wide_keeps_every_column_at_80_columns(run: Path):
    out = score(run, "--format", "wide").output
    header = next(line for line in out.splitlines() if " config " in line).replace("┃", " ").split()
    assert header[:3] == ["task", "config", "model"] and "errors" in header
    assert "artifacts/fake-vlm/sft+icl/knn/k1/seed0/nall" in out  # the config, whole


def test_unknown_format_is_one_clear_error(run: Path):
    r = score(run, "--format", "xlsx")
    assert r.exit_code == 2 and "choose from table, wide, csv, json" in r.output
    assert "Traceback" not in r.output


def test_dataset_repr_is_one_short_line(tiny_dataset: Path):
    text = repr(load_dataset(tiny_dataset))
    assert "\n" not in text and len(text) < 300
    assert "'tiny'" in text and "artifacts 12/6" in text and "params 12/6" in text


def test_cell_label_names_model_strategy_and_demos_not_the_key_tail():
    """The payoff scatter labelled every point 'nall' (the key's last part)."""
    from ptychobench.report.format import cell_label

    assert cell_label("params/smollm2-135m/sft+icl/knn/k1/seed0/nall") == "smollm2-135m sft+icl knn k1"
    assert cell_label("params/text-probe/text-probe/-/k0/seed0/nall") == "text-probe"
    assert cell_label("params/smollm2-135m/zero-shot/-/k0/seed1/n32/split-test-ood") == (
        "smollm2-135m zero-shot seed1 n32 split-test-ood"
    )


def test_default_table_at_80_columns_names_each_cell_in_its_row(run: Path):
    """Issue 26: the cells were numbered, their names in a legend below the numbers."""
    out = score(run).output
    rows = [line for line in out.splitlines() if "│" in line and "0." in line]
    assert rows and all(len(line) <= 80 for line in out.splitlines())
    assert any("fake-vlm sft+icl knn k1" in line for line in out.splitlines())
    assert not any(line.strip().startswith("1  artifacts/") for line in out.splitlines()), "a numbered legend"
