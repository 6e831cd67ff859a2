"""Token-mixing operators. One file per operator; each registers itself with a decorator::

    @register_operator("my_mixer", description="...", supports_causal=True,
                       supports_query_subset=False, leaky=False)
    class MyMixer(TokenMixer): ...

Adding the file is all it takes: the registry reads every module's decorator calls (without
importing the module) and imports a module only when one of its operators is asked for. The
decorator's arguments must be literals; the declared properties are what
``python -m harness list`` shows, and are checked against the class when it is imported.

Importing this package does not import torch: ``MixContext`` and ``TokenMixer`` are loaded
from ``operators.base`` on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import Registry
from registry.lazy import deferred_validator, lazy_attributes

if TYPE_CHECKING:
    from .base import MixContext, TokenMixer

OPERATORS: Registry[type[TokenMixer]] = Registry(
    "operator", group="chiaroscuro.operators", builtins=__name__,
    validate=deferred_validator(f"{__name__}.base", "validate_operator"),
    decorators=("register_operator", "OPERATORS.register"),
    declared=("supports_causal", "supports_query_subset", "leaky"),
)
register_operator = OPERATORS.register

__all__ = ["OPERATORS", "MixContext", "TokenMixer", "register_operator"]

_LAZY = {"MixContext": "base", "TokenMixer": "base", "validate_operator": "base"}
__getattr__ = lazy_attributes(__name__, _LAZY)
