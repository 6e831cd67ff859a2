"""Formats only the board uses: signed differences, option lists, file-name slugs. (Cells,
tables, p-values and mean ± std are harness/report/markdown.py; a metric's label and digits are
its ``Metric``, harness/core/metrics.py.)"""

from __future__ import annotations

import json
from typing import Any

from harness.core.metrics import fixed


def fmt_signed(x: float, digits: int) -> str:
    s = fixed(x, digits)
    return s if s.startswith("-") or float(s) == 0.0 else "+" + s


def options_text(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
                    for k, v in sorted(options.items()))


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
