"""One writer per store: a lock file holding the owner's pid.

Two ``run``s on the same ``--out`` would both do all the work and store every record
twice. The lock is an ``flock`` on ``<store>.lock``, which the kernel drops when its
process dies however it dies, so a stale lock of a killed run is simply taken over; the
pid written inside only names the owner in the error. Shards of one run write separate
stores, so they lock separately and may run side by side.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ..errors import ConfigError


class RunLock:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent}: another ptychobench run ({owner}) is writing to this folder; "
                "wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless, reused)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
