"""What the registries hold, for `python -m harness list`.

Built-ins are described from what their source declares (the decorator's name and description,
the class's attributes, roles and ``Options``): listing them imports none of their modules (nor
torch, nor pydantic). Plugins are loaded (and their failures reported) as before.
"""

from __future__ import annotations

import fnmatch
from typing import Any

OPERATOR_FIELDS = {"causal": "supports_causal", "query_subset": "supports_query_subset",
                   "leaky": "leaky"}
ROUTER_FIELDS = {"hard": "hard", "causal": "causal", "batch_independent": "batch_independent",
                 "leaky": "leaky", "min_ops": "min_ops", "max_ops": "max_ops"}
TASK_FIELDS = {"causal": "causal", "metric": "metric"}


def _describe(entry, fields: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": entry.name, "origin": entry.origin}
    if entry.aliases:
        row["aliases"] = ",".join(entry.aliases)
    for label, attr in fields.items():
        row[label] = entry.prop(attr)
    row["roles"] = ",".join(sorted(entry.roles))
    row["options"] = [spec.as_dict() for spec in entry.options]
    doc = entry.metadata.get("description") or (entry.obj.__doc__ or "").strip().split("\n")[0]
    row["description"] = doc
    return row


def _matching(registry, patterns: list[str] | None):
    return registry.filter(*patterns) if patterns else list(registry)


def describe_registries(patterns: list[str] | None = None) -> dict[str, list[Any]]:
    """Every entry, or those whose name or an alias matches one of the fnmatch patterns."""
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    out = {
        "operators": [_describe(e, OPERATOR_FIELDS) for e in _matching(OPERATORS, patterns)],
        "routers": [_describe(e, ROUTER_FIELDS) for e in _matching(ROUTERS, patterns)],
        "tasks": [_describe(e, TASK_FIELDS) for e in _matching(TASKS, patterns)],
    }
    out["plugin_failures"] = [
        str(f) for reg in (OPERATORS, ROUTERS, TASKS) for f in reg.failures
        if not patterns or any(fnmatch.fnmatchcase(f.name, p) for p in patterns)
    ]
    return out


def table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one kind for the text table: options as 'name=default, ...'."""
    return [{**row, "options": ", ".join(f"{o['name']}={o['default']}" for o in row["options"])}
            for row in rows]


def option_lines(listing: dict[str, list[Any]]) -> list[str]:
    """One line per option of every listed entry ('operator dct: decay: float, >= 0, ...'),
    for a listing filtered by name."""
    return [f"{kind.removesuffix('s')} {row['name']}: {option['summary']}"
            for kind in ("operators", "routers", "tasks") for row in listing[kind]
            for option in row["options"]]
