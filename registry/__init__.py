"""A generic registry: decorator registration, aliases, entry-point plugins, "did you mean".

Used three times, for operators, routers and tasks. The registry below is a toy one, so that
this example runs as a doctest (tests/test_doctests.py); ``OPERATORS`` is made the same way::

    OPERATORS = Registry("operator", group="chiaroscuro.operators", validate=validate_operator,
                         builtins="operators", decorators=("register_operator",),
                         declared=("supports_causal", "supports_query_subset", "leaky"),
                         roles=OPERATOR_ROLES)

>>> widgets = Registry("widget", group="chiaroscuro.doc_widgets", declared=("fast",),
...                    roles={"reference": "what the others are compared with"})
>>> @widgets.register("dct", aliases=("spectral",), deprecated_aliases=("dct-mix",),
...                   description="mixes in the DCT domain")
... class DCTMixer:
...     fast = True
...     roles = ("reference",)
>>> widgets.get("spectral") is DCTMixer
True
>>> DCTMixer.registry_name  # the decorator's name, bound by the decorator (see register)
'dct'
>>> widgets.entry("dct").prop("fast"), widgets.entry("dct").roles
(True, frozenset({'reference'}))
>>> widgets.has_role("dct-mix", "reference"), widgets.has_role("not-there", "reference")
(True, False)
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
>>> widgets.register("Bad Name")(type("W", (), {}))
Traceback (most recent call last):
    ...
registry.errors.InvalidNameError: widget name 'Bad Name' from this project is refused: ...

One place for each fact: the decorator names a class (name, aliases, a one-line description);
the class declares everything else in its own body, as a plugin's class does: its properties
as class attributes (the registry's ``declared``: ``supports_causal = True``), its ``roles``
(a tuple of the registry's role names: ``("attention",)``; read with ``entry.roles`` or
``has_role``) and its options (a nested pydantic ``Options`` model, ``registry/options.py``;
listed with ``entry.options``, validated with ``check_options``).

Built-ins are lazy. A registry made with ``builtins="operators"`` reads the source of every
module of that package (``registry/_scan.py``: the decorator calls, whose arguments must be
literals, and the decorated classes' attributes, following their bases through the project's
modules) and records ``"operators.dct:DCTMixer"`` with the name, aliases, description,
properties, roles and options, importing nothing. ``get()`` imports the module; its decorator
then binds the class to the entry, after validation, including a check that what the scan read
equals the imported class's attributes. Adding a built-in is still one file with one decorator:
nothing lists the files. A module whose decorator arguments are not literals is imported when
the registry is first used.

Third-party packages register through entry points in their own pyproject::

    [project.entry-points."chiaroscuro.operators"]
    my_mixer = "my_pkg.mixers:MyMixer"

An entry point ``name = module:Class`` is the same as decorating ``Class`` with
``@REGISTRY.register("name")``. Entry points are loaded lazily, the first time a registry is
asked for a name or a listing (never at import). A plugin that fails to import, names a
missing object, has a name that is not a plain name (``check_name``) or does not satisfy the
contract is reported once (name, distribution, error) and skipped: it never breaks the
built-ins.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import importlib
import importlib.metadata as md
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._scan import OptionSpec
from .errors import (
    ChiaroscuroError,
    ConfigError,
    DataError,
    DuplicateNameError,
    InvalidNameError,
    UnknownNameError,
    did_you_mean,
    unknown_options_message,
)
from .slow import say_if_slow

__all__ = [
    "Registry",
    "Entry",
    "OptionSpec",
    "PluginFailure",
    "ChiaroscuroError",
    "ConfigError",
    "DataError",
    "DuplicateNameError",
    "InvalidNameError",
    "UnknownNameError",
    "check_name",
    "is_plain_name",
    "did_you_mean",
    "unknown_options_message",
]

T = TypeVar("T")

BUILTIN = "built-in"

_UNLOADED: Any = object()

# A registered name becomes a path (run folders), a flag value and a markdown cell: lowercase
# letters, digits and . _ + - only, starting with a letter or digit, and never "..".
_NAME = re.compile(r"[a-z0-9][a-z0-9._+-]*")
NAME_RULE = ("lowercase letters, digits and . _ + - (starting with a letter or digit, "
             "no '..')")


def is_plain_name(name: Any) -> bool:
    """[a-z0-9][a-z0-9._+-]* without '..': no '/', whitespace, markdown or HTML."""
    return isinstance(name, str) and bool(_NAME.fullmatch(name)) and ".." not in name


def check_name(kind: str, name: Any, origin: str = BUILTIN) -> None:
    """Refuse a name that is not plain (``is_plain_name``) with one line naming it (escaped)
    and where it comes from."""
    if is_plain_name(name):
        return
    source = "this project" if origin == BUILTIN else origin
    raise InvalidNameError(f"{kind} name {ascii(name)} from {source} is refused: names are "
                           f"{NAME_RULE}; rename it")


class Entry(Generic[T]):
    """One registered object and what is known about it.

    A lazy built-in entry knows its ``target`` ("package.module:QualName"), its metadata (the
    description and what its class declares, read from the source) and its options; ``obj``
    imports the module the first time it is read.
    """

    __slots__ = ("name", "aliases", "deprecated_aliases", "origin", "metadata", "target",
                 "_obj", "_loader", "_options")

    def __init__(self, name: str, obj: Any = _UNLOADED, *, aliases: tuple[str, ...] = (),
                 origin: str = BUILTIN, metadata: dict[str, Any] | None = None,
                 target: str | None = None, deprecated_aliases: tuple[str, ...] = (),
                 loader: Callable[[Entry[T]], T] | None = None,
                 options: tuple[OptionSpec, ...] | None = None):
        self.name = name
        self.aliases = tuple(aliases)
        self.deprecated_aliases = tuple(deprecated_aliases)
        self.origin = origin
        self.metadata = dict(metadata or {})
        self.target = target if target is not None or obj is _UNLOADED else _target_of(obj)
        self._obj = obj
        self._loader = loader
        self._options = options

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
        """A declared class attribute: as read from the source, else from the object
        (importing it)."""
        if attr in self.metadata:
            return self.metadata[attr]
        return getattr(self.obj, attr, default)

    @property
    def roles(self) -> frozenset[str]:
        """The roles the class declares (``roles = ("attention",)``), e.g. {"attention"}."""
        return frozenset(self.prop("roles", ()) or ())

    @property
    def options(self) -> tuple[OptionSpec, ...]:
        """The fields of the class's ``Options`` model: read from the source for built-ins,
        from the imported class otherwise."""
        if self._options is None:
            from .options import specs_of

            self._options = specs_of(getattr(self.obj, "Options", None))
        return self._options

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
        return f"plugin {_shown(self.name)} from {self.distribution} skipped: {self.error}"


def _shown(name: str) -> str:
    """A name for a message: quoted as is when plain, else escaped (a name with a newline or
    markup never reaches a terminal or a page raw)."""
    return f"'{name}'" if is_plain_name(name) else ascii(name)


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
    registered under (else TypeError). One that does not (the built-ins, named by their
    decorator, and plugins, named by their entry point) is given it here, once it has passed
    the registry's checks: this is the only place a name is written onto a class, and it never
    overwrites a declared one nor reuses an inherited one.
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

    kind:        what the entries are, used in messages ("operator").
    group:       the entry-point group scanned for plugins ("chiaroscuro.operators").
    validate:    called on every object when it is bound (built-ins on first ``get``, plugins
                 when discovered); raises (TypeError/ValueError) if it does not satisfy the
                 contract.
    builtins:    a package whose modules declare the built-ins (read statically, imported
                 lazily); None for none.
    decorators:  the decorator spellings to look for in those modules ("register_operator").
    declared:    the class attributes every entry declares (listed without importing the
                 built-ins; checked against the class when it is imported).
    roles:       the role names a class may list in its ``roles`` attribute, with what each
                 means.
    """

    def __init__(self, kind: str, group: str, validate: Callable[[Any], None] | None = None,
                 *, builtins: str | None = None, decorators: tuple[str, ...] = (),
                 declared: tuple[str, ...] = (), roles: Mapping[str, str] | None = None):
        self.kind = kind
        self.group = group
        self._validate = validate
        self.builtins = builtins
        self.decorators = tuple(decorators)
        self.declared = tuple(declared)
        self.role_names: dict[str, str] = dict(roles or {})
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
        deprecated_aliases: tuple[str, ...] | list[str] = (), description: str | None = None,
        **declarations: Any,
    ) -> Callable[[T], T]:
        """Class/function decorator: register the object under ``name`` (and ``aliases``).

        ``deprecated_aliases`` are old names: ``get(old)`` still works and warns
        (DeprecationWarning) with the new name. ``description`` is the one line ``list``
        shows. Properties, roles and options are declared in the class body, not here (a
        keyword such as ``supports_causal=True`` is refused: one place for each fact). The
        decorator sets ``registry_name`` on a class that does not declare it (see
        ``bind_name``).
        """
        if declarations:
            raise self._declared_in_decorator(name, declarations)
        metadata = {} if description is None else {"description": description}

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

    def _declared_in_decorator(self, name: str, keywords: Any) -> TypeError:
        return TypeError(
            f"{self.kind} '{name}': declare {', '.join(sorted(keywords))} in the class body "
            f"(class attributes, roles, a nested Options model), not in the decorator, which "
            f"takes only the name, aliases and description")

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
        """Register an object. A class is named by it (``bind_name``), after the name, duplicate
        and validation checks have passed: a refused object is left untouched. ``metadata``:
        the description."""
        for key in (name, *aliases, *deprecated_aliases):
            check_name(self.kind, key, origin)
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
        """Validate the object; check that what the source scan read equals the class's
        attributes, and record the ones it could not read; check the roles."""
        if self._validate is not None:
            self._validate(obj)
        for attr in (*self.declared, "roles"):
            actual = getattr(obj, attr, _UNLOADED)
            if attr not in entry.metadata:
                if actual is not _UNLOADED:
                    entry.metadata[attr] = actual
            elif actual != entry.metadata[attr]:
                raise TypeError(
                    f"{self.kind} '{entry.name}': the source declares {attr}="
                    f"{entry.metadata[attr]!r} but {getattr(obj, '__name__', obj)}.{attr} is "
                    f"{'<missing>' if actual is _UNLOADED else repr(actual)} once imported "
                    f"(assign it a literal in the class body)"
                )
        roles = entry.metadata.get("roles", ())
        if isinstance(roles, str) or not all(isinstance(r, str) for r in roles):
            raise TypeError(f"{self.kind} '{entry.name}' declares roles = {roles!r}; use a "
                            f"tuple of role names")
        unknown = sorted(set(roles) - set(self.role_names))
        if unknown:
            raise TypeError(f"{self.kind} '{entry.name}' declares unknown role "
                            f"{', '.join(map(repr, unknown))} (roles: "
                            f"{', '.join(sorted(self.role_names)) or 'none'})")

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
                                             self.decorators, (*self.declared, "roles"))
        for d in declarations:
            if d.keywords:
                raise self._declared_in_decorator(d.name, d.keywords)
            for key in (d.name, *d.aliases, *d.deprecated_aliases):
                check_name(self.kind, key)
            entry: Entry[T] = Entry(d.name, aliases=d.aliases, origin=BUILTIN,
                                    metadata=d.metadata, target=d.target,
                                    deprecated_aliases=d.deprecated_aliases, loader=self._load,
                                    options=d.options)
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

    def has_role(self, name: str, role: str) -> bool:
        """Whether the entry called `name` (or an alias, deprecated or not: no warning)
        declares `role`; False for a name nobody registers (a record of an uninstalled plugin).
        Built-ins answer from their source, without importing."""
        if role not in self.role_names:
            raise ValueError(f"unknown {self.kind} role {role!r} (roles: "
                             f"{', '.join(sorted(self.role_names)) or 'none'})")
        self._discover()
        entry = self._owner(name)
        return entry is not None and role in entry.roles

    def with_role(self, role: str) -> list[str]:
        """The names of the entries that declare `role`, sorted."""
        return [e.name for e in self if self.has_role(e.name, role)]

    def check_options(self, name: str, options: Mapping[str, Any]) -> Any:
        """The validated ``Options`` of entry `name` (importing it), or one ConfigError line
        naming the option and the flag that sets it: what the component's constructor does
        with the same values (its class's ``parse_options``), without building it. A class
        without ``parse_options`` (a task, or a plugin on no base class) is checked when it is
        built."""
        obj = self.entry(name).obj
        parse = getattr(obj, "parse_options", None)
        return parse(dict(options)) if parse is not None else None

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
                return f"{self.kind} {_shown(name)} is unavailable: {failure}"
        return (
            f"unknown {self.kind} {_shown(name)}{hint} "
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
                check_name(self.kind, ep.name, origin)  # before importing anything of it
                with say_if_slow(f"{self.kind} plugin '{ep.name}' from {origin} ({ep.value})"):
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
