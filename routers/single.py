"""The trivial router: one operator handles every token (the dense baselines)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import register_router
from .base import Router, Routing, token_fractions


@register_router(
    "single",
    description="no routing: the one operator handles every token (dense baseline)",
)
class SingleRouter(Router):
    """Every token goes to operator 0, weight 1. Causal and batch independent trivially."""

    hard = True
    causal = True
    batch_independent = True
    min_ops = 1
    max_ops = 1
    roles = ("single",)

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        b, n = x.shape[:2]
        assignment = torch.zeros(b, n, dtype=torch.long, device=x.device)
        weights = torch.ones(b, n, 1, dtype=x.dtype, device=x.device)
        mask = getattr(ctx, "padding_mask", None)
        return Routing(
            assignment=assignment,
            weights=weights,
            aux_loss=torch.zeros((), device=x.device),
            stats={"fractions": token_fractions(assignment, 1, mask)},
        )
