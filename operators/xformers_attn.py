"""Softmax attention through xformers' memory-efficient kernel: the same math as `attn`.

``XFormersKernel`` is the ``xformers`` kernel of attention's table (``operators/attention.py``):
``--op-option attn.backend=xformers``. It runs every call (routed causal queries as the masked
rectangle, and is charged it). Usable only where xformers imports and CUDA is present;
elsewhere the operator refuses at construction with the reason. xformers is imported lazily,
never at module import, so a missing or broken install cannot break the registry.

The ``xformers`` operator is kept for the commands and records that name it: it is ``attn``
with ``backend=xformers`` (the same class, weights and cost), under its own name.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from operators import register_operator

from .attention import Attention, SDPAKernel
from .base import MixContext, attention_mask


@functools.cache
def _import_error() -> str | None:
    try:
        import xformers.ops  # noqa: F401
    except Exception as exc:  # ImportError, or a build that fails to load
        return f"{type(exc).__name__}: {exc}"
    return None


class XFormersKernel(SDPAKernel):
    """Attention's ``xformers`` kernel: xformers.ops.memory_efficient_attention for every
    call (CUDA + xformers)."""

    name = "xformers"
    in_blocks = False  # routed causal queries and padded causal calls: the masked rectangle

    def unavailable(self, device: torch.device | None) -> str | None:
        if device is not None and device.type != "cuda":
            return f"xformers runs on CUDA, not on {device}"
        if device is None and not torch.cuda.is_available():
            return "xformers needs a CUDA GPU and none is available"
        error = _import_error()
        if error:
            return (f"it needs the xformers package ({error}); install "
                    f"chiaroscuro-bench[xformers]")
        return None

    def subset(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext,
               key_bias: Tensor | None, scale: float | None) -> Tensor:
        return self.full(q, k, v, ctx, key_bias, scale)

    def subset_pairs(self, ctx: MixContext, n_key: int, batch: int) -> int:
        assert ctx.query_positions is not None
        return batch * ctx.query_positions.shape[1] * n_key  # the masked rectangle

    def full(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext,
             key_bias: Tensor | None, scale: float | None) -> Tensor:
        import xformers.ops as xops  # imported by unavailable(): a dict lookup

        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # xformers takes (B, L, H, Dh)
        if (ctx.causal and ctx.padding_mask is None and ctx.query_positions is None
                and key_bias is None):
            bias = xops.LowerTriangularMask()
        else:
            B, Q, H, _ = q.shape
            N = k.shape[1]
            allowed = attention_mask(ctx, n_key=N, n_query=Q, device=q.device)
            bias = None
            if allowed is not None or key_bias is not None:
                # xformers wants the bias rows memory-aligned: allocate a last dim padded to a
                # multiple of 8 and use a slice of it.
                storage = q.new_zeros(B, H, Q, N + (-N % 8))
                bias = storage[..., :N]
                if key_bias is not None:
                    bias += key_bias.to(bias.dtype)
                if allowed is not None:
                    bias.masked_fill_(~allowed, float("-inf"))
        y = xops.memory_efficient_attention(q, k, v, attn_bias=bias, scale=scale)
        return y.transpose(1, 2)


@register_operator("xformers", description="softmax attention via xformers "
                   "memory_efficient_attention (CUDA + xformers only): attn with "
                   "backend=xformers")
class XFormersAttention(Attention):
    instead = "use --ops attn for the same attention on PyTorch's kernels"

    class Options(Attention.Options):
        backend: Literal["xformers"] = Field("xformers", description="always xformers: this "
                                             "operator is attn with backend=xformers")
