"""Result records: one JSON file per finished run, written atomically.

Every record holds the full resolved config, versions, git commit, hardware and seed, so any
number on the leaderboard can be traced back to the exact run that produced it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class RunRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created: str
    task: str
    router: str
    operators: list[str]  # ordered by cost, cheapest first
    seed: int
    preset: str | None
    config: dict[str, Any]
    config_hash: str
    flags: list[str] = Field(default_factory=list)  # "leaky", "preset:cpu", ...
    metrics: dict[str, dict[str, float]]  # split -> metric -> value
    cost: dict[str, Any]
    training: dict[str, Any]
    parameters: int
    data: dict[str, Any]
    environment: dict[str, Any]


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory and rename: readers never see half a file,
    and a crash leaves the previous version intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_record(record: RunRecord, directory: Path) -> Path:
    path = directory / f"{record.run_id}.json"
    atomic_write_text(path, record.model_dump_json(indent=2) + "\n")
    return path


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("chiaroscuro-bench")
    except PackageNotFoundError:
        package_version = "uninstalled"
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{cpu_name()} ({torch.get_num_threads()} threads)"
    return {
        "hardware": hardware,
        "device": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "package_version": package_version,
        "git_commit": git_commit(),
        "plugins": _plugin_distributions(),
    }


def _plugin_distributions() -> dict[str, str]:
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    out = {}
    for registry in (OPERATORS, ROUTERS, TASKS):
        for entry in registry:
            if not entry.builtin:
                out[f"{registry.kind}:{entry.name}"] = entry.origin
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_records(directory: Path) -> tuple[list[RunRecord], list[str]]:
    """All valid records under a directory, and one message per malformed file (skipped)."""
    records, problems = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            records.append(RunRecord.model_validate(json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return records, problems
