"""What the bench measures: defaults, the performance targets, and the resolved settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import torch

from harness.probes.bench.args import (
    DEFAULTS,
    E2E_DEFAULTS,
    E2E_QUICK,
    E2E_REFERENCE,
    FULL,
    QUICK,
    ZOO_DEFAULTS,
    ZOO_QUICK,
)
from registry import ConfigError

MODES = ("fwd", "fwd+bwd")

# Performance targets (stated for the 2-core CPU). `--targets` adds the cases they need.
TARGET_ROUTED = (2048, 0.25, 0.40)  # N, fraction, max ratio of routed attn to full attn
TARGET_DCT = (2048, 0.20)  # N, max ratio of dct to full attn
TARGET_DCT_SCALING = (1024, 8192, 12.0)  # time(N2) / time(N1) <= bound (N log N: 10.4)
TARGET_TRAIN = 1.10  # harness step / bare reference step
# With --causal (language modelling): routed causal queries compute only their prefix.
TARGET_ROUTED_CAUSAL = (2048, ((0.25, 0.35), (0.125, 0.22)))  # N, (fraction, max ratio)
TARGET_DCT_CAUSAL = (2048, 0.15)
# --end-to-end, causal task: (combination, N, max step ratio to single attention)
TARGET_E2E = (("entropy:dct+attn", 1024, 0.95), ("entropy:dct+attn", 2048, 0.85),
              ("entropy:dct+attn", 4096, 0.75))
TARGET_E2E_CROSSOVER = ("entropy:dct+attn", 1024)  # crossover N at most
TARGET_E2E_CONTROL = ("entropy:dct+attn", "random:dct+attn", 2048, 1.03)  # step / step

REFERENCE = E2E_REFERENCE  # the end-to-end section's reference combination

# --zoo (issue 34), forward+backward at d_model 256 against full attention in the same round:
ZOO_TARGET_N = 8192
ZOO_TARGET_OF_ANALYTIC = 1.3  # measured time ratio <= this x the analytic FLOP ratio
ZOO_TARGET_RATIO = (("linear", "swa", "hyena", "ssd"), 0.25)  # measured time ratio below
ZOO_TARGET_SCALING = (1024, 8192, 12.0)  # time(N2) / time(N1) <= bound (linear: 8)

_POSITIVE = ("d_model", "heads", "batch_size", "repeats", "train_layers", "train_seq_len",
             "train_batch_size", "train_vocab")


@dataclass(frozen=True)
class EndToEndSettings:
    seq_lens: list[int]
    combos: list[tuple[str, list[str]]]  # (router, ops)
    tasks: list[str]
    layers: int
    batch_size: int
    fraction: float
    repeats: int
    warmup: int
    vocab: int


def _combo(text: str) -> tuple[str, list[str]]:
    router, sep, ops = text.strip().partition(":")
    if not sep or not router or not ops:
        raise ConfigError(f"--e2e-combos entry '{text}' is not router:op+op "
                          f"(for example entropy:dct+attn)")
    from operators import OPERATORS
    from routers import ROUTERS

    names = [OPERATORS.entry(o).name for o in ops.split("+")]  # unknown: "did you mean"
    return ROUTERS.entry(router).name, names


def resolve_end_to_end(args: argparse.Namespace, quick: bool, vocab: int
                       ) -> EndToEndSettings | None:
    if not getattr(args, "end_to_end", False):
        return None
    base = E2E_QUICK if quick else E2E_DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, f"e2e_{name}", None)
        return base[name] if value is None else value

    combos = [_combo(c) for c in pick("combos").split(",") if c.strip()]
    reference = _combo(REFERENCE)
    combos = [reference] + [c for c in combos if c != reference]
    tasks = [t.strip() for t in pick("tasks").split(",") if t.strip()]
    if not tasks or set(tasks) - {"lm", "classification"}:
        raise ConfigError(f"--e2e-tasks takes lm and/or classification, got '{pick('tasks')}'")
    for label in ("layers", "batch_size", "repeats"):
        if pick(label) <= 0:
            raise ConfigError(f"--e2e-{label.replace('_', '-')} must be positive, "
                              f"got {pick(label)}")
    if not 0 < pick("fraction") <= 1:
        raise ConfigError(f"--e2e-fraction must be in (0, 1], got {pick('fraction')}")
    return EndToEndSettings(
        seq_lens=int_list(pick("seq_lens"), "--e2e-seq-lens"), combos=combos,
        tasks=list(dict.fromkeys(tasks)), layers=pick("layers"),
        batch_size=pick("batch_size"), fraction=pick("fraction"), repeats=pick("repeats"),
        warmup=base["warmup"], vocab=vocab)


@dataclass(frozen=True)
class ZooSettings:
    ops: list[str]
    seq_lens: list[int]
    fraction: float
    repeats: int
    warmup: int


def resolve_zoo(args: argparse.Namespace, quick: bool) -> ZooSettings | None:
    if not getattr(args, "zoo", False):
        return None
    from operators import OPERATORS

    base = ZOO_QUICK if quick else ZOO_DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, f"zoo_{name}", None)
        return base[name] if value is None else value

    ops = [OPERATORS.entry(o.strip()).name for o in pick("ops").split(",") if o.strip()]
    ops = [o for o in dict.fromkeys(ops) if o != FULL]  # attention is the reference
    if not ops:
        raise ConfigError(f"--zoo-ops names no operator besides {FULL}, the reference")
    if not 0 < pick("fraction") < 1:
        raise ConfigError(f"--zoo-fraction must be in (0, 1), got {pick('fraction')}")
    if pick("repeats") <= 0:
        raise ConfigError(f"--zoo-repeats must be positive, got {pick('repeats')}")
    return ZooSettings(ops=ops, seq_lens=int_list(pick("seq_lens"), "--zoo-seq-lens"),
                       fraction=pick("fraction"), repeats=pick("repeats"),
                       warmup=base["warmup"])


def combo_key(router: str, ops: list[str]) -> str:
    return f"{router}:{'+'.join(ops)}"


@dataclass
class Settings:
    seq_lens: list[int]
    fractions: list[float]
    ops: list[str]
    routed_op: str
    causal: bool
    d_model: int
    heads: int
    batch_size: int
    repeats: int
    warmup: int
    device: torch.device
    dtype: str
    seed: int
    train: dict[str, int] | None
    targets: bool
    end_to_end: EndToEndSettings | None = None  # None: not measured
    zoo: ZooSettings | None = None  # None: not measured


def int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{flag} expects positive integers, got '{text}'")
    return sorted(set(values))


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated numbers, got '{text}'") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise ConfigError(f"{flag} expects numbers in (0, 1], got '{text}'")
    return sorted(set(values), reverse=True)


def _resolve_ops(args: argparse.Namespace, device: torch.device) -> tuple[list[str], str]:
    """The operators to time (full attention first if not asked for) and the routed one."""
    from operators import OPERATORS

    if args.ops is None:
        ops = ["attn", "dct", "rbf"] + (["xformers"] if device.type == "cuda" else [])
    else:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    ops = [OPERATORS.entry(o).name for o in ops]  # unknown names: exit 2 with "did you mean"
    routed_op = OPERATORS.entry(args.routed_op).name
    if FULL not in ops:
        ops.insert(0, FULL)
    return list(dict.fromkeys(ops)), routed_op


def _check_sizes(pick) -> None:
    for label in _POSITIVE:
        if pick(label) <= 0:
            raise ConfigError(f"--{label.replace('_', '-')} must be positive, got {pick(label)}")
    if pick("warmup") < 0:
        raise ConfigError(f"--warmup must be >= 0, got {pick('warmup')}")


def routed_targets(causal: bool) -> list[tuple[int, float, float]]:
    """(N, fraction, max ratio of routed to full attention) for this mode."""
    if causal:
        n, bounds = TARGET_ROUTED_CAUSAL
        return [(n, frac, bound) for frac, bound in bounds]
    return [TARGET_ROUTED]


def dct_target(causal: bool) -> tuple[int, float]:
    return TARGET_DCT_CAUSAL if causal else TARGET_DCT


def resolve_settings(args: argparse.Namespace) -> Settings:
    from harness.engine.device import resolve_device

    base = QUICK if args.quick else DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return base[name] if value is None else value

    device = resolve_device(args.device)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    ops, routed_op = _resolve_ops(args, device)
    _check_sizes(pick)
    train = None
    if not args.no_train_step:
        train = {"layers": pick("train_layers"), "seq_len": pick("train_seq_len"),
                 "batch_size": pick("train_batch_size"), "vocab": pick("train_vocab")}
    return Settings(
        seq_lens=int_list(pick("seq_lens"), "--seq-lens"),
        fractions=_float_list(pick("fractions"), "--fractions"),
        ops=ops, routed_op=routed_op, causal=args.causal,
        d_model=pick("d_model"), heads=pick("heads"), batch_size=pick("batch_size"),
        repeats=pick("repeats"), warmup=pick("warmup"), device=device, dtype=dtype,
        seed=args.seed, train=train, targets=args.targets,
        end_to_end=resolve_end_to_end(args, args.quick, pick("train_vocab")),
        zoo=resolve_zoo(args, args.quick),
    )
