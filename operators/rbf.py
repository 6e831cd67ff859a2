"""RBF kernel mixing: y_i = sum_j K(q_i, k_j) v_j / sum_j K(q_i, k_j), K = exp(-|q-k|^2 / 2s^2).

Expanding |q - k|^2 = |q|^2 - 2 q.k + |k|^2, the |q|^2 term is constant along each row and
cancels under the normalisation, so

    y = softmax(q.k / s^2 - |k|^2 / 2s^2) v,

which is attention with pre-scaled queries and an additive per-key bias: it runs on the same
fused kernels, and has attention's projections, query-subset support and masks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from operators import register_operator

from .attention import Attention


@register_operator("rbf", description="RBF (Gaussian) kernel mixing with a learnable bandwidth "
                   "per head")
class RBFMixer(Attention):
    roles = ()  # attention's machinery, not full softmax attention
    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        # s^2 = sqrt(head_dim) makes q.k / s^2 the usual attention scaling at initialisation.
        log_s = 0.25 * math.log(d_model // n_heads)
        self.log_s = nn.Parameter(torch.full((n_heads,), log_s))

    def score_terms(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor, float]:
        """q / s^2 and the per-key bias -|k|^2 / 2s^2 (B, H, 1, N), scale 1: Attention.mix
        runs them on every path (dense, padded, routed causal blocks)."""
        inv_s2 = torch.exp(-2 * self.log_s)[:, None, None]  # 1 / s_h^2, (H, 1, 1)
        # -|k|^2 / 2s^2 per key, computed in float32 at least (bf16 loses the norms).
        k32 = k.to(torch.promote_types(k.dtype, torch.float32))
        bias = -0.5 * k32.square().sum(-1)[:, :, None, :] * inv_s2.to(k32.dtype)  # (B, H, 1, N)
        return q * inv_s2.to(q.dtype), bias, 1.0

    # the bias reaches the fused kernel only as an explicit mask over the whole rectangle, so
    # full causal calls run in blocks too (Attention.dense_causal)
    dense_causal = "blocks"

    def elementwise_flops(self, n_query: int, n_key: int, batch: int, pairs: int) -> int:
        # |k|^2 (square + sum) and its scaling, the query scaling, and the bias added to every
        # score computed: work that FlopCounterMode does not see
        d, h = self.d_model, self.n_heads
        return batch * (2 * n_key * d + n_key * h + n_query * d) + pairs * h
