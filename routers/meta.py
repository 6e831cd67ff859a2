"""The MetaRouter: a soft gate computed from a mean embedding.

The paper's g = sigmoid(Linear(mean embedding)) uses the mean over the whole *batch*: one
example's output then depends on the other examples, and on causal tasks on future tokens.
``meta`` (the default) uses the mean over the example's own real tokens, and on causal tasks
the *prefix* mean at each position (tokens <= t), so it is causal and batch independent.
``meta-batch`` is the paper's form, offered only as a flagged leaky variant.

Both are soft (``hard = False``): every operator runs on every token, so they save no compute;
the cost accounting reports that.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from harness.core.options import ATTN_FRACTION

from . import register_router
from .base import Router, Routing, band_fractions, soft_fractions


@register_router(
    "meta",
    description=(
        "MetaRouter soft gate from the example's mean embedding (prefix mean on causal tasks); "
        "starts at attn_fraction on the most expensive operator"
    ),
)
class MetaRouter(Router):
    """Soft gate from a context vector m.

    m = mean of x over the example's real tokens; on causal tasks (``causal=True`` at
    construction, or ``ctx.causal``) the prefix mean at each position t (real tokens <= t), so
    the weights at t never see the future. On non-causal tasks the whole-example mean is used,
    which looks at later tokens of the example; causality is not required there.

    K = 2: g = sigmoid(Linear(d, 1)(m)) is the weight of the more expensive operator (index 1),
    1 - g that of index 0. K > 2: softmax(Linear(d, K)(m)). The linear weight starts at zero and
    the bias at logit(attn_fraction) (K > 2: log of the band targets), so training starts with
    exactly ``attn_fraction`` on the most expensive operator for every input.

    stats: 'fractions' (mean weights over real tokens), 'gate' (B,): mean weight of the most
    expensive operator over each example's real tokens (g for K = 2).
    """

    roles = ("learned",)

    hard = False
    causal = True
    batch_independent = True
    min_ops = 2

    def __init__(self, d_model: int, n_ops: int, *, causal: bool,
                 attn_fraction: float = ATTN_FRACTION, **options: Any):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        eps = 1e-4
        self.gate = nn.Linear(d_model, 1 if n_ops == 2 else n_ops)
        nn.init.zeros_(self.gate.weight)
        with torch.no_grad():
            if n_ops == 2:
                a = min(max(attn_fraction, eps), 1.0 - eps)
                self.gate.bias.fill_(math.log(a / (1.0 - a)))
            else:
                targets = torch.tensor(band_fractions(n_ops, attn_fraction)).clamp_min(eps)
                self.gate.bias.copy_(targets.log())

    def context(self, x: Tensor, real: Tensor, causal: bool) -> Tensor:
        """Context vector per position, (B, N, D) or (B, 1, D) (broadcast over positions)."""
        m = real.unsqueeze(-1).float()
        xm = x.float() * m
        if causal:
            return xm.cumsum(dim=1) / m.cumsum(dim=1).clamp_min(1.0)
        return xm.sum(dim=1, keepdim=True) / m.sum(dim=1, keepdim=True).clamp_min(1.0)

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        b, n = x.shape[:2]
        mask = getattr(ctx, "padding_mask", None)
        real = mask if mask is not None else torch.ones(b, n, dtype=torch.bool, device=x.device)
        causal = self.is_causal_task or bool(getattr(ctx, "causal", False))
        m = self.context(x, real, causal)
        logits = self.gate(m.to(self.gate.weight.dtype)).float()
        if self.n_ops == 2:
            g = torch.sigmoid(logits)
            weights = torch.cat([1.0 - g, g], dim=-1)
        else:
            weights = torch.softmax(logits, dim=-1)
        weights = weights.expand(b, n, self.n_ops).to(x.dtype).contiguous()
        rm = real.float()
        gate = (weights[..., -1].float() * rm).sum(dim=1) / rm.sum(dim=1).clamp_min(1.0)
        return Routing(
            assignment=None,
            weights=weights,
            aux_loss=torch.zeros((), device=x.device),
            stats={"fractions": soft_fractions(weights, mask), "gate": gate.detach()},
        )


@register_router(
    "meta-batch",
    description=(
        "LEAKY: the paper's MetaRouter, one gate from the mean embedding of the whole batch "
        "(depends on other examples and on future tokens)"
    ),
)
class BatchMetaRouter(MetaRouter):
    """The paper's form: m = mean over every real token of every example in the batch, one gate
    for the whole batch. An example's weights depend on the rest of its batch and on future
    tokens: ``causal = False``, ``batch_independent = False``, ``leaky = True``."""

    causal = False
    batch_independent = False
    leaky = True

    def context(self, x: Tensor, real: Tensor, causal: bool) -> Tensor:
        m = real.unsqueeze(-1).float()
        mean = (x.float() * m).sum(dim=(0, 1)) / m.sum().clamp_min(1.0)
        return mean.expand(x.shape[0], 1, x.shape[-1])
