"""The arguments of ``python -m harness leaderboard``, without importing it (nor scipy).

A COPY of ``add_arguments`` in harness/results/leaderboard/__init__.py (whose import takes
~0.6 s: scipy, pydantic). tests/test_cli.py checks that the two build the same parser; change
both together.
"""

from __future__ import annotations

import argparse

# copied from harness/results/leaderboard/__init__.py
DEFAULT_RUNS = "results/runs"
DEFAULT_OUT = "results/LEADERBOARD.md"
DEFAULT_PLOTS = "results/plots"
DEFAULT_REFERENCE = "results/reference.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help=f"directory of run records (default {DEFAULT_RUNS})")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"markdown file to write (default {DEFAULT_OUT})")
    parser.add_argument("--plots", default=DEFAULT_PLOTS,
                        help=f"directory for PNG plots (default {DEFAULT_PLOTS})")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help="JSON file of the paper's reported numbers "
                             f"(default {DEFAULT_REFERENCE})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the markdown is stale with respect to the "
                             "records (CI)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any record was skipped as malformed")
