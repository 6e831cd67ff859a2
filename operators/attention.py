"""Multi-head softmax attention, through torch's fused scaled_dot_product_attention.

Queries and keys/values are projected separately so that, for a routed subset of query
positions, only those tokens are projected: keys/values are always the whole sequence.
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F
from torch import Tensor, nn

from operators import register_operator
from registry import ConfigError

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
        """The attention core on (B, L, H, Dh) tensors; subclasses swap the kernel."""
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # SDPA wants (B, H, L, Dh)
        if ctx.causal and ctx.padding_mask is None and ctx.query_positions is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fast path, no mask
        else:
            mask = attention_mask(ctx, n_key=k.shape[2], n_query=q.shape[2], device=q.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return y.transpose(1, 2)

    # A fused kernel told is_causal skips the score blocks above the diagonal; given an explicit
    # mask (routed query subsets, padding; RBF's bias) it computes the whole rectangle. Counting
    # the triangle for full causal attention keeps routed savings honest on causal tasks.
    skips_causal_triangle = True

    def score_pairs(self, n_query: int, n_key: int) -> int:
        """(query, key) score pairs the kernel computes for one head."""
        if self.causal and n_query == n_key and self.skips_causal_triangle:
            return n_query * (n_query + 1) // 2
        return n_query * n_key

    def flops(self, n_query: int, n_key: int) -> int:
        d = self.d_model
        projections = 2 * n_query * d * d + 4 * n_key * d * d + 2 * n_query * d * d  # q, kv, out
        core = 4 * self.score_pairs(n_query, n_key) * d  # scores q.k and the weighted sum
        return projections + core

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        # torch's FLOP counter charges SDPA the full rectangle even when the kernel skips the
        # causal triangle: the difference is negative (work counted there, skipped here)
        return 4 * self.d_model * (self.score_pairs(n_query, n_key) - n_query * n_key)
