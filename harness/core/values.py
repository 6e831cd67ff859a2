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
