"""Per-token routers. One file per router; each registers itself with a decorator::

    @register_router("my_router", description="...", hard=True, causal=True,
                     batch_independent=True, leaky=False, min_ops=2, max_ops=16)
    class MyRouter(Router): ...

Adding the file is all it takes: modules are read statically and imported only when one of
their routers is asked for (see operators/__init__.py). Importing this package does not import
torch: the names from ``routers.base`` are loaded on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import Registry
from registry.lazy import deferred_validator, lazy_attributes

if TYPE_CHECKING:
    from .base import Router, Routing, band_fractions

ROUTERS: Registry[type[Router]] = Registry(
    "router", group="chiaroscuro.routers", builtins=__name__,
    validate=deferred_validator(f"{__name__}.base", "validate_router"),
    decorators=("register_router", "ROUTERS.register"),
    declared=("hard", "causal", "batch_independent", "leaky", "min_ops", "max_ops"),
)
register_router = ROUTERS.register

__all__ = ["ROUTERS", "Router", "Routing", "band_fractions", "register_router"]

_LAZY = {"Router": "base", "Routing": "base", "band_fractions": "base",
         "validate_router": "base"}
__getattr__ = lazy_attributes(__name__, _LAZY)
