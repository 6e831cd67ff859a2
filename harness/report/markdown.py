"""Markdown pieces every generated page shares (the board, the claims): escaping, table cells,
tables, p-values, mean ± std over seeds, links. Fixed formats only, so that pages are pure
functions of the records and ``--check`` can compare them byte for byte."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from harness.core.metrics import fixed
from harness.core.stats import mean, sample_std

# Characters that start markup in untrusted text: HTML (< > &), links and images ([ ]), code
# spans (`), the escape character itself. Line breaks and other control characters would end
# a table row or start a new block (a forged "# heading").
_MARKUP = {"\\": "\\\\", "&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]",
           "`": "\\`"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_AUTOLINK = re.compile(r"(?i)(://|\bwww\.)")  # GitHub links bare URLs: break the trigger


def escape(text: Any) -> str:
    """Text that did not come from this code (a record's field, a plugin's or a task's name, a
    file name) as inert markdown: it reads the same, and renders no HTML, link, image, code
    span or new line. The one place such text is escaped; every page writes names through it
    (a table cell then also goes through ``cell``)."""
    flat = _CONTROL.sub(" ", str(text))
    flat = "".join(_MARKUP.get(c, c) for c in flat)
    flat = _AUTOLINK.sub(lambda m: m.group(0).replace(":", "\\:").replace(".", "\\."), flat)
    return "\\" + flat if flat.startswith("#") else flat


def cell(text: Any) -> str:
    """Markdown table cell: pipes escaped, newlines flattened (a cell's structure; names in it
    are ``escape``d first)."""
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
