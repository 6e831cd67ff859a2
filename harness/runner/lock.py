"""One writer per run: an exclusive lock on the run folder.

Two processes on the same run (an orphan still training, the same command in a second terminal,
two sweeps whose grids overlap) would both append to metrics.jsonl and both write the checkpoint
and the record. The first takes ``<run folder>/run.lock`` and writes its PID there; any other is
refused with that PID and exits 2.

The lock is ``filelock``'s flock(2) lock (``UnixFileLock``): the kernel drops it when its
process dies, however it dies (SIGKILL included), so a lock left by a killed run cannot block
anyone: the next run takes it over, and says so when the file still names the dead holder. The
file itself stays (``preserve_lock_file``): deleting it on release would let two later processes
lock two different files of the same name. A contender never writes to the file, so the holder's
PID stays readable for the refusal.

``run.lock`` is opened with O_NOFOLLOW and refused when it is a link: a symbolic or hard link
planted there would otherwise have its target overwritten with a PID.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from registry import ConfigError

LOCK_NAME = "run.lock"

# flock(2) unsupported here (some network mounts): the run goes on unlocked, with a warning
NO_FLOCK = frozenset({errno.ENOSYS, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP})


class RunLocked(ConfigError):
    """Another live process holds the run."""


class UnsafeRunLock(ConfigError):
    """``run.lock`` is a link: writing the PID would overwrite another file."""


class RunLock:
    """``with RunLock(work_dir):`` holds the run folder for this process."""

    def __init__(self, folder: Path, log: Callable[[str], None] = print):
        self.path = Path(folder) / LOCK_NAME
        self.log = log
        self._lock = None
        self._fd: int | None = None  # the lock file, borrowed from filelock while held

    def acquire(self) -> RunLock:
        from filelock import Timeout, UnixFileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._refuse_a_link()
        lock = UnixFileLock(self.path, timeout=0, preserve_lock_file=True,
                            on_acquired=self._on_acquired)
        try:
            lock.acquire()
        except Timeout:
            holder = _pid_in_file(self.path)
            who = f"PID {holder}" if holder else "another process"
            raise RunLocked(
                f"run folder {self.path.parent} is in use by {who}, which is training this run; "
                f"wait for it to finish (or stop it) and re-run the same command to resume, or "
                f"use another --out") from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a link planted after the check above
                self._refuse_a_link()
            if exc.errno not in NO_FLOCK:
                raise
            self.log(f"warning: cannot lock {self.path} ({exc.strerror}); make sure no other "
                     f"process runs the same command on this folder")
            return self
        self._lock = lock
        return self

    def _refuse_a_link(self) -> None:
        if self.path.is_symlink():
            raise UnsafeRunLock(
                f"{self.path} is a symbolic link (to {os.readlink(self.path)}); a run lock must "
                f"be a plain file, or the file it points to is overwritten: remove the link and "
                f"re-run the same command")

    def _on_acquired(self, fd: int) -> None:
        """Locked: refuse a hard link, say when a dead holder's PID is taken over, write ours."""
        if os.fstat(fd).st_nlink > 1:
            raise UnsafeRunLock(
                f"{self.path} has other hard links; a run lock must be a plain file of its own, "
                f"or the other names' contents are overwritten: remove it and re-run the same "
                f"command")
        stale = _pid_in(fd)
        if stale and stale != os.getpid():
            self.log(f"the lock of PID {stale} on {self.path.parent} is stale (that process "
                     f"stopped without releasing it) and is taken over")
        _write_pid(fd, os.getpid())
        self._fd = fd

    def release(self) -> None:
        """Clear the PID (a clean exit leaves nothing that looks stale) and unlock."""
        if self._lock is None:
            return
        lock, self._lock = self._lock, None
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass  # the kernel unlocks below regardless
        lock.release()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _pid_in_file(path: Path) -> int | None:
    """The PID a holder wrote, read without following a link or blocking on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return _pid_in(fd)
    finally:
        os.close(fd)


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
