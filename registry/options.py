"""A component's options: a pydantic model declared once in the class, validated in one place.

Each operator, router and task declares the options it takes as a nested model::

    class DCTMixer(TokenMixer):
        class Options(TokenMixer.Options):
            decay: float = Field(3.0, ge=0, description="causal kernel window exp(-decay t / N)")

The base class validates what the user passed (``--op-option dct.decay=2``,
``--task-option n_pairs=4``, a preset's task options) through that model (``parse_options``) and
keeps the result as ``self.options``: an unknown key, a missing one, a wrong type or a value out
of range (NaN included) is one ``ConfigError`` line naming the component, the option and the
flag that sets it. ``python -m harness list`` shows the same model's fields (read from
the source for built-ins, ``registry/_scan.py``; from the class for plugins, ``specs_of``).

Values arrive typed (the CLI parses them as JSON, config files are TOML or JSON), so the models
are strict: ``true`` is not a number and ``"3"`` is not an integer.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import PydanticUndefined

from ._scan import CONSTRAINTS, REQUIRED, OptionSpec
from .errors import ConfigError, unknown_options_message


class ComponentOptions(BaseModel):
    """Base of every ``Options`` model: unknown keys, non-finite floats and loose types are
    refused; the validated options are read-only."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


class Configurable:
    """What operators, routers and tasks share: their options, declared as a nested ``Options``
    model (a subclass extends its parent's) and checked once by ``parse_options``, whose one-line
    errors name the component's kind and the flag that sets an option."""

    option_kind: ClassVar[str] = "component"  # "operator", "router", "task"
    options_flag: ClassVar[str] = "--option {key}=VALUE"  # '{name}': the component's name
    registry_name: ClassVar[str] = "?"  # set by the registry

    class Options(ComponentOptions):
        """No options; a subclass adds its fields."""

    options: ComponentOptions  # the validated Options, set by the constructor

    @classmethod
    def parse_options(cls, values: Mapping[str, Any]) -> ComponentOptions:
        """The validated ``Options``, or one ConfigError line naming the option and the flag
        that sets it (the registry's ``check_options`` asks this without building anything)."""
        return parse_options(cls.option_kind, cls.registry_name, cls.Options, values,
                             cls.options_flag)


def option_flag(flag: str, name: str, key: str = "KEY") -> str:
    """The flag that sets an option: '--op-option {name}.{key}=VALUE' filled in."""
    return flag.format(name=name, key=key)


def parse_options(kind: str, name: str, model: type[BaseModel], values: Mapping[str, Any],
                  flag: str) -> BaseModel:
    """``model`` validated from ``values``, or one ConfigError line naming the option and the
    flag (``flag`` as in ``Registry.option_flag``)."""
    known = list(model.model_fields)
    unknown = [key for key in values if key not in known]
    if unknown:
        raise ConfigError(unknown_options_message(kind, name, unknown, known,
                                                  option_flag(flag, name)))
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(_message(kind, name, exc, values, flag)) from None


def _message(kind: str, name: str, exc: ValidationError, values: Mapping[str, Any],
             flag: str) -> str:
    error = exc.errors(include_url=False)[0]
    reason = str(error["msg"]).removeprefix("Value error, ")
    loc = error.get("loc") or ()
    key = str(loc[0]) if loc else ""
    if key in values:
        return (f"{kind} '{name}' option {key}={values[key]!r} is invalid: {reason} (set it "
                f"with {option_flag(flag, name, key)})")
    if key and error["type"] == "missing":
        return f"{kind} '{name}' needs option {key} (set it with {option_flag(flag, name, key)})"
    return f"{kind} '{name}' options: {reason} (set them with {option_flag(flag, name)})"


def specs_of(model: Any) -> tuple[OptionSpec, ...]:
    """The fields of an imported ``Options`` model as ``list`` shows them (what the static scan
    reads from a built-in's source)."""
    fields = getattr(model, "model_fields", None)
    if not isinstance(fields, dict):
        return ()
    specs = []
    for name, info in fields.items():
        default = REQUIRED if info.default is PydanticUndefined else info.default
        constraints = tuple((key, getattr(m, key)) for m in info.metadata for key in CONSTRAINTS
                            if hasattr(m, key))
        specs.append(OptionSpec(name, type_text(info.annotation), default,
                                info.description or "", constraints))
    return tuple(specs)


def type_text(annotation: Any) -> str:
    """An annotation as it is written in source: 'float', 'int | None', "Literal['a', 'b']"."""
    if isinstance(annotation, type) and not isinstance(annotation, types.GenericAlias):
        return annotation.__name__
    if typing.get_origin(annotation) is typing.Literal:
        return f"Literal[{', '.join(map(repr, typing.get_args(annotation)))}]"
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " | ".join(type_text(a) if a is not type(None) else "None"
                          for a in typing.get_args(annotation))
    return str(annotation).replace("typing.", "")
