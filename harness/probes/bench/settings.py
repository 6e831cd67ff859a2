"""What the bench measures: its validated settings (a pydantic model built from the
declarations in harness/probes/bench/args.py, ``--quick`` a preset of it), the performance
targets, and the resolved settings the sections measure with."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from pydantic import ValidationError

from harness.core.config import config_model, describe
from harness.core.flags import overrides_from
from harness.core.options import deep_merge
from harness.probes.bench.args import BENCH_OPTIONS, E2E_REFERENCE, FULL, QUICK
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
# --zoo (issue 34), forward+backward at d_model 256 against full attention in the same round:
ZOO_TARGET_N = 8192
ZOO_TARGET_OF_ANALYTIC = 1.3  # measured time ratio <= this x the analytic FLOP ratio
ZOO_TARGET_RATIO = (("linear", "swa", "hyena", "ssd"), 0.25)  # measured time ratio below
ZOO_TARGET_SCALING = (1024, 8192, 12.0)  # time(N2) / time(N1) <= bound (linear: 8)

REFERENCE = E2E_REFERENCE  # the end-to-end section's reference combination

EndToEndConfig = config_model("EndToEndConfig", BENCH_OPTIONS, "e2e")
ZooConfig = config_model("ZooConfig", BENCH_OPTIONS, "zoo")
BenchConfig = config_model("BenchConfig", BENCH_OPTIONS,
                           sections={"e2e": EndToEndConfig, "zoo": ZooConfig},
                           doc="The bench's settings as given (harness/probes/bench/args.py).")


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The flags given, over the --quick preset if asked for, over the defaults: validated by
    the declarations, one line naming the flag when a value is out of bounds."""
    overrides = overrides_from(args, BENCH_OPTIONS)
    layered = deep_merge(QUICK, overrides) if overrides.get("quick") else overrides
    try:
        return BenchConfig.model_validate(layered)
    except ValidationError as exc:
        raise ConfigError(f"invalid bench settings: {describe(exc, BENCH_OPTIONS)}") from None


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


def resolve_end_to_end(config: BenchConfig) -> EndToEndSettings | None:
    if not config.end_to_end:
        return None
    e = config.e2e
    combos = [_combo(c) for c in e.combos if c.strip()]
    reference = _combo(REFERENCE)
    combos = [reference] + [c for c in combos if c != reference]
    return EndToEndSettings(
        seq_lens=sorted(set(e.seq_lens)), combos=combos, tasks=list(dict.fromkeys(e.tasks)),
        layers=e.layers, batch_size=e.batch_size, fraction=e.fraction, repeats=e.repeats,
        warmup=e.warmup, vocab=config.train_vocab)


def combo_key(router: str, ops: list[str]) -> str:
    return f"{router}:{'+'.join(ops)}"


@dataclass(frozen=True)
class ZooSettings:
    ops: list[str]
    seq_lens: list[int]
    fraction: float
    repeats: int
    warmup: int


def resolve_zoo(config: BenchConfig) -> ZooSettings | None:
    if not config.zoo_on:
        return None
    from operators import OPERATORS

    z = config.zoo
    ops = [OPERATORS.entry(o.strip()).name for o in z.ops if o.strip()]
    ops = [o for o in dict.fromkeys(ops) if o != FULL]  # attention is the reference
    if not ops:
        raise ConfigError(f"--zoo-ops names no operator besides {FULL}, the reference")
    return ZooSettings(ops=ops, seq_lens=sorted(set(z.seq_lens)), fraction=z.fraction,
                       repeats=z.repeats, warmup=z.warmup)


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


def _resolve_ops(config: BenchConfig, device: torch.device) -> tuple[list[str], str]:
    """The operators to time (full attention first if not asked for) and the routed one."""
    from operators import OPERATORS

    if config.ops is None:
        ops = ["attn", "dct", "rbf"] + (["xformers"] if device.type == "cuda" else [])
    else:
        ops = [o for o in config.ops if o]
    ops = [OPERATORS.entry(o).name for o in ops]  # unknown names: exit 2 with "did you mean"
    routed_op = OPERATORS.entry(config.routed_op).name
    if FULL not in ops:
        ops.insert(0, FULL)
    return list(dict.fromkeys(ops)), routed_op


def routed_targets(causal: bool) -> list[tuple[int, float, float]]:
    """(N, fraction, max ratio of routed to full attention) for this mode."""
    if causal:
        n, bounds = TARGET_ROUTED_CAUSAL
        return [(n, frac, bound) for frac, bound in bounds]
    return [TARGET_ROUTED]


def dct_target(causal: bool) -> tuple[int, float]:
    return TARGET_DCT_CAUSAL if causal else TARGET_DCT


def resolve_settings(config: BenchConfig) -> Settings:
    """What the sections measure with: the device, the operators by their registered names,
    the sizes in order (sequence lengths ascending, fractions descending, each once)."""
    from harness.engine.device import resolve_device

    device = resolve_device(config.device)
    dtype = config.dtype
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    ops, routed_op = _resolve_ops(config, device)
    train = None
    if not config.no_train_step:
        train = {"layers": config.train_layers, "seq_len": config.train_seq_len,
                 "batch_size": config.train_batch_size, "vocab": config.train_vocab}
    return Settings(
        seq_lens=sorted(set(config.seq_lens)),
        fractions=sorted(set(config.fractions), reverse=True),
        ops=ops, routed_op=routed_op, causal=config.causal,
        d_model=config.d_model, heads=config.heads, batch_size=config.batch_size,
        repeats=config.repeats, warmup=config.warmup, device=device, dtype=dtype,
        seed=config.seed, train=train, targets=config.targets,
        end_to_end=resolve_end_to_end(config), zoo=resolve_zoo(config),
    )
