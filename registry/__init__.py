"""A generic registry: decorator registration, aliases, entry-point plugins, "did you mean".

Used three times, for operators, routers and tasks. The registry below is a toy one, so that
this example runs as a doctest (tests/test_doctests.py); ``OPERATORS`` is made the same way::

    OPERATORS = Registry("operator", group="chiaroscuro.operators", validate=validate_operator,
                         builtins="operators", decorators=("register_operator",),
                         declared=("supports_causal", "supports_query_subset", "leaky"))

>>> widgets = Registry("widget", group="chiaroscuro.doc_widgets")
>>> @widgets.register("dct", aliases=("spectral",), deprecated_aliases=("dct-mix",),
...                   description="mixes in the DCT domain")
... class DCTMixer:
...     pass
>>> widgets.get("spectral") is DCTMixer
True
>>> DCTMixer.registry_name  # the decorator's name, bound by the decorator (see register)
'dct'
>>> widgets.get("dtc")
Traceback (most recent call last):
    ...
registry.errors.UnknownNameError: unknown widget 'dtc'; did you mean 'dct'? (available: dct)
>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     widgets.get("dct-mix") is DCTMixer
True
>>> print(caught[0].message)
widget name 'dct-mix' is deprecated; use 'dct'
>>> [e.name for e in widgets.filter("*ct*")]
['dct']

Built-ins are lazy. A registry made with ``builtins="operators"`` reads the source of every
module of that package (``registry/_scan.py``: the ``@register_operator("name", ...)`` calls,
whose arguments must be literals) and records ``"operators.dct:DCTMixer"`` with the declared
name, aliases, description and properties, importing nothing. ``get()`` imports the module;
its decorator then binds the class to the entry, after validation, including a check that the
properties declared in the decorator equal the class's. Adding a built-in is still one file
with one decorator: nothing lists the files. A module whose decorator arguments are not
literals is imported when the registry is first used, as before.

Third-party packages register through entry points in their own pyproject::

    [project.entry-points."chiaroscuro.operators"]
    my_mixer = "my_pkg.mixers:MyMixer"

An entry point ``name = module:Class`` is the same as decorating ``Class`` with
``@REGISTRY.register("name")``. Entry points are loaded lazily, the first time a registry is
asked for a name or a listing (never at import). A plugin that fails to import, names a
missing object, or does not satisfy the contract is reported once (name, distribution, error)
and skipped: it never breaks the built-ins.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.metadata as md
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

_UNLOADED: Any = object()


class Entry(Generic[T]):
    """One registered object and what is known about it.

    A lazy built-in entry knows its ``target`` ("package.module:QualName") and its declared
    metadata; ``obj`` imports the module the first time it is read.
    """

    __slots__ = ("name", "aliases", "deprecated_aliases", "origin", "metadata", "target",
                 "_obj", "_loader")

    def __init__(self, name: str, obj: Any = _UNLOADED, *, aliases: tuple[str, ...] = (),
                 origin: str = BUILTIN, metadata: dict[str, Any] | None = None,
                 target: str | None = None, deprecated_aliases: tuple[str, ...] = (),
                 loader: Callable[[Entry[T]], T] | None = None):
        self.name = name
        self.aliases = tuple(aliases)
        self.deprecated_aliases = tuple(deprecated_aliases)
        self.origin = origin
        self.metadata = dict(metadata or {})
        self.target = target if target is not None or obj is _UNLOADED else _target_of(obj)
        self._obj = obj
        self._loader = loader

    @property
    def obj(self) -> T:
        if self._obj is _UNLOADED:
            if self._loader is None:
                raise RuntimeError(f"entry '{self.name}' has neither an object nor a loader")
            self._loader(self)
        return self._obj

    @property
    def loaded(self) -> bool:
        return self._obj is not _UNLOADED

    @property
    def builtin(self) -> bool:
        return self.origin == BUILTIN

    def prop(self, attr: str, default: Any = None) -> Any:
        """A property declared at registration, else read from the object (importing it)."""
        if attr in self.metadata:
            return self.metadata[attr]
        return getattr(self.obj, attr, default)

    def __repr__(self) -> str:
        state = "loaded" if self.loaded else "lazy"
        return f"Entry({self.name!r}, {self.target or repr(self._obj)}, {self.origin}, {state})"


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


def _target_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', '?')}"


def bind_name(obj: Any, name: str) -> None:
    """Give a registered class its ``registry_name`` (a ClassVar declared on the base classes).

    A class that declares ``registry_name`` in its own body must declare the name it is
    registered under (else TypeError). One that does not (the built-ins, whose files may change
    only in their decorator line, and plugins, named by their entry point) is given it here,
    once it has passed the registry's checks: this is the only place a name is written onto a
    class, and it never overwrites a declared one nor reuses an inherited one.
    """
    if not isinstance(obj, type):
        return
    own = obj.__dict__.get("registry_name")
    if own is None:
        obj.registry_name = name  # type: ignore[attr-defined]
    elif own != name:
        raise TypeError(f"{obj.__name__} declares registry_name = {own!r} but is registered "
                        f"as {name!r}")


class Registry(Generic[T]):
    """Name -> object map for one kind of plug-in.

    kind:       what the entries are, used in messages ("operator").
    group:      the entry-point group scanned for plugins ("chiaroscuro.operators").
    validate:   called on every object when it is bound (built-ins on first ``get``, plugins
                when discovered); raises (TypeError/ValueError) if it does not satisfy the
                contract.
    builtins:   a package whose modules declare the built-ins (read statically, imported
                lazily); None for none.
    decorators: the decorator spellings to look for in those modules ("register_operator").
    declared:   class properties that built-ins declare in their decorator (listed without
                importing); checked against the class when it is imported.
    """

    def __init__(self, kind: str, group: str, validate: Callable[[Any], None] | None = None,
                 *, builtins: str | None = None, decorators: tuple[str, ...] = (),
                 declared: tuple[str, ...] = ()):
        self.kind = kind
        self.group = group
        self._validate = validate
        self.builtins = builtins
        self.decorators = tuple(decorators)
        self.declared = tuple(declared)
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}
        self._deprecated: dict[str, str] = {}
        self._scanned = builtins is None
        self._discovered = False
        self.failures: list[PluginFailure] = []
        self.dynamic_modules: list[str] = []  # built-in modules that could not be read statically

    # -- registration -------------------------------------------------------------------------

    def register(
        self, name: str, *, aliases: tuple[str, ...] | list[str] = (),
        deprecated_aliases: tuple[str, ...] | list[str] = (), **metadata: Any
    ) -> Callable[[T], T]:
        """Class/function decorator: register the object under ``name`` (and ``aliases``).

        ``deprecated_aliases`` are old names: ``get(old)`` still works and warns
        (DeprecationWarning) with the new name. Other keywords are metadata (``description``
        and the registry's ``declared`` properties, checked against the object). The decorator
        sets ``registry_name`` on a class that does not declare it (see ``bind_name``).
        """

        def decorator(obj: T) -> T:
            self._scan()
            existing = self._entries.get(name)
            if (existing is not None and not existing.loaded
                    and existing.target == _target_of(obj)):
                self._bind(existing, obj)  # the lazy built-in this module declared
            else:
                self.add(name, obj, aliases=tuple(aliases), origin=_origin_of(obj),
                         deprecated_aliases=tuple(deprecated_aliases), **metadata)
            return obj

        return decorator

    def add(
        self,
        name: str,
        obj: T,
        *,
        aliases: tuple[str, ...] = (),
        origin: str = BUILTIN,
        deprecated_aliases: tuple[str, ...] = (),
        **metadata: Any,
    ) -> Entry[T]:
        """Register an object. A class is named by it (``bind_name``), after the duplicate
        and validation checks have passed: a refused object is left untouched."""
        for key in (name, *aliases, *deprecated_aliases):
            existing = self._owner(key)
            if existing is not None:
                if existing.loaded and existing.obj is obj:  # the same object twice
                    return existing
                raise self._duplicate(key, existing)
        entry: Entry[T] = Entry(name, obj, aliases=tuple(aliases), origin=origin,
                                metadata=metadata, deprecated_aliases=tuple(deprecated_aliases))
        self._check(entry, obj)
        bind_name(obj, name)
        self._insert(entry)
        return entry

    def _owner(self, key: str) -> Entry[T] | None:
        target = self._aliases.get(key) or self._deprecated.get(key) or key
        return self._entries.get(target)

    def _duplicate(self, key: str, existing: Entry[T]) -> DuplicateNameError:
        what = existing.target if not existing.loaded else _qualname(existing.obj)
        return DuplicateNameError(
            f"{self.kind} name '{key}' is already registered by {existing.origin} "
            f"({what}); choose another name"
        )

    def _insert(self, entry: Entry[T]) -> None:
        self._entries[entry.name] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.name
        for alias in entry.deprecated_aliases:
            self._deprecated[alias] = entry.name

    def _check(self, entry: Entry[T], obj: Any) -> None:
        """Validate the object, and the properties declared for it at registration."""
        if self._validate is not None:
            self._validate(obj)
        for attr in self.declared:
            if attr in entry.metadata and getattr(obj, attr, _UNLOADED) != entry.metadata[attr]:
                raise TypeError(
                    f"{self.kind} '{entry.name}' declares {attr}={entry.metadata[attr]!r} at "
                    f"registration but {getattr(obj, '__name__', obj)}.{attr} is "
                    f"{getattr(obj, attr, '<missing>')!r}"
                )

    def _bind(self, entry: Entry[T], obj: Any) -> None:
        self._check(entry, obj)
        bind_name(obj, entry.name)
        entry._obj = obj

    # -- built-ins, read statically, imported lazily ------------------------------------------

    def _scan(self) -> None:
        """Record the built-ins declared in the package's modules, importing none of them."""
        if self._scanned:
            return
        self._scanned = True
        from ._scan import scan_package

        package = sys.modules[self.builtins]  # type: ignore[index]
        declarations, dynamic = scan_package(self.builtins, list(package.__path__),
                                             self.decorators)
        for d in declarations:
            entry: Entry[T] = Entry(d.name, aliases=d.aliases, origin=BUILTIN,
                                    metadata=d.metadata, target=d.target,
                                    deprecated_aliases=d.deprecated_aliases, loader=self._load)
            for key in (d.name, *d.aliases, *d.deprecated_aliases):
                existing = self._owner(key)
                if existing is not None:
                    if existing.target == d.target:  # already imported and registered
                        break
                    raise self._duplicate(key, existing)
            else:
                self._insert(entry)
        self.dynamic_modules = dynamic
        for module in dynamic:  # decorators with computed arguments: import to learn them
            importlib.import_module(module)

    def _load(self, entry: Entry[T]) -> None:
        """Import a lazy built-in's module; its decorator binds the object to the entry."""
        module, _, qualname = (entry.target or "").partition(":")
        importlib.import_module(module)
        if not entry.loaded:
            raise TypeError(
                f"built-in {self.kind} '{entry.name}': importing {module} did not register "
                f"{qualname} under '{entry.name}' (is its decorator the one declared?)"
            )

    # -- lookup -------------------------------------------------------------------------------

    def entry(self, name: str) -> Entry[T]:
        self._discover()
        if name in self._deprecated:
            new = self._deprecated[name]
            warnings.warn(f"{self.kind} name '{name}' is deprecated; use '{new}'",
                          DeprecationWarning, stacklevel=3)
            return self._entries[new]
        key = self._aliases.get(name, name)
        if key in self._entries:
            return self._entries[key]
        raise UnknownNameError(self._unknown_message(name))

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries or name in self._aliases or name in self._deprecated

    def __iter__(self) -> Iterator[Entry[T]]:
        self._discover()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self) -> list[str]:
        return [e.name for e in self]

    def filter(self, *patterns: str) -> list[Entry[T]]:
        """Entries whose name or an alias matches any fnmatch pattern (all if none given)."""
        if not patterns:
            return list(self)
        return [e for e in self
                if any(fnmatch.fnmatchcase(key, p) for p in patterns
                       for key in (e.name, *e.aliases))]

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    def _unknown_message(self, name: str) -> str:
        known = sorted([*self._entries, *self._aliases, *self._deprecated])
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
        hint = ""
        if close:
            suggestion = self._deprecated.get(close[0], close[0])
            hint = f"; did you mean '{suggestion}'?"
        for failure in self.failures:
            if failure.name == name:  # installed, but its plugin could not be registered
                return f"{self.kind} '{name}' is unavailable: {failure}"
        return (
            f"unknown {self.kind} '{name}'{hint} "
            f"(available: {', '.join(sorted(self._entries)) or 'none'})"
        )

    # -- plugins ------------------------------------------------------------------------------

    def _discover(self) -> None:
        """Record the built-ins (statically) and register every entry point, once."""
        self._scan()
        if self._discovered:
            return
        self._discovered = True
        for ep in md.entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            version = ep.dist.version if ep.dist is not None else ""
            origin = f"{dist} {version}".strip()
            try:
                obj = ep.load()
                existing = self._owner(ep.name)
                if existing is not None and not (existing.loaded and existing.obj is obj):
                    raise self._duplicate(ep.name, existing)
                self.add(ep.name, obj, origin=origin)
            except BaseException as exc:  # a broken plugin must never break the built-ins,
                if isinstance(exc, KeyboardInterrupt):  # not even by sys.exit() on import
                    raise
                failure = PluginFailure(ep.name, origin, f"{type(exc).__name__}: {exc}")
                self.failures.append(failure)
                warnings.warn(str(failure), RuntimeWarning, stacklevel=2)

    def refresh(self) -> None:
        """Forget plugins and discover again (after installing or removing a package)."""
        self._entries = {k: e for k, e in self._entries.items() if e.builtin}
        self._aliases = {a: k for a, k in self._aliases.items() if k in self._entries}
        self._deprecated = {a: k for a, k in self._deprecated.items() if k in self._entries}
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
