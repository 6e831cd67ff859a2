"""One run from explicit options to its record: the path ``python -m harness run`` and the
Python API (``harness.run``, harness/api.py) share, so both resolve and train alike.

``resolve_overrides`` layers defaults < preset (``paper`` with a GPU, ``cpu`` without, unless
one is given) < the task's own preset entry < the options given; ``start`` refuses a folder
option that names a file, prints the resolved config and trains (or resumes, or answers from a
finished run's record).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser imports this module: no pydantic or torch at import time
    from harness.core.config import RunConfig
    from harness.core.records import RunRecord


def resolve_overrides(overrides: dict[str, Any]) -> RunConfig:
    """The RunConfig of a nested dict of the options set explicitly (flags, a config file,
    the API's arguments)."""
    import torch

    from harness.core.config import resolve
    from tasks import TASKS

    overrides = dict(overrides)
    if "preset" not in overrides:
        overrides["preset"] = "paper" if torch.cuda.is_available() else "cpu"
    task_name = overrides.get("data", {}).get("task", "listops")
    task_presets = getattr(TASKS.get(task_name), "presets", {}) or {}
    return resolve(overrides, task_presets)


def start(cfg: RunConfig, log: Callable[[str], None] = print) -> tuple[RunRecord, Path]:
    """Train `cfg` and write its record; (record, its path)."""
    from harness.cli import summary
    from harness.core.flags import refuse_file_as_folder
    from harness.core.options import OPTIONS, value_at
    from harness.runner.train import train

    for o in OPTIONS:
        if o.folder:  # before any work: a file there would fail late, with a traceback
            refuse_file_as_folder(o.flag_name, value_at(cfg, o.path))
    log(f"preset in force: {cfg.preset}")
    log(summary.config_block(cfg))
    return train(cfg, log=log)
