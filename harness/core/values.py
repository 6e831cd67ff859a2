"""Values typed as text, on the command line or in a sweep file."""

from __future__ import annotations

import json
from typing import Any


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, anything else stays a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def nested(dotted: str, value: Any) -> dict[str, Any]:
    """'optim.lr', 0.001 -> {'optim': {'lr': 0.001}}: a dotted key as a config override."""
    out: dict[str, Any] = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out
