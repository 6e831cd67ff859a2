"""Markdown pieces every generated page shares (the board, the claims): table cells, tables,
p-values, mean ± std over seeds, links. Fixed formats only, so that pages are pure functions of
the records and ``--check`` can compare them byte for byte."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.core.metrics import fixed
from harness.core.stats import mean, sample_std


def cell(text: Any) -> str:
    """Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    from tabulate import tabulate

    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def mean_std(xs: list[float], digits: int) -> str:
    """Mean ± sample standard deviation over seeds; the mean alone for one seed."""
    if not xs:
        return "—"
    s = sample_std(xs)
    return fixed(mean(xs), digits) + ("" if s is None else f" ± {fixed(s, digits)}")


def rel_link(target: Path, out: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)).as_posix()
