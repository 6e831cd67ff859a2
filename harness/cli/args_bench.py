"""The arguments of ``python -m harness bench``, without importing the benchmark (or torch).

A COPY of ``add_arguments`` (and its helpers) in harness/measure/bench/__init__.py and of
``add_arguments`` in harness/measure/bench/end_to_end.py, so that
``python -m harness bench --help`` answers without importing torch. tests/test_cli.py checks
that the two build the same parser; change both together (or make the bench package's
``add_arguments`` import nothing heavy and point harness/cli/main.py at it).
"""

from __future__ import annotations

import argparse
from typing import Any

# copied from harness/measure/bench/settings.py
FULL = "attn"
DEFAULTS: dict[str, Any] = {"seq_lens": "256,1024,4096", "fractions": "1,0.5,0.25,0.125"}
# copied from harness/measure/bench/end_to_end.py
E2E_REFERENCE = "single:attn"
E2E_DEFAULTS: dict[str, Any] = {
    "seq_lens": "256,512,1024,2048,4096",
    "combos": "single:attn,single:dct,entropy:dct+attn,random:dct+attn",
}


def _what_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to time")
    g.add_argument("--seq-lens", default=None,
                   help=f"comma-separated sequence lengths (default {DEFAULTS['seq_lens']})")
    g.add_argument("--fractions", default=None,
                   help="shares of tokens routed to attention, comma-separated "
                        f"(default {DEFAULTS['fractions']})")
    g.add_argument("--ops", default=None,
                   help="operators to time (default attn,dct,rbf, plus xformers on CUDA); "
                        "full attention is always timed: it is the reference")
    g.add_argument("--routed-op", default=FULL,
                   help="operator timed under routed execution (default attn)")
    g.add_argument("--causal", action="store_true",
                   help="build the operators in their causal form (dct: the causal long "
                        "convolution; attention: causal masking)")
    g.add_argument("--targets", action="store_true",
                   help="also time the cases the performance targets are stated for: attn, "
                        "dct and routed attn at fraction 0.25 at N=2048; dct at N=1024 and "
                        "8192 (its scaling)")


def _shape_and_timing_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shape")
    g.add_argument("--d-model", type=int, default=None, help="default 256")
    g.add_argument("--heads", type=int, default=None, help="default 4")
    g.add_argument("--batch-size", type=int, default=None, help="default 1")
    g = p.add_argument_group("timing")
    g.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 7)")
    g.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="fp32, or bf16 autocast (default: bf16 on CUDA, fp32 on CPU)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice). On a CPU shared "
                        "with other busy processes, fewer threads than cores avoids stalls")
    g.add_argument("--seed", type=int, default=0)


def _train_and_output_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training step: harness vs bare reference")
    g.add_argument("--no-train-step", action="store_true",
                   help="skip the training-step comparison")
    g.add_argument("--train-layers", type=int, default=None, help="default 2")
    g.add_argument("--train-seq-len", type=int, default=None, help="default 256")
    g.add_argument("--train-batch-size", type=int, default=None, help="default 8")
    g.add_argument("--train-vocab", type=int, default=None, help="default 512")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="results/bench",
                   help="directory for the JSON and the PNG (default results/bench)")
    g.add_argument("--name", default=None,
                   help="file stem (default bench-<device type>[-quick])")
    g.add_argument("--quick", action="store_true", help="tiny sizes, for tests")


def _end_to_end_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("end to end: training step vs N, single attention vs routed")
    g.add_argument("--end-to-end", action="store_true",
                   help="also time the training step of each --e2e-combos over --e2e-seq-lens")
    g.add_argument("--e2e-seq-lens", default=None,
                   help=f"comma-separated (default {E2E_DEFAULTS['seq_lens']})")
    g.add_argument("--e2e-combos", default=None,
                   help=f"router:op+op,... (default {E2E_DEFAULTS['combos']}; "
                        f"{E2E_REFERENCE} is always timed: it is the reference)")
    g.add_argument("--e2e-tasks", default=None,
                   help="lm (causal), classification, or both (default lm,classification)")
    g.add_argument("--e2e-layers", type=int, default=None, help="default 4")
    g.add_argument("--e2e-batch-size", type=int, default=None, help="default 4")
    g.add_argument("--e2e-fraction", type=float, default=None,
                   help="attention fraction of the routed combinations (default 0.375)")
    g.add_argument("--e2e-repeats", type=int, default=None,
                   help="timed rounds (default 3; warm-up: 1 step)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _what_arguments(p)
    _shape_and_timing_arguments(p)
    _train_and_output_arguments(p)
    _end_to_end_arguments(p)
