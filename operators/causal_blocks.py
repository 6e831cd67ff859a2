"""Routed causal attention that computes only what causality needs (the CPU path).

A routed query at position t may attend keys 0 .. t. Run as one masked rectangle, an example's
Q routed queries cost Q x N score pairs; causality needs only sum_t (t + 1), about Q x N / 2.
Here each example's real query slots (positions increasing, packed at the front: the
``MixContext`` contract) are cut into blocks of ``QUERY_BLOCK`` consecutive queries, and each
block attends only keys 0 .. its last position, with a mask for each row's own limit. Padded
query slots (examples route different counts) are never computed: their outputs are zeros.

Work done: sum over blocks of rows x (last position + 1), the triangle plus about half a
block's span of positions per block. ``score_pairs`` counts exactly that, so the FLOP
accounting charges what ran (and torch's FLOP counter sees the same SDPA calls).

The plan needs the positions on the host (slice lengths): one transfer per call, free on CPU.
On CUDA, ``operators.flex`` runs the same computation from a block mask without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
            blocks.append(QueryBlock(e, start, end, pos[e][end - 1] + 1))
    return blocks


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
    n = k.shape[2]
    key_index = torch.arange(n, device=q.device)
    spans = [(blk.example, blk.n_key) for blk in blocks]
    keys, values = _Prefixes.apply(k, spans), _Prefixes.apply(v, spans)
    queries = _query_pieces(q, blocks)
    rows: list[list[Tensor]] = [[] for _ in range(q.shape[0])]
    for blk, qb, kb, vb in zip(blocks, queries, keys, values, strict=True):
        e, s, t, m = blk.example, blk.start, blk.end, blk.n_key
        allowed = key_index[None, :m] <= positions[e, s:t, None]  # (rows, keys)
        if padding_mask is not None:
            allowed = allowed & padding_mask[e, None, :m]
            allowed = allowed | ~allowed.any(-1, keepdim=True)  # never an empty (NaN) row
        mask = allowed if key_bias is None else torch.where(
            allowed, key_bias[e, :, :, :m], float("-inf")).to(q.dtype)
        rows[e].append(F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask, scale=scale))
    return torch.cat([_with_padding_slots(r, q, e) for e, r in enumerate(rows)], dim=0)


def _query_pieces(q: Tensor, blocks: list[QueryBlock]) -> list[Tensor]:
    """Each block's queries (1, H, rows, Dh), by unbind and split: their backwards stack and
    concatenate, where slicing would zero-fill a full-size gradient per block."""
    per_example: list[list[int]] = [[] for _ in range(q.shape[0])]
    for blk in blocks:
        per_example[blk.example].append(blk.end - blk.start)
    pieces = []
    for qe, sizes in zip(q.unbind(0), per_example, strict=True):
        rest = qe.shape[1] - sum(sizes)  # padded slots: split off, never computed
        parts = qe.unsqueeze(0).split([*sizes, rest] if rest else sizes, dim=2)
        pieces += parts[: len(sizes)]
    return pieces


class _Prefixes(torch.autograd.Function):
    """The views t[e : e + 1, :, :m] (B, H, N, Dh -> 1, H, m, Dh) for each (e, m) in `spans`.

    Autograd's own slice backward allocates and zero-fills a full-size gradient per slice
    (measured: a sixth of a routed layer's backward at N = 2048); this one adds each slice's
    gradient into a single buffer."""

    @staticmethod
    def forward(ctx, t: Tensor, spans: list[tuple[int, int]]):
        ctx.shape, ctx.spans = t.shape, spans
        return tuple(t[e : e + 1, :, :m] for e, m in spans)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: Tensor):
        total = grads[0].new_zeros(ctx.shape)
        for (e, m), g in zip(ctx.spans, grads, strict=True):
            if g is not None:
                total[e : e + 1, :, :m] += g
        return total, None


def _with_padding_slots(pieces: list[Tensor], q: Tensor, e: int) -> Tensor:
    """One example's block outputs (1, H, rows, Dh) in slot order, zeros for padded slots."""
    done = sum(p.shape[2] for p in pieces)
    if done < q.shape[2]:
        pieces = [*pieces, q.new_zeros(1, q.shape[1], q.shape[2] - done, q.shape[3])]
    return torch.cat(pieces, dim=2)
