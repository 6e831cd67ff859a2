"""Conformance suite: the contract checks every operator and router must pass, plugins included.

The harness trusts nothing it is told: each check feeds random inputs and looks at outputs, so
it needs no knowledge of the code under test. Parameters are randomised a little before any
check (many mixers and gates start as the identity or a constant and would pass trivially).

Operators (``operators/base.py``), in non-causal and causal mode:

- contract: declarations are booleans; construction works; ``forward`` returns (B, N, D) float32
  and finite; an operator without a causal form refuses ``causal=True`` with a ConfigError;
- dtypes: float32, and bfloat16 (float32 and bf16 inputs under bf16 autocast) runs, is finite
  and stays close to float32;
- padding: appending padding, or changing what padding holds, never changes real outputs;
- causality (causal mode): perturbing tokens after t leaves outputs at <= t unchanged;
- batch independence: an example's outputs are the same alone and in a batch;
- gradients: finite gradients for the input and every parameter, and every parameter gets one;
- query subset (only if ``supports_query_subset``): outputs at the given positions equal the full
  outputs gathered there (causal masking by original position, padding, padded query slots);
- flops: ``flops(n_query, n_key)`` is declared, an integer >= 0, does not grow when fewer queries
  are asked for, and ``untracked_flops`` lies in [0, flops];
- flop counter: ``flops() - untracked_flops()`` agrees with ``torch.utils.flop_counter`` within
  5%, for the full sequence and for a query subset (attention counted on the math SDPA backend:
  torch has no FLOP formula for the fused CPU kernel).

Routers (``routers/base.py``), in non-causal and causal mode, after a few calibration batches in
training mode and then in eval mode (as the harness uses them):

- contract: a ``Routing`` with weights (B, N, K) finite, a finite scalar aux loss, 'fractions'
  (K,); hard routers give an assignment in [0, K) and weights only at the assigned operator;
  a number of operators outside [min_ops, max_ops] is refused with a ConfigError;
- dtypes, padding, causality (causal mode, whatever the router declares: a router without a
  causal form fails it and the harness refuses it on causal tasks), batch independence,
  gradients: as for operators, on the routing weights and decisions.

Use it three ways::

    from harness.conformance import assert_operator_conforms, assert_router_conforms
    assert_operator_conforms(MyMixer)          # AssertionError listing every failed check
    assert_router_conforms(MyRouter, n_ops=2)

    # a whole pytest module: one test per check and mode
    from harness.conformance import operator_conformance_tests, router_conformance_tests
    from my_pkg import MyMixer, MyRouter
    test_my_mixer = operator_conformance_tests(MyMixer)
    test_my_router = router_conformance_tests(MyRouter)

    # command line, on registered names (plugins included)
    python -m harness.conformance --ops my_mixer --router my_router
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from operators import MixContext
from registry import ChiaroscuroError, ConfigError

RTOL = 1e-5  # exact checks, relative to max(1, |output|): FFT convolutions leak ~1e-7 rounding
BF16_TOLERANCE = 0.05  # bf16 vs float32, relative RMS error over real positions
FLOP_TOLERANCE = 0.05  # analytic vs counted FLOPs, relative
PADDING_GARBAGE = 10.0  # padding tokens hold large random values, so any leak shows


@dataclass(frozen=True)
class Settings:
    """Sizes and tolerances of a conformance run. Small by default: the suite runs in seconds."""

    d_model: int = 32
    n_heads: int = 4
    seq_len: int = 24
    batch_size: int = 3
    options: Mapping[str, Any] = field(default_factory=dict)  # the component's own options
    n_ops: int | None = None  # routers: operators to route between (None: 2, within its range)
    attn_fraction: float = 0.375  # routers
    seed: int = 0
    device: str = "cpu"
    rtol: float = RTOL
    bf16_tolerance: float = BF16_TOLERANCE
    count_flops: bool = True
    flop_tolerance: float = FLOP_TOLERANCE

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 (batch independence needs a batch)")
        if self.seq_len < 4:
            raise ValueError("seq_len must be >= 4")


# -- small helpers ---------------------------------------------------------------------------


def _name(cls: type) -> str:
    registered = getattr(cls, "registry_name", "?")
    return registered if registered not in ("?", None) else cls.__qualname__


def _is_router(cls: type) -> bool:
    from routers import Router

    return isinstance(cls, type) and (
        issubclass(cls, Router) or all(hasattr(cls, a) for a in ("hard", "batch_independent"))
    )


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _tolerance(reference: Tensor, rtol: float) -> float:
    scale = float(reference.float().abs().max()) if reference.numel() else 0.0
    return rtol * max(1.0, scale)


def _perturb_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Add noise to every floating parameter, so that identity or constant initialisations
    (a filter of ones, a zero gate) cannot pass a check by doing nothing."""
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                rms = float(p.float().pow(2).mean().sqrt()) if p.numel() else 0.0
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.add_((noise * (0.1 * rms + 0.05)).to(device=p.device, dtype=p.dtype))


def _lengths(n_rows: int, n: int, g: torch.Generator) -> list[int]:
    """Ragged real lengths: the first row full, the second half, the rest random."""
    lengths = [n, max(1, n // 2)]
    lengths += [int(torch.randint(max(1, n // 2), n + 1, (1,), generator=g))
                for _ in range(n_rows - 2)]
    return lengths[:n_rows]


def _mask(lengths: list[int], n: int) -> Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def _with_garbage(x: Tensor, mask: Tensor, g: torch.Generator) -> Tensor:
    garbage = PADDING_GARBAGE * torch.randn(x.shape, generator=g)
    return torch.where(mask[..., None], x, garbage.to(x))


def _more_padding(p: _Probe, x: Tensor, mask: Tensor, extra: int) -> tuple[Tensor, Tensor]:
    """The same real tokens with `extra` more padding positions and fresh garbage in all."""
    b, _, d = x.shape
    mask2 = torch.cat([mask.cpu(), torch.zeros(b, extra, dtype=torch.bool)], 1)
    x2 = _with_garbage(torch.cat([x.cpu(), torch.zeros(b, extra, d)], 1), mask2, p.g)
    return x2.to(p.device), mask2.to(p.device)


class _Probe:
    """What one case needs: the class under test, its mode, settings and a seeded generator."""

    def __init__(self, cls: type, causal: bool, settings: Settings, check: str):
        self.cls, self.causal, self.s = cls, causal, settings
        self.device = torch.device(settings.device)
        seed = settings.seed * 1_000_003 + zlib.crc32(f"{check}/{causal}".encode())
        self.g = torch.Generator().manual_seed(seed % 2**63)

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.g).to(self.device)

    def ragged(self, n: int | None = None) -> tuple[Tensor, Tensor]:
        """x (B, N, D) with ragged right padding filled with garbage, and its mask (B, N)."""
        s = self.s
        n = n or s.seq_len
        mask = _mask(_lengths(s.batch_size, n, self.g), n)
        x = _with_garbage(torch.randn(s.batch_size, n, s.d_model, generator=self.g), mask, self.g)
        return x.to(self.device), mask.to(self.device)

    def ctx(self, mask: Tensor | None = None) -> MixContext:
        return MixContext(padding_mask=mask, causal=self.causal)

    def autocast_bf16(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # -- building the component --------------------------------------------------------------

    def operator(self) -> nn.Module:
        """A fresh instance (max_len = seq_len) with randomised parameters, in eval mode."""
        s = self.s
        op = self.cls(s.d_model, s.n_heads, s.seq_len, self.causal, **dict(s.options))
        _perturb_parameters(op, self.g)
        return op.to(self.device).eval()

    def n_ops(self) -> int:
        if self.s.n_ops is not None:
            return self.s.n_ops
        return max(getattr(self.cls, "min_ops", 1), min(2, getattr(self.cls, "max_ops", 16)))

    def router(self) -> nn.Module:
        """A fresh instance with randomised parameters, calibrated on a few training batches
        (running thresholds and the like), then in eval mode: as the harness uses it."""
        s = self.s
        router = self.cls(s.d_model, self.n_ops(), causal=self.causal,
                          attn_fraction=s.attn_fraction, **dict(s.options))
        _perturb_parameters(router, self.g)
        router = router.to(self.device).train()
        with torch.no_grad():
            for _ in range(3):
                x, mask = self.ragged()
                router(x, self.ctx(mask))
        return router.eval()


def _fail(message: str) -> None:
    raise AssertionError(message)


def _check_close(what: str, got: Tensor, want: Tensor, rtol: float, hint: str = "") -> None:
    diff, tol = _max_diff(got, want), _tolerance(want, rtol)
    if not diff <= tol:  # also catches NaN
        _fail(f"{what}: max difference {diff:.2e} (tolerance {tol:.1e}){hint}")


def _check_finite(what: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t.float()).all()):
        bad = int((~torch.isfinite(t.float())).sum())
        _fail(f"{what}: {bad} non-finite values")


def _check_grads(module: nn.Module, x: Tensor | None, what: str, require_x: bool) -> None:
    if x is not None:
        if x.grad is None:
            if require_x:
                _fail(f"{what}: no gradient reaches the input x (is the output detached?)")
        else:
            _check_finite(f"{what}: gradient of the input", x.grad)
    missing = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        else:
            _check_finite(f"{what}: gradient of parameter '{name}'", p.grad)
    if missing:
        _fail(f"{what}: parameters {missing} receive no gradient, so they never train")


# -- operator checks -------------------------------------------------------------------------


def _op_forward(op: nn.Module, x: Tensor, ctx: MixContext) -> Tensor:
    y = op(x, ctx)
    if not isinstance(y, Tensor):
        _fail(f"forward returned {type(y).__name__}, not a Tensor")
    return y


def _op_contract(p: _Probe) -> None:
    cls, s = p.cls, p.s
    for attr in ("supports_causal", "supports_query_subset", "leaky"):
        value = getattr(cls, attr, False)
        if not isinstance(value, bool):
            _fail(f"{attr} must be a bool class attribute, got {value!r}")
    if p.causal and not cls.supports_causal:
        try:
            cls(s.d_model, s.n_heads, s.seq_len, True, **dict(s.options))
        except ConfigError:
            return  # refused with a message: the harness can tell the user why
        _fail("declares supports_causal = False but accepts causal=True without raising "
              "ConfigError: on a causal task it would silently see the future")
    op = p.operator()
    if p.causal and getattr(op, "causal", True) is not True:
        _fail("built with causal=True but its `causal` attribute is not True")
    x = p.randn(s.batch_size, s.seq_len, s.d_model)
    with torch.no_grad():
        y = _op_forward(op, x, p.ctx())
    if tuple(y.shape) != tuple(x.shape):
        _fail(f"output shape {tuple(y.shape)}, expected {tuple(x.shape)} (B, N, D)")
    if y.dtype != torch.float32:
        _fail(f"float32 input gave a {y.dtype} output")
    _check_finite("output", y)


def _op_dtypes(p: _Probe) -> None:
    s = p.s
    op = p.operator()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    with torch.no_grad():
        ref = _op_forward(op, x, ctx)
        _check_finite("float32 output", ref)
        real = mask
        for what, y in _under_bf16_autocast(p, x, lambda inp: _op_forward(op, inp, ctx)):
            if tuple(y.shape) != tuple(ref.shape) or not y.is_floating_point():
                _fail(f"{what}: output {tuple(y.shape)} {y.dtype}, expected "
                      f"{tuple(ref.shape)} floating point")
            _check_finite(f"output {what}", y)
            err = (y.float() - ref)[real].pow(2).mean().sqrt()
            scale = ref[real].pow(2).mean().sqrt().clamp_min(1e-6)
            if not float(err / scale) <= s.bf16_tolerance:
                _fail(f"{what}: relative RMS error {float(err / scale):.3f} against float32 "
                      f"(tolerance {s.bf16_tolerance})")


def _under_bf16_autocast(p: _Probe, x: Tensor, forward: Callable[[Tensor], Any]):
    """Yield (description, output) of `forward` under bf16 autocast, fed float32 and then
    bfloat16 inputs; a crash inside the component fails the check with what it raised."""
    for label, inp in (("float32 input", x), ("bfloat16 input", x.to(torch.bfloat16))):
        what = f"under bf16 autocast with {label}"
        try:
            with p.autocast_bf16():
                out = forward(inp)
        except AssertionError:
            raise
        except Exception as exc:
            _fail(f"{what}: forward raised {type(exc).__name__}: {exc}")
        yield what, out


def _op_padding(p: _Probe) -> None:
    s = p.s
    op = p.operator()
    n = s.seq_len
    with torch.no_grad():
        # 1. every example the same real length; appending padding (of garbage) changes nothing
        real = max(1, (3 * n) // 4)
        x = p.randn(s.batch_size, real, s.d_model)
        alone = _op_forward(op, x, p.ctx())
        mask = torch.zeros(s.batch_size, n, dtype=torch.bool, device=p.device)
        mask[:, :real] = True
        padded = _with_garbage(torch.cat([x.cpu(), torch.zeros(s.batch_size, n - real,
                                                               s.d_model)], 1), mask.cpu(), p.g)
        y = _op_forward(op, padded.to(p.device), p.ctx(mask))
        _check_close(f"appending {n - real} padding tokens changed real outputs",
                     y[:, :real], alone, s.rtol)
        # 2. ragged lengths: other garbage and more padding change nothing either
        x, mask = p.ragged(n - n // 4)
        x2, mask2 = _more_padding(p, x, mask, n // 4)
        y1 = _op_forward(op, x, p.ctx(mask))
        y2 = _op_forward(op, x2, p.ctx(mask2))
        _check_close("changing the content and amount of padding (ragged batch) changed real "
                     "outputs", y2[mask2], y1[mask], s.rtol)


def _op_causality(p: _Probe) -> None:
    s = p.s
    op = p.operator()
    n = s.seq_len
    x = p.randn(s.batch_size, n, s.d_model)
    worst, where, tol = 0.0, None, 0.0
    with torch.no_grad():
        ref = _op_forward(op, x, p.ctx())
        tol = _tolerance(ref, s.rtol)
        for t in sorted({0, n // 3, n // 2, n - 2}):
            y = x.clone()
            y[:, t + 1:] = p.randn(s.batch_size, n - t - 1, s.d_model)
            diff = _max_diff(_op_forward(op, y, p.ctx())[:, : t + 1], ref[:, : t + 1])
            if diff > worst or math.isnan(diff):
                worst, where = diff, t
    if not worst <= tol:
        _fail(f"causal mode is not causal: changing tokens after t={where} changed outputs at "
              f"positions <= t by {worst:.2e} (tolerance {tol:.1e}); the operator sees the "
              f"future")


def _op_batch_independence(p: _Probe) -> None:
    s = p.s
    op = p.operator()
    x, mask = p.ragged()
    with torch.no_grad():
        together = _op_forward(op, x, p.ctx(mask))
        for i in range(s.batch_size):
            alone = _op_forward(op, x[i: i + 1], p.ctx(mask[i: i + 1]))
            _check_close(f"example {i} alone differs from the same example in a batch of "
                         f"{s.batch_size}", alone[0][mask[i]], together[i][mask[i]], s.rtol)


def _op_gradients(p: _Probe) -> None:
    op = p.operator()
    op.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    y = _op_forward(op, x, p.ctx(mask))
    _check_finite("output in training mode", y)
    weights = p.randn(*y.shape) * mask[..., None]
    (y.float() * weights).sum().backward()
    _check_grads(op, x, "backward through real positions (padded batch)", require_x=True)


def _random_queries(p: _Probe, mask: Tensor) -> tuple[Tensor, Tensor]:
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


def _op_query_subset(p: _Probe) -> None:
    s = p.s
    op = p.operator()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    with torch.no_grad():
        full = _op_forward(op, x, ctx)
        positions, slots = _random_queries(p, mask)
        sub = _op_forward(op, x, ctx.with_queries(positions, slots))
        if tuple(sub.shape) != (s.batch_size, positions.shape[1], s.d_model):
            _fail(f"with {positions.shape[1]} query positions the output is "
                  f"{tuple(sub.shape)}, expected (B, Q, D) = "
                  f"{(s.batch_size, positions.shape[1], s.d_model)}")
        _check_finite("outputs at query slots (padded slots included)", sub)
        gathered = torch.gather(full, 1, positions[..., None].expand(-1, -1, s.d_model))
        _check_close("outputs at a subset of query positions differ from the full outputs "
                     "gathered there", sub[slots], gathered[slots], s.rtol)
        # every position, no padding: the same as the full forward
        x = p.randn(s.batch_size, s.seq_len, s.d_model)
        every = torch.arange(s.seq_len, device=p.device).expand(s.batch_size, -1)
        all_slots = torch.ones_like(every, dtype=torch.bool)
        _check_close("querying every position differs from the full forward",
                     _op_forward(op, x, p.ctx().with_queries(every, all_slots)),
                     _op_forward(op, x, p.ctx()), s.rtol)
    # gradients through the subset path, padded query slots included
    op.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    positions, slots = _random_queries(p, mask)
    y = _op_forward(op, x, p.ctx(mask).with_queries(positions, slots))
    (y.float() * p.randn(*y.shape) * slots[..., None]).sum().backward()
    _check_grads(op, x, "backward through a query subset", require_x=False)


def _flop_value(op: nn.Module, method: str, q: int, k: int) -> float:
    fn = getattr(op, method, None)
    if fn is None:
        _fail(f"does not declare {method}(n_query, n_key)")
    try:
        value = fn(q, k)
    except NotImplementedError:
        _fail(f"does not implement {method}(n_query, n_key) (see operators/base.py)")
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(f"{method}({q}, {k}) returned {value!r}, not a finite number")
    if value != int(value):
        _fail(f"{method}({q}, {k}) returned {value!r}, not an integer count")
    # untracked_flops may be negative: work torch's counter charges that the kernel skips
    if value < 0 and method != "untracked_flops":
        _fail(f"{method}({q}, {k}) returned {value}, a negative count")
    return float(value)


def _op_flops(p: _Probe) -> None:
    op = p.operator()
    n = p.s.seq_len
    for q in (n, n // 2, 1):
        total = _flop_value(op, "flops", q, n)
        untracked = _flop_value(op, "untracked_flops", q, n) \
            if hasattr(op, "untracked_flops") else 0.0
        if untracked > total:
            _fail(f"untracked_flops({q}, {n}) = {untracked:.4g} exceeds flops({q}, {n}) = "
                  f"{total:.4g}")
    full, one = op.flops(n, n), op.flops(1, n)
    if one > full:
        _fail(f"flops(1, {n}) = {one} exceeds flops({n}, {n}) = {full}: fewer queries must "
              f"not cost more")
    half = _flop_value(op, "flops", n // 2, n // 2)
    if half > full:
        _fail(f"flops({n // 2}, {n // 2}) = {half:.4g} exceeds flops({n}, {n}) = {full:.4g}: a "
              f"shorter sequence must not cost more")


def _counted_flops(op: nn.Module, x: Tensor, ctx: MixContext) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    # the math backend: torch has no FLOP formula for the fused CPU attention kernel
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        _op_forward(op, x, ctx)
    return counter.get_total_flops()


def _op_flop_counter(p: _Probe) -> None:
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
        untracked = op.untracked_flops(q, n) if hasattr(op, "untracked_flops") else 0
        declared = op.flops(q, n) - untracked
        if abs(counted - declared) / max(counted, declared, 1) > s.flop_tolerance:
            problems.append(f"{q} queries over {n} tokens: flops() - untracked_flops() = "
                            f"{declared:.4g} but torch counted {counted:.4g}")
    if problems:
        _fail("; ".join(problems) + f" (tolerance {s.flop_tolerance:.0%}; work torch cannot "
              f"see, such as FFTs or elementwise ops, belongs in untracked_flops)")


# -- router checks ---------------------------------------------------------------------------


def _route(router: nn.Module, x: Tensor, ctx: MixContext):
    routing = router(x, ctx)
    for attr in ("assignment", "weights", "aux_loss", "stats"):
        if not hasattr(routing, attr):
            _fail(f"forward returned {type(routing).__name__} without '{attr}' "
                  f"(return routers.Routing)")
    return routing


def _decisions(routing) -> Tensor:
    """What must not change: the weights, and the assignment (as a float column) if any."""
    w = routing.weights.float()
    if routing.assignment is None:
        return w
    return torch.cat([w, routing.assignment.float().unsqueeze(-1)], dim=-1)


def _router_contract(p: _Probe) -> None:
    cls, s = p.cls, p.s
    for attr in ("hard", "causal", "batch_independent", "leaky"):
        value = getattr(cls, attr, None)
        if not isinstance(value, bool):
            _fail(f"{attr} must be a bool class attribute, got {value!r}")
    lo, hi = getattr(cls, "min_ops", 1), getattr(cls, "max_ops", 16)
    for bad in (lo - 1, hi + 1):
        if bad < 1 or bad > 64:
            continue
        try:
            cls(s.d_model, bad, causal=p.causal, attn_fraction=s.attn_fraction,
                **dict(s.options))
        except ConfigError:
            continue
        _fail(f"declares min_ops={lo}, max_ops={hi} but accepts {bad} operators without "
              f"raising ConfigError")
    k = p.n_ops()
    router = p.router()
    x, mask = p.ragged()
    b, n = mask.shape
    with torch.no_grad():
        routing = _route(router, x, p.ctx(mask))
    w = routing.weights
    if not isinstance(w, Tensor) or tuple(w.shape) != (b, n, k) or not w.is_floating_point():
        _fail(f"weights must be a float tensor (B, N, K) = {(b, n, k)}, got "
              f"{getattr(w, 'shape', w)!r}")
    _check_finite("weights", w)
    aux = routing.aux_loss
    if not isinstance(aux, Tensor) or aux.dim() != 0:
        _fail(f"aux_loss must be a scalar tensor, got {aux!r}")
    _check_finite("aux_loss", aux)
    fractions = routing.stats.get("fractions") if isinstance(routing.stats, dict) else None
    if not isinstance(fractions, Tensor) or tuple(fractions.shape) != (k,):
        _fail(f"stats['fractions'] must be a ({k},) tensor of shares per operator, got "
              f"{fractions!r}")
    _check_finite("stats['fractions']", fractions)
    if bool((fractions < -1e-6).any()):
        _fail(f"stats['fractions'] has negative shares: {fractions.tolist()}")
    a = routing.assignment
    if cls.hard:
        if a is None:
            _fail("declares hard = True but returns no assignment")
    if a is not None:
        if not isinstance(a, Tensor) or tuple(a.shape) != (b, n) or a.dtype != torch.long:
            _fail(f"assignment must be a long tensor (B, N) = {(b, n)}, got "
                  f"{getattr(a, 'dtype', a)} {tuple(getattr(a, 'shape', ()))}")
        if bool(((a < 0) | (a >= k)).any()):
            _fail(f"assignment has operator indices outside [0, {k})")
        off = w.masked_fill(torch.nn.functional.one_hot(a, k).bool(), 0)
        if bool((off != 0).any()):
            _fail("hard routing puts non-zero weight on operators a token is not assigned to")
        total = float(fractions.sum())
        if abs(total - 1.0) > 1e-4:
            _fail(f"stats['fractions'] of a hard router must sum to 1 over real tokens, got "
                  f"{total:.4f}")


def _router_dtypes(p: _Probe) -> None:
    router = p.router()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    k = p.n_ops()
    with torch.no_grad():
        ref = _route(router, x, ctx)
        for what, routing in _under_bf16_autocast(p, x, lambda inp: _route(router, inp, ctx)):
            if tuple(routing.weights.shape) != tuple(ref.weights.shape):
                _fail(f"{what}: weights {tuple(routing.weights.shape)}, expected "
                      f"{tuple(ref.weights.shape)}")
            _check_finite(f"weights {what}", routing.weights)
            _check_finite(f"aux_loss {what}", torch.as_tensor(routing.aux_loss))
            a = routing.assignment
            if a is not None and bool(((a < 0) | (a >= k)).any()):
                _fail(f"{what}: assignment outside [0, {k})")


def _router_padding(p: _Probe) -> None:
    s = p.s
    router = p.router()
    n = s.seq_len
    with torch.no_grad():
        real = max(1, (3 * n) // 4)
        x = p.randn(s.batch_size, real, s.d_model)
        alone = _decisions(_route(router, x, p.ctx()))
        mask = torch.zeros(s.batch_size, n, dtype=torch.bool)
        mask[:, :real] = True
        padded = _with_garbage(torch.cat([x.cpu(), torch.zeros(s.batch_size, n - real,
                                                               s.d_model)], 1), mask, p.g)
        mask = mask.to(p.device)
        y = _decisions(_route(router, padded.to(p.device), p.ctx(mask)))
        _check_close(f"appending {n - real} padding tokens changed the routing of real tokens",
                     y[:, :real], alone, s.rtol)
        x, mask = p.ragged(n - n // 4)
        x2, mask2 = _more_padding(p, x, mask, n // 4)
        d1 = _decisions(_route(router, x, p.ctx(mask)))
        d2 = _decisions(_route(router, x2, p.ctx(mask2)))
        _check_close("changing the content and amount of padding (ragged batch) changed the "
                     "routing of real tokens", d2[mask2], d1[mask], s.rtol)


def _router_causality(p: _Probe) -> None:
    s = p.s
    router = p.router()
    n = s.seq_len
    x = p.randn(s.batch_size, n, s.d_model)
    worst, where = 0.0, None
    with torch.no_grad():
        ref = _decisions(_route(router, x, p.ctx()))
        tol = _tolerance(ref, s.rtol)
        for t in sorted({0, n // 3, n // 2, n - 2}):
            y = x.clone()
            y[:, t + 1:] = p.randn(s.batch_size, n - t - 1, s.d_model)
            diff = _max_diff(_decisions(_route(router, y, p.ctx()))[:, : t + 1],
                             ref[:, : t + 1])
            if diff > worst or math.isnan(diff):
                worst, where = diff, t
    if not worst <= tol:
        declared = "" if p.cls.causal else (
            " (it declares causal = False: the harness refuses it on causal tasks unless "
            "--allow-leaky)")
        _fail(f"routing on a causal task is not causal: changing tokens after t={where} changed "
              f"decisions at positions <= t by {worst:.2e} (tolerance {tol:.1e}){declared}")


def _router_batch_independence(p: _Probe) -> None:
    s = p.s
    router = p.router()
    x, mask = p.ragged()
    hint = "" if p.cls.batch_independent else (
        " (it declares batch_independent = False: a leaky variant on every task)")
    with torch.no_grad():
        together = _decisions(_route(router, x, p.ctx(mask)))
        for i in range(s.batch_size):
            alone = _decisions(_route(router, x[i: i + 1], p.ctx(mask[i: i + 1])))
            _check_close(f"example {i} is routed differently alone and in a batch of "
                         f"{s.batch_size}", alone[0][mask[i]], together[i][mask[i]], s.rtol,
                         hint)


def _router_gradients(p: _Probe) -> None:
    router = p.router()
    router.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    routing = _route(router, x, p.ctx(mask))
    _check_finite("weights in training mode", routing.weights)
    loss = (routing.weights.float() * p.randn(*routing.weights.shape) * mask[..., None]).sum()
    loss = loss + torch.as_tensor(routing.aux_loss).float()
    if loss.requires_grad:
        loss.backward()
    elif any(q.requires_grad for q in router.parameters()):
        _fail("has trainable parameters but neither weights nor aux_loss depend on them")
    _check_grads(router, x, "backward through weights and aux_loss", require_x=False)


# -- cases -----------------------------------------------------------------------------------

_OPERATOR_CHECKS: list[tuple[str, Callable[[_Probe], None]]] = [
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
_ROUTER_CHECKS: list[tuple[str, Callable[[_Probe], None]]] = [
    ("contract", _router_contract),
    ("dtypes", _router_dtypes),
    ("padding", _router_padding),
    ("causality", _router_causality),
    ("batch independence", _router_batch_independence),
    ("gradients", _router_gradients),
]
OPERATOR_CHECKS = tuple(name for name, _ in _OPERATOR_CHECKS)
ROUTER_CHECKS = tuple(name for name, _ in _ROUTER_CHECKS)


@dataclass(frozen=True)
class ConformanceCase:
    """One check of one component in one mode. ``run()`` raises AssertionError on failure."""

    kind: str  # "operator" or "router"
    target: type
    check: str
    causal: bool
    settings: Settings
    func: Callable[[_Probe], None] = field(repr=False, compare=False)

    @property
    def mode(self) -> str:
        return "causal" if self.causal else "non-causal"

    @property
    def id(self) -> str:
        return f"{self.check.replace(' ', '-')}-{self.mode}"

    @property
    def component(self) -> str:
        return f"{self.kind} '{_name(self.target)}'"

    def run(self) -> None:
        try:
            self.func(_Probe(self.target, self.causal, self.settings, self.check))
        except AssertionError as exc:
            raise AssertionError(f"{self.component} fails '{self.check}' ({self.mode}): "
                                 f"{exc}") from None
        except Exception as exc:  # a crash inside the component is a failure of the check
            raise AssertionError(f"{self.component} fails '{self.check}' ({self.mode}): "
                                 f"raised {type(exc).__name__}: {exc}") from exc

    def failure(self) -> str | None:
        """None if the check passes, else the message."""
        try:
            self.run()
        except AssertionError as exc:
            return str(exc)
        return None


def _resolve(target: type | str, kind: str | None) -> tuple[type, str]:
    if isinstance(target, str):  # a registered name, plugins included
        from operators import OPERATORS
        from routers import ROUTERS

        if kind == "router" or (kind is None and target not in OPERATORS and target in ROUTERS):
            return ROUTERS.get(target), "router"
        return OPERATORS.get(target), "operator"
    return target, kind or ("router" if _is_router(target) else "operator")


def conformance_cases(
    target: type | str,
    *,
    kind: str | None = None,
    causal_modes: Iterable[bool] = (False, True),
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> list[ConformanceCase]:
    """Every (check, mode) case for an operator or router class (or registered name).

    ``settings`` are ``Settings`` fields (d_model, n_heads, seq_len, options, n_ops, ...).
    Operators: in causal mode, one without a causal form (``supports_causal = False``) is only
    checked to refuse ``causal=True``; 'query subset' applies only when declared; 'flop counter'
    only when ``count_flops`` (default True). Routers: 'causality' runs in causal mode whatever
    the router declares; pass ``causal_modes=(False,)`` for a classification-only router.
    """
    cls, kind = _resolve(target, kind)
    options = settings.pop("options", None) or {}
    s = Settings(options=dict(options), **settings)
    table = _ROUTER_CHECKS if kind == "router" else _OPERATOR_CHECKS
    if kind == "router" and s.n_ops is not None:
        lo, hi = getattr(cls, "min_ops", 1), getattr(cls, "max_ops", 16)
        if not lo <= s.n_ops <= hi:
            raise ConfigError(f"router '{_name(cls)}' routes between {lo} and {hi} operators; "
                              f"n_ops={s.n_ops} cannot be checked")
    wanted = set(checks) if checks is not None else None
    if wanted is not None and wanted - {name for name, _ in table}:
        raise ValueError(f"unknown checks {sorted(wanted - {n for n, _ in table})}; "
                         f"{kind} checks are {[n for n, _ in table]}")
    cases = []
    for causal in causal_modes:
        for name, func in table:
            if wanted is not None and name not in wanted:
                continue
            if name == "causality" and not causal:
                continue
            if kind == "operator":
                if causal and not getattr(cls, "supports_causal", True) and name != "contract":
                    continue
                if name == "query subset" and not getattr(cls, "supports_query_subset", False):
                    continue
                if name == "flop counter" and not s.count_flops:
                    continue
            cases.append(ConformanceCase(kind, cls, name, bool(causal), s, func))
    return cases


def _assert_all(cases: list[ConformanceCase]) -> None:
    failures = [f for f in (case.failure() for case in cases) if f is not None]
    if failures:
        raise AssertionError(f"{len(failures)} of {len(cases)} conformance checks failed:\n"
                             + "\n".join(f"- {f}" for f in failures))


def assert_operator_conforms(
    op_cls: type | str,
    *,
    d_model: int = 32,
    n_heads: int = 4,
    seq_len: int = 24,
    causal_modes: Iterable[bool] = (False, True),
    options: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> None:
    """Run every operator check in each mode; raise one AssertionError listing all failures."""
    _assert_all(conformance_cases(op_cls, kind="operator", causal_modes=causal_modes,
                                  checks=checks, d_model=d_model, n_heads=n_heads,
                                  seq_len=seq_len, options=options, **settings))


def assert_router_conforms(
    router_cls: type | str,
    n_ops: int | None = None,
    *,
    d_model: int = 32,
    seq_len: int = 24,
    causal_modes: Iterable[bool] = (False, True),
    options: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> None:
    """Run every router check in each mode, routing between ``n_ops`` operators (default 2,
    within the router's [min_ops, max_ops]); raise one AssertionError listing all failures."""
    _assert_all(conformance_cases(router_cls, kind="router", causal_modes=causal_modes,
                                  checks=checks, d_model=d_model, seq_len=seq_len, n_ops=n_ops,
                                  options=options, **settings))


def _pytest_function(cases: list[ConformanceCase]) -> Callable[[ConformanceCase], None]:
    import pytest

    @pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])
    def test_conformance(case: ConformanceCase) -> None:
        case.run()

    return test_conformance


def operator_conformance_tests(op_cls: type | str, **kwargs: Any):
    """A parametrised pytest test function, one test per check and mode. In a test module::

        test_my_mixer = operator_conformance_tests(MyMixer)
    """
    return _pytest_function(conformance_cases(op_cls, kind="operator", **kwargs))


def router_conformance_tests(router_cls: type | str, **kwargs: Any):
    """As ``operator_conformance_tests``, for a router: ``test_r = router_conformance_tests(R)``."""
    return _pytest_function(conformance_cases(router_cls, kind="router", **kwargs))


# -- results for the command line ------------------------------------------------------------


@dataclass
class ConformanceResult:
    component: str
    check: str
    mode: str
    passed: bool
    detail: str

    def row(self) -> list[str]:
        return [self.component, self.check, self.mode, "pass" if self.passed else "FAIL",
                self.detail]


def run_conformance(
    ops: Iterable[str] = (),
    router: str | None = None,
    *,
    op_options: Mapping[str, Mapping[str, Any]] | None = None,
    router_options: Mapping[str, Any] | None = None,
    causal_modes: Iterable[bool] = (False, True),
    **settings: Any,
) -> list[ConformanceResult]:
    """Every check for registered operators and a router (by name); one result per case.
    Unknown names raise UnknownNameError (with "did you mean")."""
    from operators import OPERATORS
    from routers import ROUTERS

    causal_modes = tuple(causal_modes)
    groups: list[list[ConformanceCase]] = []
    for name in ops:
        groups.append(conformance_cases(
            OPERATORS.get(name), kind="operator", causal_modes=causal_modes,
            options=dict((op_options or {}).get(name, {})), **settings))
    if router is not None:
        groups.append(conformance_cases(
            ROUTERS.get(router), kind="router", causal_modes=causal_modes,
            options=dict(router_options or {}), **settings))
    results = []
    for case in (c for group in groups for c in group):
        message = case.failure()
        detail = "ok" if message is None else message.split("): ", 1)[-1]
        results.append(ConformanceResult(case.component, case.check, case.mode,
                                         message is None, detail))
    return results


def conformance_check_results(cfg: Any, causal: bool, *, seq_len: int = 32,
                              seed: int = 0) -> list[Any]:
    """The suite for a run's operators and router, in the task's mode, summarised as one
    ``harness.measure.checks.CheckResult`` per component (for ``python -m harness check``)."""
    from harness.measure.checks import CheckResult

    m, r = cfg.model, cfg.routing
    results = run_conformance(
        r.ops, r.router, op_options=r.op_options, router_options=r.router_options,
        causal_modes=(causal,), d_model=m.d_model, n_heads=m.heads,
        seq_len=max(8, seq_len), n_ops=len(r.ops), attn_fraction=r.attn_fraction, seed=seed)
    out = []
    for component in dict.fromkeys(res.component for res in results):
        mine = [res for res in results if res.component == component]
        failed = [res for res in mine if not res.passed]
        if failed:
            detail = "; ".join(f"{res.check}: {res.detail}" for res in failed)
        else:
            detail = f"{len(mine)} checks pass ({', '.join(res.check for res in mine)})"
        out.append(CheckResult(f"conformance: {component}", not failed, detail,
                               (component,) if failed else ()))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness.conformance",
        description="Run the conformance suite on registered operators and a router "
                    "(built-in or plugin).")
    p.add_argument("--ops", default="", help="comma-separated operator names")
    p.add_argument("--router", default=None, help="router name")
    p.add_argument("--n-ops", type=int, default=None,
                   help="operators the router routes between (default: 2 if it accepts 2)")
    p.add_argument("--mode", choices=["both", "causal", "non-causal"], default="both")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=24)
    p.add_argument("--batch-size", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-flop-counter", action="store_true",
                   help="skip the comparison with torch.utils.flop_counter")
    p.add_argument("--op-option", action="append", metavar="OP.KEY=VALUE")
    p.add_argument("--router-option", action="append", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        if not ops and args.router is None:
            raise ConfigError("nothing to check: pass --ops NAME[,NAME] and/or --router NAME")
        op_options: dict[str, dict[str, Any]] = {}
        for key, value in _parse_options(args.op_option, "--op-option").items():
            op, dot, option = key.partition(".")
            if not dot:
                raise ConfigError(f"--op-option expects OP.KEY=VALUE, got '{key}={value}'")
            op_options.setdefault(op, {})[option] = value
        modes = {"both": (False, True), "causal": (True,), "non-causal": (False,)}[args.mode]
        results = run_conformance(
            ops, args.router, op_options=op_options,
            router_options=_parse_options(args.router_option, "--router-option"),
            causal_modes=modes, d_model=args.d_model, n_heads=args.heads,
            seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed,
            device=args.device, count_flops=not args.no_flop_counter, n_ops=args.n_ops)
    except ChiaroscuroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        from tabulate import tabulate

        print(tabulate([r.row() for r in results],
                       headers=["component", "check", "mode", "result", "detail"]))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed", file=sys.stderr if args.json
          else sys.stdout)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ConformanceCase",
    "ConformanceResult",
    "OPERATOR_CHECKS",
    "ROUTER_CHECKS",
    "Settings",
    "assert_operator_conforms",
    "assert_router_conforms",
    "conformance_cases",
    "operator_conformance_tests",
    "router_conformance_tests",
    "run_conformance",
]
