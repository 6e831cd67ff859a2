"""Multi-head softmax attention: the projections and cost accounting, with its core run by a
kernel from a table (``ATTENTION_KERNELS``), chosen by ``--op-option attn.backend=NAME``.

Queries and keys/values are projected separately so that, for a routed subset of query
positions, only those tokens are projected: keys/values are always the whole sequence. On a
causal task routed queries attend only keys up to their own position, in blocks
(``operators.causal_blocks``, or FlexAttention's tiles on CUDA, ``operators.flex``), and are
charged the score pairs those blocks compute.

Kernels (``operators/backends.py``): ``sdpa`` (``SDPAKernel`` below: PyTorch's fused
scaled_dot_product_attention, routed causal queries and padded causal calls in
``causal_blocks``; runs anywhere), ``flex`` (the same, with routed causal queries through
FlexAttention block masks; CUDA), ``xformers`` (xformers' memory-efficient attention for every
call; CUDA and the xformers package). ``auto`` (the default): flex where usable, else sdpa, so a
CPU always runs sdpa. A subclass that changes the scores (``score_terms``: RBF) is served by
every kernel.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor

from operators import register_operator
from registry import ConfigError

from . import causal_blocks
from .backends import KernelTable
from .base import MixContext, attention_mask, query_count
from .projections import ProjectedMixer

# The attention kernels: name -> "module:Class". A new kernel is its file plus one line here.
ATTENTION_KERNELS = KernelTable("attention", {
    "sdpa": "operators.attention:SDPAKernel",
    "flex": "operators.flex:FlexKernel",
    "xformers": "operators.xformers_attn:XFormersKernel",
}, auto=("flex", "sdpa"))


class SDPAKernel:
    """Pure PyTorch: fused SDPA for full calls; routed causal queries in causal_blocks.

    A kernel runs the attention core on (B, H, L, Dh) tensors with scores q.k * scale + the
    per-key bias (``Attention.score_terms``). ``subset`` serves routed causal queries (ctx has
    query positions), ``full`` every other call not run in blocks; ``in_blocks`` says whether
    routed causal queries and padded full causal calls run in causal_blocks (whose matrix
    products torch's FLOP counter sees exactly) and ``subset_pairs`` what routed causal queries
    compute, for the cost accounting."""

    name = "sdpa"
    in_blocks = True

    def unavailable(self, device: torch.device | None) -> str | None:
        return None

    def subset(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext,
               key_bias: Tensor | None, scale: float | None) -> Tensor:
        assert ctx.query_positions is not None
        blocks = causal_blocks.plan_blocks(ctx.query_positions, ctx.query_mask)
        return causal_blocks.blocked_causal_attention(q, k, v, ctx.query_positions, blocks,
                                                      ctx.padding_mask, key_bias, scale)

    def subset_pairs(self, ctx: MixContext, n_key: int, batch: int) -> int:
        assert ctx.query_positions is not None
        return causal_blocks.score_pairs(
            causal_blocks.plan_blocks(ctx.query_positions, ctx.query_mask))

    def full(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext,
             key_bias: Tensor | None, scale: float | None) -> Tensor:
        if (ctx.causal and ctx.padding_mask is None and key_bias is None
                and ctx.query_positions is None):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)  # fast, no mask
        allowed = attention_mask(ctx, n_key=k.shape[2], n_query=q.shape[2], device=q.device)
        mask = allowed
        if key_bias is not None:
            mask = key_bias if allowed is None else torch.where(allowed, key_bias,
                                                                float("-inf"))
            mask = mask.to(q.dtype)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


@register_operator("attn", description="multi-head softmax self-attention (fused SDPA; other "
                   "kernels with option backend)")
class Attention(ProjectedMixer):
    supports_causal = True
    supports_query_subset = True
    roles = ("attention",)
    # what a refusal of an explicit backend this machine cannot run suggests
    instead = "pass --op-option {name}.backend=auto for the best kernel usable here"

    class Options(ProjectedMixer.Options):
        backend: str = Field("auto", description="the attention kernel: auto (the best usable "
                             "on the device; always sdpa on a CPU) or a name of "
                             "ATTENTION_KERNELS in operators/attention.py")

        @field_validator("backend")
        @classmethod
        def _in_the_table(cls, name: str) -> str:
            return ATTENTION_KERNELS.check_name(name)

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__(d_model, n_heads, max_len, causal, **options)
        ATTENTION_KERNELS.refuse_unusable(self.options.backend, self.registry_name,
                                          self._instead())
        self._choose_kernel()

    # The kernel is chosen when the weights land on a device (here and on every .to()), never
    # inside forward: torch.compile then sees an attribute, not a table lookup.
    def _choose_kernel(self) -> None:
        try:
            self._kernel = ATTENTION_KERNELS.choose(self.options.backend,
                                                    self.out_proj.weight.device,
                                                    self.registry_name, self._instead())
            self._refusal = ""
        except ConfigError as exc:  # an explicit GPU kernel while the weights are on the CPU
            self._kernel, self._refusal = None, str(exc)

    def _apply(self, fn, *args, **kwargs):
        module = super()._apply(fn, *args, **kwargs)
        self._choose_kernel()
        return module

    def kernel(self) -> Any:
        """The kernel that runs where the weights are (ConfigError if the chosen backend
        cannot run there)."""
        if self._kernel is None:
            raise ConfigError(self._refusal)
        return self._kernel

    def _instead(self) -> str:
        return self.instead.format(name=self.registry_name)

    def state_size(self, n_tokens: int) -> int:
        """Floats of state one sequence carries when decoded token by token: the keys and
        values of every token so far (its KV cache), 2 x N x d_model, growing with N."""
        return 2 * n_tokens * self.d_model

    @property
    def backend(self) -> str:
        """The kernel this operator runs where its weights are ("sdpa", "flex", ...): what
        the run's record stores."""
        return self.kernel().name

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        ctx = ctx.with_causal(self.causal)
        q, k, v = self.project(x, ctx)  # only routed tokens are projected as queries
        y = self.mix(q, k, v, ctx)  # (B, Q, H, Dh)
        return self.out_proj(y.reshape(*q.shape[:2], self.d_model))

    def mix(self, q: Tensor, k: Tensor, v: Tensor, ctx: MixContext) -> Tensor:
        """The attention core on (B, L, H, Dh) tensors; subclasses change the scores
        (``score_terms``) and every kernel serves them."""
        kernel = self.kernel()
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # kernels take (B, H, L, Dh)
        q, key_bias, scale = self.score_terms(q, k)
        if ctx.causal and ctx.query_positions is not None:
            y = kernel.subset(q, k, v, ctx, key_bias, scale)
        elif ctx.causal and self._dense_in_blocks(ctx, kernel):
            b, _, n, _ = q.shape
            positions = torch.arange(n, device=q.device).expand(b, n)
            y = causal_blocks.blocked_causal_attention(q, k, v, positions,
                                                       causal_blocks.dense_blocks(b, n),
                                                       ctx.padding_mask, key_bias, scale)
        else:
            y = kernel.full(q, k, v, ctx, key_bias, scale)
        return y.transpose(1, 2)

    def score_terms(self, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor | None, float | None]:
        """(queries, additive per-key bias (B, H, 1, N) or None, scale or None for SDPA's
        default): scores = q.k * scale + bias. Plain attention: no bias."""
        return q, None, None

    # How a full causal call runs. "triangle": the fused kernel told is_causal skips the score
    # blocks above the diagonal, and is charged the triangle (which keeps routed savings honest
    # on causal tasks). "blocks": scores with a per-key bias (RBF) reach the fused kernel only
    # as an explicit mask, over the whole rectangle (at N 2048 2.2x the blocks' time), so every
    # position runs as a query of causal_blocks (on any device) and is charged those blocks'
    # pairs. Padded full causal calls run in blocks whatever this says: the fused kernel takes
    # padding only as an explicit mask, which runs (and must be charged) the whole rectangle;
    # the blocks took 0.80x / 0.69x its fwd+bwd time at N 1024 / 2048 (1.09x at N 256; B 4,
    # d_model 256, 1 thread).
    # Routed causal queries run in blocks (the kernel's subset) and are charged the pairs those
    # blocks compute (batch_flops). A kernel that runs neither in blocks (xformers) runs the
    # masked rectangle and is charged it.
    dense_causal = "triangle"

    def _dense_in_blocks(self, ctx: MixContext, kernel: Any) -> bool:
        """Whether a full causal call with this context runs every position in blocks."""
        return kernel.in_blocks and (self.dense_causal == "blocks"
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
        mix() runs it: routed causal queries as the kernel computes them (blocks, FlexAttention's
        tiles, or the masked rectangle), padded full causal calls in blocks (or, with a kernel
        that does not run blocks, the masked rectangle)."""
        if not self.causal:
            return batch * query_count(ctx, n_key) * n_key
        kernel = self.kernel()
        if ctx.query_positions is not None:
            return kernel.subset_pairs(ctx, n_key, batch)
        if self._dense_in_blocks(ctx, kernel):
            return batch * causal_blocks.score_pairs(causal_blocks.dense_blocks(1, n_key))
        if ctx.padding_mask is not None:
            return batch * n_key * n_key  # a kernel without blocks: the masked rectangle
        return batch * self.score_pairs(n_key, n_key)

    def _runs_in_blocks(self, ctx: MixContext) -> bool:
        """Whether this call runs in blocks, whose matrix products torch's FLOP counter sees
        exactly; fused attention it charges the whole rectangle (even where the kernel skips
        the triangle)."""
        if not self.causal:
            return False
        kernel = self.kernel()
        if ctx.query_positions is None:
            return self._dense_in_blocks(ctx, kernel)
        return kernel.in_blocks

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
