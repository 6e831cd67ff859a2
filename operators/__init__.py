"""Token-mixing operators. One file per operator; the decorator names it, the class declares
the rest::

    @register_operator("my_mixer", description="...")
    class MyMixer(TokenMixer):
        supports_causal = True
        supports_query_subset = False

        class Options(TokenMixer.Options):
            width: int = Field(4, ge=1, description="taps on each side")

Adding the file is all it takes: the registry reads every module's decorator calls and the
decorated classes' attributes (without importing the module) and imports a module only when
one of its operators is asked for. The decorator's arguments and the declared attributes must
be literals; they are what ``python -m harness list`` shows, and are checked against the class
when it is imported.

Roles: a class lists what it is among ``OPERATOR_ROLES`` below (``roles = ("attention",)``);
the harness reads them with ``OPERATORS.has_role(name, role)``, never by name.

What a plugin operator imports from here (docs/plugins.md, section 3), each loaded on first
access so that importing this package does not import torch:

``TokenMixer`` (the base class) and ``MixContext`` (what ``forward`` is told), from
``operators.base``, with the helpers for routed queries: ``gather_queries(x, ctx)`` (the rows
at ``ctx.query_positions``), ``attention_mask(ctx, n_key, n_query, device)`` (padding and
causality by original position, as a boolean mask) and ``query_count(ctx, n_key)``. The
spectral helpers (``dct``, ``idct``, ``spectral_entropy``, ``upcast``) are imported from
``operators.spectral``: ``operators.dct`` is the DCT operator's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from registry import Registry
from registry.lazy import deferred_validator, lazy_attributes

if TYPE_CHECKING:
    from .base import MixContext, TokenMixer, attention_mask, gather_queries, query_count

OPERATOR_ROLES = {
    "attention": "full softmax attention over every key, the quality reference a cheap mixer "
                 "stands in for",
    "no-mixing": "moves no information between positions: the floor every mixer must beat",
}

OPERATORS: Registry[type[TokenMixer]] = Registry(
    "operator", group="chiaroscuro.operators", builtins=__name__,
    validate=deferred_validator(f"{__name__}.base", "validate_operator"),
    decorators=("register_operator", "OPERATORS.register"),
    declared=("supports_causal", "supports_query_subset", "leaky"),
    roles=OPERATOR_ROLES,
)
register_operator = OPERATORS.register

__all__ = ["OPERATORS", "OPERATOR_ROLES", "MixContext", "TokenMixer", "attention_mask",
           "gather_queries", "query_count", "register_operator"]

_LAZY = {"MixContext": "base", "TokenMixer": "base", "validate_operator": "base",
         "gather_queries": "base", "attention_mask": "base", "query_count": "base"}
__getattr__ = lazy_attributes(__name__, _LAZY)
