"""A generic registry: decorator registration, aliases, entry-point plugins, "did you mean".

Used three times, for operators, routers and tasks::

    OPERATORS = Registry("operator", group="chiaroscuro.operators", base=TokenMixer)

    @OPERATORS.register("dct", aliases=("spectral",), description="...")
    class DCTMixer(TokenMixer): ...

    OPERATORS.get("dtc")  # UnknownNameError: unknown operator 'dtc'; did you mean 'dct'? ...

Third-party packages register through entry points in their own pyproject::

    [project.entry-points."chiaroscuro.operators"]
    my_mixer = "my_pkg.mixers:MyMixer"

Entry points are discovered lazily, the first time a registry is asked for a name or a listing.
A plugin that fails to import, names a missing object, or does not satisfy the contract is
reported once (name, distribution, error) and skipped: it never breaks the built-ins.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata as md
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .errors import (
    ChiaroscuroError,
    ConfigError,
    DataError,
    DuplicateNameError,
    UnknownNameError,
)

__all__ = [
    "Registry",
    "Entry",
    "PluginFailure",
    "ChiaroscuroError",
    "ConfigError",
    "DataError",
    "DuplicateNameError",
    "UnknownNameError",
]

T = TypeVar("T")

BUILTIN = "built-in"


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered object and what is known about it."""

    name: str
    obj: T
    aliases: tuple[str, ...] = ()
    origin: str = BUILTIN  # "built-in" or "<distribution> <version>"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.origin == BUILTIN


@dataclass(frozen=True)
class PluginFailure:
    """A plugin entry point that could not be registered, and why."""

    name: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin '{self.name}' from {self.distribution} skipped: {self.error}"


_OWN_PACKAGES = ("registry", "operators", "routers", "tasks", "harness")


@functools.lru_cache(maxsize=1)
def _package_owners() -> dict[str, list[str]]:
    return md.packages_distributions()


def _origin_of(obj: Any) -> str:
    """'built-in' for objects defined in this project, else '<distribution> <version>'."""
    top = (getattr(obj, "__module__", "") or "").split(".")[0]
    if top in _OWN_PACKAGES:
        return BUILTIN
    dists = _package_owners().get(top, [])
    if not dists:
        return f"module {top}" if top else "unknown"
    try:
        return f"{dists[0]} {md.version(dists[0])}"
    except md.PackageNotFoundError:
        return dists[0]


class Registry(Generic[T]):
    """Name -> object map for one kind of plug-in.

    kind:     what the entries are, used in messages ("operator").
    group:    the entry-point group scanned for plugins ("chiaroscuro.operators").
    validate: called on every plugin object; raises (TypeError/ValueError) if the object does
              not satisfy the contract. Built-ins are validated too, at registration.
    """

    def __init__(self, kind: str, group: str, validate: Callable[[Any], None] | None = None):
        self.kind = kind
        self.group = group
        self._validate = validate
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._discovered = False
        self.failures: list[PluginFailure] = []

    # -- registration -------------------------------------------------------------------------

    def register(
        self, name: str, *, aliases: tuple[str, ...] | list[str] = (), **metadata: Any
    ) -> Callable[[T], T]:
        """Class/function decorator: register the object under `name` (and `aliases`)."""

        def decorator(obj: T) -> T:
            self.add(name, obj, aliases=tuple(aliases), origin=_origin_of(obj), **metadata)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        aliases: tuple[str, ...] = (),
        origin: str = BUILTIN,
        **metadata: Any,
    ) -> Entry[T]:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                existing = self._entries.get(key) or self._entries[self._aliases[key]]
                if existing.obj is obj:  # the same object imported twice: nothing to do
                    return existing
                raise DuplicateNameError(
                    f"{self.kind} name '{key}' is already registered by {existing.origin} "
                    f"({_qualname(existing.obj)}); choose another name"
                )
        if self._validate is not None:
            self._validate(obj)
        if hasattr(obj, "__dict__") and isinstance(obj, type):
            obj.registry_name = name  # type: ignore[attr-defined]
        entry = Entry(name=name, obj=obj, aliases=aliases, origin=origin, metadata=metadata)
        self._entries[name] = entry
        for alias in aliases:
            self._aliases[alias] = name
        return entry

    # -- lookup -------------------------------------------------------------------------------

    def entry(self, name: str) -> Entry[T]:
        self._discover()
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key]
        raise UnknownNameError(self._unknown_message(name))

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[Entry[T]]:
        self._discover()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return [e.name for e in self]

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        known = sorted([*self._entries, *self._aliases])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        for failure in self.failures:
            if failure.name == name:  # installed, but its plugin could not be registered
                return f"{self.kind} '{name}' is unavailable: {failure}"
        return (
            f"unknown {self.kind} '{name}'{hint} "
            f"(available: {', '.join(sorted(self._entries)) or 'none'})"
        )

    # -- plugins ------------------------------------------------------------------------------

    def _discover(self) -> None:
        """Register every entry point of this registry's group, once."""
        if self._discovered:
            return
        self._discovered = True
        for ep in md.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            version = ep.dist.version if ep.dist is not None else ""
            origin = f"{dist} {version}".strip()
            try:
                obj = ep.load()
                self.add(ep.name, obj, origin=origin)
            except Exception as exc:  # a broken plugin must never break the built-ins
                failure = PluginFailure(ep.name, origin, f"{type(exc).__name__}: {exc}")
                self.failures.append(failure)
                warnings.warn(str(failure), RuntimeWarning, stacklevel=2)

    def refresh(self) -> None:
        """Forget plugins and discover again (after installing or removing a package)."""
        self._entries = {k: e for k, e in self._entries.items() if e.builtin}
        self._aliases = {a: k for a, k in self._aliases.items() if k in self._entries}
        self.failures = []
        self._discovered = False


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def import_submodules(package_name: str) -> None:
    """Import every module of a package, so that their decorators register the built-ins.

    This is what makes "a new operator is one file in operators/": nothing lists the files.
    """
    import importlib
    import pkgutil

    package = sys.modules[package_name]
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")
