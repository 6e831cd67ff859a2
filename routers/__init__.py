"""Per-token routers. One file per router; each registers itself with a decorator::

    @register_router("my_router", description="...", hard=True, causal=True,
                     batch_independent=True, leaky=False, min_ops=2, max_ops=16)
    class MyRouter(Router): ...

Adding the file is all it takes: modules are read statically and imported only when one of
their routers is asked for (see operators/__init__.py). Importing this package does not import
torch: the names from ``routers.base`` are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from registry import Registry

if TYPE_CHECKING:
    from .base import Router, Routing, band_fractions


def _validate(obj: Any) -> None:
    from .base import validate_router

    validate_router(obj)


ROUTERS: Registry[type[Router]] = Registry(
    "router", group="chiaroscuro.routers", validate=_validate,
    builtins=__name__, decorators=("register_router", "ROUTERS.register"),
    declared=("hard", "causal", "batch_independent", "leaky", "min_ops", "max_ops"),
)
register_router = ROUTERS.register

__all__ = ["ROUTERS", "Router", "Routing", "band_fractions", "register_router"]

_LAZY = {"Router": "base", "Routing": "base", "band_fractions": "base",
         "validate_router": "base"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
