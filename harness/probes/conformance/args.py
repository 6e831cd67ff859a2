"""The arguments of ``python -m harness conformance`` (and ``python -m harness.conformance``):
the only definition. Imports nothing heavy, so ``--help`` answers without torch."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run the conformance suite on registered operators and a router, built-in or plugin: shapes,
float32 and bf16, padding invariance, causality, batch independence, finite gradients,
query-subset consistency and FLOP declarations against torch's FLOP counter. One line per
component, check and mode; exit status 1 if any check fails."""

EPILOG = """\
examples:
  python -m harness conformance --ops dct,attn --router entropy
  python -m harness conformance --ops my_mixer --mode causal --op-option my_mixer.kernel_size=5
  python -m harness conformance --router my_router --n-ops 3 --json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to check")
    g.add_argument("--ops", default="", metavar="OP[,OP]", help="comma-separated operator names")
    g.add_argument("--router", default=None, help="router name")
    g.add_argument("--n-ops", type=int, default=None, metavar="K",
                   help="operators the router routes between (default: 2 if it accepts 2)")
    g.add_argument("--mode", choices=["both", "causal", "non-causal"], default="both",
                   help="causal form, non-causal form or both (default both)")
    g.add_argument("--op-option", action="append", metavar="OP.KEY=VALUE",
                   help="an operator option (value parsed as JSON); repeatable")
    g.add_argument("--router-option", action="append", metavar="KEY=VALUE",
                   help="a router option (value parsed as JSON); repeatable")
    g = p.add_argument_group("shape and device")
    g.add_argument("--d-model", type=int, default=32, metavar="D", help="(default 32)")
    g.add_argument("--heads", type=int, default=4, help="(default 4)")
    g.add_argument("--seq-len", type=int, default=24, metavar="N", help="(default 24)")
    g.add_argument("--batch-size", type=int, default=3, metavar="B", help="(default 3)")
    g.add_argument("--seed", type=int, default=0, help="(default 0)")
    g.add_argument("--device", default="cpu", help="(default cpu)")
    g = p.add_argument_group("output")
    g.add_argument("--no-flop-counter", action="store_true",
                   help="skip the comparison with torch.utils.flop_counter")
    g.add_argument("--json", action="store_true", help="machine-readable output")
