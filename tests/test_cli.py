from typer.testing import CliRunner

from ptychobench.cli import app
from test_released import make_release

runner = CliRunner()


def test_every_command_has_help_with_an_example():
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"import", "export", "datasets", "validate", "score"} <= set(names)
    for name in names:
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, name
        assert "Example" in res.output, name


def test_import_validate_score_through_the_cli(tmp_path):
    src = make_release(tmp_path / "release")
    res = runner.invoke(app, ["import", str(src), "--images", str(src / "imgs"), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    assert "artifacts" in res.output and "params" in res.output
    res = runner.invoke(app, ["validate", str(tmp_path / "ds")])
    assert res.exit_code == 0, res.output
    (tmp_path / "ds" / "params" / "test.jsonl").write_text('{"id": "x", "labels": ["Q", "ZZ"]}\n')
    res = runner.invoke(app, ["validate", str(tmp_path / "ds")])
    assert res.exit_code == 2 and "unknown label(s) ['ZZ']" in " ".join(res.output.split())
    res = runner.invoke(app, ["import", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "not a folder" in " ".join(res.output.split())
