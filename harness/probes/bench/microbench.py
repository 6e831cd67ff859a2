"""Operator and routed-layer microbenchmarks: the cases, their timing rounds, their rows.

Every operator of ``--ops`` is timed on x (B, N, D) as ``op(x, ctx)``; routed attention as the
code path routed training runs, ``MixingLayer._run_on_subset``, on a fixed random subset of
``fraction`` of each example's tokens. Each case runs in ``fwd`` (no grad) and ``fwd+bwd``.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .settings import FULL, MODES, TARGET_DCT_SCALING, Settings, dct_target, routed_targets
from .timing import (
    autocast_context,
    error_note,
    median_or_none,
    paired_ratio,
    spread,
    time_call,
    to_ms,
)


@dataclass
class Case:
    """One thing timed at one sequence length."""

    seq_len: int
    op: str
    fraction: float | None  # None: the operator on every token; else routed execution
    flop_ratio: float | None = None  # analytic forward FLOPs / full attention's
    skipped: str | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    run: Callable[[], Tensor] | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    grad_out: Tensor | None = None

    @property
    def key(self) -> str:
        return self.op if self.fraction is None else f"{self.op}@{self.fraction:g}"

    @property
    def label(self) -> str:
        return self.op if self.fraction is None else f"{self.op} routed {self.fraction:g}"


# -- building the cases ------------------------------------------------------------------------


def _build_op(name: str, s: Settings, n: int):
    from operators import OPERATORS

    op = OPERATORS.get(name)(s.d_model, s.heads, n, s.causal)
    return op.to(s.device)


def _routed_subset(s: Settings, n: int, fraction: float, gen: torch.Generator) -> Tensor:
    """(B, N) bool: a fixed random `fraction` of each example's positions (at least one)."""
    count = max(1, round(fraction * n))
    chosen = torch.zeros(s.batch_size, n, dtype=torch.bool)
    for b in range(s.batch_size):
        chosen[b, torch.randperm(n, generator=gen)[:count]] = True
    return chosen.to(s.device)


def _wanted_keys(s: Settings) -> dict[int, set[str]]:
    """Case keys per sequence length: the requested ones, plus those the targets need."""
    wanted: dict[int, set[str]] = {}
    for n in s.seq_lens:
        wanted[n] = set(s.ops) | {f"{s.routed_op}@{f:g}" for f in s.fractions}
    if s.targets:
        for n, frac, _ in routed_targets(s.causal):
            wanted.setdefault(n, set()).update({FULL, f"{FULL}@{frac:g}"})
        wanted.setdefault(dct_target(s.causal)[0], set()).update({FULL, "dct"})
        for n in TARGET_DCT_SCALING[:2]:
            wanted.setdefault(n, set()).add("dct")
    return wanted


def _build_ops(names: list[str], s: Settings, n: int) -> dict[str, Any]:
    """Each operator built once (same seed); one that cannot be built maps to its exception."""
    built: dict[str, Any] = {}
    for name in names:
        if name in built:
            continue
        torch.manual_seed(s.seed)
        try:
            built[name] = _build_op(name, s, n)
        except Exception as exc:  # an operator that cannot be built here is skipped
            built[name] = exc
    return built


def _operator_case(n: int, name: str, op: Any, x: Tensor, ctx, full_flops: float) -> Case:
    case = Case(n, name, None)
    if isinstance(op, BaseException):
        case.skipped = f"not built: {error_note(op)}"
        return case
    if full_flops:
        case.flop_ratio = op.flops(n, n) / full_flops
    case.run = (lambda op=op, x=x: op(x, ctx))
    case.params = list(op.parameters())
    return case


def _routed_case(n: int, frac: float, op: Any, x: Tensor, ctx, full_flops: float,
                 s: Settings, gen: torch.Generator) -> Case:
    from harness.engine.model import MixingLayer

    case = Case(n, s.routed_op, frac)
    if isinstance(op, BaseException):
        case.skipped = f"not built: {error_note(op)}"
    elif not op.supports_query_subset:
        case.skipped = f"'{s.routed_op}' does not support query subsets"
    else:
        chosen = _routed_subset(s, n, frac, gen)
        weight = torch.ones(s.batch_size, n, device=s.device)
        if full_flops:  # what routed execution charges: query positions matter when causal
            case.flop_ratio = _routed_flops(op, x, ctx, chosen) / (s.batch_size * full_flops)
        case.run = (lambda op=op, x=x, c=chosen, w=weight:
                    MixingLayer._run_on_subset(op, x, ctx, c, w)[0])
        case.params = list(op.parameters())
    return case


def _routed_flops(op: Any, x: Tensor, ctx, chosen: Tensor) -> float:
    """FLOPs routed execution charges for this subset (batch total)."""
    from harness.engine.model import subset_work, work_flops

    b, n, _ = x.shape
    work = subset_work(x, ctx, chosen, torch.ones(chosen.shape, device=x.device))
    return work_flops(op, work, ctx, n, b, dense=float(b * op.flops(n, n)))


def _cases_at(n: int, keys: set[str], x: Tensor, ctx, s: Settings,
              gen: torch.Generator) -> list[Case]:
    from operators import OPERATORS

    full_flops = OPERATORS.get(FULL)(s.d_model, s.heads, n, s.causal).flops(n, n)
    # operators timed at this N: the --ops in order, then any a target needs
    names = [o for o in s.ops if o in keys]
    names += sorted(k for k in keys if "@" not in k and k not in names)
    built = _build_ops(names + ([s.routed_op] if any("@" in k for k in keys) else []), s, n)
    cases = [_operator_case(n, name, built[name], x, ctx, full_flops) for name in names]
    for frac in s.fractions + [frac for _, frac, _ in routed_targets(s.causal)]:
        key = f"{s.routed_op}@{frac:g}"
        if key not in keys or any(c.key == key for c in cases):
            continue
        cases.append(_routed_case(n, frac, built[s.routed_op], x, ctx, full_flops, s, gen))
    return cases


def build_cases(s: Settings) -> tuple[list[Case], dict[int, Tensor]]:
    """Every case to time, with its callable; plus the input x of each sequence length."""
    from operators import MixContext

    wanted = _wanted_keys(s)
    gen = torch.Generator().manual_seed(s.seed)
    cases: list[Case] = []
    inputs: dict[int, Tensor] = {}
    ctx = MixContext(padding_mask=None, causal=s.causal)
    for n in sorted(wanted):
        x = torch.randn(s.batch_size, n, s.d_model, generator=gen).to(s.device)
        x.requires_grad_(True)
        inputs[n] = x
        cases += _cases_at(n, wanted[n], x, ctx, s, gen)
    return cases, inputs


# -- timing them -------------------------------------------------------------------------------


def _call(case: Case, mode: str, x: Tensor, s: Settings) -> Callable[[], None]:
    """The timed closure of one case in one mode (gradients are cleared outside of it)."""
    assert case.run is not None
    if mode == "fwd":
        def forward() -> None:
            with torch.no_grad(), autocast_context(s.device, s.dtype):
                case.run()
        return forward

    def forward_backward() -> None:
        with autocast_context(s.device, s.dtype):
            y = case.run()
        if case.grad_out is None or case.grad_out.shape != y.shape:
            case.grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)
                                        ).to(device=y.device, dtype=y.dtype)
        y.backward(case.grad_out)
    return forward_backward


def _clear_grads(case: Case, x: Tensor) -> None:
    x.grad = None
    for p in case.params:
        p.grad = None


def _warm_up(live: list[Case], mode: str, inputs: dict[int, Tensor], s: Settings,
             bar) -> dict[int, Callable[[], None]]:
    """Untimed calls of every live case; a case that fails is marked skipped. Returns the
    timed closures of the others, by id of their case."""
    calls = {}
    for case in live:
        x = inputs[case.seq_len]
        bar.set_postfix_str(f"warm-up {mode} N={case.seq_len} {case.label}", refresh=False)
        try:
            fn = _call(case, mode, x, s)
            for _ in range(max(s.warmup, 1)):  # one untimed call at least: it can fail
                _clear_grads(case, x)
                fn()
            calls[id(case)] = fn
        except Exception as exc:  # OOM at a large N, a kernel missing on this device...
            case.skipped = f"{mode}: {error_note(exc)}"
            if s.device.type == "cuda":
                torch.cuda.empty_cache()
        bar.update(s.warmup)
    return calls


def _timed_rounds(active: list[Case], mode: str, calls: dict[int, Callable[[], None]],
                  inputs: dict[int, Tensor], s: Settings, order_rng: random.Random,
                  bar) -> None:
    for r in range(s.repeats):
        order = list(active)
        order_rng.shuffle(order)
        for case in order:
            bar.set_postfix_str(f"{mode} repeat {r + 1} N={case.seq_len} {case.label}",
                                refresh=False)
            _clear_grads(case, inputs[case.seq_len])
            case.times[mode].append(time_call(calls[id(case)], s.device))
            bar.update(1)


def measure(cases: list[Case], inputs: dict[int, Tensor], s: Settings) -> None:
    """Warm up every case, then `repeats` rounds; each round times every live case once."""
    from tqdm.auto import tqdm

    live = [c for c in cases if c.skipped is None]
    total = len(live) * len(MODES) * (s.warmup + s.repeats)
    bar = tqdm(total=total, desc="bench", unit="call", file=sys.stderr, dynamic_ncols=True,
               disable=None)
    order_rng = random.Random(s.seed)
    for mode in MODES:
        calls = _warm_up(live, mode, inputs, s, bar)
        live = [c for c in live if c.skipped is None]
        _timed_rounds(live, mode, calls, inputs, s, order_rng, bar)
    bar.close()
    for x in inputs.values():
        x.grad = None


# -- their rows --------------------------------------------------------------------------------


def _mode_entry(t: list[float], bt: list[float]) -> dict[str, Any]:
    return {
        "median_ms": to_ms(median_or_none(t)),
        "min_ms": to_ms(min(t)) if t else None,
        "spread": spread(t),
        "times_ms": [round(v * 1e3, 4) for v in t],
        **paired_ratio(t, bt),
        "ratio_of_min": min(t) / min(bt) if t and bt else None,
    }


def summarise(cases: list[Case]) -> list[dict[str, Any]]:
    baselines = {c.seq_len: c for c in cases if c.op == FULL and c.fraction is None}
    rows = []
    for c in cases:
        base = baselines.get(c.seq_len)
        entry: dict[str, Any] = {
            "seq_len": c.seq_len, "op": c.op, "key": c.key,
            "kind": "operator" if c.fraction is None else "routed", "fraction": c.fraction,
            "flop_ratio": c.flop_ratio, "skipped": c.skipped,
        }
        for mode in MODES:
            entry[mode] = _mode_entry(c.times[mode], base.times[mode] if base is not None else [])
        rows.append(entry)
    return rows


@dataclass
class Microbench:
    """The section's result: the JSON rows, and the cases (their raw times) for the targets."""

    rows: list[dict[str, Any]]
    cases: list[Case]


def run_microbench(s: Settings) -> Microbench:
    cases, inputs = build_cases(s)
    measure(cases, inputs, s)
    return Microbench(summarise(cases), cases)
