"""The settings of ``python -m harness bench``, declared once: flags, help, defaults and the
``--quick`` preset.

The same declarations (``harness.core.options.Option``) as the run's: the flags come from
``harness.core.flags.add_flags`` and the validated settings model from
``harness.core.config.config_model`` (harness/probes/bench/settings.py). Imports nothing heavy,
so that ``python -m harness bench --help`` answers without torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from harness.core.flags import add_flags
from harness.core.options import ATTN_FRACTION, MAX_SEED, Option

DEFAULT_OUT = "runs/bench"  # local, git-ignored: a user's measurements never touch tracked files
FULL = "attn"  # the reference every ratio is taken against: full softmax attention
# the end-to-end section (harness/probes/bench/end_to_end.py): the training step of single
# attention against routed combinations over N
E2E_REFERENCE = "single:attn"

WHAT, SHAPE, TIMING, TRAIN, OUTPUT, E2E, ZOO = (
    "what to time", "shape", "timing", "training step: harness vs bare reference", "output",
    "end to end: training step vs N, single attention vs routed",
    "zoo: cheap mixers and their routed pairs vs full attention over N")

BENCH_OPTIONS: tuple[Option, ...] = (
    Option("seq_lens", int, (256, 1024, 4096), "comma-separated sequence lengths",
           metavar="N[,N]", group=WHAT, many=True, gt=0),
    Option("fractions", float, (1, 0.5, 0.25, 0.125),
           "shares of tokens routed to attention, comma-separated", metavar="F[,F]",
           group=WHAT, many=True, gt=0, le=1),
    Option("ops", str, None, "operators to time; full attention is always timed: it is the "
           "reference", metavar="OP[,OP]", group=WHAT, many=True, nullable=True,
           default_text="attn,dct,rbf, plus xformers on CUDA"),
    Option("routed_op", str, FULL, "operator timed under routed execution", metavar="OP",
           group=WHAT),
    Option("causal", bool, False, "build the operators in their causal form (dct: the causal "
           "long convolution; attention: causal masking)", group=WHAT),
    Option("targets", bool, False, "also time the cases the performance targets are stated "
           "for (see the README's table): attn, dct and routed attn at fraction 0.25 at "
           "N=2048; dct at N=1024 and 8192 (its scaling)", group=WHAT),
    Option("d_model", int, 256, "width", metavar="D", group=SHAPE, gt=0),
    Option("heads", int, 4, "attention heads", metavar="H", group=SHAPE, gt=0),
    Option("batch_size", int, 1, "examples per call", metavar="B", group=SHAPE, gt=0),
    Option("repeats", int, 7, "timed repeats per case", metavar="N", group=TIMING, gt=0),
    Option("warmup", int, 2, "untimed calls first", metavar="N", group=TIMING, ge=0),
    Option("device", str, "auto", "auto | cpu | cuda | cuda:N", group=TIMING,
           default_text="auto: CUDA if present"),
    Option("dtype", str, "auto", "fp32, or bf16 autocast", group=TIMING,
           choices=("auto", "fp32", "bf16"), default_text="auto: bf16 on CUDA, fp32 on CPU"),
    Option("threads", int, None, "torch intra-op threads. On a CPU shared with other busy "
           "processes, fewer threads than cores avoids stalls", metavar="N", group=TIMING,
           gt=0, nullable=True, default_text="torch's choice"),
    Option("seed", int, 0, "seed of the random inputs", metavar="N", group=TIMING,
           ge=-MAX_SEED, le=MAX_SEED),
    Option("no_train_step", bool, False, "skip the training-step comparison", group=TRAIN),
    Option("train_layers", int, 2, "layers", metavar="N", group=TRAIN, gt=0),
    Option("train_seq_len", int, 256, "sequence length", metavar="N", group=TRAIN, gt=0),
    Option("train_batch_size", int, 8, "batch", metavar="B", group=TRAIN, gt=0),
    Option("train_vocab", int, 512, "vocabulary", metavar="V", group=TRAIN, gt=0),
    Option("out", str, DEFAULT_OUT, "directory for the JSON and the PNG", metavar="DIR",
           group=OUTPUT, folder=True, default_text=f"{DEFAULT_OUT}, git-ignored; the committed "
           f"measurements are in results/bench"),
    Option("name", str, None, "file stem", group=OUTPUT, nullable=True,
           default_text="bench-<device type>[-quick]"),
    Option("quick", bool, False, "tiny sizes, for tests (the values after --quick: in this "
           "help); explicit flags still win", group=OUTPUT),
    Option("end_to_end", bool, False, "also time the training step of each --e2e-combos over "
           "--e2e-seq-lens", group=E2E),
    Option("e2e.seq_lens", int, (256, 512, 1024, 2048, 4096), "comma-separated",
           flag="--e2e-seq-lens", metavar="N[,N]", group=E2E, many=True, gt=0),
    Option("e2e.combos", str, ("single:attn", "single:dct", "entropy:dct+attn",
                               "random:dct+attn"),
           f"{E2E_REFERENCE} is always timed: it is the reference", flag="--e2e-combos",
           metavar="ROUTER:OP+OP[,...]", group=E2E, many=True),
    Option("e2e.tasks", str, ("lm", "classification"), "lm (causal), classification, or both",
           flag="--e2e-tasks", metavar="TASK[,TASK]", group=E2E, many=True,
           choices=("lm", "classification")),
    Option("e2e.layers", int, 4, "layers", flag="--e2e-layers", metavar="N", group=E2E, gt=0),
    Option("e2e.batch_size", int, 4, "batch", flag="--e2e-batch-size", metavar="B", group=E2E,
           gt=0),
    Option("e2e.fraction", float, ATTN_FRACTION, "attention fraction of the routed "
           "combinations", flag="--e2e-fraction", metavar="F", group=E2E, gt=0, le=1),
    Option("e2e.repeats", int, 3, "timed rounds", flag="--e2e-repeats", metavar="N", group=E2E,
           gt=0),
    Option("e2e.warmup", int, 1, "untimed rounds first (more while steps page-fault)",
           flag="--e2e-warmup", metavar="N", group=E2E, gt=0),
    # the zoo section (harness/probes/bench/zoo.py, issue 34): each cheap mixer, and its routed
    # pair with attention, against full attention over N
    Option("zoo_on", bool, False, "also time each --zoo-ops mixer, and its routed pair with "
           "attention, against full attention (forward and forward+backward, interleaved), "
           "with the analytic FLOP ratio and the crossover N; --causal for the causal forms",
           flag="--zoo", group=ZOO),
    Option("zoo.ops", str, ("linear", "swa", "hyena", "ssd"), "mixers to time",
           flag="--zoo-ops", metavar="OP[,OP]", group=ZOO, many=True),
    Option("zoo.seq_lens", int, (256, 512, 1024, 2048, 4096, 8192), "comma-separated",
           flag="--zoo-seq-lens", metavar="N[,N]", group=ZOO, many=True, gt=0),
    Option("zoo.fraction", float, ATTN_FRACTION, "share of tokens the routed pairs send to "
           "attention", flag="--zoo-fraction", metavar="F", group=ZOO, gt=0, lt=1),
    Option("zoo.repeats", int, 5, "timed rounds", flag="--zoo-repeats", metavar="N", group=ZOO,
           gt=0),
    Option("zoo.warmup", int, 1, "untimed rounds first", flag="--zoo-warmup", metavar="N",
           group=ZOO, ge=0),
)

# --quick: tiny sizes, for tests (explicit flags still win)
QUICK: dict[str, Any] = {
    "seq_lens": [32, 64], "fractions": [1, 0.25], "d_model": 32, "heads": 2, "batch_size": 1,
    "repeats": 2, "warmup": 1, "train_layers": 1, "train_seq_len": 32, "train_batch_size": 2,
    "train_vocab": 64,
    "e2e": {"seq_lens": [32, 64], "layers": 1, "batch_size": 2, "repeats": 1, "warmup": 1},
    "zoo": {"seq_lens": [32, 64], "repeats": 1},
}

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


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flags(p, BENCH_OPTIONS, presets={"--quick:": QUICK}, preset_label="")
