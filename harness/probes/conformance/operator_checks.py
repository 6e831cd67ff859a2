"""Operator checks (``operators/base.py``): one function per check, each given a ``Probe``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from harness.probes.conformance.common import (
    Probe,
    check_batch_independent,
    check_close,
    check_finite,
    check_grads,
    check_padding_ignored,
    check_roles,
    fail,
    future_leak,
    under_bf16_autocast,
)
from operators import OPERATOR_ROLES, MixContext
from operators.base import executed_flops
from registry import ConfigError


def _op_forward(op: nn.Module, x: Tensor, ctx: MixContext) -> Tensor:
    y = op(x, ctx)
    if not isinstance(y, Tensor):
        fail(f"forward returned {type(y).__name__}, not a Tensor")
    return y


def _op_contract(p: Probe) -> None:
    cls, s = p.cls, p.s
    for attr in ("supports_causal", "supports_query_subset", "leaky"):
        value = getattr(cls, attr, False)
        if not isinstance(value, bool):
            fail(f"{attr} must be a bool class attribute, got {value!r}")
    check_roles(cls, OPERATOR_ROLES)
    if p.causal and not cls.supports_causal:
        try:
            cls(s.d_model, s.n_heads, s.seq_len, True, **dict(s.options))
        except ConfigError:
            return  # refused with a message: the harness can tell the user why
        fail("declares supports_causal = False but accepts causal=True without raising "
              "ConfigError: on a causal task it would silently see the future")
    op = p.operator()
    if p.causal and getattr(op, "causal", True) is not True:
        fail("built with causal=True but its `causal` attribute is not True")
    x = p.randn(s.batch_size, s.seq_len, s.d_model)
    with torch.no_grad():
        y = _op_forward(op, x, p.ctx())
    if tuple(y.shape) != tuple(x.shape):
        fail(f"output shape {tuple(y.shape)}, expected {tuple(x.shape)} (B, N, D)")
    if y.dtype != torch.float32:
        fail(f"float32 input gave a {y.dtype} output")
    check_finite("output", y)


def _op_dtypes(p: Probe) -> None:
    s = p.s
    op = p.operator()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    with torch.no_grad():
        ref = _op_forward(op, x, ctx)
        check_finite("float32 output", ref)
        real = mask
        for what, y in under_bf16_autocast(p, x, lambda inp: _op_forward(op, inp, ctx)):
            if tuple(y.shape) != tuple(ref.shape) or not y.is_floating_point():
                fail(f"{what}: output {tuple(y.shape)} {y.dtype}, expected "
                      f"{tuple(ref.shape)} floating point")
            check_finite(f"output {what}", y)
            err = (y.float() - ref)[real].pow(2).mean().sqrt()
            scale = ref[real].pow(2).mean().sqrt().clamp_min(1e-6)
            if not float(err / scale) <= s.bf16_tolerance:
                fail(f"{what}: relative RMS error {float(err / scale):.3f} against float32 "
                      f"(tolerance {s.bf16_tolerance})")


def _op_padding(p: Probe) -> None:
    check_padding_ignored(p, partial(_op_forward, p.operator()), "real outputs")


def _op_causality(p: Probe) -> None:
    leak = future_leak(p, partial(_op_forward, p.operator()), "outputs")
    if leak:
        fail(f"causal mode is not causal: {leak}; the operator sees the future")


def _op_batch_independence(p: Probe) -> None:
    check_batch_independent(p, partial(_op_forward, p.operator()),
                            "example {i} alone differs from the same example in a batch of "
                            "{size}")


def _op_gradients(p: Probe) -> None:
    op = p.operator()
    op.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    y = _op_forward(op, x, p.ctx(mask))
    check_finite("output in training mode", y)
    weights = p.randn(*y.shape) * mask[..., None]
    (y.float() * weights).sum().backward()
    check_grads(op, x, "backward through real positions (padded batch)", require_x=True)


def _random_queries(p: Probe, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per example, a random non-empty subset of its real positions in increasing order (as
    routed execution sends them), padded to the batch maximum with arbitrary positions."""
    rows, counts = [], []
    for real in mask.cpu():
        positions = real.nonzero().squeeze(1)
        c = int(torch.randint(1, len(positions) + 1, (1,), generator=p.g))
        chosen = positions[torch.randperm(len(positions), generator=p.g)[:c]].sort().values
        rows.append(chosen)
        counts.append(c)
    q = max(counts)
    n = mask.shape[1]
    out = torch.randint(0, n, (len(rows), q), generator=p.g)  # padded slots: anything
    for i, chosen in enumerate(rows):
        out[i, : len(chosen)] = chosen
    slots = torch.arange(q)[None, :] < torch.tensor(counts)[:, None]
    return out.to(p.device), slots.to(p.device)


def _op_query_subset(p: Probe) -> None:
    s = p.s
    op = p.operator()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    with torch.no_grad():
        full = _op_forward(op, x, ctx)
        positions, slots = _random_queries(p, mask)
        sub = _op_forward(op, x, ctx.with_queries(positions, slots))
        if tuple(sub.shape) != (s.batch_size, positions.shape[1], s.d_model):
            fail(f"with {positions.shape[1]} query positions the output is "
                  f"{tuple(sub.shape)}, expected (B, Q, D) = "
                  f"{(s.batch_size, positions.shape[1], s.d_model)}")
        check_finite("outputs at query slots (padded slots included)", sub)
        gathered = torch.gather(full, 1, positions[..., None].expand(-1, -1, s.d_model))
        check_close("outputs at a subset of query positions differ from the full outputs "
                     "gathered there", sub[slots], gathered[slots], s.rtol)
        # every position, no padding: the same as the full forward
        x = p.randn(s.batch_size, s.seq_len, s.d_model)
        every = torch.arange(s.seq_len, device=p.device).expand(s.batch_size, -1)
        all_slots = torch.ones_like(every, dtype=torch.bool)
        check_close("querying every position differs from the full forward",
                     _op_forward(op, x, p.ctx().with_queries(every, all_slots)),
                     _op_forward(op, x, p.ctx()), s.rtol)
    # gradients through the subset path, padded query slots included
    op.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    positions, slots = _random_queries(p, mask)
    y = _op_forward(op, x, p.ctx(mask).with_queries(positions, slots))
    (y.float() * p.randn(*y.shape) * slots[..., None]).sum().backward()
    check_grads(op, x, "backward through a query subset", require_x=False)


def _flop_value(op: nn.Module, method: str, q: int, k: int) -> float:
    fn = getattr(op, method, None)
    if fn is None:
        fail(f"does not declare {method}(n_query, n_key)")
    try:
        value = fn(q, k)
    except NotImplementedError:
        fail(f"does not implement {method}(n_query, n_key) (see operators/base.py)")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        fail(f"{method}({q}, {k}) returned {value!r}, not a finite number")
    if value != int(value):
        fail(f"{method}({q}, {k}) returned {value!r}, not an integer count")
    # untracked_flops may be negative: work torch's counter charges that the kernel skips
    if value < 0 and method != "untracked_flops":
        fail(f"{method}({q}, {k}) returned {value}, a negative count")
    return float(value)


def _op_flops(p: Probe) -> None:
    op = p.operator()
    n = p.s.seq_len
    for q in (n, n // 2, 1):
        total = _flop_value(op, "flops", q, n)
        untracked = _flop_value(op, "untracked_flops", q, n) \
            if hasattr(op, "untracked_flops") else 0.0
        if untracked > total:
            fail(f"untracked_flops({q}, {n}) = {untracked:.4g} exceeds flops({q}, {n}) = "
                  f"{total:.4g}")
    full, one = op.flops(n, n), op.flops(1, n)
    if one > full:
        fail(f"flops(1, {n}) = {one} exceeds flops({n}, {n}) = {full}: fewer queries must "
              f"not cost more")
    half = _flop_value(op, "flops", n // 2, n // 2)
    if half > full:
        fail(f"flops({n // 2}, {n // 2}) = {half:.4g} exceeds flops({n}, {n}) = {full:.4g}: a "
              f"shorter sequence must not cost more")


def _counted_flops(op: nn.Module, x: Tensor, ctx: MixContext) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # the math backend: torch has no FLOP formula for the fused CPU attention kernel
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        _op_forward(op, x, ctx)
    return counter.get_total_flops()


def _op_flop_counter(p: Probe) -> None:
    s = p.s
    op = p.operator()
    n = s.seq_len
    x = p.randn(1, n, s.d_model)
    cases = [(n, p.ctx())]
    if p.cls.supports_query_subset:
        q = max(1, n // 3)
        positions = torch.randperm(n, generator=p.g)[:q].sort().values[None, :].to(p.device)
        cases.append((q, p.ctx().with_queries(positions, torch.ones_like(positions,
                                                                         dtype=torch.bool))))
    problems = []
    for q, ctx in cases:
        counted = _counted_flops(op, x, ctx)
        total, untracked = executed_flops(op, ctx, n, 1)  # query positions may matter
        declared = total - untracked
        if abs(counted - declared) / max(counted, declared, 1) > s.flop_tolerance:
            problems.append(f"{q} queries over {n} tokens: flops() - untracked_flops() = "
                            f"{declared:.4g} but torch counted {counted:.4g}")
    if problems:
        fail("; ".join(problems) + f" (tolerance {s.flop_tolerance:.0%}; work torch cannot "
              f"see, such as FFTs or elementwise ops, belongs in untracked_flops)")


_OPERATOR_CHECKS: list[tuple[str, Callable[[Probe], None]]] = [
    ("contract", _op_contract),
    ("dtypes", _op_dtypes),
    ("padding", _op_padding),
    ("causality", _op_causality),
    ("batch independence", _op_batch_independence),
    ("gradients", _op_gradients),
    ("query subset", _op_query_subset),
    ("flops", _op_flops),
    ("flop counter", _op_flop_counter),
]
OPERATOR_CHECKS = tuple(name for name, _ in _OPERATOR_CHECKS)
