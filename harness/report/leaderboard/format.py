"""Formatting helpers for the leaderboard markdown: fixed float formats, cells, tables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from harness.report.leaderboard.stats import mean, sample_std

REPORTED = "reported, not reproduced"


def fmt(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s


def fmt_signed(x: float, digits: int) -> str:
    s = fmt(x, digits)
    return s if s.startswith("-") or float(s) == 0.0 else "+" + s


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metric_digits(metric: str) -> int:
    return 2 if "perplexity" in metric else 4


def metric_label(metric: str) -> str:
    return {"perplexity": "token PPL", "word_perplexity": "word PPL"}.get(metric, metric)


def mean_std(xs: list[float], digits: int) -> str:
    if not xs:
        return "—"
    s = sample_std(xs)
    return fmt(mean(xs), digits) + ("" if s is None else f" ± {fmt(s, digits)}")


def cell(text: Any) -> str:
    """Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_text(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
                    for k, v in sorted(options.items()))


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    from tabulate import tabulate

    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)



def rel_link(target: Path, out: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)).as_posix()
