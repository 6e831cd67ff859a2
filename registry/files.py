"""Durable file writes, shared by every package (records, checkpoints, bench output, tokenizer
and data caches): one atomic writer, so there is one place that gets it right.

- atomic: a temp file beside the target, fsync, rename; readers never see half a file and a
  crash at any moment leaves the previous version intact;
- the user's umask decides the mode, as for any file a user makes (``tempfile.mkstemp``
  would make 0600);
- a full disk (or a spent quota) is one line, ``DiskFull``, that says what was kept.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

from registry.errors import DataError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory, fsync, rename: readers never see half a
    file, and a crash at any moment leaves the previous version intact. Results, checkpoints,
    bench outputs: every file the harness writes goes through here. A full disk raises
    ``DiskFull`` (one line, the temp file removed, the previous version untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    """A fresh temp file beside ``path``. Created with mode 0666 so that the umask decides, as
    for any file a user makes (``tempfile.mkstemp`` makes 0600: records unreadable by others)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


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
