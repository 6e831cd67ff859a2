"""Attention's projections, for the mixers that keep attention's shape around a different core
(softmax attention, linear attention, sliding-window attention): queries projected from the
routed tokens only, keys and values from every token, split into heads, and one output
projection. One home, so that their cost comparison stays like for like and their parameters
(``q_proj``, ``kv_proj``, ``out_proj``: names, shapes, creation order, hence a seed's initial
weights and every checkpoint's keys) stay the same in each.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .base import MixContext, TokenMixer, check_heads, gather_queries


class ProjectedMixer(TokenMixer):
    """A token mixer with attention's projections; a subclass runs its core on what
    ``project`` returns and hands the result (B, Q, D) to ``out_proj``."""

    def __init__(self, d_model: int, n_heads: int, max_len: int, causal: bool, **options: Any):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        check_heads(d_model, n_heads)
        # created in this order: a seed gives the same weights as it always did
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def project(self, x: Tensor, ctx: MixContext) -> tuple[Tensor, Tensor, Tensor]:
        """x (B, N, D) -> q (B, Q, H, Dh) of the routed tokens (all N when none are routed:
        only they are projected), k and v (B, N, H, Dh) of every token."""
        b, n, d = x.shape
        h = self.n_heads
        xq = gather_queries(x, ctx)
        q = self.q_proj(xq).view(b, xq.shape[1], h, d // h)
        k, v = self.kv_proj(x).view(b, n, 2, h, d // h).unbind(2)
        return q, k, v

    def projection_flops(self, n_query: int, n_key: int) -> int:
        """FLOPs of the projections for one example: queries and outputs of n_query tokens,
        keys and values of n_key."""
        d = self.d_model
        return 4 * n_query * d * d + 4 * n_key * d * d
