"""Routed causal attention that computes only what causality needs (the CPU path).

A routed query at position t may attend keys 0 .. t. Run as one masked rectangle, an example's
Q routed queries cost Q x N score pairs; causality needs only sum_t (t + 1), about Q x N / 2.
Here each example's real query slots (positions increasing, packed at the front: the
``MixContext`` contract) are cut into blocks of ``QUERY_BLOCK`` consecutive queries, and each
block attends only keys 0 .. its last position, with a mask for each row's own limit, as
batched matrix products over heads (``_BlockedAttention``). Padded query slots (examples route
different counts) are never computed: their outputs are zeros.

Work done: sum over blocks of rows x (last position + 1), the triangle plus about half a
block's span of positions per block. ``score_pairs`` counts exactly that, so the FLOP
accounting charges what ran (and torch's FLOP counter sees the same matrix products).

The plan needs the positions on the host (slice lengths): one transfer per call, free on CPU.
On CUDA, ``operators.flex`` runs the same computation from a block mask without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# Queries per block. A block's rows all compute keys up to its last position, which wastes
# about (block / queries of the example) of the useful work; smaller blocks waste less but run
# smaller matrix products and more calls. So an example's queries are cut into about
# BLOCKS_PER_EXAMPLE blocks, of MIN_QUERY_BLOCK to QUERY_BLOCK queries (64 was fastest at
# N = 1024 .. 4096, d_model 256, on CPU).
QUERY_BLOCK = 64
MIN_QUERY_BLOCK = 16
BLOCKS_PER_EXAMPLE = 8


def block_size(count: int) -> int:
    """Queries per block for an example with `count` routed queries."""
    return min(QUERY_BLOCK, max(MIN_QUERY_BLOCK, -(-count // BLOCKS_PER_EXAMPLE)))


@dataclass(frozen=True)
class QueryBlock:
    example: int
    start: int  # query slots [start, end) of that example
    end: int
    n_key: int  # keys 0 .. n_key - 1 (the last position in the block, plus one)
    first: int  # the position of its first query: keys 0 .. first are allowed for every row


def plan_blocks(positions: Tensor, query_mask: Tensor | None,
                block: int | None = None) -> list[QueryBlock]:
    """Blocks of `block` (default: ``block_size`` of the example's count) of each example's
    real query slots; positions (B, Q) increase per example over its real slots, which come
    first (the rest is padding)."""
    b, q = positions.shape
    counts = [q] * b if query_mask is None else query_mask.sum(1).tolist()
    pos = positions.tolist()  # the one host transfer
    blocks = []
    for e in range(b):
        size = block or block_size(counts[e])
        for start in range(0, counts[e], size):
            end = min(start + size, counts[e])
            blocks.append(QueryBlock(e, start, end, pos[e][end - 1] + 1, pos[e][start]))
    return blocks


def dense_blocks(batch: int, n: int) -> list[QueryBlock]:
    """The blocks of `batch` examples whose queries are all n positions (plan_blocks of
    positions 0 .. n-1, without a host transfer)."""
    size = block_size(n)
    return [QueryBlock(e, s, min(s + size, n), min(s + size, n), s)
            for e in range(batch) for s in range(0, n, size)]


def score_pairs(blocks: list[QueryBlock]) -> int:
    """(query, key) score pairs the blocks compute, per head, over the whole batch."""
    return sum((blk.end - blk.start) * blk.n_key for blk in blocks)


def blocked_causal_attention(q: Tensor, k: Tensor, v: Tensor, positions: Tensor,
                             blocks: list[QueryBlock], padding_mask: Tensor | None,
                             key_bias: Tensor | None = None,
                             scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale + key_bias, masked to keys <= each query's position) v.

    q (B, H, Q, Dh) at `positions` (B, Q); k, v (B, H, N, Dh); key_bias (B, H, 1, N) or None
    (RBF's -|k|^2 / 2s^2). Returns (B, H, Q, Dh), zeros at padded query slots."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    # (B, H, L, Dh) contiguous: attention passes transposes of (B, L, H, Dh), whose per-head
    # slices made products copy their operands (3% of a routed layer at B 4, N 2048)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    inputs = [q, k, v] + ([key_bias] if key_bias is not None else [])
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    keep = keep and q.shape[1] * score_pairs(blocks) * q.element_size() <= SAVED_SCORES_BYTES
    return _BlockedAttention.apply(q, k, v, key_bias, positions, padding_mask, blocks, scale,
                                   keep)


# Backward needs each block's attention probabilities (heads x rows x keys). Keeping them from
# the forward is 15-25% faster than recomputing them (one more matrix product and softmax per
# block: measured at N = 2048, d_model 256, 1 thread); above this many bytes per call they are
# recomputed, so memory stays bounded at long N (B 4, N 4096, 37.5% routed keeps ~220 MB).
SAVED_SCORES_BYTES = 256 << 20


def _probabilities(blk: QueryBlock, q: Tensor, k_t: Tensor, positions: Tensor,
                   padding_mask: Tensor | None, key_bias: Tensor | None) -> Tensor:
    """softmax of one block's masked scores, (H, rows, keys), from q already scaled and the
    keys transposed, k_t (B, H, Dh, N): a product whose second operand is a transposed view
    ran 1.35x slower. Without padding or bias only the keys past the block's first position
    need a mask (one in-place fill of those columns); otherwise the mask and the bias enter
    as the addend of one batched product (baddbmm)."""
    e, s, t, m = blk.example, blk.start, blk.end, blk.n_key
    if padding_mask is None and key_bias is None:
        scores = torch.bmm(q[e, :, s:t], k_t[e, :, :, :m])
        lo = blk.first + 1
        if lo < m:
            later = torch.arange(lo, m, device=q.device)[None, :] > positions[e, s:t, None]
            scores[..., lo:].masked_fill_(later, float("-inf"))
        return scores.softmax(-1)
    allowed = torch.arange(m, device=q.device)[None, :] <= positions[e, s:t, None]
    if padding_mask is not None:
        allowed = allowed & padding_mask[e, None, :m]
        allowed = allowed | ~allowed.any(-1, keepdim=True)  # never an empty (NaN) row
    if key_bias is None:
        addend = q.new_zeros(t - s, m).masked_fill_(~allowed, float("-inf"))
    else:
        addend = key_bias[e, :, :, :m].to(q.dtype).masked_fill(~allowed, float("-inf"))
    return torch.baddbmm(addend, q[e, :, s:t], k_t[e, :, :, :m]).softmax(-1)


class _BlockedAttention(torch.autograd.Function):
    """The blocks as batched matrix products over heads, with a hand-written backward.

    Torch's fused CPU attention was the first form: per block it zero-fills fresh key and value
    gradients of the block's whole prefix, which then had to be added into one buffer (13% of
    a routed layer at B 4, N 2048), and its small-block backward ran well below its speed on
    the full triangle. Here every block's dk, dv accumulate in place (baddbmm_) and dS uses
    rowsum(dP * P) = rowsum(dy * y), one number per query (as flash attention does). dk and dv
    accumulate transposed, (Dh, keys) per head: a block's update is a product with an inner
    dimension of only its rows, and written along keys it ran 1.5x faster than along Dh; both
    are transposed back once at the end (a transposed view made the projections' backward
    copy slower by more than it saved). Tests: routed == dense, outputs and
    gradients (tests/test_operators.py)."""

    @staticmethod
    def forward(ctx, q, k, v, key_bias, positions, padding_mask, blocks, scale, keep):
        q = q * scale  # once, instead of in every block's product
        k_t = k.transpose(-1, -2).contiguous()
        y = q.new_zeros(q.shape)  # padded query slots stay zero
        kept = []
        for blk in blocks:
            p = _probabilities(blk, q, k_t, positions, padding_mask, key_bias)
            y[blk.example, :, blk.start : blk.end] = torch.bmm(p, v[blk.example, :, : blk.n_key])
            if keep:
                kept.append(p)
        ctx.save_for_backward(q, k, v, key_bias, positions, padding_mask, y)
        ctx.blocks, ctx.scale, ctx.kept = blocks, scale, kept
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        q, k, v, key_bias, positions, padding_mask, y = ctx.saved_tensors  # q is scaled
        scale, kept = ctx.scale, ctx.kept
        k_t = None if kept else k.transpose(-1, -2).contiguous()
        want_bias = key_bias is not None and ctx.needs_input_grad[3]
        dq = torch.zeros_like(q)
        b, h, n, dh = k.shape
        dk_t, dv_t = k.new_zeros(b, h, dh, n), v.new_zeros(b, h, dh, n)
        d_bias = torch.zeros_like(key_bias) if want_bias else None
        row_dot = (dy * y).sum(-1, keepdim=True)  # (B, H, Q, 1)
        for i, blk in enumerate(ctx.blocks):
            e, s, t, m = blk.example, blk.start, blk.end, blk.n_key
            p = kept[i] if kept else _probabilities(blk, q, k_t, positions, padding_mask,
                                                    key_bias)
            g = dy[e, :, s:t]
            dv_t[e, :, :, :m].baddbmm_(g.transpose(1, 2), p)
            ds = torch.bmm(g, v[e, :, :m].transpose(1, 2)).sub_(row_dot[e, :, s:t]).mul_(p)
            dq[e, :, s:t] = torch.bmm(ds, k[e, :, :m]).mul_(scale)
            dk_t[e, :, :, :m].baddbmm_(q[e, :, s:t].transpose(1, 2), ds)
            if want_bias:
                d_bias[e, :, 0, :m] += ds.sum(1)
        ctx.kept = None
        return (dq, dk_t.transpose(-1, -2).contiguous(), dv_t.transpose(-1, -2).contiguous(),
                d_bias, None, None, None, None, None)
