"""Multi-head softmax attention, through torch's fused scaled_dot_product_attention.

Queries and keys/values are projected separately so that, for a routed subset of query
positions, only those tokens are projected: keys/values are always the whole sequence. On a
causal task routed queries attend only keys up to their own position, in blocks
(``operators.causal_blocks``; FlexAttention on CUDA, ``operators.flex``), and are charged the
score pairs those blocks compute.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from operators import register_operator
from registry import ConfigError

from . import causal_blocks, flex
from .base import MixContext, TokenMixer, attention_mask, gather_queries


@register_operator("attn", description="multi-head softmax self-attention (fused SDPA)",
                   supports_causal=True, supports_query_subset=True, leaky=False)
class Attention(TokenMixer):
    supports_causal = True
    supports_query_subset = True

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        if d_model % n_heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        if ctx.causal != self.causal:  # the constructor's promise wins: never leak
            ctx = dataclasses.replace(ctx, causal=self.causal)
        B, N, D = x.shape
        H = self.n_heads
        xq = gather_queries(x, ctx)  # (B, Q, D): only routed tokens are projected as queries
        Q = xq.shape[1]
        q = self.q_proj(xq).view(B, Q, H, D // H)
        k, v = self.kv_proj(x).view(B, N, 2, H, D // H).unbind(2)
        y = self.mix(q, k, v, ctx)  # (B, Q, H, Dh)
        return self.out_proj(y.reshape(B, Q, D))

    def mix(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext) -> Tensor:
        """The attention core on (B, L, H, Dh) tensors; subclasses change the scores
        (``score_terms``) and every path below serves them."""
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants (B, H, L, Dh)
        q, key_bias, scale = self.score_terms(q, k)
        if ctx.causal and ctx.query_positions is not None:
            y = self._causal_subset(q, k, v, ctx, key_bias, scale)
        elif ctx.causal and self.dense_causal == "blocks":
            b, _, n, _ = q.shape
            positions = torch.arange(n, device=q.device).expand(b, n)
            y = causal_blocks.blocked_causal_attention(q, k, v, positions,
                                                       causal_blocks.dense_blocks(b, n),
                                                       ctx.padding_mask, key_bias, scale)
        elif ctx.causal and ctx.padding_mask is None and key_bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fast path, no mask
        else:
            allowed = attention_mask(ctx, n_key=k.shape[2], n_query=q.shape[2], device=q.device)
            mask = allowed
            if key_bias is not None:
                mask = key_bias if allowed is None else torch.where(allowed, key_bias,
                                                                    float("-inf"))
                mask = mask.to(q.dtype)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return y.transpose(1, 2)

    def score_terms(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor | None, float | None]:
        """(queries, additive per-key bias (B, H, 1, N) or None, scale or None for SDPA's
        default): scores = q.k * scale + bias. Plain attention: no bias."""
        return q, None, None

    def _causal_subset(self, q, k, v, ctx: MixContext, key_bias, scale) -> Tensor:
        """Routed causal queries: each computes only keys <= its position (causal_blocks on
        CPU, a FlexAttention block mask on CUDA)."""
        assert ctx.query_positions is not None
        if flex.available(q):
            return flex.causal_subset_attention(q, k, v, ctx.query_positions, ctx.query_mask,
                                                ctx.padding_mask, key_bias, scale)
        blocks = causal_blocks.plan_blocks(ctx.query_positions, ctx.query_mask)
        return causal_blocks.blocked_causal_attention(q, k, v, ctx.query_positions, blocks,
                                                      ctx.padding_mask, key_bias, scale)

    # How a full causal call runs. "triangle": the fused kernel told is_causal skips the score
    # blocks above the diagonal, and is charged the triangle (which keeps routed savings honest
    # on causal tasks). "blocks": scores with a per-key bias (RBF) reach the fused kernel only
    # as an explicit mask, over the whole rectangle (at N 2048 2.2x the blocks' time), so every
    # position runs as a query of causal_blocks (on any device) and is charged those blocks'
    # pairs. Routed causal queries run in blocks (_causal_subset) and are charged the pairs
    # those blocks compute (batch_flops). Padded calls without a bias still use an explicit
    # mask (the rectangle) and are charged the triangle: the dense side errs low.
    dense_causal = "triangle"
    blocks_causal_subsets = True  # _causal_subset runs; a subclass with its own mix() says no

    def score_pairs(self, n_query: int, n_key: int) -> int:
        """(query, key) score pairs the kernel computes for one head."""
        if self.causal and n_query == n_key:
            if self.dense_causal == "blocks":
                return causal_blocks.score_pairs(causal_blocks.dense_blocks(1, n_query))
            return n_query * (n_query + 1) // 2
        return n_query * n_key

    def subset_score_pairs(self, ctx: MixContext) -> int | None:
        """Score pairs per head over the batch for a routed causal call, as _causal_subset
        computes them; None when this call is not one."""
        if not (self.causal and self.blocks_causal_subsets and ctx.query_positions is not None):
            return None
        if flex.available(ctx.query_positions):
            return flex.score_pairs(ctx.query_positions, ctx.query_mask)
        return causal_blocks.score_pairs(
            causal_blocks.plan_blocks(ctx.query_positions, ctx.query_mask))

    def projection_flops(self, n_query: int, n_key: int) -> int:
        d = self.d_model
        return 2 * n_query * d * d + 4 * n_key * d * d + 2 * n_query * d * d  # q, kv, out

    def flops(self, n_query: int, n_key: int) -> int:
        core = 4 * self.score_pairs(n_query, n_key) * self.d_model  # q.k and the weighted sum
        return self.projection_flops(n_query, n_key) + core

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        # torch's FLOP counter charges SDPA the full rectangle even when the kernel skips the
        # causal triangle: the difference is negative (work counted there, skipped here); the
        # blocks' matrix products it counts exactly
        if self.causal and n_query == n_key and self.dense_causal == "blocks":
            return 0
        return 4 * self.d_model * (self.score_pairs(n_query, n_key) - n_query * n_key)

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        pairs = self.subset_score_pairs(ctx)
        if pairs is None:
            return super().batch_flops(ctx, n_key, batch)
        # padded query slots are projected (they ran) but never reach the core
        n_query = ctx.query_positions.shape[1]
        return batch * self.projection_flops(n_query, n_key) + 4 * pairs * self.d_model

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        if self.subset_score_pairs(ctx) is None:
            return super().batch_untracked_flops(ctx, n_key, batch)
        return 0  # the counter sees exactly the blocks' matrix products
