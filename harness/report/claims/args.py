"""The arguments of ``python -m harness reproduce``, without importing torch or scipy."""

from __future__ import annotations

import argparse

STUDIES = ("chiar-former",)
DEFAULT_PAGE = "results/CLAIMS.md"
DEFAULT_REFERENCE = "results/reference.json"  # the paper's reported numbers (claims/paper.py)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", choices=STUDIES, help="whose claims to test")
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"),
                        help="the scale: cpu (this machine; Shakespeare stands in for "
                             "WikiText-103) or paper (GPU, WikiText-103)")
    parser.add_argument("--seeds", default="0,1,2", help="seeds to run (default 0,1,2)")
    parser.add_argument("--data-dir", default=None,
                        help="paper only: a folder holding wikitext-103/ and wikitext-2/ (the "
                             "cpu setting names its data, ../shared/data/shakespeare and "
                             "../shared/data/wikitext-2, in each cell's configuration hash: run "
                             "from a checkout next to shared/)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="cells side by side on the CPU, one thread each (default 1)")
    parser.add_argument("--out", default="results/runs",
                        help="records: read, and written by the missing runs "
                             "(default results/runs)")
    parser.add_argument("--work-dir", default="runs",
                        help="checkpoints and metrics logs of the runs (default runs/)")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE, metavar="FILE",
                        help=f"JSON file of the paper's reported numbers, which the claims "
                             f"test (default {DEFAULT_REFERENCE})")
    parser.add_argument("--page", default=DEFAULT_PAGE,
                        help=f"the claims page to write (default {DEFAULT_PAGE})")
    parser.add_argument("--plots", default="results/plots",
                        help="folder for the routing-collapse plot and the claims' budget "
                             "curves, claims_<family>.png (default results/plots)")
    parser.add_argument("--check", action="store_true",
                        help="run nothing, write nothing; exit 1 if the page is stale with "
                             "respect to the records (CI)")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing: write the page and the plots from the records "
                             "there are")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs the claims need, done or missing, and exit")
