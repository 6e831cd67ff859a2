"""Where the cells of a sweep run. Each executor is a module with

    execute(pending: list[tuple[Cell, CellSpec]], args, done: Callable[[Cell, CellResult], None])

that runs every pending cell (``cell.run_cell`` on some machine) and calls ``done`` once per cell
as its result arrives. They hand the work to an engine (a thread pool, Ray, submitit) instead of
scheduling it themselves. ``ray`` and ``slurm`` need optional extras, imported only here.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from registry import ConfigError

# executor -> (module, the package it needs, the extra that installs it)
_EXECUTORS = {
    "local": ("harness.sweep.executors.local", None, None),
    "ray": ("harness.sweep.executors.ray", "ray", "ray"),
    "slurm": ("harness.sweep.executors.slurm", "submitit", "slurm"),
}


def load_executor(name: str) -> Callable[..., Any]:
    """The executor's execute function; a missing extra is one line naming the install."""
    if name not in _EXECUTORS:
        raise ConfigError(f"unknown executor '{name}'; executors are {', '.join(_EXECUTORS)}")
    module, package, extra = _EXECUTORS[name]
    if package is not None and importlib.util.find_spec(package) is None:
        raise ConfigError(f"--executor {name} needs {package}: pip install -e \".[{extra}]\"")
    return importlib.import_module(module).execute
