"""Durable file writes, shared by every package (records, checkpoints, bench output, tokenizer
and data caches): one atomic writer, so there is one place that gets it right.

- atomic: a temp file beside the target, fsync, rename; readers never see half a file and a
  crash at any moment leaves the previous version intact;
- the user's umask decides the mode, as for any file a user makes (``tempfile.mkstemp``
  would make 0600);
- a full disk (or a spent quota) is one line, ``DiskFull``, that says what was kept;
- a writer killed between creating its temp file and renaming it (SIGKILL, a power cut) leaves
  the temp file behind; the next write of the same file removes it. A temp file's name says
  which process on which machine made it, so only temporaries of dead writers go: those of a
  process of this machine that no longer runs, and any older than a day (another machine's,
  or from before the names said whose they were).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from pathlib import Path
from typing import IO

from registry.errors import ChiaroscuroError, DataError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename: readers never see half a
    file, and a crash at any moment leaves the previous version intact. Results, checkpoints,
    bench outputs, task caches: every file the harness writes goes through here. A full disk raises
    ``DiskFull`` (one line, the temp file removed, the previous version untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = _new_temp_file(path)
    try:
        try:
            view = memoryview(data)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            kept = "its previous version is kept" if path.exists() else "nothing was written"
            raise DiskFull(path, f"{kept}; free some space and try again") from exc
        raise
    _fsync_directory(path.parent)


def _new_temp_file(path: Path) -> tuple[int, Path]:
    """A fresh temp file beside ``path``, named ``.<name>.<machine>-<pid>.<random>.tmp``.
    Created with mode 0666 so that the umask decides, as for any file a user makes
    (``tempfile.mkstemp`` makes 0600: records unreadable by others)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{_machine()}-{os.getpid()}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


# A temp file older than this cannot belong to a write still under way: even a checkpoint of a
# large model is written in minutes. It covers the writers this machine cannot ask about.
STALE_AFTER_S = 24 * 3600

_OWNER = re.compile(r"\.(?P<machine>[0-9a-f]{8})-(?P<pid>[0-9]+)\.[0-9a-f]{12}\.tmp$")


def _machine() -> str:
    """This machine in a temp file's name (a shared folder may be written from several)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temp files of writers of ``path`` that died before their rename; returns
    them. A temp file of a live writer (this process included) is left alone."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if _is_stale(tmp):
            try:
                tmp.unlink()
            except OSError:  # cleaned by another writer first, or not ours to remove
                continue
            removed.append(tmp)
    return removed


def _is_stale(tmp: Path) -> bool:
    try:
        age = time.time() - tmp.lstat().st_mtime
    except OSError:
        return False
    if age > STALE_AFTER_S:
        return True
    owner = _OWNER.search(tmp.name)
    if owner is None or owner["machine"] != _machine():
        return False  # another machine's writer, or an old name: only its age can tell
    return not _process_alive(int(owner["pid"]))


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(DataError):
    """No space left on the device (or the quota is spent) while writing ``path``."""

    def __init__(self, path: Path | str | None, detail: str):
        self.path = path
        where = f" writing {path}" if path else ""
        super().__init__(f"no space left on device{where}: {detail}")


def disk_full(exc: BaseException, kept: str) -> DiskFull | None:
    """``exc`` as a DiskFull that says what is kept (for a run: its last checkpoint), or None
    when ``exc`` is not about a full disk."""
    if isinstance(exc, DiskFull):
        path = exc.path
    elif isinstance(exc, OSError) and exc.errno in NO_SPACE:
        path = exc.filename
    else:
        return None
    return DiskFull(path, f"{kept}; free some space and re-run the same command to resume")


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: Path, write) -> None:
    """Atomic write of whatever ``write(file)`` puts in a binary file object (``torch.save``,
    for example), through the same writer."""
    import io

    buffer = io.BytesIO()
    write(buffer)
    atomic_write_bytes(path, buffer.getvalue())


class UnsafeFile(ChiaroscuroError, OSError):
    """A file to append to is not a plain file of its own: appending would write elsewhere.
    A ChiaroscuroError: the command line prints it as one line."""


def open_for_append(path: Path, remedy: str) -> IO[str]:
    """``path`` opened for appending (created if missing) without following a link planted
    there (its target would get the output), and refused when it is not a regular file with
    one name (a hard link writes into its other names; a FIFO would block). ``remedy`` ends
    the refusal's message: what the user should do."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                     0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link; {remedy}") from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UnsafeFile(f"{path} is not a regular file; {remedy}") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a regular file"
        raise UnsafeFile(f"{path} {what}; {remedy}")
    return os.fdopen(fd, "a")
