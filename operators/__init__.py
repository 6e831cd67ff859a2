"""Token-mixing operators. One file per operator; each registers itself with a decorator::

    @register_operator("my_mixer", description="...")
    class MyMixer(TokenMixer): ...

Every module in this package is imported here, so adding a file is all it takes.
"""

from registry import Registry, import_submodules

from .base import MixContext, TokenMixer, validate_operator

OPERATORS: Registry[type[TokenMixer]] = Registry(
    "operator", group="chiaroscuro.operators", validate=validate_operator
)
register_operator = OPERATORS.register

__all__ = ["OPERATORS", "MixContext", "TokenMixer", "register_operator"]

import_submodules(__name__)
