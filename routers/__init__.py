"""Per-token routers. One file per router; each registers itself with a decorator::

    @register_router("my_router", description="...")
    class MyRouter(Router): ...
"""

from registry import Registry, import_submodules

from .base import Router, Routing, band_fractions, validate_router

ROUTERS: Registry[type[Router]] = Registry(
    "router", group="chiaroscuro.routers", validate=validate_router
)
register_router = ROUTERS.register

__all__ = ["ROUTERS", "Router", "Routing", "band_fractions", "register_router"]

import_submodules(__name__)
