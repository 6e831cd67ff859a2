"""Per-token routers. One file per router; the decorator names it, the class declares the rest::

    @register_router("my_router", description="...")
    class MyRouter(Router):
        hard = True
        min_ops = 2

        class Options(Router.Options):
            momentum: float = Field(0.05, gt=0, le=1, description="threshold EMA rate")

Adding the file is all it takes: modules are read statically and imported only when one of
their routers is asked for (see operators/__init__.py). Roles: a class lists what it is among
``ROUTER_ROLES`` below; the harness reads them with ``ROUTERS.has_role(name, role)``, never by
name. Importing this package does not import torch: the names from ``routers.base`` are loaded
on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import Registry
from registry.lazy import deferred_validator, lazy_attributes

if TYPE_CHECKING:
    from .base import Router, Routing, band_fractions

ROUTER_ROLES = {
    "control": "routes the same shares as a real router but on a score unrelated to the "
               "tokens (chance): what a router must beat",
    "privileged": "reads information no real router has (the task's ground truth): an upper "
                  "bound, never ranked",
    "single": "no routing: one operator handles every token (the dense baselines)",
    "method": "the paper's own router, the method under test (spectral entropy): listed first "
              "among the real routers",
    "learned": "learns its routing decisions in training (a gate, a predictor)",
}

ROUTERS: Registry[type[Router]] = Registry(
    "router", group="chiaroscuro.routers", builtins=__name__,
    validate=deferred_validator(f"{__name__}.base", "validate_router"),
    decorators=("register_router", "ROUTERS.register"),
    declared=("hard", "causal", "batch_independent", "leaky", "min_ops", "max_ops"),
    roles=ROUTER_ROLES,
)
register_router = ROUTERS.register

__all__ = ["ROUTERS", "ROUTER_ROLES", "Router", "Routing", "band_fractions", "register_router"]

_LAZY = {"Router": "base", "Routing": "base", "band_fractions": "base",
         "validate_router": "base"}
__getattr__ = lazy_attributes(__name__, _LAZY)
