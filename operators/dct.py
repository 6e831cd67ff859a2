"""DCT token mixing: a learnable per-channel filter in the DCT domain of the sequence axis.

Non-causal form (the paper's): y = idct(dct(x) * h) along the sequence, per channel. Every output
sees every input, so on a causal task this form leaks the future.

Causal form: a causal long convolution y[t] = sum_{s<=t} k[t-s] x[s] whose kernel is
parameterised in the DCT domain (k = idct of a learnable spectrum), computed with a zero-padded
FFT in O(N log N). Output t depends on inputs <= t only.

FLOP convention: an FFT, DCT or IDCT of length L over D channels costs 5 * L * log2(L) * D.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from operators import register_operator
from registry import ConfigError

from .base import MixContext, TokenMixer
from .spectral import dct, idct, upcast


def _fft_flops(length: int, channels: int) -> int:
    return int(5 * length * math.log2(max(length, 2)) * channels)


@register_operator("dct", description="spectral mixing along the sequence (DCT filter; causal: "
                   "DCT-parameterised long convolution)")
class DCTMixer(TokenMixer):
    supports_causal = True
    supports_query_subset = False

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        n_freq = options.pop("n_freq", max_len)  # filter resolution over normalised frequency
        decay = options.pop("decay", 3.0)  # causal kernel window exp(-decay * t / max_len)
        super().__init__(d_model, n_heads, max_len, causal, **options)
        if int(n_freq) <= 0:
            raise ConfigError(f"n_freq must be positive, got {n_freq}")
        # The leaky subclass accepts causal=True but keeps the non-causal form.
        self.conv = causal and not self.leaky
        if self.conv:
            # Start as the identity (kernel = delta at 0): dct of a unit impulse, per channel.
            impulse = torch.zeros(max_len, d_model)
            impulse[0] = 1.0
            self.spectrum = nn.Parameter(dct(impulse, dim=0))
            # Long taps start small: a learned spectrum change moves far taps less.
            window = torch.exp(-decay * torch.arange(max_len) / max_len)
            self.register_buffer("window", window[:, None], persistent=False)
        else:
            # h = 1 at every frequency: the identity, so training starts stable.
            self.filter = nn.Parameter(torch.ones(int(n_freq), d_model))

    # -- non-causal: filter in the DCT domain --------------------------------------------------

    def frequency_response(self, n: int) -> Tensor:
        """h (n, D): the filter sampled at normalised frequencies k/n by linear interpolation."""
        n_freq = self.filter.shape[0]
        u = torch.arange(n, device=self.filter.device, dtype=torch.float32) * (n_freq / n)
        i0 = u.floor().long().clamp(max=n_freq - 1)
        i1 = (i0 + 1).clamp(max=n_freq - 1)
        w = (u - i0).to(self.filter.dtype)[:, None]
        return self.filter[i0] * (1 - w) + self.filter[i1] * w

    def _filter(self, x: Tensor) -> Tensor:
        return idct(dct(x, dim=1) * self.frequency_response(x.shape[1]), dim=1)

    def _mix_noncausal(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is None or bool(mask.all()):
            return self._filter(x)
        # Each example is transformed over its own real length, so appending padding never
        # changes its outputs. Real tokens are moved to the front first (a stable sort keeps
        # their order), examples of equal length are batched together, then scattered back.
        order = torch.argsort((~mask).int(), dim=1, stable=True)[..., None].expand_as(x)
        packed = torch.gather(x, 1, order)
        lengths = mask.sum(1)
        out = torch.zeros_like(packed)
        for n in lengths.unique().tolist():
            if n > 0:
                rows = (lengths == n).nonzero().squeeze(1)
                out[rows, :n] = self._filter(packed[rows, :n])
        return torch.zeros_like(x).scatter(1, order, out)  # padding positions stay 0

    # -- causal: long convolution with a DCT-parameterised kernel ------------------------------

    def kernel(self, n: int) -> Tensor:
        """The first min(n, max_len) taps (L, D). Independent of n: truncation, not resampling."""
        taps = idct(self.spectrum, dim=0) * self.window
        return taps[: min(n, self.max_len)]

    def _mix_causal(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is not None:
            x = x * mask[..., None]  # padding never contributes, wherever it sits
        n = x.shape[1]
        k = self.kernel(n).to(x.dtype)
        # Zero-padding to >= n + L - 1 makes the circular convolution a linear one, so nothing
        # wraps around from the end of the sequence into its beginning.
        n_fft = 1 << (n + k.shape[0] - 2).bit_length()
        y = torch.fft.irfft(
            torch.fft.rfft(x, n=n_fft, dim=1) * torch.fft.rfft(k, n=n_fft, dim=0), n=n_fft, dim=1
        )[:, :n]
        return y if mask is None else y * mask[..., None]

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        dtype = x.dtype
        x = upcast(x)  # FFTs in float32 at least (bf16 autocast on CUDA)
        if self.conv:
            y = self._mix_causal(x, ctx.padding_mask)
        else:
            y = self._mix_noncausal(x, ctx.padding_mask)
        return y.to(dtype)

    def flops(self, n_query: int, n_key: int) -> int:
        # The whole sequence (n_key) is transformed; there are no projections.
        n, d = n_key, self.d_model
        if not self.conv:
            return 2 * _fft_flops(n, d) + n * d  # dct + idct + the filter multiply
        n_fft = 1 << (n + min(n, self.max_len) - 2).bit_length()
        half = n_fft // 2 + 1
        # rfft(x) + irfft(y) + the kernel (idct of the spectrum and its rfft; shared across the
        # batch but counted per example, which errs on the expensive side) + complex multiply.
        return 3 * _fft_flops(n_fft, d) + _fft_flops(self.max_len, d) + 6 * half * d

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        # FlopCounterMode sees neither FFTs nor elementwise work: all of it is untracked.
        return self.flops(n_query, n_key)


@register_operator("dct-leaky", description="LEAKY: the paper's non-causal DCT mixing even on "
                   "causal tasks; only behind --allow-leaky")
class LeakyDCTMixer(DCTMixer):
    """The paper's form: sequence-axis DCT mixing WITHOUT causal masking.

    It accepts causal=True but ignores it, so on a causal task every output sees the future
    (it leaks). It exists only to reproduce the paper's numbers behind --allow-leaky, and every
    result it produces is marked leaky.
    """

    leaky = True
