"""Sliding-window softmax attention: each query attends only the keys within its window.

Causal: query t attends keys t - window + 1 .. t (the last ``window`` tokens, itself included).
Non-causal: keys t - window // 2 .. t + window // 2.

Blocked: positions are cut into blocks of ``QUERY_BLOCK`` queries; a block attends the span of
key blocks that covers every window of its queries (for the causal window of 256 and blocks of
64: 5 key blocks, 320 keys), masked per query to its own window. Work per query is the span,
not N: O(N window d) where full attention costs O(N^2 d). Routed query subsets are placed in the
same blocks (``operators.position_blocks``); each is charged the rows x span it computes.
Softmax and masking are not charged (as for attention); projections are attention's own.

Recurrent state per sequence: the keys and values of the last ``window`` tokens (a KV cache
that stops growing).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from operators import register_operator

from .base import MixContext, query_count
from .position_blocks import BlockSlots, block_count, block_slots, from_blocks, to_blocks
from .projections import ProjectedMixer

# Queries per block. A block's span wastes up to one block of keys per query beyond the window
# (window 256: 320 keys for 256 useful); smaller blocks waste less but run more, smaller
# products.
QUERY_BLOCK = 64


@dataclasses.dataclass(frozen=True)
class _Span:
    """The key blocks one query block of `size` positions reads: `before` blocks earlier,
    `after` blocks later, out of `n_blocks` (keys padded with zeros outside 0 .. N-1)."""

    size: int
    n_blocks: int
    before: int
    after: int

    @property
    def keys(self) -> int:
        return (self.before + 1 + self.after) * self.size


def window_offsets(window: int, causal: bool) -> tuple[int, int]:
    """(lo, hi): a query at t attends keys t + lo .. t + hi."""
    return (-(window - 1), 0) if causal else (-(window // 2), window // 2)


def _span(n: int, window: int, causal: bool) -> _Span:
    size = min(QUERY_BLOCK, n)
    c = block_count(n, size)
    lo, hi = window_offsets(window, causal)
    before = min(c - 1, -(lo // size))  # lo <= 0: ceil(-lo / size)
    after = min(c - 1, (size - 1 + hi) // size)
    return _Span(size, c, before, after)


def _windows(padded: Tensor, span: _Span) -> Tensor:
    """Keys or values padded by `before` blocks in front (B, H, L, d), contiguous -> each query
    block's span of them (B, H, C, keys, d): overlapping views, no copy."""
    b, h, _, d = padded.shape
    return padded.as_strided((b, h, span.n_blocks, span.keys, d),
                             (padded.stride(0), padded.stride(1), span.size * d, d, 1))


def _add_windows(target: Tensor, grads: Tensor, span: _Span) -> None:
    """target (L, d) += each block's span gradient grads (C, keys, d), block by block of keys
    (the spans overlap, so one write per key block)."""
    s, c = span.size, span.n_blocks
    blocks = target.view(-1, s, target.shape[-1])
    for j in range(span.before + 1 + span.after):
        blocks[j : j + c] += grads[:, j * s : (j + 1) * s]


class _WindowAttention(torch.autograd.Function):
    """softmax(q k^T + mask) v over each query block's span of keys, per example and head, with
    a hand-written backward.

    The spans are overlapping views of the padded keys and values (no copy); the scores are
    masked and normalised in place, and only the probabilities are kept for backward, which
    uses rowsum(dP * P) = rowsum(dy * y) (as flash attention does) and adds each span's key
    and value gradients back block by block. Written with autograd's ops (spans concatenated,
    a masked copy, softmax) it made two copies of every span and three of every score."""

    @staticmethod
    def forward(ctx, qb: Tensor, kp: Tensor, vp: Tensor, blocked: Tensor, span: _Span
                ) -> Tensor:
        kw, vw = _windows(kp, span), _windows(vp, span)
        y = torch.empty_like(qb)
        probs = qb.new_empty(*qb.shape[:-1], span.keys)
        for b in range(qb.shape[0]):
            mask = blocked[min(b, blocked.shape[0] - 1)]
            for h in range(qb.shape[1]):
                p = torch.bmm(qb[b, h], kw[b, h].transpose(1, 2), out=probs[b, h])
                p.masked_fill_(mask, float("-inf"))
                p.sub_(p.amax(-1, keepdim=True)).exp_()
                p.div_(p.sum(-1, keepdim=True))
                torch.bmm(p, vw[b, h], out=y[b, h])
        ctx.save_for_backward(qb, kp, vp, y, probs)
        ctx.span = span
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy: Tensor):
        qb, kp, vp, y, probs = ctx.saved_tensors
        span = ctx.span
        kw, vw = _windows(kp, span), _windows(vp, span)
        dy = dy.contiguous()
        dq = torch.empty_like(qb)
        dkp, dvp = torch.zeros_like(kp), torch.zeros_like(vp)
        row_dot = (dy * y).sum(-1, keepdim=True)
        for b in range(qb.shape[0]):
            for h in range(qb.shape[1]):
                p, g = probs[b, h], dy[b, h]
                _add_windows(dvp[b, h], torch.bmm(p.transpose(1, 2), g), span)
                ds = torch.bmm(g, vw[b, h].transpose(1, 2)).sub_(row_dot[b, h]).mul_(p)
                torch.bmm(ds, kw[b, h], out=dq[b, h])
                _add_windows(dkp[b, h], torch.bmm(ds.transpose(1, 2), qb[b, h]), span)
        return dq, dkp, dvp, None, None


def window_attention(qb: Tensor, k: Tensor, v: Tensor, query_pos: Tensor, span: _Span,
                     window: int, causal: bool, padding_mask: Tensor | None) -> Tensor:
    """softmax over each query's window of keys, for queries in blocks qb (B, H, C, W, d),
    already scaled, at positions query_pos (B or 1, C, W) (-1: an empty place, output
    ignored); k, v (B, H, N, d). Returns (B, H, C, W, d)."""
    n = k.shape[2]
    lo, hi = window_offsets(window, causal)
    key_pos = (torch.arange(span.keys, device=k.device)[None, :]
               + (torch.arange(span.n_blocks, device=k.device)[:, None] - span.before)
               * span.size)  # (C, keys)
    offset = key_pos[None, :, None, :] - query_pos[..., None]  # (B|1, C, W, keys)
    inside = ((key_pos >= 0) & (key_pos < n))[None, :, None, :]
    allowed = (offset >= lo) & (offset <= hi) & inside
    if padding_mask is not None:
        allowed = allowed & padding_mask[:, key_pos.clamp(0, n - 1)][:, :, None, :]
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # an empty row must not be NaN
    s = span.size
    pad = (0, 0, span.before * s, (span.n_blocks + span.after) * s - n)
    kp, vp = F.pad(k, pad).contiguous(), F.pad(v, pad).contiguous()
    return _WindowAttention.apply(qb.contiguous(), kp, vp, ~allowed, span)


def sliding_window_blocked(q: Tensor, k: Tensor, v: Tensor, window: int, causal: bool,
                           padding_mask: Tensor | None = None) -> Tensor:
    """Every position as a query, in blocks: q (already scaled), k, v (B, H, N, d)."""
    b, h, n, _ = q.shape
    span = _span(n, window, causal)
    s, c = span.size, span.n_blocks
    qb = F.pad(q, (0, 0, 0, c * s - n)).view(b, h, c, s, -1)
    pos = torch.arange(c * s, device=q.device).view(1, c, s)
    y = window_attention(qb, k, v, pos, span, window, causal, padding_mask)
    return y.flatten(2, 3)[:, :, :n]


def sliding_window_quadratic(q: Tensor, k: Tensor, v: Tensor, window: int,
                             causal: bool) -> Tensor:
    """Reference: the N x N scores, masked to each query's window."""
    n = q.shape[2]
    lo, hi = window_offsets(window, causal)
    offset = torch.arange(n, device=q.device)[None, :] - torch.arange(n, device=q.device)[:, None]
    allowed = (offset >= lo) & (offset <= hi)
    scores = (q @ k.transpose(-1, -2)).masked_fill(~allowed, float("-inf"))
    return scores.softmax(-1) @ v


def sliding_window_recurrent(q: Tensor, k: Tensor, v: Tensor, window: int) -> Tensor:
    """Reference, causal: one query at a time against a cache of the last `window` keys and
    values (the state it carries)."""
    out = []
    for t in range(q.shape[2]):
        first = max(0, t - window + 1)
        keys, values = k[:, :, first : t + 1], v[:, :, first : t + 1]
        scores = q[:, :, t, None] @ keys.transpose(-1, -2)
        out.append(scores.softmax(-1) @ values)
    return torch.cat(out, 2)


@register_operator("swa", description="sliding-window softmax attention (option window, "
                   "default 256; blocked)")
class SlidingWindowAttention(ProjectedMixer):
    """Attention's projections around the windowed core."""

    supports_causal = True
    supports_query_subset = True

    class Options(ProjectedMixer.Options):
        window: int = Field(256, gt=0, description="keys each query sees (causal: itself "
                            "and the window - 1 before it)")

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        self.window = self.options.window

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        ctx = ctx.with_causal(self.causal)
        q, k, v = self.project(x, ctx)
        b, nq, _, d_head = q.shape
        n = k.shape[1]
        q = q * d_head**-0.5
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, N, d_head)
        if ctx.query_positions is None:
            y = sliding_window_blocked(q.transpose(1, 2), k, v, self.window, self.causal,
                                       ctx.padding_mask).transpose(1, 2)
        else:
            span = _span(n, self.window, self.causal)
            slots = self._slots(ctx, span)
            qb = to_blocks(q, slots).permute(0, 3, 1, 2, 4)  # (B, H, C, W, d_head)
            y = window_attention(qb, k, v, slots.positions, span, self.window, self.causal,
                                 ctx.padding_mask)
            y = from_blocks(y.permute(0, 2, 3, 1, 4), slots)  # padded slots: zero
        return self.out_proj(y.reshape(b, nq, self.d_model))

    @staticmethod
    def _slots(ctx: MixContext, span: _Span) -> BlockSlots:
        assert ctx.query_positions is not None
        return block_slots(ctx.query_positions, ctx.query_mask, span.size, span.n_blocks)

    # -- cost ----------------------------------------------------------------------------------

    def state_size(self, n_tokens: int) -> int:
        """Floats of state one sequence carries: keys and values of the last window tokens."""
        return 2 * min(n_tokens, self.window) * self.d_model

    def _cost(self, n_query: int, n_key: int, rows: int, batch: int) -> tuple[int, int]:
        """(FLOPs, untracked) of `batch` examples with n_query projected queries each and
        `rows` query rows in blocks over the batch."""
        d = self.d_model
        proj = batch * self.projection_flops(n_query, n_key)
        keys = _span(n_key, self.window, self.causal).keys
        untracked = batch * n_query * d  # the query scaling (softmax and masks: not charged)
        return proj + rows * keys * 4 * d + untracked, untracked

    def _rows(self, ctx: MixContext, n: int, batch: int) -> int:
        span = _span(n, self.window, self.causal)
        if ctx.query_positions is None:
            return batch * span.n_blocks * span.size
        return self._slots(ctx, span).rows

    def flops(self, n_query: int, n_key: int) -> int:
        return self._cost(n_query, n_key, self._ideal_rows(n_query, n_key), 1)[0]

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        return self._cost(n_query, n_key, self._ideal_rows(n_query, n_key), 1)[1]

    def _ideal_rows(self, n_query: int, n_key: int) -> int:
        span = _span(n_key, self.window, self.causal)
        return span.n_blocks * span.size if n_query == n_key else n_query

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return self._cost(query_count(ctx, n_key), n_key, self._rows(ctx, n_key, batch),
                          batch)[0]

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return self._cost(query_count(ctx, n_key), n_key, self._rows(ctx, n_key, batch),
                          batch)[1]
