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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec.overrides, f)
        config_file = f.name
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (spec.pythonpath, env.get("PYTHONPATH")) if p)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log = Path(spec.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        with log.open("a") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harness", "run", "--config", config_file],
                stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=spec.cwd if os.path.isdir(spec.cwd) else None)
            if on_start is not None:
                on_start(proc)
            code = proc.wait()
    finally:
        Path(config_file).unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    record = finished_record(spec.record_path)
    if code == 0 and record is not None:
        return CellResult("ran", record, seconds)
    return CellResult(f"failed (exit {code}, log {log})", {}, seconds, code or 1)


class CellFailed(RuntimeError):
    """Raised inside a remote worker so that the engine's own retry logic sees a failure."""
