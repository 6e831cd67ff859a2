"""Spectral helpers: the orthonormal DCT-II, its inverse (DCT-III), and spectral entropy.

The fast path is Makhoul's (1980) trick: reorder x as v = [x0, x2, x4, ..., x5, x3, x1], then

    c_k = s_k * Re(V_k * exp(-i pi k / 2N)),   V = FFT(v),   s_0 = sqrt(1/N), s_k = sqrt(2/N),

so one length-N FFT gives the whole transform in O(N log N). v is real, so V is Hermitian and a
real FFT (rfft) of half the size carries all of it. The dense matrix exists only for tests.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def upcast(x: Tensor) -> Tensor:
    # FFTs need float32 or float64 (bf16/half FFTs are missing on CPU and limited on CUDA).
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _scale(n: int, like: Tensor) -> Tensor:
    """Orthonormal scaling s_k: sqrt(1/N) for k = 0, sqrt(2/N) otherwise."""
    s = torch.full((n,), math.sqrt(2.0 / n), dtype=like.dtype, device=like.device)
    s[0] = math.sqrt(1.0 / n)
    return s


def dct_twiddle(n: int, like: Tensor) -> Tensor:
    """exp(-i pi k / 2N) for k = 0 .. N//2 (the half spectrum rfft returns)."""
    k = torch.arange(n // 2 + 1, dtype=like.dtype, device=like.device)
    return torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))


def even_odd_order(n: int, device: torch.device) -> Tensor:
    """Makhoul's permutation: even indices ascending, then odd indices descending."""
    evens, odds = torch.arange(0, n, 2, device=device), torch.arange(1, n, 2, device=device)
    return torch.cat([evens, odds.flip(0)])


def _even_odd_order(x: Tensor) -> Tensor:
    """x[..., even_odd_order(n)] along the last axis, from two strided slices: a gather by index
    (index_select, advanced indexing) took 3-15x as long at (4096, 256), more than the FFT."""
    return torch.cat([x[..., 0::2], x[..., 1::2].flip(-1)], dim=-1)


def dct(x: Tensor, dim: int = -1) -> Tensor:
    """Orthonormal DCT-II of x along `dim`, via one real FFT. Any length >= 1; differentiable."""
    dtype = x.dtype
    x = upcast(x).movedim(dim, -1)
    n = x.shape[-1]
    v = _even_odd_order(x)
    y = torch.fft.rfft(v) * dct_twiddle(n, x)  # Y_k = V_k exp(-i pi k / 2N), k = 0 .. N//2
    # Hermitian symmetry gives Re(Y_{N-k}) = -Im(Y_k): the upper half of c comes from the
    # imaginary parts of the lower half, read backwards.
    upper = -y.imag[..., 1 : n - n // 2].flip(-1)
    c = torch.cat([y.real, upper], dim=-1) * _scale(n, x)
    return c.movedim(-1, dim).to(dtype)


def idct(c: Tensor, dim: int = -1) -> Tensor:
    """Inverse of `dct` (the orthonormal DCT-III) along `dim`, via one inverse real FFT."""
    dtype = c.dtype
    c = upcast(c).movedim(dim, -1)
    n = c.shape[-1]
    c = c / _scale(n, c)  # c_k = Re(Y_k) now
    # Rebuild the half spectrum Y_k = c_k - i c_{N-k} (with c_N = 0), undo the twiddle, then
    # the inverse real FFT returns the reordered signal v.
    tail = torch.cat([torch.zeros_like(c[..., :1]), c[..., n - n // 2 :].flip(-1)], dim=-1)
    y = torch.complex(c[..., : n // 2 + 1], -tail)
    v = torch.fft.irfft(y * dct_twiddle(n, c).conj(), n=n)
    x = v[..., torch.argsort(even_odd_order(n, c.device))]
    return x.movedim(-1, dim).to(dtype)


def dct_matrix(n: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """Dense orthonormal DCT-II matrix C (n, n): dct(x) == x @ C.T. Reference for tests only."""
    k = torch.arange(n, dtype=dtype, device=device)[:, None]
    i = torch.arange(n, dtype=dtype, device=device)[None, :]
    C = torch.cos(math.pi * k * (2 * i + 1) / (2 * n)) * math.sqrt(2.0 / n)
    C[0] = C[0] / math.sqrt(2.0)
    return C


def spectral_entropy(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Normalised spectral entropy of each vector along the last (feature) axis, in [0, 1].

    c = dct(x); p_k = c_k^2 / sum c^2; H = -sum p_k log p_k / log d. Scale-invariant; 0 for a
    single DCT basis vector, 1 for a flat spectrum.

    H does not depend on the order of the c_k, so the squares come straight from Makhoul's half
    spectrum Y (see ``dct``): c_k^2 = s_k^2 Re(Y_k)^2 for k <= d//2 and c_{d-k}^2 = s^2 Im(Y_k)^2
    for 1 <= k <= (d-1)//2, with s_k^2 = 2/d except s_0^2 = 1/d, and a common factor cancels in
    p. Assembling c (a concatenation, a flip and a scaling) cost as much as the FFT; the router
    computes this for every token of every layer.

    Stable at any finite scale: x is divided by its largest |x_i| before the transform (H is
    unchanged), so the squares lie in [0, d^2] and their sum is at least 1: nothing overflows
    or underflows in float32; finite input never gives NaN. A vector with a non-finite entry
    gives NaN (the caller decides what that means).

    Conventions: the zero vector has H = 0 ("no signal: the cheapest band"), with finite value
    and zero gradient; d == 1 gives 0 (one coefficient carries everything). `eps` only floors p
    inside the log so that d/dp (p log p) stays finite where p == 0. Computed (and returned) in
    float32, or float64 for float64 input. Shape: x.shape[:-1].
    """
    x = upcast(x)
    d = x.shape[-1]
    if d == 1:
        return torch.zeros(x.shape[:-1], dtype=x.dtype, device=x.device)
    v = _even_odd_order(_unit_max(x))
    y = torch.fft.rfft(v) * dct_twiddle(d, x)
    # (..., 2 (d//2 + 1)): the real and imaginary part of each bin side by side (a free view)
    energy = torch.view_as_real(y).flatten(-2).square_().mul_(_energy_weights(d, x))
    total = energy.sum(-1, keepdim=True)
    # torch.where rather than a clamp: a zero vector gets p = 0 everywhere, hence H = 0, and
    # no 0/0 in forward or backward
    p = energy / torch.where(total > 0, total, torch.ones_like(total))
    h = -(p * p.clamp_min(eps).log()).sum(-1) / math.log(d)
    return h.clamp(0.0, 1.0)


def _energy_weights(d: int, like: Tensor) -> Tensor:
    """(2 (d//2 + 1),): s_k^2 * d / 2 for the real and the imaginary part of each bin Y_k, side
    by side; 0 for the parts that are no coefficient (Im Y_0, and Im Y_{d/2} for even d)."""
    w = torch.ones(d // 2 + 1, 2, dtype=like.dtype, device=like.device)
    w[0, 0], w[0, 1] = 0.5, 0.0
    if d % 2 == 0:
        w[d // 2, 1] = 0.0
    return w.flatten()


def _unit_max(v: Tensor) -> Tensor:
    """v / max |v| along the last axis (a zero vector stays zero)."""
    scale = v.abs().amax(-1, keepdim=True)
    return v / torch.where(scale > 0, scale, torch.ones_like(scale))
