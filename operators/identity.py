"""The identity: no mixing at all. Lets the paper's MetaRouter blend of a spectral path and an
identity path be expressed as `--ops identity,dct`."""

from __future__ import annotations

from torch import Tensor

from operators import register_operator

from .base import MixContext, TokenMixer, gather_queries


@register_operator("identity", description="y = x: no token mixing, no cost")
class Identity(TokenMixer):
    supports_causal = True
    supports_query_subset = True
    roles = ("no-mixing",)

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:
        return gather_queries(x, ctx)

    def flops(self, n_query: int, n_key: int) -> int:
        return 0

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        return 0
