"""The arguments of ``python -m harness analyze`` (light: no torch at --help time)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RECORD_OR_CHECKPOINT",
                        help="a run record (.json; its checkpoint is found from its config) or "
                             "a checkpoint.pt of a `--router single --ops attn` run")
    parser.add_argument("--max-batches", type=int, default=16,
                        help="test batches to analyse (default 16)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--out", default=None,
                        help="folder for the summary JSON and hexbin PNG (default: analysis/ "
                             "next to the record)")
