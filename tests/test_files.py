"""Atomic writes keep the permissions a plain write would give (mkstemp makes 0600)."""

import os

from ptychobench.files import write_atomic


def test_new_file_gets_umask_mode_and_rewrite_keeps_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "report.html", "<p>hi</p>")
        assert path.stat().st_mode & 0o777 == 0o644 and path.read_text() == "<p>hi</p>"
        path.chmod(0o640)
        write_atomic(path, b"again")
        assert path.stat().st_mode & 0o777 == 0o640 and path.read_bytes() == b"again"
        assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temp file left
    finally:
        os.umask(old)
