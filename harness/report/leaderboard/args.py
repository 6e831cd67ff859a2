"""The arguments of ``python -m harness leaderboard`` and where it reads and writes: the only
definition. Imports nothing heavy (the board itself needs scipy and pydantic), so that
``--help`` answers at once; ``harness.report.leaderboard.board`` takes them from here.
"""

from __future__ import annotations

import argparse

from harness.core.paths import LOCAL_RUNS
from harness.report.claims.args import DEFAULT_REFERENCE

DEFAULT_RUNS = "results/runs"  # the committed records: the only input of the committed board
DEFAULT_OUT = "results/LEADERBOARD.md"
DEFAULT_PLOTS = "results/plots"
LOCAL_OUT = f"{LOCAL_RUNS}/LEADERBOARD.md"
LOCAL_PLOTS = f"{LOCAL_RUNS}/plots"

DESCRIPTION = f"""\
Generate the leaderboard (markdown and PNG plots) from run records: one section per task, one
row per configuration (router, operators, preset, config hash) over its seeds, ranked by the
task's test metric, leaky or flagged rows never above honest ones.

By default it reads only the committed records ({DEFAULT_RUNS}/) and writes {DEFAULT_OUT}.
Your own runs go to {LOCAL_RUNS}/ (git-ignored); to see them on a board, pass --include-local
or --runs DIR: the board then goes to {LOCAL_OUT}, never over the committed one."""

EPILOG = f"""\
examples:
  python -m harness leaderboard                    # the committed board, from {DEFAULT_RUNS}/
  python -m harness leaderboard --check            # CI: exit 1 if {DEFAULT_OUT} is stale
  python -m harness leaderboard --include-local    # committed + your runs -> {LOCAL_OUT}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("input")
    g.add_argument("--runs", action="append", default=None, metavar="DIR",
                   help=f"folder of run records; repeat to read several (default "
                        f"{DEFAULT_RUNS}, the committed records)")
    g.add_argument("--include-local", action="store_true",
                   help=f"also read your own runs in {LOCAL_RUNS}/ (same as --runs "
                        f"{DEFAULT_RUNS} --runs {LOCAL_RUNS})")
    g.add_argument("--reference", default=DEFAULT_REFERENCE, metavar="FILE",
                   help="JSON file of the paper's reported numbers: the reference rows and "
                        f"the claims the board shows (default {DEFAULT_REFERENCE})")
    g.add_argument("--strict", action="store_true",
                   help="exit 1 if any record was skipped as malformed")
    g = parser.add_argument_group("output")
    g.add_argument("--out", default=None, metavar="FILE",
                   help=f"markdown file to write (default {DEFAULT_OUT} from the committed "
                        f"records only, else {LOCAL_OUT})")
    g.add_argument("--plots", default=None, metavar="DIR",
                   help=f"folder for the PNG plots (default {DEFAULT_PLOTS} from the "
                        f"committed records only, else {LOCAL_PLOTS})")
    g.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the markdown differs from what the records "
                        "produce (CI runs this)")
    g.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")


def resolve_paths(args: argparse.Namespace) -> tuple[list[str], str, str]:
    """(record folders, markdown file, plots folder). Anything beyond the committed records
    writes to the local folder unless --out/--plots say otherwise."""
    runs = list(args.runs or [DEFAULT_RUNS])
    if args.include_local:
        runs = list(dict.fromkeys([*(args.runs or [DEFAULT_RUNS]), LOCAL_RUNS]))
    committed_only = runs == [DEFAULT_RUNS]
    out = args.out or (DEFAULT_OUT if committed_only else LOCAL_OUT)
    plots = args.plots or (DEFAULT_PLOTS if committed_only else LOCAL_PLOTS)
    return runs, out, plots
