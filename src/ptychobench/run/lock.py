"""One writer per run folder: ``flock``s the kernel drops when their process dies.

Two ``run``s on the same ``--out`` would both do all the work and store every record
twice, and so would ``run --out X`` beside ``run --out X --shard 0/1`` (they write
different store files, so a lock per store file let both through). So the folder is the
unit: an unsharded run holds ``predictions.lock`` exclusively; a shard holds it shared
(shards of one run are meant to run side by side), its own ``predictions-shard<i>of<n>.lock``
exclusively, and ``shards-of-<n>.lock`` shared, and is refused while a run with another
shard count holds the folder. The pid written inside a lock file only names its owner in
the error; a killed run's lock is simply taken over.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import ConfigError


class RunLock:
    """An ``flock`` on one file: exclusive (the owner's pid written inside) or shared."""

    def __init__(self, path: Path | str, shared: bool = False, wait: bool = False):
        self.path = Path(path)
        self.shared = shared
        self.wait = wait  # block until free (a brief critical section), instead of refusing
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | (0 if self.wait else fcntl.LOCK_NB))
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent}: another ptychobench run ({owner}) is writing to this folder; "
                "wait for it to finish or use another --out"
            ) from None
        if not self.shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def held_by_someone(self) -> bool:
        """Whether another process holds this file's lock (probed, then let go)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, reused)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class FolderLock:
    """The run folder's locks for an unsharded run or one shard (see the module doc)."""

    def __init__(self, run_dir: Path | str, shard: tuple[int, int] | None = None):
        self.run_dir = Path(run_dir)
        self.shard = shard
        self._held: list[RunLock] = []

    def acquire(self) -> FolderLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # one acquirer at a time, the others waiting their turn (shards start together): the
        # checks below are then not racy
        with RunLock(self.run_dir / ".lock-mutex", wait=True):
            try:
                if self.shard is None:
                    self._take(RunLock(self.run_dir / "predictions.lock"))
                    return self
                i, n = self.shard
                self._take(RunLock(self.run_dir / "predictions.lock", shared=True))
                for other in sorted(self.run_dir.glob("shards-of-*.lock")):
                    if other.name != f"shards-of-{n}.lock" and RunLock(other).held_by_someone():
                        raise ConfigError(
                            f"{self.run_dir}: a run with another shard count ({other.stem.removeprefix('shards-of-')}) "
                            f"is writing to this folder; shard {i}/{n} would redo its work. Wait for it, or "
                            "use the same --shard count"
                        )
                self._take(RunLock(self.run_dir / f"shards-of-{n}.lock", shared=True))
                self._take(RunLock(self.run_dir / f"predictions-shard{i}of{n}.lock"))
            except BaseException:
                self.release()
                raise
        return self

    def _take(self, lock: RunLock) -> None:
        self._held.append(lock.acquire())

    def release(self) -> None:
        for lock in reversed(self._held):
            lock.release()
        self._held = []

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
