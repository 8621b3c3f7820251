"""Files written whole or not at all, for every writer of the tool (store side files,
reports, configs, manifests): a kill mid-write leaves the previous file, never a 0-byte
PNG or new plots next to an old page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .secrets import scrub


def write_atomic(path: Path | str, data: str | bytes) -> Path:
    """Write a whole file or nothing: a temp file in the same folder, flushed, then
    ``os.replace``d over ``path``, so a killed writer never leaves a 0-byte or half file.
    Text is written with every known secret scrubbed (:func:`ptychobench.secrets.scrub`)."""
    path = Path(path)
    raw = scrub(data).encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; a report is for others to read too
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _mode_for(path: Path) -> int:
    """The file's current mode when it exists, else what ``open`` would give (0666 less
    the umask), so an atomic rewrite changes no one's access."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
