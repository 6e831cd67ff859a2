"""Benchmark tasks. One file per task family; the decorator names a task, its class declares
the rest (``causal``, ``metric``, ``higher_is_better``: set by ``ClassificationTask`` and
``LanguageModelingTask``, overridden where a task differs)::

    @register_task("my_task", description="...")
    class MyTask(ClassificationTask): ...

Adding the file is all it takes: modules are read statically and imported only when one of
their tasks is asked for (see operators/__init__.py). Importing this package does not import
torch: the names from ``tasks.base`` are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import Registry
from registry.lazy import deferred_validator, lazy_attributes

if TYPE_CHECKING:
    from .base import Batch, ClassificationTask, LanguageModelingTask, Task

TASKS: Registry[type[Task]] = Registry(
    "task", group="chiaroscuro.tasks", builtins=__name__,
    validate=deferred_validator(f"{__name__}.base", "validate_task"),
    decorators=("register_task", "TASKS.register"),
    declared=("causal", "metric"),
   
)
register_task = TASKS.register

__all__ = [
    "TASKS",
    "Batch",
    "ClassificationTask",
    "LanguageModelingTask",
    "Task",
    "register_task",
]

_LAZY = {name: "base" for name in ("Batch", "ClassificationTask", "LanguageModelingTask",
                                   "Task", "validate_task")}
__getattr__ = lazy_attributes(__name__, _LAZY)
