"""Warnings for users: ``warning: <message>`` on one line, as every command line of the harness
prints them, without Python's file, line number and source line of ours under it."""

from __future__ import annotations

import warnings


def _one_line(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


def one_line_warnings() -> None:
    """From now on, this process prints each warning on one line."""
    warnings.formatwarning = _one_line
