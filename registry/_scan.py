"""Static discovery of a package's built-ins: read the source, import nothing.

A built-in module registers a class with ``@register_operator("name", aliases=...,
description=...)``, and the class declares everything else in its own body, as a plugin's class
does: its properties as class attributes (``supports_causal = True``), its roles
(``roles = ("attention",)``) and its options (a nested ``class Options``, a pydantic model). This
module finds the decorator calls with ``ast`` and reads those class attributes, following the
class's bases the way Python would (C3 order) through the package's own modules, so that a
registry can list every built-in, with its properties, roles and options, without importing
torch; a module is imported only when ``get()`` asks for one of its objects. What cannot be
read this way (a computed value, a base class from another library that declares something) is
left out, and read from the imported class instead.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Packages whose sources the scan may read to follow a base class. Anything else (torch.nn,
# pydantic) is outside: it is assumed to declare none of the registry's properties.
OWN_PACKAGES = ("registry", "operators", "routers", "tasks", "harness")

# Keywords of pydantic's Field() that bound a value: listed as constraints of an option.
CONSTRAINTS = ("gt", "ge", "lt", "le", "min_length", "max_length")


class Required:
    """The default of an option that has none (it must be given)."""

    def __repr__(self) -> str:
        return "required"


REQUIRED = Required()


@dataclass(frozen=True)
class OptionSpec:
    """One option of a component, as ``list`` shows it: read statically from the source of
    its ``Options`` model, or from the imported model (``registry.options.specs_of``)."""

    name: str
    type: str  # the annotation as written: "float", "int | None", "Literal['a', 'b']"
    default: Any = REQUIRED
    description: str = ""
    constraints: tuple[tuple[str, Any], ...] = ()  # (("ge", 0),): pydantic Field bounds

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for ``list --json``."""
        return {"name": self.name, "type": self.type,
                "default": "<required>" if self.default is REQUIRED else self.default,
                "constraints": dict(self.constraints), "description": self.description,
                "summary": self.summary()}

    def summary(self) -> str:
        """'decay: float, >= 0, default 3.0: the causal kernel's ...'"""
        bounds = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=",
                  "min_length": "length >=", "max_length": "length <="}
        parts = [self.type, *(f"{bounds.get(k, k)} {v!r}" for k, v in self.constraints)]
        default = "required" if self.default is REQUIRED else f"default {self.default!r}"
        text = f"{self.name}: {', '.join(parts)}, {default}"
        return f"{text}: {self.description}" if self.description else text


@dataclass
class Declaration:
    """One ``@register_...("name", ...)`` call found in a module's source, with what the
    decorated class declares (the attributes asked for, its options) where it reads
    statically."""

    name: str
    target: str  # "package.module:QualName"
    aliases: tuple[str, ...] = ()
    deprecated_aliases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)  # description, declared attributes
    options: tuple[OptionSpec, ...] | None = None  # None: not readable statically
    keywords: tuple[str, ...] = ()  # other decorator keywords (refused at registration)


class NotStatic(Exception):
    """Something that cannot be read without importing: the registry imports the module."""


class _Unknown:
    """An attribute assigned something other than a literal (or defined by a function)."""


UNKNOWN = _Unknown()
EXTERNAL = object()  # a base class outside the project's packages


@dataclass(eq=False)
class _Class:
    module: _Module
    node: ast.ClassDef
    attrs: dict[str, Any]  # literal values, UNKNOWN, or nested _Class
    _mro: list[_Class] | None = None

    @property
    def qualname(self) -> str:
        return f"{self.module.name}:{self.node.name}"


@dataclass(eq=False)
class _Module:
    name: str
    package: str  # what relative imports are relative to
    tree: ast.Module
    classes: dict[str, _Class] = field(default_factory=dict)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # name: (module,
    # attribute or None for a module)


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_decorator_name(node.value)}.{node.attr}"
    return ""


def _literal(node: ast.expr | None) -> Any:
    if node is None:
        return UNKNOWN
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return UNKNOWN


class Scanner:
    """Parses modules on demand (once each) and answers attribute questions about classes."""

    def __init__(self, own: tuple[str, ...] = OWN_PACKAGES) -> None:
        self.own = own  # top-level packages whose sources may be read
        self._modules: dict[str, _Module | None] = {}

    # -- modules ------------------------------------------------------------------------------

    def module(self, name: str, source_file: Path | None = None) -> _Module | None:
        if name in self._modules:
            return self._modules[name]
        self._modules[name] = None  # a cycle of imports reads as "not found"
        if source_file is None:
            source_file = _source_of(name)
        if source_file is None:
            return None
        try:
            tree = ast.parse(source_file.read_text(encoding="utf-8"), str(source_file))
        except (OSError, SyntaxError, ValueError):
            return None
        is_package = source_file.name == "__init__.py"
        module = _Module(name, name if is_package else name.rpartition(".")[0], tree)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                module.classes[node.name] = self._class(module, node)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(node.module, node.level, module.package)
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        module.imports[alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.partition(".")[0]
                        module.imports[top] = (top, None)
        self._modules[name] = module
        return module

    def _class(self, module: _Module, node: ast.ClassDef) -> _Class:
        attrs: dict[str, Any] = {}
        for item in node.body:
            if isinstance(item, ast.Assign):
                value = _literal(item.value)
                for target in item.targets:
                    if isinstance(target, ast.Name):
                        attrs[target.id] = value
                    else:  # a, b = ...: names that cannot be read one by one
                        for name in ast.walk(target):
                            if isinstance(name, ast.Name):
                                attrs[name.id] = UNKNOWN
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                if item.value is not None:
                    attrs[item.target.id] = _literal(item.value)
            elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                attrs[item.name] = UNKNOWN
            elif isinstance(item, ast.ClassDef):
                attrs[item.name] = self._class(module, item)
        return _Class(module, node, attrs)

    # -- names and bases ----------------------------------------------------------------------

    def resolve(self, module: _Module, node: ast.expr) -> Any:
        """The _Class an expression in `module` names, EXTERNAL, or NotStatic."""
        if isinstance(node, ast.Subscript):  # Generic[T], Sequence[...]
            return self.resolve(module, node.value)
        if isinstance(node, ast.Name):
            if node.id in module.classes:
                return module.classes[node.id]
            if node.id in module.imports:
                return self._imported(*module.imports[node.id])
            if node.id == "object":
                return EXTERNAL
            raise NotStatic(f"{module.name}: cannot tell what {node.id!r} is")
        if isinstance(node, ast.Attribute):
            owner = self.resolve(module, node.value)
            if owner is EXTERNAL:
                return EXTERNAL
            if isinstance(owner, _Module):
                return self._member(owner, node.attr)
            value = self.lookup(owner, node.attr)
            if isinstance(value, _Class):
                return value
            raise NotStatic(f"{module.name}: {ast.unparse(node)} is not a class")
        raise NotStatic(f"{module.name}: cannot read {ast.unparse(node)}")

    def _imported(self, source: str, attribute: str | None) -> Any:
        if source.partition(".")[0] not in self.own:
            return EXTERNAL
        if attribute is None:
            module = self.module(source)
            if module is None:
                raise NotStatic(f"cannot read module {source}")
            return module
        module = self.module(source)
        if module is None:
            raise NotStatic(f"cannot read module {source}")
        return self._member(module, attribute)

    def _member(self, module: _Module, attribute: str) -> Any:
        if attribute in module.classes:
            return module.classes[attribute]
        if attribute in module.imports:  # re-exported
            return self._imported(*module.imports[attribute])
        submodule = self.module(f"{module.name}.{attribute}")
        if submodule is not None:
            return submodule
        raise NotStatic(f"{module.name} has no class {attribute!r} readable statically")

    def mro(self, cls: _Class) -> list[_Class]:
        """C3 linearisation over the bases in the project's packages (others are skipped)."""
        if cls._mro is None:
            bases = [b for b in (self.resolve(cls.module, e) for e in cls.node.bases)
                     if b is not EXTERNAL]
            if any(not isinstance(b, _Class) for b in bases):
                raise NotStatic(f"{cls.qualname}: a base is not a class")
            cls._mro = [cls, *_merge([self.mro(b) for b in bases] + [list(bases)], cls)]
        return cls._mro

    def lookup(self, cls: _Class, attr: str) -> Any:
        """The class attribute as Python would find it: a literal, a nested _Class, UNKNOWN
        (computed), or KeyError when no class of the project declares it."""
        for c in self.mro(cls):
            if attr in c.attrs:
                return c.attrs[attr]
        raise KeyError(attr)

    # -- options ------------------------------------------------------------------------------

    def options(self, cls: _Class) -> tuple[OptionSpec, ...]:
        """The fields of the class's ``Options`` model, base fields first (pydantic's order)."""
        try:
            model = self.lookup(cls, "Options")
        except KeyError:
            return ()
        if not isinstance(model, _Class):
            raise NotStatic(f"{cls.qualname}.Options is not a class in the source")
        fields: dict[str, OptionSpec] = {}
        for c in reversed(self.mro(model)):
            for item in c.node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    if "ClassVar" in ast.unparse(item.annotation):
                        continue
                    fields[item.target.id] = _option(item)
        return tuple(fields.values())


def _option(item: ast.AnnAssign) -> OptionSpec:
    assert isinstance(item.target, ast.Name)
    name, kind = item.target.id, ast.unparse(item.annotation)
    value = item.value
    if value is None:
        return OptionSpec(name, kind)
    if isinstance(value, ast.Call) and _decorator_name(value.func).rpartition(".")[2] == "Field":
        keywords = {k.arg: k.value for k in value.keywords if k.arg}
        default_node = value.args[0] if value.args else keywords.get("default")
        default = REQUIRED if default_node is None else _static(default_node, name)
        if isinstance(default_node, ast.Constant) and default_node.value is Ellipsis:
            default = REQUIRED
        description = _static(keywords["description"], name) if "description" in keywords else ""
        constraints = tuple((k, _static(keywords[k], name)) for k in CONSTRAINTS if k in keywords)
        return OptionSpec(name, kind, default, description, constraints)
    return OptionSpec(name, kind, _static(value, name))


def _static(node: ast.expr, what: str) -> Any:
    value = _literal(node)
    if value is UNKNOWN:
        raise NotStatic(f"option {what}: {ast.unparse(node)} is not a literal")
    return value


def _merge(sequences: list[list[_Class]], cls: _Class) -> list[_Class]:
    out: list[_Class] = []
    sequences = [list(s) for s in sequences if s]
    while sequences:
        for seq in sequences:
            head = seq[0]
            if not any(head in s[1:] for s in sequences):
                break
        else:
            raise NotStatic(f"{cls.qualname}: no consistent method resolution order")
        out.append(head)
        sequences = [[c for c in s if c is not head] for s in sequences]
        sequences = [s for s in sequences if s]
    return out


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - level + 1])
    return f"{base}.{module}" if module else base


def _source_of(module: str) -> Path | None:
    """The source file of a module of the project, found without importing it (its parent
    packages are imported: the registry packages import nothing heavy)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    return Path(origin) if origin and origin.endswith(".py") else None


def _declarations(scanner: Scanner, module: _Module, decorators: tuple[str, ...],
                  attributes: tuple[str, ...]) -> list[Declaration]:
    found: list[Declaration] = []
    for node in module.tree.body:  # top-level classes and functions only
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and _decorator_name(deco.func) in decorators):
                continue
            args = [_literal(a) for a in deco.args]
            kwargs = {k.arg: _literal(k.value) for k in deco.keywords}
            if (len(args) != 1 or not isinstance(args[0], str) or None in kwargs
                    or any(v is UNKNOWN for v in kwargs.values())):
                raise NotStatic(f"{module.name}:{node.name}: expected one literal name and "
                                f"literal keywords")
            declaration = Declaration(
                name=args[0],
                target=f"{module.name}:{node.name}",
                aliases=tuple(kwargs.pop("aliases", ())),
                deprecated_aliases=tuple(kwargs.pop("deprecated_aliases", ())),
            )
            if "description" in kwargs:
                declaration.metadata["description"] = kwargs.pop("description")
            declaration.keywords = tuple(kwargs)
            if isinstance(node, ast.ClassDef):
                _read_class(scanner, module.classes[node.name], attributes, declaration)
            found.append(declaration)
    return found


def _read_class(scanner: Scanner, cls: _Class, attributes: tuple[str, ...],
                declaration: Declaration) -> None:
    """Fill the declaration with what the class declares, where that reads statically."""
    for attr in attributes:
        try:
            value = scanner.lookup(cls, attr)
        except (KeyError, NotStatic):
            continue
        if value is not UNKNOWN and not isinstance(value, _Class):
            declaration.metadata[attr] = value
    try:
        declaration.options = scanner.options(cls)
    except NotStatic:
        declaration.options = None


def scan_package(package: str, path: list[str], decorators: tuple[str, ...],
                 attributes: tuple[str, ...] = ()) -> tuple[list[Declaration], list[str]]:
    """(declarations found statically, modules that must be imported to know theirs).

    Every non-private module of the package is read; none is imported. ``attributes`` are the
    class attributes to read for each declaration (the registry's declared properties and
    ``roles``).
    """
    scanner = Scanner((*OWN_PACKAGES, package.partition(".")[0]))
    declarations: list[Declaration] = []
    dynamic: list[str] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        source_file = Path(info.module_finder.path) / (  # type: ignore[union-attr]
            f"{info.name}/__init__.py" if info.ispkg else f"{info.name}.py")
        module = scanner.module(name, source_file)
        if module is None:
            dynamic.append(name)
            continue
        try:
            declarations += _declarations(scanner, module, decorators, attributes)
        except NotStatic:
            dynamic.append(name)
    return declarations, dynamic
