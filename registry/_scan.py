"""Static discovery of a package's built-ins: read the decorator calls, import nothing.

A built-in module registers with ``@register_operator("name", aliases=..., description=...,
<declared properties>)``. This module finds those calls with ``ast`` so that a registry can
list every built-in (name, aliases, description, declared properties) without importing the
module, and import it only when ``get()`` asks for the object.
"""

from __future__ import annotations

import ast
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Declaration:
    """One ``@register_...("name", ...)`` call found in a module's source."""

    name: str
    target: str  # "package.module:QualName"
    aliases: tuple[str, ...] = ()
    deprecated_aliases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


class NotStatic(Exception):
    """A decorator call whose arguments are not literals: the module must be imported."""


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_decorator_name(node.value)}.{node.attr}"
    return ""


def _declarations(tree: ast.Module, module: str, decorators: tuple[str, ...]) -> list[Declaration]:
    found: list[Declaration] = []
    for node in tree.body:  # top-level classes and functions only
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            if not (isinstance(deco, ast.Call) and _decorator_name(deco.func) in decorators):
                continue
            try:
                args = [ast.literal_eval(a) for a in deco.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in deco.keywords}
            except (ValueError, TypeError, SyntaxError) as exc:
                raise NotStatic(f"{module}:{node.name}: {exc}") from None
            if len(args) != 1 or None in kwargs or not isinstance(args[0], str):
                raise NotStatic(f"{module}:{node.name}: expected one literal name")
            found.append(Declaration(
                name=args[0],
                target=f"{module}:{node.name}",
                aliases=tuple(kwargs.pop("aliases", ())),
                deprecated_aliases=tuple(kwargs.pop("deprecated_aliases", ())),
                metadata=kwargs,
            ))
    return found


def scan_package(package: str, path: list[str], decorators: tuple[str, ...]
                 ) -> tuple[list[Declaration], list[str]]:
    """(declarations found statically, modules that must be imported to know theirs).

    Every non-private module of the package is read; none is imported.
    """
    declarations: list[Declaration] = []
    dynamic: list[str] = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = f"{package}.{info.name}"
        source_file = Path(info.module_finder.path) / (  # type: ignore[union-attr]
            f"{info.name}/__init__.py" if info.ispkg else f"{info.name}.py")
        try:
            tree = ast.parse(source_file.read_text(encoding="utf-8"), str(source_file))
            declarations += _declarations(tree, module, decorators)
        except (OSError, SyntaxError, NotStatic):
            dynamic.append(module)
    return declarations, dynamic
