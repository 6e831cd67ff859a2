"""Benchmark tasks. One file per task family; each registers itself with a decorator::

    @register_task("my_task", description="...")
    class MyTask(ClassificationTask): ...
"""

from registry import Registry, import_submodules

from .base import (
    Batch,
    ClassificationTask,
    LanguageModelingTask,
    Task,
    validate_task,
)

TASKS: Registry[type[Task]] = Registry("task", group="chiaroscuro.tasks", validate=validate_task)
register_task = TASKS.register

__all__ = [
    "TASKS",
    "Batch",
    "ClassificationTask",
    "LanguageModelingTask",
    "Task",
    "register_task",
]

import_submodules(__name__)
