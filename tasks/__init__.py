"""Benchmark tasks. One file per task family; each registers itself with a decorator::

    @register_task("my_task", description="...", causal=False, metric="accuracy")
    class MyTask(ClassificationTask): ...

Adding the file is all it takes: modules are read statically and imported only when one of
their tasks is asked for (see operators/__init__.py). Importing this package does not import
torch: the names from ``tasks.base`` are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import Registry

if TYPE_CHECKING:
    from .base import Batch, ClassificationTask, LanguageModelingTask, Task


def _validate(obj: Any) -> None:
    from .base import validate_task

    validate_task(obj)


TASKS: Registry[type[Task]] = Registry(
    "task", group="chiaroscuro.tasks", validate=_validate,
    builtins=__name__, decorators=("register_task", "TASKS.register"),
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
