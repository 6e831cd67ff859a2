"""Routed causal attention on CUDA: FlexAttention with a block mask built from the positions.

The same computation as ``operators.causal_blocks`` (each routed query attends keys <= its
position; padded query slots produce zeros), but the mask lives on the device: FlexAttention
skips every 128 x 128 tile the mask empties, and no positions travel to the host. The ``flex``
kernel of attention's table (``operators/attention.py``): chosen by ``backend=auto`` on CUDA
when ``torch.nn.attention.flex_attention`` imports, or by ``backend=flex``; every other call
runs as the ``sdpa`` kernel does, and on a CPU ``auto`` is always ``sdpa``.

UNTESTED ON A GPU: no accelerator was available to the session that wrote it. Its tests are
marked ``gpu`` (tests/test_routed.py) and compare it with the CPU blocks and with dense
attention wherever CUDA is present.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .attention import SDPAKernel
from .base import MixContext
from .causal_blocks import plan_blocks

FLEX_BLOCK = 128  # FlexAttention's default tile, queries x keys


@functools.cache
def _kernels():
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        return None
    # compiled once per shape; the query count is rounded up to a tile so shapes repeat
    return torch.compile(flex_attention, dynamic=False), create_block_mask


def available(t: Tensor) -> bool:
    return t.is_cuda and _kernels() is not None


class FlexKernel(SDPAKernel):
    """Attention's ``flex`` kernel: routed causal queries through FlexAttention (CUDA)."""

    name = "flex"

    def unavailable(self, device: torch.device | None) -> str | None:
        if device is not None and device.type != "cuda":
            return f"FlexAttention runs on CUDA, not on {device}"
        if device is None and not torch.cuda.is_available():
            return "FlexAttention needs a CUDA GPU and none is available"
        if _kernels() is None:
            return f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
        return None

    def subset(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext,
               key_bias: Tensor | None, scale: float | None) -> Tensor:
        assert ctx.query_positions is not None
        return causal_subset_attention(q, k, v, ctx.query_positions, ctx.query_mask,
                                       ctx.padding_mask, key_bias, scale)

    def subset_pairs(self, ctx: MixContext, n_key: int, batch: int) -> int:
        assert ctx.query_positions is not None
        return score_pairs(ctx.query_positions, ctx.query_mask)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def causal_subset_attention(q: Tensor, k: Tensor, v: Tensor, positions: Tensor,
                            query_mask: Tensor | None, padding_mask: Tensor | None,
                            key_bias: Tensor | None, scale: float | None) -> Tensor:
    """q (B, H, Q, Dh) at positions (B, Q); k, v (B, H, N, Dh) -> (B, H, Q, Dh)."""
    flex_attention, create_block_mask = _kernels()
    b, h, n_query, dh = q.shape
    n_key = k.shape[2]
    real = query_mask if query_mask is not None else torch.ones_like(positions, dtype=torch.bool)
    padded = _round_up(n_query, FLEX_BLOCK) - n_query
    if padded:  # extra slots are padding: fully masked, their tiles skipped
        q = torch.nn.functional.pad(q, (0, 0, 0, padded))
        positions = torch.nn.functional.pad(positions, (0, padded))
        real = torch.nn.functional.pad(real, (0, padded), value=False)

    def mask_mod(bi, hi, qi, ki):
        ok = (ki <= positions[bi, qi]) & real[bi, qi]
        return ok if padding_mask is None else ok & padding_mask[bi, ki]

    block_mask = create_block_mask(mask_mod, b, None, n_query + padded, n_key, device=q.device)
    score_mod = None
    if key_bias is not None:
        bias = key_bias[:, :, 0, :]  # (B, H, N): RBF's -|k|^2 / 2s^2

        def score_mod(score, bi, hi, qi, ki):
            return score + bias[bi, hi, ki]

    y = flex_attention(q, k, v, score_mod=score_mod, block_mask=block_mask, scale=scale)
    return (y * real[:, None, :, None].to(y.dtype))[:, :, :n_query]


def score_pairs(positions: Tensor, query_mask: Tensor | None) -> int:
    """Score pairs per head over the batch that FlexAttention computes: every tile of
    FLEX_BLOCK query slots holding a real query runs whole, over the key tiles up to its last
    position (the tiles its mask leaves non-empty)."""
    tiles = plan_blocks(positions, query_mask, block=FLEX_BLOCK)
    return sum(FLEX_BLOCK * _round_up(t.n_key, FLEX_BLOCK) for t in tiles)
