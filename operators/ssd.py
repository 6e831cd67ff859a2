"""Mamba-2's state-space dual (Dao & Gu 2024): a selective SSM with a scalar decay per head.

Per head, with input-dependent step dt_t > 0, decay a_t = -exp(A_log) dt_t, input x_t (d_head),
and B_t, C_t (d_state, shared by the heads: one group):

    h_t = exp(a_t) h_{t-1} + (dt_t x_t) B_t^T        (d_head x d_state)
    y_t = h_t C_t + D x_t,   then gated: y * silu(z), out_proj

Its dual form is masked attention: y_t = sum_{s<=t} (C_t . B_s) exp(a_{s+1} + ... + a_t) dt_s x_s.

Chunked form (computed here): positions in chunks of ``chunk``; inside a chunk the quadratic form
(scores C B^T times the decay matrix exp(segsum(a)), a lower-triangular (chunk x chunk) matrix
per head), across chunks a state carried from chunk to chunk. ``segsum`` builds each segment sum
by a cumulative sum of the masked a's, never as a difference of two long cumulative sums
(which cancels catastrophically). ``ssd_recurrent`` (one state update per token) and
``ssd_quadratic`` (the full N x N masked form) are the references (tests/test_ssd.py, float64).
The carried state crosses chunks one chunk at a time (N / chunk small steps): a (chunks x
chunks) decay matrix would cost O(N^2 / chunk) and turn quadratic at long N.

Non-causal: the same scan forward plus one over the reversed sequence (a bidirectional SSM as
in Hydra, without its shift: the diagonal term counts twice). Padding: dt = 0 at padding
tokens, so they neither enter the state nor decay it, wherever they sit.

Not in this mixer: Mamba-2's short convolution before the SSM and its gated RMSNorm (the SSD is
the part under test). No query subsets: every output needs the state of every earlier token.
The core runs in float32 at least, also under bf16 autocast (exponentials of segment sums).

Recurrent state per sequence: d_head x d_state per head, d_model x d_state in all.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from operators import register_operator

from .base import MixContext, TokenMixer, check_heads
from .position_blocks import block_count


def segsum(a: Tensor) -> Tensor:
    """a (..., L) -> (..., L, L): [t, s] = a_{s+1} + ... + a_t for s <= t, -inf above the
    diagonal, each a cumulative sum of its own terms (stable)."""
    length = a.shape[-1]
    terms = a[..., :, None].expand(*a.shape, length)  # [t, s] = a_t
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    sums = terms.masked_fill(~strictly_lower, 0.0).cumsum(-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril()
    return sums.masked_fill_(~lower, float("-inf"))  # in place: cumsum's backward keeps none


def _padded(t: Tensor, pad: int) -> Tensor:
    """t (B, N, ...) with `pad` zero positions appended (no copy when there are none)."""
    return F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) if pad else t


class _CarriedStates(torch.autograd.Function):
    """The state entering each chunk: start[0] = 0, start[i+1] = decay[i] start[i] + end[i],
    for decay (B, H, C) and end (B, H, C, P, S); one chunk at a time, in place, forward and
    backward. (Two autograd ops per chunk cost a node, a fresh tensor and a stack of them all;
    indexing them out one chunk at a time zero-filled a whole (B, H, C, P, S) gradient per
    chunk, quadratic in the number of chunks.)"""

    @staticmethod
    def forward(ctx, decay: Tensor, end: Tensor) -> Tensor:
        b, h, c, p, s = end.shape
        start = end.new_empty(c, b, h, p, s)
        start[0].zero_()
        for i in range(c - 1):
            torch.addcmul(end[:, :, i], start[i], decay[:, :, i, None, None], out=start[i + 1])
        ctx.save_for_backward(decay, start)
        return start.permute(1, 2, 0, 3, 4)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: Tensor):
        decay, start = ctx.saved_tensors
        c = start.shape[0]
        d_end = torch.zeros_like(g)  # the last chunk's end enters no start
        d_decay = torch.zeros_like(decay)
        carry = g[:, :, c - 1].clone()  # d loss / d start[i + 1], through every later chunk
        for i in range(c - 2, -1, -1):
            d_end[:, :, i] = carry
            d_decay[:, :, i] = (carry * start[i]).sum((-1, -2))
            carry = torch.addcmul(g[:, :, i], carry, decay[:, :, i, None, None])
        return d_decay, d_end


def ssd_chunked(x: Tensor, a: Tensor, b: Tensor, c: Tensor, chunk: int) -> Tensor:
    """Causal SSD: x (B, N, H, P) (already times dt), log-decays a (B, N, H), b and c
    (B, N, S). Returns y (B, N, H, P) without the D skip."""
    bsz, n, h, p = x.shape
    size = min(chunk, n)
    nc = block_count(n, size)
    pad = nc * size - n
    xc = _padded(x, pad).view(bsz, nc, size, h, p).permute(0, 3, 1, 2, 4)
    ac = _padded(a, pad).view(bsz, nc, size, h).permute(0, 3, 1, 2)  # (B, H, C, L)
    bc = _padded(b, pad).view(bsz, 1, nc, size, -1)  # (B, 1, C, L, S)
    cc = _padded(c, pad).view(bsz, 1, nc, size, -1)
    a_cum = ac.cumsum(-1)
    # 1. inside each chunk: the masked quadratic form
    scores = cc @ bc.transpose(-1, -2)  # (B, 1, C, L, L), shared by the heads
    y = (scores * segsum(ac).exp_()) @ xc  # (B, H, C, L, P)
    # 2. each chunk's contribution to the state at its end
    to_end = (a_cum[..., -1:] - a_cum).exp()  # (B, H, C, L)
    states = (xc * to_end[..., None]).transpose(-1, -2) @ bc  # (B, H, C, P, S)
    # 3. the state each chunk starts from, carried chunk by chunk
    start = _CarriedStates.apply(a_cum[..., -1].exp(), states)  # (B, H, C, P, S)
    # 4. what that state gives each position of the chunk, decayed to it
    y = y.addcmul_(cc @ start.transpose(-1, -2), a_cum.exp()[..., None])
    return y.permute(0, 2, 3, 1, 4).reshape(bsz, nc * size, h, p)[:, :n]


def ssd_recurrent(x: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Reference: one state update per token."""
    bsz, n, h, p = x.shape
    state = x.new_zeros(bsz, h, p, b.shape[-1])
    out = []
    for t in range(n):
        state = (state * a[:, t, :, None, None].exp()
                 + x[:, t, :, :, None] * b[:, t, None, None, :])
        out.append(state @ c[:, t, None, :, None])  # (B, H, P, 1)
    return torch.stack(out, 1).squeeze(-1)


def ssd_quadratic(x: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Reference: the dual form, (C B^T) * exp(segsum(a)) over all N x N pairs."""
    decay = segsum(a.transpose(1, 2)).exp()  # (B, H, N, N)
    weights = (c @ b.transpose(-1, -2))[:, None] * decay
    return (weights @ x.transpose(1, 2)).transpose(1, 2)


def ssd_bidirectional(x: Tensor, a: Tensor, b: Tensor, c: Tensor, chunk: int) -> Tensor:
    """The forward scan plus the scan of the reversed sequence, reversed back."""
    def flip(t: Tensor) -> Tensor:
        return t.flip(1)

    return (ssd_chunked(x, a, b, c, chunk)
            + flip(ssd_chunked(flip(x), flip(a), flip(b), flip(c), chunk)))


@register_operator("ssd", description="Mamba-2's state-space dual, chunked (non-causal: "
                   "forward + backward scan)")
class SSDMixer(TokenMixer):
    supports_causal = True
    supports_query_subset = False

    class Options(TokenMixer.Options):
        state: int = Field(64, gt=0, description="state size per head (Mamba-2's d_state)")
        chunk: int = Field(64, gt=0, description="tokens per chunk of the chunked scan")

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        self.d_state, self.chunk = self.options.state, self.options.chunk
        check_heads(d_model, n_heads)
        d, h = d_model, n_heads
        # z (gate), x, B, C, dt in one projection, as Mamba-2
        self.in_proj = nn.Linear(d, 2 * d + 2 * self.d_state + h, bias=False)
        self.out_proj = nn.Linear(d, d, bias=False)
        # Mamba-2's initialisation: dt log-uniform in [1e-3, 1e-1], A uniform in [1, 16]
        dt = torch.exp(torch.rand(h) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus^-1(dt)
        self.A_log = nn.Parameter(torch.log(torch.empty(h).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(h))

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        ctx = ctx.with_causal(self.causal)
        bsz, n, d = x.shape
        h, s = self.n_heads, self.d_state
        z, xs, b, c, dt = self.in_proj(x).split([d, d, s, s, h], dim=-1)
        with torch.autocast(x.device.type, enabled=False):  # exponentials: float32 at least
            wide = torch.promote_types(x.dtype, torch.float32)
            xs, b, c, dt = (t.to(wide) for t in (xs, b, c, dt))
            dt = F.softplus(dt + self.dt_bias.to(wide))  # (B, N, H)
            if ctx.padding_mask is not None:  # padding: no input, no decay
                dt = dt * ctx.padding_mask[..., None].to(wide)
            a = dt * -torch.exp(self.A_log.to(wide))
            xh = xs.view(bsz, n, h, d // h)
            u = xh * dt[..., None]
            scan = ssd_chunked if self.causal else ssd_bidirectional
            y = torch.addcmul(scan(u, a, b, c, self.chunk), xh, self.D.to(wide)[:, None])
        y = y.reshape(bsz, n, d) * F.silu(z).to(y.dtype)
        return self.out_proj(y.to(z.dtype))

    # -- cost ----------------------------------------------------------------------------------

    def state_size(self, n_tokens: int) -> int:
        """Floats of recurrent state one sequence carries: d_head x d_state per head."""
        return self.d_model * self.d_state

    def _cost(self, n: int) -> tuple[int, int]:
        """(FLOPs, untracked) of one example of n tokens."""
        d, h, s = self.d_model, self.n_heads, self.d_state
        size = min(self.chunk, n)
        padded = block_count(n, size) * size
        proj = 2 * n * d * (2 * d + 2 * s + h) + 2 * n * d * d
        # scores C B^T (shared by heads), their product with x, chunk states, their readout
        scan = 2 * padded * size * s + 2 * padded * size * d + 4 * padded * d * s
        # decay matrix (segment sums, exp) and its product with the scores; decays to the
        # chunk end and from the chunk start, applied; the carried state; adding the terms
        scan_untracked = (4 * padded * size * h + 3 * padded * h + 3 * padded * d
                          + 2 * (padded // size) * d * s)
        scans = 1 if self.causal else 2
        if not self.causal:  # adding the two directions
            scan_untracked += n * d
        # softplus(dt + bias), the padding mask, a = -exp(A) dt, x dt; the skip; the gate
        elementwise = 6 * n * h + n * d + 2 * n * d + 5 * n * d
        untracked = scans * scan_untracked + elementwise
        return proj + scans * scan + untracked, untracked

    def flops(self, n_query: int, n_key: int) -> int:
        return self._cost(n_key)[0]

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        return self._cost(n_key)[1]
