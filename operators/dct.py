"""DCT token mixing: a learnable per-channel filter in the DCT domain of the sequence axis.

Non-causal form (the paper's): y = idct(dct(x) * h) along the sequence, per channel. Every output
sees every input, so on a causal task this form leaks the future.

Causal form: a causal long convolution y[t] = sum_{s<=t} k[t-s] x[s] whose kernel is
parameterised in the DCT domain (k = idct of a learnable spectrum), computed with a zero-padded
FFT in O(N log N). Output t depends on inputs <= t only.

FLOP convention: an FFT, DCT or IDCT of length L over D channels costs 5 * L * log2(L) * D.

Speed (measured with ``python -m harness bench``): both forms are autograd Functions with
hand-written backwards. The non-causal filter (``dct_filter``) does Makhoul's permutation and
one real FFT each way along the sequence axis of the (B, N, D) layout (no transposes), applies
the filter in the half spectrum, and uses that x -> y is self-adjoint for dx, so autograd never
materialises the strided index/slice backwards that dominated ``idct(dct(x) * h)``; on CPU it
runs block by block over channels so each block stays in cache. The causal convolution
(``causal_conv``) runs its FFTs along contiguous rows of the channels-first layout, reuses its
forward spectra for both gradients, and its kernel's idct has one dct as backward. They equal
the compositions they replace, outputs and gradients (tests/test_bench.py).
"""

from __future__ import annotations

import functools
import math

import torch
from pydantic import Field
from torch import Tensor, nn

from operators import register_operator

from .base import MixContext, TokenMixer
from .spectral import dct, dct_twiddle, even_odd_order, upcast


def fft_flops(length: int, channels: int) -> int:
    """The FLOP convention for an FFT of `length` points over `channels` (every mixer that
    runs FFTs charges them by it)."""
    return int(5 * length * math.log2(max(length, 2)) * channels)


@functools.lru_cache(maxsize=32)
def _makhoul_plan(n: int, device: torch.device, dtype: torch.dtype):
    """For the DCT of length n along an axis: Makhoul's permutation (even indices ascending,
    then odd descending), its inverse, the twiddles exp(-i pi k / 2n) for k = 0 .. n//2, and
    the squared orthonormal scales s_k^2. Cached per length (callers only read them); built
    outside inference mode, so a first call there leaves tensors backward may save."""
    with torch.inference_mode(False):
        return _build_makhoul_plan(n, device, dtype)


def _build_makhoul_plan(n: int, device: torch.device, dtype: torch.dtype):
    perm = even_odd_order(n, device)
    inverse = torch.argsort(perm)
    twiddle = dct_twiddle(n, torch.empty(0, dtype=dtype, device=device))
    scale2 = torch.full((n,), 2.0 / n, dtype=dtype, device=device)
    scale2[0] = 1.0 / n
    return perm, inverse, twiddle, scale2


def _half_spectrum(x: Tensor, perm: Tensor, twiddle: Tensor) -> Tensor:
    """U = rfft(v) * twiddle along dim 1, v = x permuted: c_k = s_k Re U_k for k <= n//2 and
    c_{n-k} = -s_{n-k} Im U_k for 1 <= k <= (n-1)//2 (c = the orthonormal DCT-II of x)."""
    u = torch.fft.rfft(x.index_select(1, perm), dim=1)
    return u.mul_(twiddle[:, None])


def _apply_gains(u: Tensor, gains: Tensor, twiddle: Tensor, inverse: Tensor, n: int) -> Tensor:
    """idct of the filtered coefficients, from the half spectrum U and gains (K, D, 2): the
    real part of U_k carries c_k (gain h_k), the imaginary part c_{n-k} (gain h_{n-k})."""
    filtered = torch.view_as_complex(torch.view_as_real(u) * gains)
    filtered.mul_(twiddle.conj()[:, None])
    return torch.fft.irfft(filtered, n=n, dim=1).index_select(1, inverse)


# On CPU the filter runs over blocks of channels of about this many elements (B * N * D_block,
# 1 MiB in float32): every pass of a block then stays in cache, so time grows like N log N
# instead of jumping when a whole (B, N, D) tensor no longer fits. On GPUs: one block.
_CPU_BLOCK_ELEMENTS = 1 << 18


def _channel_blocks(x: Tensor, length: int | None = None) -> list[slice]:
    """Channel blocks of x (B, N, D) for sequences of `length` (default N) points."""
    b, n, d = x.shape
    if x.device.type != "cpu":
        return [slice(0, d)]
    step = max(1, min(d, _CPU_BLOCK_ELEMENTS // max(b * (length or n), 1)))
    return [slice(i, min(i + step, d)) for i in range(0, d, step)]


class _DCTFilter(torch.autograd.Function):
    """y = idct(dct(x, dim=1) * h, dim=1) for x (B, N, D) and h (N, D), both real.

    The map x -> y is C^T diag(h) C with C orthonormal: symmetric, so dx = the same filter
    applied to dy; dh_k = sum over the batch of dct(dy)_k * dct(x)_k. Channels are
    independent, so both directions run block by block over channels (_channel_blocks)."""

    @staticmethod
    def forward(ctx, x: Tensor, h: Tensor) -> Tensor:
        n = x.shape[1]
        perm, inverse, twiddle, scale2 = _makhoul_plan(n, x.device, x.dtype)
        k = n // 2 + 1
        # gains[k] = (h_k, h_{(n-k) mod n}): at k = 0 and at the Nyquist bin both are h_k
        mirror = torch.remainder(-torch.arange(k, device=x.device), n)
        gains = torch.stack([h[:k], h.index_select(0, mirror)], dim=-1)
        blocks = _channel_blocks(x)
        if len(blocks) == 1:
            spectra = [_half_spectrum(x, perm, twiddle)]
            y = _apply_gains(spectra[0], gains, twiddle, inverse, n)
        else:
            spectra, y = [], torch.empty_like(x)
            for c in blocks:
                spectra.append(_half_spectrum(x[..., c], perm, twiddle))
                y[..., c] = _apply_gains(spectra[-1], gains[:, c], twiddle, inverse, n)
        ctx.save_for_backward(gains, scale2, *spectra)
        ctx.plan = (perm, inverse, twiddle, blocks)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor):
        gains, scale2, *spectra = ctx.saved_tensors
        perm, inverse, twiddle, blocks = ctx.plan
        n = dy.shape[1]
        k = n // 2 + 1
        dy = dy.to(gains.dtype)
        want_x, want_h = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dx = torch.empty_like(dy) if want_x else None
        dh = gains.new_empty(n, gains.shape[1]) if want_h else None
        for c, u in zip(blocks, spectra, strict=True):
            ug = _half_spectrum(dy[..., c], perm, twiddle)
            if want_h:
                # sum over the batch of (Re Ug Re U, Im Ug Im U) per bin: the products of the
                # DCT coefficients k <= n//2 (real parts) and n - k (imaginary parts)
                prod = (torch.view_as_real(ug) * torch.view_as_real(u)).sum(0)  # (K, Dc, 2)
                dh[:k, c] = prod[:, :, 0]
                dh[k:, c] = prod[1 : n - k + 1, :, 1].flip(0)
            if want_x:
                dx[..., c] = _apply_gains(ug, gains[:, c], twiddle, inverse, n)
        if want_h:
            dh.mul_(scale2[:, None])
        return dx, dh


# Layout changes between (B, N, D) and channels first (B, D, N) go one example at a time
# through the fast path of copy_ for a whole transposed matrix (a cache-blocked 2-D transpose;
# it takes only a (rows, cols) source with strides (1, rows)), plus one row-contiguous copy
# for the zero padding or the truncation. A strided copy of the whole tensor strides 4 * D
# bytes per element read and at N=8192 cost 7x (15 ms vs 2 ms, 1 thread), more than its FFT;
# copying pieces of positions or channels by hand, which this replaced, needed a piece size
# per machine (the 32-channel pieces fastest on a 2-core Xeon copied back to (B, N, D) 2.1x
# slower than this on a 2-core EPYC: 1.16 vs 0.55 ms at B 1, N 2048). On GPUs one copy kernel
# does the whole transpose.


def _channels_first_padded(x: Tensor, n_fft: int) -> Tensor:
    """x (B, N, D) -> (B, D, n_fft): channels first, zero-padded along the sequence."""
    b, n, d = x.shape
    out = x.new_empty(b, d, n_fft)
    out[..., n:].zero_()
    if x.device.type != "cpu":
        out[..., :n].copy_(x.transpose(1, 2))
        return out
    for i in range(b):
        out[i, :, :n].copy_(x[i].t().contiguous())
    return out


def _tokens_first(y: Tensor, n: int) -> Tensor:
    """The first n positions of y (B, D, L) -> (B, n, D), contiguous."""
    b, d, _ = y.shape
    out = y.new_empty(b, n, d)
    if y.device.type != "cpu":
        return out.copy_(y[..., :n].transpose(1, 2))
    for i in range(b):
        out[i].copy_(y[i, :, :n].contiguous().t())
    return out


class _CausalConv(torch.autograd.Function):
    """y[:, t] = sum_{s <= t} k[t - s] * x[:, s] for x (B, N, D) and taps kt (D, L) (channels
    first), by FFTs of length n_fft >= N + L - 1 (zero padding: nothing wraps around).

    The FFTs run along the last axis of the channels-first layout (B, D, n_fft): every transform
    reads one contiguous row (along the strided middle axis of (B, N, D) the same FFT costs
    about 2.5x). The layout changes are per-example blocked transposes (_channels_first_padded
    also writes the zero padding, _tokens_first drops it). Backward: dk is the correlation of
    dy with x (summed over the batch) and dx the correlation of dy with k, both from the
    forward's spectra, which are saved conjugated. (Running all of this block by block over
    channels, as _DCTFilter does, measured slower at every N: the per-block calls cost more
    than the cache saves.)"""

    @staticmethod
    def forward(ctx, x: Tensor, kt: Tensor, n_fft: int) -> Tensor:
        n = x.shape[1]
        fx = torch.fft.rfft(_channels_first_padded(x, n_fft))  # (B, D, F)
        fk = torch.fft.rfft(kt, n=n_fft)  # (D, F)
        y = torch.fft.irfft(fx * fk, n=n_fft)
        # A lazy .conj() operand makes mul clone the whole spectrum first (about the cost of
        # the FFT); the physical conjugate in place is one cheap pass.
        ctx.save_for_backward(fx.conj_physical_(), fk.conj_physical_())
        ctx.plan = (n_fft, kt.shape[1])
        return _tokens_first(y, n)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor):
        fx_conj, fk_conj = ctx.saved_tensors
        n_fft, taps = ctx.plan
        n = dy.shape[1]
        fg = torch.fft.rfft(_channels_first_padded(dy.to(fx_conj.real.dtype), n_fft))
        dx = dk = None
        if ctx.needs_input_grad[1]:
            prod = fg[0] * fx_conj[0]
            for i in range(1, fg.shape[0]):  # summed over the batch without a (B, D, F) product
                prod.addcmul_(fg[i], fx_conj[i])
            dk = torch.fft.irfft(prod, n=n_fft)[..., :taps]
        if ctx.needs_input_grad[0]:
            dx = _tokens_first(torch.fft.irfft(fg.mul_(fk_conj), n=n_fft), n)
        return dx, dk, None


@functools.lru_cache(maxsize=32)
def _kernel_plan(m: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """The factors that make the orthonormal idct and dct of length m halves of transforms of
    length 2m, with no permutation (cached per length; built outside inference mode, as
    _makhoul_plan). With theta_k = pi k / 2m and s_k the orthonormal scales:

    - idct: x_t = Re sum_k a_k exp(i pi k t / m), a_k = s_k c_k exp(i theta_k), for t < m: the
      first half of an unnormalised irfft of length 2m whose bins are H_0 = a_0, H_k = a_k / 2
      (the irfft adds each bin's conjugate mirror) and H_m = 0. Returned: (Re, Im) of H_k / c_k.
    - dct: c_k = s_k Re(exp(-i theta_k) U_k) = s_k (Re U_k cos theta_k + Im U_k sin theta_k),
      U = rfft of the input zero-padded to 2m. Returned: (s_k cos theta_k, s_k sin theta_k).

    Makhoul's length-m form needs a gather before or after its FFT and a reversal of half the
    coefficients; on the (D, max_len) kernel those passes cost more than the FFT (at (256,
    2048) its idct took 2.3 ms around a 0.4 ms FFT), and more than the FFT of twice the length
    that replaces them."""
    with torch.inference_mode(False):
        k = torch.arange(m, device=device, dtype=torch.float64)
        theta = math.pi * k / (2 * m)
        scale = torch.full((m,), math.sqrt(2.0 / m), device=device, dtype=torch.float64)
        scale[0] = math.sqrt(1.0 / m)
        dct_factors = torch.stack([scale * theta.cos(), scale * theta.sin()], dim=-1)
        halved = torch.where(k == 0, 1.0, 0.5)[:, None]
        return (dct_factors * halved).to(dtype), dct_factors.to(dtype)


class _CausalKernel(torch.autograd.Function):
    """The windowed taps of the causal kernel from its DCT spectrum c (D, m), laid out for the
    convolution's FFT: k[:, t] = idct(c)[:, t] * window[t] for t < width, where `window` (width,)
    must be 0 from m on (it also truncates the taps). The orthonormal DCT-III's adjoint is the
    DCT-II, so the backward is one dct of the windowed gradient (see _kernel_plan for both)."""

    @staticmethod
    def forward(ctx, c: Tensor, window: Tensor) -> Tensor:
        d, m = c.shape
        to_bins, _ = _kernel_plan(m, c.device, c.dtype)
        bins = c.new_empty(d, m + 1, 2)
        for part in (0, 1):  # one strided write per part: a broadcast over (m, 2) took 2x
            torch.mul(c, to_bins[:, part], out=bins[:, :m, part])
        bins[:, m].zero_()
        taps = torch.fft.irfft(torch.view_as_complex(bins), n=2 * m, norm="forward")
        ctx.save_for_backward(window)
        ctx.length = m
        return taps[:, : window.shape[0]] * window

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        (window,) = ctx.saved_tensors
        return _windowed_dct(g, window, ctx.length), None


def _windowed_dct(g: Tensor, window: Tensor, m: int) -> Tensor:
    """dct(g * window) of length m along the last axis (window is 0 from m on)."""
    _, from_bins = _kernel_plan(m, g.device, g.dtype)
    u = torch.view_as_real(torch.fft.rfft(g * window, n=2 * m))[:, :m]
    # Re U cos + Im U sin per bin, one pass each (a product and a .sum(-1) took 3.5x)
    return (u[..., 0] * from_bins[:, 0]).addcmul_(u[..., 1], from_bins[:, 1])


def causal_conv(x: Tensor, kt: Tensor, n_fft: int) -> Tensor:
    """Causal long convolution of x (B, N, D) with taps kt (D, L), channels first (the layout
    the FFTs run in); n_fft >= N + L - 1."""
    dtype = torch.promote_types(x.dtype, kt.dtype)
    return _CausalConv.apply(x.to(dtype), kt.to(dtype), n_fft)


def dct_filter(x: Tensor, h: Tensor) -> Tensor:
    """idct(dct(x, dim=1) * h, dim=1), fast: x (B, N, D), h (N, D), real, same dtype."""
    dtype = torch.promote_types(x.dtype, h.dtype)
    return _DCTFilter.apply(x.to(dtype), h.to(dtype))


@register_operator("dct", description="spectral mixing along the sequence (DCT filter; causal: "
                   "DCT-parameterised long convolution)")
class DCTMixer(TokenMixer):
    supports_causal = True
    supports_query_subset = False

    class Options(TokenMixer.Options):
        n_freq: int | None = Field(None, gt=0, description="points of the non-causal filter "
                                   "over normalised frequency (default: max_len)")
        decay: float = Field(3.0, ge=0, description="the causal kernel's initial window "
                             "exp(-decay * t / max_len): long taps start small")

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        n_freq = self.options.n_freq or max_len
        decay = self.options.decay
        # The leaky subclass accepts causal=True but keeps the non-causal form.
        self.conv = causal and not self.leaky
        if self.conv:
            # The kernel's DCT spectrum, channels first (D, max_len) like every transform of
            # the causal path: a (max_len, D) parameter cost two transposes a step each way.
            # Start as the identity (kernel = delta at 0): dct of a unit impulse, per channel.
            impulse = torch.zeros(d_model, max_len)
            impulse[:, 0] = 1.0
            self.spectrum = nn.Parameter(dct(impulse, dim=-1))
            # Long taps start small: a learned spectrum change moves far taps less.
            window = torch.exp(-decay * torch.arange(max_len) / max_len)
            self.register_buffer("window", window, persistent=False)
        else:
            # h = 1 at every frequency: the identity, so training starts stable.
            self.filter = nn.Parameter(torch.ones(n_freq, d_model))

    def state_size(self, n_tokens: int) -> int:
        """Floats one sequence carries when run as a recurrence: the causal form is a long
        convolution whose kernel spans max_len taps, so its last min(N, max_len) inputs per
        channel, the filter's length x d_model (the non-causal form reads the whole sequence:
        the same count up to max_len)."""
        return self.d_model * min(n_tokens, self.max_len)

    # -- non-causal: filter in the DCT domain --------------------------------------------------

    def frequency_response(self, n: int) -> Tensor:
        """h (n, D): the filter sampled at normalised frequencies k/n by linear interpolation."""
        n_freq = self.filter.shape[0]
        if n == n_freq:  # the grid itself: interpolation weights are exactly 0
            return self.filter
        u = torch.arange(n, device=self.filter.device, dtype=torch.float32) * (n_freq / n)
        i0 = u.floor().long().clamp(max=n_freq - 1)
        i1 = (i0 + 1).clamp(max=n_freq - 1)
        w = (u - i0).to(self.filter.dtype)[:, None]
        # index_select: same values as filter[i], a much cheaper backward (index_add)
        return (self.filter.index_select(0, i0) * (1 - w)
                + self.filter.index_select(0, i1) * w)

    def _filter(self, x: Tensor) -> Tensor:
        return dct_filter(x, self.frequency_response(x.shape[1]))

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
        taps = min(n, self.max_len)
        return self._taps(taps, taps).t()

    def _taps(self, taps: int, width: int) -> Tensor:
        """The first `taps` taps channels first (D, width), zero from `taps` on, as the
        convolution's FFT takes them; width <= 2 max_len."""
        window = self.window.new_zeros(width)
        window[:taps] = self.window[:taps]
        return _CausalKernel.apply(self.spectrum, window)

    # Version 2 stores the spectrum channels first; version 1 checkpoints held (max_len, D).
    _version = 2

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        key = prefix + "spectrum"
        if local_metadata.get("version", 1) < 2 and key in state_dict:
            state_dict[key] = state_dict[key].t().contiguous()
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)

    def _mix_causal(self, x: Tensor, mask: Tensor | None) -> Tensor:
        if mask is not None:
            x = x * mask[..., None]  # padding never contributes, wherever it sits
        n = x.shape[1]
        taps = min(n, self.max_len)
        # Zero-padding to >= n + L - 1 makes the circular convolution a linear one, so nothing
        # wraps around from the end of the sequence into its beginning.
        n_fft = 1 << (n + taps - 2).bit_length()
        kt = self._taps(taps, min(n_fft, 2 * self.max_len)).to(x.dtype)
        y = causal_conv(x, kt, n_fft)  # irfft(rfft(x) * rfft(k))[:, :n], zero-padded to n_fft
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
            return 2 * fft_flops(n, d) + n * d  # dct + idct + the filter multiply
        n_fft = 1 << (n + min(n, self.max_len) - 2).bit_length()
        half = n_fft // 2 + 1
        # rfft(x) + irfft(y) + the kernel (its idct, an irfft of length 2 max_len, and its rfft;
        # shared across the batch but counted per example, which errs on the expensive side)
        # + complex multiply.
        return 3 * fft_flops(n_fft, d) + fft_flops(2 * self.max_len, d) + 6 * half * d

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
