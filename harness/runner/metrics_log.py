"""metrics.jsonl on resume: cut back to the checkpoint, repair a torn tail.

Lines are appended as training goes, and an append is not atomic: a write cut off (disk full,
power loss, a kill mid-write) leaves part of a line at the end of the file. On resume the log is
cut back to the checkpoint's step: the lines after it are written again by the resumed run, and
lines that are not complete JSON (the torn tail) are dropped, and the run says so. Every
complete line up to the checkpoint is kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.files import UnsafeFile, atomic_write_text


def cut_back(path: Path, step: int, log: Callable[[str], None]) -> None:
    """Keep the complete lines of steps <= ``step``; rewrite the file only if that changes it."""
    if path.is_symlink():  # its target is not this run's log: never read or replace it
        raise UnsafeFile(f"{path} is a symbolic link; remove it and re-run")
    if not path.exists():
        return
    text = path.read_bytes().decode("utf-8", errors="replace")  # a torn tail may split a char
    kept, torn = [], []
    for number, line in enumerate(text.splitlines(), 1):
        entry = _entry(line)
        if entry is None:
            if line.strip():
                torn.append(number)
        elif entry["step"] <= step:
            kept.append(line)
    repaired = "".join(f"{line}\n" for line in kept)
    if repaired != text:
        atomic_write_text(path, repaired)
    if torn:
        where = ", ".join(map(str, torn))
        log(f"{path}: dropped {len(torn)} torn line(s) (line {where}: not complete JSON, a "
            f"write was cut off); the {len(kept)} complete lines up to step {step} are kept")


def _entry(line: str) -> dict[str, Any] | None:
    """The parsed line, or None unless it is a complete metrics entry."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("step"), int):
        return None
    return entry
