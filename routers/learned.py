"""A learned hard top-1 gate (Switch Transformer style) with a load-balancing loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from harness.core.options import ATTN_FRACTION

from . import register_router
from .base import Router, Routing, band_fractions, token_fractions


@register_router(
    "learned",
    description=(
        "learned linear top-1 gate per token, with a load-balancing loss toward the "
        "attn_fraction band targets"
    ),
)
class LearnedRouter(Router):
    """probs = softmax(Linear(d, K)(x)); each token goes to argmax(probs).

    weights = one_hot(assignment) * probs: the only non-zero weight sits at the assigned
    operator and equals its probability, so the gate receives gradients through the layer
    output (as in Switch Transformer).

    aux_loss = sum_k f_k * P_k / t_k over real tokens, where f_k is the share of tokens assigned
    to operator k (no gradient), P_k the mean probability of k, and t_k the target share
    ``band_fractions(K, attn_fraction)``. With uniform targets this is Switch's K * sum f P.
    When f = P (the regime the loss is meant for) it equals sum_k f_k^2 / t_k >= 1 by
    Cauchy-Schwarz, with equality exactly at f = P = t: minimum 1 at the targets.

    The decision is per token (causal, batch independent); the loss is a training statistic.
    """

    roles = ("learned",)

    hard = True
    causal = True
    batch_independent = True
    min_ops = 2

    targets: Tensor

    def __init__(self, d_model: int, n_ops: int, *, causal: bool,
                 attn_fraction: float = ATTN_FRACTION, **options: Any):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.gate = nn.Linear(d_model, n_ops)
        nn.init.zeros_(self.gate.bias)
        self.register_buffer(
            "targets", torch.tensor(band_fractions(n_ops, attn_fraction)), persistent=False
        )

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        mask = getattr(ctx, "padding_mask", None)
        logits = self.gate(x)
        probs = torch.softmax(logits.float(), dim=-1)  # (B, N, K)
        assignment = probs.argmax(dim=-1)
        if mask is not None:
            assignment = assignment.masked_fill(~mask, 0)
        one_hot = torch.nn.functional.one_hot(assignment, self.n_ops).to(probs.dtype)
        weights = (one_hot * probs).to(x.dtype)

        fractions = token_fractions(assignment, self.n_ops, mask)  # f_k, detached
        if mask is not None:
            m = mask.unsqueeze(-1).to(probs.dtype)
            mean_probs = (probs * m).sum(dim=(0, 1)) / m.sum().clamp_min(1.0)
        else:
            mean_probs = probs.mean(dim=(0, 1))
        targets = self.targets.to(probs).clamp_min(1e-6)
        aux_loss = (fractions.to(probs) * mean_probs / targets).sum()
        return Routing(
            assignment=assignment,
            weights=weights,
            aux_loss=aux_loss,
            stats={"fractions": fractions, "mean_probs": mean_probs.detach()},
        )
