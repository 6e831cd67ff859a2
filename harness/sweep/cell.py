"""One cell of a sweep, as every executor runs it: an ordinary ``python -m harness run`` process.

A cell is its own process with its own record and checkpoint, so whatever runs it (a loop here,
a Ray worker, a SLURM array task) gets resume for free: a finished cell is skipped, an
interrupted one continues from its checkpoint, and the record is written atomically by the run
itself. ``CellSpec`` and ``CellResult`` are plain data, so they pickle to any worker; the
function imports nothing of torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.paths import SWEEP_PARENT_ENV
from registry.files import UnsafeFile, open_for_append


@dataclass(frozen=True)
class CellSpec:
    label: str
    overrides: dict[str, Any]
    record_path: str  # absolute: workers may start anywhere
    log_path: str
    cwd: str  # the sweep's working directory: relative paths in overrides mean it
    pythonpath: str  # where the driver found the harness, so workers run the same code


@dataclass
class CellResult:
    status: str  # "done before", "ran", "failed (...)"
    record: dict[str, Any]
    seconds: float = 0.0
    returncode: int = 0


def finished_record(path: str | Path) -> dict[str, Any] | None:
    """The record at path if its run finished, else None (absent, failed, interrupted, or
    unreadable: the cell then runs, and `harness run` names the file to delete)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    return record if record.get("status", "finished") == "finished" else None


def run_cell(spec: CellSpec, gpu: int | None = None,
             on_start: Callable[[subprocess.Popen], None] | None = None) -> CellResult:
    """Run the cell unless its record says it finished; its output goes to spec.log_path."""
    record = finished_record(spec.record_path)
    if record is not None:
        return CellResult("done before", record)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (spec.pythonpath, env.get("PYTHONPATH")) if p)
    env[SWEEP_PARENT_ENV] = str(os.getpid())  # the cell stops when this process is gone
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log = Path(spec.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        out = open_for_append(log, remedy="remove it and re-run the sweep")
    except UnsafeFile as exc:
        return CellResult(f"failed ({exc})", {}, 0.0, 2)
    t0 = time.perf_counter()
    with out, config_file(spec.overrides) as (config, fds):
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness", "run", "--config", config],
            stdout=out, stderr=subprocess.STDOUT, env=env, pass_fds=fds,
            cwd=spec.cwd if os.path.isdir(spec.cwd) else None)
        if on_start is not None:
            on_start(proc)
        code = proc.wait()
    seconds = time.perf_counter() - t0
    record = finished_record(spec.record_path)
    if code == 0 and record is not None:
        return CellResult("ran", record, seconds)
    return CellResult(f"failed (exit {code}, log {log})", {}, seconds, code or 1)


@contextmanager
def config_file(overrides: dict[str, Any]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(path, descriptors to pass) of the overrides as a JSON config the cell's process reads.
    The file has no name on disk (an unnamed temporary file, POSIX), the process opens it as
    /dev/fd/N: a driver killed while its cell runs, SIGKILL included, leaves no file behind."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as f:
        json.dump(overrides, f)
        f.flush()
        f.seek(0)
        yield f"/dev/fd/{f.fileno()}", (f.fileno(),)


class CellFailed(RuntimeError):
    """Raised inside a remote worker so that the engine's own retry logic sees a failure."""
