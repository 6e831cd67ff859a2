"""What the registries hold, for `python -m harness list`.

Built-ins are described from what their decorators declare: listing them imports none of their
modules (nor torch). Plugins are loaded (and their failures reported) as before.
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
