"""Linear attention (Katharopoulos et al. 2020) with the positive feature map phi = elu + 1:

    y_t = phi(q_t) S_t / phi(q_t) z_t,   S_t = sum_s phi(k_s) v_s^T,   z_t = sum_s phi(k_s),

summed over every key (non-causal) or over s <= t (causal). The normaliser rides along as one
more value column of ones, so numerator and denominator come out of the same products.

Causal form, chunked: positions are cut into chunks of ``chunk`` tokens; each chunk's keys give
a local state k^T v, an exclusive prefix sum over chunks gives the state every chunk starts
from, and each query adds the masked products with the keys of its own chunk up to itself:
O(N (chunk + d_head) d) instead of attention's O(N^2 d). ``linear_attention_recurrent`` (one
state update per token) and ``linear_attention_quadratic`` (the masked N x N form) are the
references it equals (tests/test_linear.py, float64).

Query subsets: keys and values always come from every token; only the routed queries are
projected, read out and projected back. Causal routed queries run in the chunk layout of
``operators.position_blocks`` (each chunk's queries against that chunk's state and keys), and
are charged the rows that layout computes.

Recurrent state per sequence: the (d_head x (d_head + 1)) state and normaliser of every head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from operators import register_operator

from .base import MixContext, query_count
from .position_blocks import block_count, block_slots, from_blocks, to_blocks
from .projections import ProjectedMixer


def feature_map(x: Tensor) -> Tensor:
    """phi(x) = elu(x) + 1: positive, so every normaliser is positive."""
    return F.elu(x) + 1


def _normalise(y1: Tensor) -> Tensor:
    """(..., d_v + 1) numerator and normaliser -> (..., d_v); a zero normaliser (a query slot
    with no keys: an empty place, or padding before any real token) gives 0, not NaN."""
    den = y1[..., -1:]
    return y1[..., :-1] / torch.where(den == 0, torch.ones_like(den), den)


def _with_ones(v: Tensor) -> Tensor:
    return torch.cat([v, v.new_ones(*v.shape[:-1], 1)], -1)


def _chunk_states(k: Tensor, v1: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keys and values (B, H, N, .) in chunks of `size` (zero-padded): (kb, vb) of shape
    (B, H, C, size, .) and the state each chunk starts from, (B, H, C, d_k, d_v + 1)."""
    b, h, n, _ = k.shape
    c = block_count(n, size)
    pad = c * size - n
    kb = F.pad(k, (0, 0, 0, pad)).view(b, h, c, size, -1)
    vb = F.pad(v1, (0, 0, 0, pad)).view(b, h, c, size, -1)
    local = kb.transpose(-1, -2) @ vb  # (B, H, C, d_k, d_v + 1)
    before = torch.cat([torch.zeros_like(local[:, :, :1]), local[:, :, :-1]], 2)
    return kb, vb, before.cumsum(2)


def _chunk_readout(qb: Tensor, kb: Tensor, vb: Tensor, states: Tensor, allowed: Tensor
                   ) -> Tensor:
    """Queries in chunks qb (B, H, C, W, d_k): the chunk's starting state plus the products
    with the chunk's keys that `allowed` (broadcast to (B, H, C, W, size)) keeps."""
    scores = (qb @ kb.transpose(-1, -2)).masked_fill(~allowed, 0.0)
    return qb @ states + scores @ vb


def linear_attention_chunked(q: Tensor, k: Tensor, v: Tensor, chunk: int) -> Tensor:
    """Causal linear attention of features q, k (B, H, N, d_k) and values v (B, H, N, d_v),
    in chunks: the operator's causal path on every position."""
    n = q.shape[2]
    size = min(chunk, n)
    kb, vb, states = _chunk_states(k, _with_ones(v), size)
    qb = F.pad(q, (0, 0, 0, states.shape[2] * size - n)).view(kb.shape)
    allowed = torch.ones(size, size, dtype=torch.bool, device=q.device).tril()
    y1 = _chunk_readout(qb, kb, vb, states, allowed)
    return _normalise(y1.flatten(2, 3)[:, :, :n])


def linear_attention_recurrent(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Reference: one state update per token, S_t = S_{t-1} + phi(k_t) [v_t, 1]^T."""
    v1 = _with_ones(v)
    state = q.new_zeros(*q.shape[:2], q.shape[-1], v1.shape[-1])
    out = []
    for t in range(q.shape[2]):
        state = state + k[:, :, t, :, None] * v1[:, :, t, None, :]
        out.append(q[:, :, t, None, :] @ state)
    return _normalise(torch.cat(out, 2))


def linear_attention_quadratic(q: Tensor, k: Tensor, v: Tensor, causal: bool) -> Tensor:
    """Reference: the N x N matrix phi(q) phi(k)^T, masked to s <= t when causal."""
    weights = q @ k.transpose(-1, -2)
    if causal:
        weights = weights.tril()
    return _normalise(weights @ _with_ones(v))


@register_operator("linear", description="linear attention, elu+1 feature map (chunked causal "
                   "form; queries a routed subset)")
class LinearAttention(ProjectedMixer):
    """Attention's projections (the cost comparison with attention is like for like) around
    the linear core."""

    supports_causal = True
    supports_query_subset = True

    class Options(ProjectedMixer.Options):
        # 64: the chunk products and the state products cost the same at d_head 64
        chunk: int = Field(64, gt=0, description="tokens per chunk of the causal form")

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        self.chunk = self.options.chunk

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        ctx = ctx.with_causal(self.causal)
        q, k, v = self.project(x, ctx)
        b, nq = q.shape[:2]
        q, k = feature_map(q), feature_map(k)
        if ctx.padding_mask is not None:  # padding keys carry no weight at all
            k = k * ctx.padding_mask[:, :, None, None].to(k.dtype)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, N, d_head)
        if not self.causal:
            y = _normalise(q.transpose(1, 2) @ (k.transpose(-1, -2) @ _with_ones(v)))
            y = y.transpose(1, 2)
        elif ctx.query_positions is None:
            y = linear_attention_chunked(q.transpose(1, 2), k, v, self.chunk).transpose(1, 2)
        else:
            y = self._causal_subset(q, k, v, ctx)
        y = y.reshape(b, nq, self.d_model)
        if ctx.query_mask is not None:  # padded query slots: exactly zero
            y = torch.where(ctx.query_mask[..., None], y, torch.zeros_like(y))
        return self.out_proj(y)

    def _causal_subset(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext) -> Tensor:
        """Routed causal queries q (B, Q, H, d_k) in the chunk layout: (B, Q, H, d_v)."""
        assert ctx.query_positions is not None
        n = k.shape[2]
        size = min(self.chunk, n)
        kb, vb, states = _chunk_states(k, _with_ones(v), size)
        slots = block_slots(ctx.query_positions, ctx.query_mask, size, states.shape[2])
        qb = to_blocks(q, slots).permute(0, 3, 1, 2, 4)  # (B, H, C, W, d_k)
        key_pos = torch.arange(states.shape[2] * size, device=q.device).view(-1, size)
        allowed = key_pos[None, :, None, :] <= slots.positions[..., None]  # (B, C, W, size)
        y1 = _chunk_readout(qb, kb, vb, states, allowed[:, None])
        return _normalise(from_blocks(y1.permute(0, 2, 3, 1, 4), slots))

    # -- cost ----------------------------------------------------------------------------------

    def state_size(self, n_tokens: int) -> int:
        """Floats of recurrent state one sequence carries: per head the d_head x d_head state
        and the d_head normaliser, whatever the length."""
        return self.d_model * (self.d_model // self.n_heads + 1)

    def _chunking(self, n: int) -> tuple[int, int]:
        """(chunk size, padded length) of a causal call over n tokens."""
        size = min(self.chunk, n)
        return size, block_count(n, size) * size

    def _query_rows(self, ctx: MixContext, n: int, batch: int) -> int:
        """Query rows one call computes over the batch."""
        if self.causal and ctx.query_positions is not None:
            size, padded = self._chunking(n)
            return block_slots(ctx.query_positions, ctx.query_mask, size,
                               padded // size).rows
        if self.causal:
            return batch * self._chunking(n)[1]
        return batch * query_count(ctx, n)

    def _cost(self, n_query: int, n_key: int, rows: int, batch: int) -> tuple[int, int]:
        """(FLOPs, of which untracked) for `batch` examples with n_query projected queries each
        and `rows` query rows read out in all."""
        d, dv = self.d_model, self.d_model // self.n_heads + 1  # value columns + normaliser
        h = self.n_heads
        proj = batch * self.projection_flops(n_query, n_key)
        size, padded = self._chunking(n_key) if self.causal else (0, n_key)
        keys = batch * 2 * padded * d * dv  # the key-value states
        readout = rows * 2 * d * dv  # phi(q) S
        if self.causal:  # each row against its chunk's keys, then their values
            readout += rows * 2 * size * (d + h * dv)
        # elementwise: elu + 1 of queries and keys, the normalisation; causal: the prefix sum
        # over chunk states, the masked scores, adding the two terms
        untracked = batch * 2 * (n_query + n_key) * d + batch * n_query * d
        if self.causal:
            untracked += batch * (padded // size) * d * dv + rows * h * (size + dv)
        return proj + keys + readout + untracked, untracked

    def flops(self, n_query: int, n_key: int) -> int:
        rows = self._chunking(n_key)[1] if self.causal and n_query == n_key else n_query
        return self._cost(n_query, n_key, rows, 1)[0]

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        rows = self._chunking(n_key)[1] if self.causal and n_query == n_key else n_query
        return self._cost(n_query, n_key, rows, 1)[1]

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return self._cost(query_count(ctx, n_key), n_key, self._query_rows(ctx, n_key, batch),
                          batch)[0]

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        return self._cost(query_count(ctx, n_key), n_key, self._query_rows(ctx, n_key, batch),
                          batch)[1]
