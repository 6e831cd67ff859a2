"""One writer per run: an exclusive lock on the run folder.

Two processes on the same run (an orphan still training, the same command in a second terminal,
two sweeps whose grids overlap) would both append to metrics.jsonl and both write the checkpoint
and the record. The first takes ``<run folder>/run.lock`` with flock(2) and writes its PID
there; any other is refused with that PID and exits 2.

The kernel drops a flock when its process dies, however it dies (SIGKILL included), so a lock
left by a killed run cannot block anyone: the next run takes it over, and says so when the file
still names the dead holder. The file itself stays: deleting it on release would let two later
processes lock two different files of the same name.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from registry import ConfigError

LOCK_NAME = "run.lock"


class RunLocked(ConfigError):
    """Another live process holds the run."""


class RunLock:
    """``with RunLock(work_dir):`` holds the run folder for this process."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # never truncated unlocked
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            who = f"PID {holder}" if holder else "another process"
            raise RunLocked(
                f"run folder {self.path.parent} is in use by {who}, which is training this run; "
                f"wait for it to finish (or stop it) and re-run the same command to resume, or "
                f"use another --out") from None
        except OSError as exc:  # a filesystem without flock (some network mounts)
            os.close(fd)
            self.log(f"warning: cannot lock {self.path} ({exc.strerror}); make sure no other "
                     f"process runs the same command on this folder")
            return self
        stale = _pid_in(fd)
        if stale and stale != os.getpid():
            self.log(f"the lock of PID {stale} on {self.path.parent} is stale (that process "
                     f"stopped without releasing it) and is taken over")
        _write_pid(fd, os.getpid())
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the PID (a clean exit leaves nothing that looks stale) and unlock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass  # the kernel unlocks below regardless
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _write_pid(fd: int, pid: int) -> None:
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)
    except OSError:
        pass  # the PID is for messages only: the flock is what excludes
