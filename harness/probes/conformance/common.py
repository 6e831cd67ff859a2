"""Shared by every conformance check: settings, tolerances, the probe that builds the component
under test with seeded random inputs, and the assertion helpers."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.options import ATTN_FRACTION
from operators import MixContext
from registry import ConfigError

RTOL = 1e-5  # exact checks, relative to max(1, |output|): FFT convolutions leak ~1e-7 rounding
BF16_TOLERANCE = 0.05  # bf16 vs float32, relative RMS error over real positions
FLOP_TOLERANCE = 0.05  # analytic vs counted FLOPs, relative
PADDING_GARBAGE = 10.0  # padding tokens hold large random values, so any leak shows
# Upper bounds: the checks compare whole forward passes position by position (causality cuts
# the sequence at several places, the router checks build dense N x N references), so their
# cost grows at least quadratically; past these a run would print nothing for minutes.
# Timing and memory at large sizes are the bench's job.
MAX_SEQ_LEN = 4096
MAX_D_MODEL = 4096
MAX_BATCH_SIZE = 64


@dataclass(frozen=True)
class Settings:
    """Sizes and tolerances of a conformance run. Small by default: the suite runs in seconds."""

    d_model: int = 32
    n_heads: int = 4
    seq_len: int = 24
    batch_size: int = 3
    options: Mapping[str, Any] = field(default_factory=dict)  # the component's own options
    n_ops: int | None = None  # routers: operators to route between (None: 2, within its range)
    attn_fraction: float = ATTN_FRACTION  # routers
    seed: int = 0
    device: str = "cpu"
    rtol: float = RTOL
    bf16_tolerance: float = BF16_TOLERANCE
    count_flops: bool = True
    flop_tolerance: float = FLOP_TOLERANCE

    def __post_init__(self) -> None:
        # ConfigError (a ValueError): the command line prints it as one line and exits 2
        if self.batch_size < 2:
            raise ConfigError(f"batch_size must be >= 2 (batch independence needs a batch), "
                              f"got {self.batch_size}")
        if self.seq_len < 4:
            raise ConfigError(f"seq_len must be >= 4 (causality is cut at several positions), "
                              f"got {self.seq_len}")
        for name, value, bound in (("seq_len", self.seq_len, MAX_SEQ_LEN),
                                   ("d_model", self.d_model, MAX_D_MODEL),
                                   ("batch_size", self.batch_size, MAX_BATCH_SIZE)):
            if value > bound:
                raise ConfigError(f"{name} {value:,} is above the conformance suite's bound "
                                  f"{bound:,} (exact checks at small sizes; their cost grows at "
                                  f"least quadratically); lower it, or time large sizes with "
                                  f"`python -m harness bench`")


# -- small helpers ---------------------------------------------------------------------------


def registered_name(cls: type) -> str:
    registered = getattr(cls, "registry_name", "?")
    return registered if registered not in ("?", None) else cls.__qualname__


def is_router(cls: type) -> bool:
    from routers import Router

    return isinstance(cls, type) and (
        issubclass(cls, Router) or all(hasattr(cls, a) for a in ("hard", "batch_independent"))
    )


def max_diff(a: Tensor, b: Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def tolerance(reference: Tensor, rtol: float) -> float:
    scale = float(reference.float().abs().max()) if reference.numel() else 0.0
    return rtol * max(1.0, scale)


def perturb_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Add noise to every floating parameter, so that identity or constant initialisations
    (a filter of ones, a zero gate) cannot pass a check by doing nothing."""
    with torch.no_grad():
        for p in module.parameters():
            if p.is_floating_point():
                rms = float(p.float().pow(2).mean().sqrt()) if p.numel() else 0.0
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.add_((noise * (0.1 * rms + 0.05)).to(device=p.device, dtype=p.dtype))


def random_lengths(n_rows: int, n: int, g: torch.Generator) -> list[int]:
    """Ragged real lengths: the first row full, the second half, the rest random."""
    lengths = [n, max(1, n // 2)]
    lengths += [int(torch.randint(max(1, n // 2), n + 1, (1,), generator=g))
                for _ in range(n_rows - 2)]
    return lengths[:n_rows]


def mask_of_lengths(lengths: list[int], n: int) -> Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def with_garbage(x: Tensor, mask: Tensor, g: torch.Generator) -> Tensor:
    garbage = PADDING_GARBAGE * torch.randn(x.shape, generator=g)
    return torch.where(mask[..., None], x, garbage.to(x))


def more_padding(p: Probe, x: Tensor, mask: Tensor, extra: int) -> tuple[Tensor, Tensor]:
    """The same real tokens with `extra` more padding positions and fresh garbage in all."""
    b, _, d = x.shape
    mask2 = torch.cat([mask.cpu(), torch.zeros(b, extra, dtype=torch.bool)], 1)
    x2 = with_garbage(torch.cat([x.cpu(), torch.zeros(b, extra, d)], 1), mask2, p.g)
    return x2.to(p.device), mask2.to(p.device)


class Probe:
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
        mask = mask_of_lengths(random_lengths(s.batch_size, n, self.g), n)
        x = with_garbage(torch.randn(s.batch_size, n, s.d_model, generator=self.g), mask, self.g)
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
        perturb_parameters(op, self.g)
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
        perturb_parameters(router, self.g)
        router = router.to(self.device).train()
        with torch.no_grad():
            for _ in range(3):
                x, mask = self.ragged()
                router(x, self.ctx(mask))
        return router.eval()


def fail(message: str) -> None:
    raise AssertionError(message)


def check_roles(cls: type, known: dict[str, str]) -> None:
    """``roles`` is a tuple of the registry's role names (what the board reads)."""
    roles = getattr(cls, "roles", ())
    if not (isinstance(roles, tuple) and all(isinstance(r, str) for r in roles)
            and set(roles) <= set(known)):
        fail(f"roles must be a tuple of role names ({', '.join(known)}), got {roles!r}")


def check_close(what: str, got: Tensor, want: Tensor, rtol: float, hint: str = "") -> None:
    diff, tol = max_diff(got, want), tolerance(want, rtol)
    if not diff <= tol:  # also catches NaN
        fail(f"{what}: max difference {diff:.2e} (tolerance {tol:.1e}){hint}")


def check_finite(what: str, t: Tensor) -> None:
    if not bool(torch.isfinite(t.float()).all()):
        bad = int((~torch.isfinite(t.float())).sum())
        fail(f"{what}: {bad} non-finite values")


def check_grads(module: nn.Module, x: Tensor | None, what: str, require_x: bool) -> None:
    if x is not None:
        if x.grad is None:
            if require_x:
                fail(f"{what}: no gradient reaches the input x (is the output detached?)")
        else:
            check_finite(f"{what}: gradient of the input", x.grad)
    missing = []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        else:
            check_finite(f"{what}: gradient of parameter '{name}'", p.grad)
    if missing:
        fail(f"{what}: parameters {missing} receive no gradient, so they never train")


def under_bf16_autocast(p: Probe, x: Tensor, forward: Callable[[Tensor], Any]):
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
            fail(f"{what}: forward raised {type(exc).__name__}: {exc}")
        yield what, out


# -- the questions operators and routers are both asked ------------------------------------------
# `run(x, ctx)` is what must not change: an operator's outputs, a router's decisions, (B, N, ...).


def check_padding_ignored(p: Probe, run: Callable[[Tensor, MixContext], Tensor],
                          changed: str) -> None:
    """At real tokens `run` gives the same (1) with padding of garbage appended to examples of
    one length, (2) with other garbage and more padding in a ragged batch. `changed`: what the
    failure says changed."""
    s = p.s
    n = s.seq_len
    with torch.no_grad():
        real = max(1, (3 * n) // 4)
        x = p.randn(s.batch_size, real, s.d_model)
        alone = run(x, p.ctx())
        mask = torch.zeros(s.batch_size, n, dtype=torch.bool)
        mask[:, :real] = True
        padded = with_garbage(torch.cat([x.cpu(), torch.zeros(s.batch_size, n - real,
                                                               s.d_model)], 1), mask, p.g)
        mask = mask.to(p.device)
        y = run(padded.to(p.device), p.ctx(mask))
        check_close(f"appending {n - real} padding tokens changed {changed}", y[:, :real],
                    alone, s.rtol)
        x, mask = p.ragged(n - n // 4)
        x2, mask2 = more_padding(p, x, mask, n // 4)
        y1 = run(x, p.ctx(mask))
        y2 = run(x2, p.ctx(mask2))
        check_close(f"changing the content and amount of padding (ragged batch) changed "
                    f"{changed}", y2[mask2], y1[mask], s.rtol)


def future_leak(p: Probe, run: Callable[[Tensor, MixContext], Tensor], changed: str
                ) -> str | None:
    """None if changing the tokens after t, at several t, leaves `run` at positions <= t
    unchanged; else what the worst change was (`changed`: what it changed)."""
    s = p.s
    n = s.seq_len
    x = p.randn(s.batch_size, n, s.d_model)
    worst, where = 0.0, None
    with torch.no_grad():
        ref = run(x, p.ctx())
        tol = tolerance(ref, s.rtol)
        for t in sorted({0, n // 3, n // 2, n - 2}):
            y = x.clone()
            y[:, t + 1:] = p.randn(s.batch_size, n - t - 1, s.d_model)
            diff = max_diff(run(y, p.ctx())[:, : t + 1], ref[:, : t + 1])
            if diff > worst or math.isnan(diff):
                worst, where = diff, t
    if worst <= tol:
        return None
    return (f"changing tokens after t={where} changed {changed} at positions <= t by "
            f"{worst:.2e} (tolerance {tol:.1e})")


def check_batch_independent(p: Probe, run: Callable[[Tensor, MixContext], Tensor],
                            differs: str, hint: str = "") -> None:
    """Each example of a ragged batch gives the same `run` at its real tokens alone as in the
    batch. `differs`: the failure, formatted with the example `i` and the batch `size`."""
    s = p.s
    x, mask = p.ragged()
    with torch.no_grad():
        together = run(x, p.ctx(mask))
        for i in range(s.batch_size):
            alone = run(x[i: i + 1], p.ctx(mask[i: i + 1]))
            check_close(differs.format(i=i, size=s.batch_size), alone[0][mask[i]],
                        together[i][mask[i]], s.rtol, hint)
