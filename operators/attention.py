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
from .base import MixContext, TokenMixer, attention_mask, gather_queries, query_count


@register_operator("attn", description="multi-head softmax self-attention (fused SDPA)")
class Attention(TokenMixer):
    supports_causal = True
    supports_query_subset = True
    roles = ("attention",)

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
        elif ctx.causal and self._dense_in_blocks(ctx):
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
    # pairs. Padded full causal calls run in blocks whatever this says: the fused kernel takes
    # padding only as an explicit mask, which runs (and must be charged) the whole rectangle;
    # the blocks took 0.80x / 0.69x its fwd+bwd time at N 1024 / 2048 (1.09x at N 256; B 4,
    # d_model 256, 1 thread).
    # Routed causal queries run in blocks (_causal_subset) and are charged the pairs those
    # blocks compute (batch_flops).
    dense_causal = "triangle"
    blocks_causal_subsets = True  # mix() runs causal_blocks; a subclass with its own mix says no

    def _dense_in_blocks(self, ctx: MixContext) -> bool:
        """Whether a full causal call with this context runs every position in blocks."""
        return self.blocks_causal_subsets and (self.dense_causal == "blocks"
                                               or ctx.padding_mask is not None)

    def score_pairs(self, n_query: int, n_key: int) -> int:
        """(query, key) score pairs the kernel computes for one head of an unpadded call."""
        if self.causal and n_query == n_key:
            if self.dense_causal == "blocks":
                return causal_blocks.score_pairs(causal_blocks.dense_blocks(1, n_query))
            return n_query * (n_query + 1) // 2
        return n_query * n_key

    def call_score_pairs(self, ctx: MixContext, n_key: int, batch: int) -> int:
        """Score pairs per head over the batch that one call with this context computes, as
        mix() runs it: routed causal queries in blocks (or FlexAttention's tiles), padded full
        causal calls in blocks (or, in a subclass with its own mix, the masked rectangle)."""
        if not self.causal:
            return batch * query_count(ctx, n_key) * n_key
        if ctx.query_positions is not None:
            if not self.blocks_causal_subsets:
                return batch * ctx.query_positions.shape[1] * n_key  # the masked rectangle
            if flex.available(ctx.query_positions):
                return flex.score_pairs(ctx.query_positions, ctx.query_mask)
            return causal_blocks.score_pairs(
                causal_blocks.plan_blocks(ctx.query_positions, ctx.query_mask))
        if self._dense_in_blocks(ctx):
            return batch * causal_blocks.score_pairs(causal_blocks.dense_blocks(1, n_key))
        if ctx.padding_mask is not None:
            return batch * n_key * n_key  # a subclass's own mix: the masked rectangle
        return batch * self.score_pairs(n_key, n_key)

    def _runs_in_blocks(self, ctx: MixContext) -> bool:
        """Whether this call runs in blocks, whose matrix products torch's FLOP counter sees
        exactly; fused attention it charges the whole rectangle (even where the kernel skips
        the triangle)."""
        if not self.causal:
            return False
        if ctx.query_positions is None:
            return self._dense_in_blocks(ctx)
        return self.blocks_causal_subsets

    def projection_flops(self, n_query: int, n_key: int) -> int:
        d = self.d_model
        return 2 * n_query * d * d + 4 * n_key * d * d + 2 * n_query * d * d  # q, kv, out

    def elementwise_flops(self, n_query: int, n_key: int, batch: int, pairs: int) -> int:
        """FLOPs of the call's elementwise work, which torch's FLOP counter does not see, for
        `batch` examples computing `pairs` score pairs per head. Plain attention: none counted
        (the softmax is not charged, as everywhere in this harness)."""
        return 0

    def flops(self, n_query: int, n_key: int) -> int:
        pairs = self.score_pairs(n_query, n_key)
        return (self.projection_flops(n_query, n_key) + 4 * pairs * self.d_model
                + self.elementwise_flops(n_query, n_key, 1, pairs))

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        # the blocks' matrix products are counted exactly; fused attention is charged its
        # rectangle even where the kernel skips the causal triangle (a negative difference)
        pairs = self.score_pairs(n_query, n_key)
        blocks = self.causal and n_query == n_key and self.dense_causal == "blocks"
        counted = pairs if blocks else n_query * n_key
        return (4 * self.d_model * (pairs - counted)
                + self.elementwise_flops(n_query, n_key, 1, pairs))

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        # padded query slots are projected (they ran); the core is charged what ran
        n_query, pairs = query_count(ctx, n_key), self.call_score_pairs(ctx, n_key, batch)
        return (batch * self.projection_flops(n_query, n_key) + 4 * pairs * self.d_model
                + self.elementwise_flops(n_query, n_key, batch, pairs))

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        n_query, pairs = query_count(ctx, n_key), self.call_score_pairs(ctx, n_key, batch)
        counted = pairs if self._runs_in_blocks(ctx) else batch * n_query * n_key
        return (4 * self.d_model * (pairs - counted)
                + self.elementwise_flops(n_query, n_key, batch, pairs))
