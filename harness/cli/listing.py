"""What the registries hold, for `python -m harness list`."""

from __future__ import annotations

from typing import Any


def _describe(entry, fields: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": entry.name, "origin": entry.origin}
    if entry.aliases:
        row["aliases"] = ",".join(entry.aliases)
    for label, attr in fields.items():
        row[label] = getattr(entry.obj, attr, None)
    doc = entry.metadata.get("description") or (entry.obj.__doc__ or "").strip().split("\n")[0]
    row["description"] = doc
    return row


def describe_registries() -> dict[str, list[Any]]:
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    out = {
        "operators": [
            _describe(e, {"causal": "supports_causal", "query_subset": "supports_query_subset",
                          "leaky": "leaky"})
            for e in OPERATORS
        ],
        "routers": [
            _describe(e, {"hard": "hard", "causal": "causal",
                          "batch_independent": "batch_independent", "leaky": "leaky",
                          "min_ops": "min_ops", "max_ops": "max_ops"})
            for e in ROUTERS
        ],
        "tasks": [_describe(e, {"causal": "causal", "metric": "metric"}) for e in TASKS],
    }
    out["plugin_failures"] = [
        str(f) for reg in (OPERATORS, ROUTERS, TASKS) for f in reg.failures
    ]
    return out
