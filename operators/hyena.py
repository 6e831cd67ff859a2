"""Hyena (Poli et al. 2023), order 2: a gated long convolution with an implicit filter.

    q, k, v = short_conv(in_proj(x))           depthwise, 3 taps
    y = out_proj(q * (h * (k * v) + skip * (k * v)))

``h * u`` is a long convolution along the sequence, per channel, computed by zero-padded FFT
(``operators.dct.causal_conv``) in O(N log N); the skip rides in it as a term of the tap at
offset 0 (one product fewer over the whole sequence, forward and backward). Its filter is
implicit: a small MLP over positional features of the tap index t (t / max_len and sines and
cosines of it), with sine activations, times a fixed exponential decay per channel (channels
decay at different rates, from nearly gone at 30% of max_len to 150% of it). Taps stop at
max_len: one set of weights serves any sequence length, longer sequences see a truncated
filter.

Causal: taps t = 0 .. L-1 and the short convolution reads t-2 .. t. Non-causal: taps
t = -(L-1) .. L-1 (the MLP sees the signed offset) and the short convolution reads t-1 .. t+1.

Cost: the projections and the filter MLP are matrix products torch's FLOP counter sees; the
FFTs (by ``fft_flops``, dct's convention), the short convolution and the gates it does not
(untracked). The filter is computed once per call, shared by the batch.

Recurrent state per sequence: a long convolution has no state of fixed size; run as a
recurrence it keeps its last L inputs (d_model x min(N, max_len)), plus the short
convolution's last 2 inputs of its 3 streams.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from operators import register_operator

from .base import MixContext, TokenMixer
from .dct import causal_conv, fft_flops
from .spectral import upcast

SHORT_TAPS = 3
FILTER_FREQUENCIES = 8  # sine/cosine pairs of the positional features
FILTER_HIDDEN = 64
FILTER_FEATURES = 1 + 2 * FILTER_FREQUENCIES
# Per-channel decay rates: the window exp(-rate * |t| / max_len) reaches 1e-2 at a fraction
# between these of max_len (Hyena's fast and slow decay).
DECAY_REACH = (0.3, 1.5)


def short_conv(u: Tensor, weight: Tensor, bias: Tensor, causal: bool) -> Tensor:
    """Depthwise convolution of u (B, N, C) with weight (C, 3) along the sequence, zero outside
    it: out[t] = bias + sum_i weight[:, i] * u[t - shift_i], shifts (0, 1, 2) when causal and
    (-1, 0, 1) otherwise."""
    dtype = torch.promote_types(u.dtype, weight.dtype)
    return _ShortConv.apply(u.to(dtype), weight.to(dtype), bias.to(dtype),
                            (0, 1, 2) if causal else (-1, 0, 1))


class _ShortConv(torch.autograd.Function):
    """The short convolution as in-place multiply-adds on shifted slices, forward and backward.

    It is memory-bound: every pass reads and writes (B, N, 3 d_model). Written with autograd's
    own ops (a padded copy, a product and a sum per tap, and their backwards) it took 2-3x as
    long (227 vs 107 ms fwd+bwd at N 8192, 768 channels, 1 thread), more than the FFTs."""

    @staticmethod
    def forward(ctx, u: Tensor, weight: Tensor, bias: Tensor, shifts: tuple[int, ...]) -> Tensor:
        n = u.shape[1]
        centre = shifts.index(0)  # the tap that reads every position starts the sum
        out = torch.addcmul(bias, u, weight[:, centre])
        for i, shift in enumerate(shifts):  # out[t] += w_i u[t - shift], 0 <= t - shift < n
            lo, hi = max(0, shift), min(n, n + shift)
            if i != centre and lo < hi:
                out[:, lo:hi].addcmul_(u[:, lo - shift : hi - shift], weight[:, i])
        ctx.save_for_backward(u, weight)
        ctx.shifts = shifts
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        u, weight = ctx.saved_tensors
        n = u.shape[1]
        du = g * weight[:, ctx.shifts.index(0)]  # the centre tap; the others add below
        dw = torch.zeros_like(weight)
        rows = max(1, _ROW_BLOCK_ELEMENTS // (u.shape[0] * u.shape[2]))
        for i, shift in enumerate(ctx.shifts):
            lo, hi = max(0, shift), min(n, n + shift)
            if lo >= hi:
                continue
            if shift:  # du[t - shift] += w_i g[t]
                du[:, lo - shift : hi - shift].addcmul_(g[:, lo:hi], weight[:, i])
            # dw_i = sum_t g[t] u[t - shift], block by block of rows: each block's product is
            # summed while in cache (3.4x faster than one product over the whole sequence)
            for start in range(lo, hi, rows):
                end = min(hi, start + rows)
                dw[:, i] += (g[:, start:end] * u[:, start - shift : end - shift]).sum((0, 1))
        return du, dw, g.sum((0, 1)), None


# Elements per block of rows in the short convolution's weight gradient (256 KiB in float32).
_ROW_BLOCK_ELEMENTS = 1 << 16


def long_conv(u: Tensor, taps: Tensor, causal: bool) -> Tensor:
    """y[t] = sum_s h[t - s] u[s] for u (B, N, D) by zero-padded FFT, taps (D, L) for offsets
    0 .. L-1 (causal) or (D, 2L-1) for -(L-1) .. L-1."""
    n = u.shape[1]
    if causal:
        return causal_conv(u, taps, _fft_size(n, taps.shape[1]))
    # the two-sided filter is a causal one delayed by L-1: output t + L - 1 of the causal
    # convolution of u extended by L-1 zeros
    delay = (taps.shape[1] - 1) // 2
    extended = F.pad(u, (0, 0, 0, delay))
    return causal_conv(extended, taps, _fft_size(n + delay, taps.shape[1]))[:, delay:]


def long_conv_reference(u: Tensor, taps: Tensor, causal: bool) -> Tensor:
    """Reference (tests): y[t] = sum_s h[t - s] u[s] by an explicit (N, N) Toeplitz matrix per
    channel; taps (D, L) for offsets 0 .. L-1 (causal) or (D, 2L-1) for -(L-1) .. L-1."""
    n = u.shape[1]
    lag = torch.arange(n)[:, None] - torch.arange(n)[None, :]  # t - s
    centre = 0 if causal else (taps.shape[1] - 1) // 2
    index = lag + centre
    valid = (index >= 0) & (index < taps.shape[1])
    toeplitz = taps[:, index.clamp(0, taps.shape[1] - 1)] * valid  # (D, N, N)
    return torch.einsum("dts,bsd->btd", toeplitz, u)


def long_conv_recurrent(u: Tensor, taps: Tensor) -> Tensor:
    """Reference, causal: one output at a time from a buffer of the last L inputs (the state a
    long convolution carries), y[t] = sum_j h[j] u[t - j]."""
    length = taps.shape[1]
    buffer = u.new_zeros(u.shape[0], length, u.shape[2])  # newest first
    out = []
    for t in range(u.shape[1]):
        buffer = torch.cat([u[:, t : t + 1], buffer[:, :-1]], 1)
        out.append((buffer * taps.t()).sum(1))
    return torch.stack(out, 1)


@register_operator("hyena", description="Hyena: gated long convolution by FFT with an implicit "
                   "(MLP over positions) filter and a short convolution")
class HyenaMixer(TokenMixer):
    supports_causal = True
    supports_query_subset = False

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        d = d_model
        self.in_proj = nn.Linear(d, 3 * d)
        self.out_proj = nn.Linear(d, d)
        self.short_weight = nn.Parameter(torch.randn(3 * d, SHORT_TAPS) / math.sqrt(SHORT_TAPS))
        self.short_bias = nn.Parameter(torch.zeros(3 * d))
        self.filter_mlp = nn.Sequential(
            nn.Linear(FILTER_FEATURES, FILTER_HIDDEN), _Sine(),
            nn.Linear(FILTER_HIDDEN, FILTER_HIDDEN), _Sine(),
            nn.Linear(FILTER_HIDDEN, d, bias=False))
        self.skip = nn.Parameter(torch.randn(d))
        fast, slow = DECAY_REACH
        rates = torch.linspace(math.log(100) / fast, math.log(100) / slow, d)
        self.register_buffer("decay_rates", rates, persistent=False)

    # -- the filter ----------------------------------------------------------------------------

    def taps(self, n: int, with_skip: bool = False) -> Tensor:
        """The filter (D, T) for a sequence of n tokens, channels first (the layout the FFT
        takes): offsets 0 .. L-1 (causal) or -(L-1) .. L-1, L = min(n, max_len); with_skip
        adds the skip to the tap at offset 0 (h * u + skip u is one convolution)."""
        length = min(n, self.max_len)
        lo = 0 if self.causal else -(length - 1)
        t = torch.arange(lo, length, device=self.decay_rates.device, dtype=torch.float32)
        t = t / self.max_len  # normalised: the same weights at every length
        freqs = 2 * math.pi * torch.arange(1, FILTER_FREQUENCIES + 1, device=t.device)
        angles = t[:, None] * freqs
        features = torch.cat([t[:, None], angles.sin(), angles.cos()], 1)
        weight = self.filter_mlp[0].weight
        h = self.filter_mlp(features.to(weight.dtype))  # (T, D)
        window = torch.exp(-t.abs()[:, None] * self.decay_rates)
        taps = (h * window.to(h.dtype)).t()
        if not with_skip:
            return taps
        at_zero = torch.tensor([-lo], device=taps.device)  # the column of offset 0
        return taps.index_add(1, at_zero, self.skip[:, None].to(taps.dtype))

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        ctx = ctx.with_causal(self.causal)
        n = x.shape[1]
        real = None if ctx.padding_mask is None else ctx.padding_mask[..., None]
        u = self.in_proj(x)
        if real is not None:  # padding enters neither convolution
            u = u * real.to(u.dtype)
        u = short_conv(u, self.short_weight, self.short_bias, self.causal)
        q, k, v = u.chunk(3, dim=-1)
        z = upcast(k * v)  # FFTs in float32 at least (bf16 autocast)
        if real is not None:
            z = z * real.to(z.dtype)
        z = long_conv(z, self.taps(n, with_skip=True).to(z.dtype), self.causal)
        return self.out_proj(q * z)

    # -- cost ----------------------------------------------------------------------------------

    def state_size(self, n_tokens: int) -> int:
        """Floats one sequence carries when run as a recurrence: its last min(N, max_len)
        inputs to the long convolution, and the short convolution's last two of 3 streams."""
        return self.d_model * min(n_tokens, self.max_len) + 3 * self.d_model * (SHORT_TAPS - 1)

    def _filter_cost(self, n: int) -> tuple[int, int]:
        """(FLOPs, untracked) of computing the filter for n tokens: once per call."""
        length = min(n, self.max_len)
        taps = length if self.causal else 2 * length - 1
        hidden, d = FILTER_HIDDEN, self.d_model
        mlp = 2 * taps * (FILTER_FEATURES * hidden + hidden * hidden + hidden * d)
        # features (sin, cos), biases and sine activations, the decay window, the skip
        untracked = taps * (2 * FILTER_FEATURES + 4 * hidden + 2 * d) + 2 * d
        return mlp + untracked, untracked

    def _example_cost(self, n: int) -> tuple[int, int]:
        """(FLOPs, untracked) per example of n tokens, the filter aside."""
        d = self.d_model
        proj = 2 * n * d * 3 * d + 2 * n * d * d  # in (q, k, v) and out
        length = min(n, self.max_len)
        if self.causal:
            n_fft = _fft_size(n, length)
        else:
            n_fft = _fft_size(n + length - 1, 2 * length - 1)
        # rfft of the input, of the filter and the inverse; the complex product
        convolution = 3 * fft_flops(n_fft, d) + 6 * (n_fft // 2 + 1) * d
        # short convolution (3 taps, multiply-add, over 3d channels) and its bias, the two
        # gates, the projections' biases
        elementwise = 2 * SHORT_TAPS * n * 3 * d + 3 * n * d + 2 * n * d + 4 * n * d
        untracked = convolution + elementwise
        return proj + untracked, untracked

    def flops(self, n_query: int, n_key: int) -> int:
        return self._example_cost(n_key)[0] + self._filter_cost(n_key)[0]

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        return self._example_cost(n_key)[1] + self._filter_cost(n_key)[1]

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return batch * self._example_cost(n_key)[0] + self._filter_cost(n_key)[0]

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return batch * self._example_cost(n_key)[1] + self._filter_cost(n_key)[1]


class _Sine(nn.Module):
    """sin(x): the implicit filter's activation (periodic features need a periodic map)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)


def _fft_size(n: int, taps: int) -> int:
    """A power of two >= n + taps - 1: the circular convolution is then a linear one."""
    return 1 << (n + taps - 2).bit_length()
