"""Deferred imports for the registry packages, so that importing ``operators``, ``routers`` or
``tasks`` (to list or to build a parser) does not import torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def deferred_validator(module: str, name: str) -> Callable[[Any], None]:
    """A validator that imports ``module.name`` the first time something is validated."""

    def validate(obj: Any) -> None:
        getattr(importlib.import_module(module), name)(obj)

    return validate


def lazy_attributes(package: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving each of `names` from ``package.<submodule>`` on first
    access: ``__getattr__ = lazy_attributes(__name__, {"Router": "base"})``."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(f"{package}.{names[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
