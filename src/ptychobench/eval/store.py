"""The prediction store: one append-only JSONL per run (or per shard of a run).

One line per (configuration, sample). Each line is written with a single ``write`` of the
whole line and flushed to disk before the next, under an exclusive lock. A process killed
mid-write leaves at most a torn last line without its newline; opening the store cuts that
tail off, so a resumed run re-does exactly that sample: nothing lost, duplicated or corrupt.

A record whose generation failed (``error`` set) is kept and counted, and a rerun tries
that sample again; the newest record for a key wins. A record made under other settings
(its ``settings`` hash differs from the cell's now) is not reused: the sample is redone.
Scoring reads only the store. No line carries a secret: each is scrubbed as it is written.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import StoreError
from ..models.openai_api import scrub_secrets
from .record import PredictionRecord, check_record

STORE_GLOB = "predictions*.jsonl"
_SHARD = re.compile(r"predictions-shard(\d+)of(\d+)\.jsonl$")


def _key(rec: dict[str, Any]) -> tuple[str, str]:
    return (rec["config"], rec["sample_id"])


class PredictionStore:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._latest: dict[tuple[str, str], dict[str, Any]] = {}
        self._repair_tail()
        for lineno, rec in _read_lines(self.path, numbered=True):
            if not isinstance(rec, dict) or not isinstance(rec.get("config"), str) or "sample_id" not in rec:
                raise StoreError(f"{self.path}:{lineno}: not a prediction record (needs 'config' and 'sample_id')")
            self._latest.pop(_key(rec), None)
            self._latest[_key(rec)] = rec

    def _repair_tail(self) -> None:
        """Cut a torn last line (a write the process did not finish)."""
        if not self.path.exists():
            return
        with self.path.open("rb+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)
                f.flush()
                os.fsync(f.fileno())

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, config: str, sample_id: str) -> dict[str, Any] | None:
        return self._latest.get((config, sample_id))

    def is_done(self, config: str, sample_id: str, settings: str | None = None) -> bool:
        """Stored without an error (and, given ``settings``, under those settings): a rerun
        skips it. A record of another settings hash, or of an old store without one, is redone."""
        rec = self._latest.get((config, sample_id))
        return rec is not None and not rec.get("error") and (settings is None or rec.get("settings") == settings)

    def touch(self) -> None:
        """Create the (empty) store file: a shard with no cells still shows it finished."""
        self.path.touch(exist_ok=True)

    def append(self, record: PredictionRecord | dict[str, Any]) -> None:
        if isinstance(record, PredictionRecord):
            record = record.to_dict()
        for key in ("config", "sample_id"):
            if key not in record:
                raise StoreError(f"{self.path}: a prediction record needs {key!r}")
        line = (scrub_secrets(json.dumps(record, ensure_ascii=False, sort_keys=True)) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._latest.pop(_key(record), None)  # newest last: scoring reads a cell's newest settings
        self._latest[_key(record)] = record

    def records(self) -> list[dict[str, Any]]:
        return list(self._latest.values())


def _read_lines(path: Path, numbered: bool = False) -> Iterator[Any]:
    """The complete lines' records (with their line numbers when ``numbered``); a torn
    tail of a killed writer is not a record (PredictionStore cuts it)."""
    if not path.exists():
        return
    try:
        with path.open(encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise StoreError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); is it a prediction store?") from None
    for lineno, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise StoreError(
                f"{path}:{lineno}: corrupt prediction record ({e.msg}); remove the line to re-run that sample"
            ) from None
        except RecursionError:
            raise StoreError(f"{path}:{lineno}: a record nested too deeply; remove the line") from None
        yield (lineno, rec) if numbered else rec


def missing_shards(files: Iterable[Path]) -> list[str]:
    """The shard stores a run folder should hold but does not (from the i-of-n names present)."""
    have: dict[int, set[int]] = {}
    for f in files:
        m = _SHARD.match(f.name)
        if m:
            have.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    return [f"predictions-shard{i}of{n}.jsonl" for n, got in sorted(have.items()) for i in range(n) if i not in got]


def read_run(run: Path | str, allow_partial: bool = False) -> list[dict[str, Any]]:
    """All records of a run folder (every shard's store merged) or of one store file, the
    newest record of each (cell, sample) last. A folder with some shards' stores but not
    all is an error (its scores would silently cover part of the grid) unless ``allow_partial``."""
    run = Path(run)
    if not run.exists():
        raise StoreError(f"{run}: no such run folder or store file")
    files: Iterable[Path] = [run] if run.is_file() else sorted(run.glob(STORE_GLOB))
    files = list(files)
    if not files:
        raise StoreError(f"{run}: no prediction store ({STORE_GLOB}) here")
    missing = [] if run.is_file() else missing_shards(files)
    if missing and not allow_partial:
        raise StoreError(
            f"{run}: shard store(s) {', '.join(missing)} missing; run those shards "
            "(ptychobench run CONFIG --out RUN --shard i/n) before scoring, or score the shards present "
            "one store file at a time"
        )
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for f in files:
        for lineno, rec in _read_lines(f, numbered=True):
            rec = check_record(rec, f"{f}:{lineno}")
            latest.pop(_key(rec), None)
            latest[_key(rec)] = rec
    return list(latest.values())
