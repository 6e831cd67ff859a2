"""The arguments of ``python -m harness bench`` and their defaults: the only definition.

Imports nothing heavy, so that ``python -m harness bench --help`` answers without torch;
``harness.probes.bench.command`` (which imports torch) takes its arguments and defaults from here.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULT_OUT = "runs/bench"  # local, git-ignored: a user's measurements never touch tracked files
FULL = "attn"  # the reference every ratio is taken against: full softmax attention

# Defaults; --quick swaps in tiny sizes for tests (explicit flags still win).
DEFAULTS: dict[str, Any] = {
    "seq_lens": "256,1024,4096",
    "fractions": "1,0.5,0.25,0.125",
    "d_model": 256,
    "heads": 4,
    "batch_size": 1,
    "repeats": 7,
    "warmup": 2,
    "train_layers": 2,
    "train_seq_len": 256,
    "train_batch_size": 8,
    "train_vocab": 512,
}
QUICK: dict[str, Any] = {
    "seq_lens": "32,64",
    "fractions": "1,0.25",
    "d_model": 32,
    "heads": 2,
    "batch_size": 1,
    "repeats": 2,
    "warmup": 1,
    "train_layers": 1,
    "train_seq_len": 32,
    "train_batch_size": 2,
    "train_vocab": 64,
}

# the end-to-end section (harness/probes/bench/end_to_end.py): the training step of single
# attention against routed combinations over N
E2E_REFERENCE = "single:attn"
E2E_DEFAULTS: dict[str, Any] = {
    "seq_lens": "256,512,1024,2048,4096",
    "combos": "single:attn,single:dct,entropy:dct+attn,random:dct+attn",
    "tasks": "lm,classification", "layers": 4, "batch_size": 4, "fraction": 0.375,
    "repeats": 3, "warmup": 1,
}
E2E_QUICK: dict[str, Any] = {**E2E_DEFAULTS, "seq_lens": "32,64", "layers": 1,
                             "batch_size": 2, "repeats": 1, "warmup": 1}

DESCRIPTION = """\
Time operators and routed layers, forward and forward+backward, on the current device, and
a training step of the harness against a bare reference transformer of the same shape.
Ratios (operator / full attention, routed layer / full-attention layer, harness step / bare
step) are measured in the same run, so machine noise hits both sides alike. Prints a table
and writes <name>.json and <name>.png under --out."""

EPILOG = """\
examples:
  python -m harness bench
  python -m harness bench --seq-lens 1024,2048,4096,8192 --fractions 1,0.5,0.25,0.125
  python -m harness bench --targets --threads 1        # the README's table, measured cleanly"""


def _default(name: str) -> str:
    return f"(default {DEFAULTS[name]}; --quick: {QUICK[name]})"


def _what_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to time")
    g.add_argument("--seq-lens", default=None, metavar="N[,N]",
                   help=f"comma-separated sequence lengths {_default('seq_lens')}")
    g.add_argument("--fractions", default=None, metavar="F[,F]",
                   help="shares of tokens routed to attention, comma-separated "
                        f"{_default('fractions')}")
    g.add_argument("--ops", default=None, metavar="OP[,OP]",
                   help="operators to time (default attn,dct,rbf, plus xformers on CUDA); "
                        "full attention is always timed: it is the reference")
    g.add_argument("--routed-op", default=FULL, metavar="OP",
                   help=f"operator timed under routed execution (default {FULL})")
    g.add_argument("--causal", action="store_true",
                   help="build the operators in their causal form (dct: the causal long "
                        "convolution; attention: causal masking)")
    g.add_argument("--targets", action="store_true",
                   help="also time the cases the performance targets are stated for (see "
                        "the README's table): attn, dct and routed attn at fraction 0.25 at "
                        "N=2048; dct at N=1024 and 8192 (its scaling)")


def _shape_and_timing_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("shape")
    g.add_argument("--d-model", type=int, default=None, metavar="D", help=_default("d_model"))
    g.add_argument("--heads", type=int, default=None, help=_default("heads"))
    g.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help=_default("batch_size"))
    g = p.add_argument_group("timing")
    g.add_argument("--repeats", type=int, default=None, metavar="N",
                   help=f"timed repeats per case {_default('repeats')}")
    g.add_argument("--warmup", type=int, default=None, metavar="N",
                   help=f"untimed calls first {_default('warmup')}")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto: "
                   "CUDA if present)")
    g.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="fp32, or bf16 autocast (default auto: bf16 on CUDA, fp32 on CPU)")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch intra-op threads (default: torch's choice). On a CPU shared "
                        "with other busy processes, fewer threads than cores avoids stalls")
    g.add_argument("--seed", type=int, default=0, help="(default 0)")


def _train_and_output_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training step: harness vs bare reference")
    g.add_argument("--no-train-step", action="store_true",
                   help="skip the training-step comparison")
    g.add_argument("--train-layers", type=int, default=None, metavar="N",
                   help=_default("train_layers"))
    g.add_argument("--train-seq-len", type=int, default=None, metavar="N",
                   help=_default("train_seq_len"))
    g.add_argument("--train-batch-size", type=int, default=None, metavar="B",
                   help=_default("train_batch_size"))
    g.add_argument("--train-vocab", type=int, default=None, metavar="V",
                   help=_default("train_vocab"))
    g = p.add_argument_group("output")
    g.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"directory for the JSON and the PNG (default {DEFAULT_OUT}, "
                        "git-ignored; the committed measurements are in results/bench)")
    g.add_argument("--name", default=None,
                   help="file stem (default bench-<device type>[-quick])")
    g.add_argument("--quick", action="store_true", help="tiny sizes, for tests")


def _end_to_end_arguments(p: argparse.ArgumentParser) -> None:
    d = E2E_DEFAULTS
    g = p.add_argument_group("end to end: training step vs N, single attention vs routed")
    g.add_argument("--end-to-end", action="store_true",
                   help="also time the training step of each --e2e-combos over --e2e-seq-lens")
    g.add_argument("--e2e-seq-lens", default=None, metavar="N[,N]",
                   help=f"comma-separated (default {d['seq_lens']})")
    g.add_argument("--e2e-combos", default=None, metavar="ROUTER:OP+OP[,...]",
                   help=f"(default {d['combos']}; {E2E_REFERENCE} is always timed: it is the "
                        f"reference)")
    g.add_argument("--e2e-tasks", default=None,
                   help=f"lm (causal), classification, or both (default {d['tasks']})")
    g.add_argument("--e2e-layers", type=int, default=None, metavar="N",
                   help=f"(default {d['layers']})")
    g.add_argument("--e2e-batch-size", type=int, default=None, metavar="B",
                   help=f"(default {d['batch_size']})")
    g.add_argument("--e2e-fraction", type=float, default=None, metavar="F",
                   help=f"attention fraction of the routed combinations (default {d['fraction']})")
    g.add_argument("--e2e-repeats", type=int, default=None, metavar="N",
                   help=f"timed rounds (default {d['repeats']}; warm-up: {d['warmup']} step)")


# -- the zoo section (harness/probes/bench/zoo.py): each cheap mixer, and its routed pair with
# attention, against full attention over N (issue 34) ------------------------------------------

ZOO_DEFAULTS: dict[str, Any] = {
    "ops": "linear,swa,hyena,ssd", "seq_lens": "256,512,1024,2048,4096,8192",
    "fraction": 0.375, "repeats": 5, "warmup": 1,
}
ZOO_QUICK: dict[str, Any] = {**ZOO_DEFAULTS, "seq_lens": "32,64", "repeats": 1}


def _zoo_arguments(p: argparse.ArgumentParser) -> None:
    d = ZOO_DEFAULTS
    g = p.add_argument_group("zoo: cheap mixers and their routed pairs vs full attention over N")
    g.add_argument("--zoo", action="store_true",
                   help="also time each --zoo-ops mixer, and its routed pair with attention, "
                        "against full attention (forward and forward+backward, interleaved), "
                        "with the analytic FLOP ratio and the crossover N; --causal for the "
                        "causal forms")
    g.add_argument("--zoo-ops", default=None, metavar="OP[,OP]",
                   help=f"(default {d['ops']})")
    g.add_argument("--zoo-seq-lens", default=None, metavar="N[,N]",
                   help=f"comma-separated (default {d['seq_lens']}; --quick: "
                        f"{ZOO_QUICK['seq_lens']})")
    g.add_argument("--zoo-fraction", type=float, default=None, metavar="F",
                   help=f"share of tokens the routed pairs send to attention (default "
                        f"{d['fraction']})")
    g.add_argument("--zoo-repeats", type=int, default=None, metavar="N",
                   help=f"timed rounds (default {d['repeats']}; warm-up: {d['warmup']})")


def add_arguments(p: argparse.ArgumentParser) -> None:
    _what_arguments(p)
    _shape_and_timing_arguments(p)
    _train_and_output_arguments(p)
    _end_to_end_arguments(p)
    _zoo_arguments(p)
