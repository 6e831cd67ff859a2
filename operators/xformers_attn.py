"""Softmax attention through xformers' memory-efficient kernel: the same math as `attn`.

Registered everywhere, usable only where xformers imports and CUDA is present; elsewhere it
refuses at construction with the reason. xformers is imported lazily, never at module import,
so a missing or broken install cannot break the registry.
"""

from __future__ import annotations

import torch
from torch import Tensor

from operators import register_operator
from registry import ConfigError

from .attention import Attention
from .base import MixContext, attention_mask


@register_operator("xformers", description="softmax attention via xformers "
                   "memory_efficient_attention (CUDA + xformers only)")
class XFormersAttention(Attention):
    blocks_causal_subsets = False  # its own mix(): routed causal queries run the rectangle

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        if not torch.cuda.is_available():
            raise ConfigError(
                "operator 'xformers' needs a CUDA GPU and none is available; "
                "use --ops attn for the same attention on PyTorch's fused kernels"
            )
        try:
            import xformers.ops  # noqa: F401
        except Exception as exc:  # ImportError, or a build that fails to load
            raise ConfigError(
                f"operator 'xformers' needs the xformers package ({type(exc).__name__}: {exc}); "
                "install chiaroscuro-bench[xformers] or use --ops attn"
            ) from exc

    def mix(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext) -> Tensor:
        import xformers.ops as xops  # already imported at construction: a dict lookup

        # xformers takes (B, L, H, Dh), the layout q, k, v arrive in.
        if ctx.causal and ctx.padding_mask is None and ctx.query_positions is None:
            bias = xops.LowerTriangularMask()
        else:
            allowed = attention_mask(ctx, n_key=k.shape[1], n_query=q.shape[1], device=q.device)
            bias = None
            if allowed is not None:
                B, Q, H, _ = q.shape
                N = k.shape[1]
                # xformers wants the bias rows memory-aligned: allocate a last dim padded to a
                # multiple of 8 and use a slice of it.
                storage = q.new_zeros(B, H, Q, N + (-N % 8))
                bias = storage[..., :N]
                bias.masked_fill_(~allowed, float("-inf"))
        return xops.memory_efficient_attention(q, k, v, attn_bias=bias)
