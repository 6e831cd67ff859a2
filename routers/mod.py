"""`mod`: Mixture-of-Depths routing (Raposo et al. 2024), made causal the way the paper does it.

A learned scalar score r = w.x per token. In training, expert-choice top-k: within each
sequence the ceil(attn_fraction * length) highest-scoring real tokens go to the expensive
operator (index 1), the rest to the cheap one (index 0). The chosen operator's output is scaled
by sigmoid(r) (expensive) or 1 - sigmoid(r) (cheap), so the score gets gradients through the
layer output, as MoD scales the block output by the router weight.

Top-k membership depends on the whole sequence, future tokens included: training routing is
NOT causal (the record carries a note saying so). For evaluation the paper trains a small
auxiliary predictor of top-k membership from the token alone, with a stop-gradient on its input
and its target (it never shapes the model), and routes by it. Here the predictor is a 2-layer
MLP on x.detach(), trained with binary cross-entropy as the router's aux loss; at evaluation a
token goes to the expensive operator when its predictor logit is above a threshold, a running
quantile of the logits at level 1 - attn_fraction tracked on training batches (as `entropy`
tracks its thresholds) and frozen at evaluation, so the evaluated attention share matches the
run's fraction. The evaluation decision depends on the token alone: causal and batch
independent, which the harness's checks verify (they run in evaluation mode).
``stats['predictor_accuracy']`` is the predictor's agreement with top-k on the same batch.

`mod-topk` also evaluates with top-k: the leaky form, flagged wherever it appears.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from harness.core.options import ATTN_FRACTION

from . import register_router
from .base import Router, Routing, token_fractions


def topk_membership(scores: Tensor, mask: Tensor | None, fraction: float) -> Tensor:
    """(B, N) bool: the ceil(fraction * real length) highest scores of each sequence's real
    tokens (ties broken by position, earlier first)."""
    b, n = scores.shape
    real = mask if mask is not None else torch.ones(b, n, dtype=torch.bool,
                                                    device=scores.device)
    ranked = scores.detach().float().masked_fill(~real, float("-inf"))
    order = torch.argsort(ranked, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(n, device=scores.device).expand(b, n).contiguous())
    k = torch.ceil(real.sum(dim=1, keepdim=True).double() * fraction - 1e-9).long()
    return (rank < k) & real


@register_router(
    "mod",
    description=(
        "Mixture-of-Depths: learned score, expert-choice top-k in training (non-causal, noted "
        "in the record), a causal auxiliary predictor of top-k membership at evaluation"
    ),
)
class MoDRouter(Router):
    roles = ("learned",)
    hard = True
    causal = True  # at evaluation, which is what the checks and the results see
    batch_independent = True
    min_ops = 2
    max_ops = 2
    # copied by the trainer into every record's flags ("note:": informational, not a leak)
    record_flags: ClassVar[tuple[str, ...]] = (
        "note: training routed by a non-causal per-sequence top-k (Mixture-of-Depths); "
        "evaluation routes by a causal predictor",)
    evaluate_with_topk: ClassVar[bool] = False
    training_noncausal: ClassVar[str] = "training routes by a per-sequence top-k"

    class Options(Router.Options):
        momentum: float = Field(0.05, gt=0, le=1, description="EMA rate of the evaluation "
                                "threshold toward each training batch's quantile")

    threshold: Tensor
    calibrated: Tensor

    def __init__(self, d_model: int, n_ops: int, *, causal: bool,
                 attn_fraction: float = ATTN_FRACTION, **options: Any):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.momentum = self.options.momentum
        self.score = nn.Linear(d_model, 1)
        nn.init.zeros_(self.score.bias)
        hidden = max(8, d_model // 2)
        self.predictor = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(),
                                       nn.Linear(hidden, 1))
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("calibrated", torch.tensor(False))

    def _track_threshold(self, logits: Tensor, mask: Tensor | None) -> None:
        """Move the evaluation threshold toward this training batch's (1 - fraction) quantile
        of predictor logits (the first batch sets it)."""
        real = logits[mask] if mask is not None else logits.reshape(-1)
        if real.numel() == 0:
            return
        q = torch.quantile(real.float()[: 1 << 24], 1.0 - self.attn_fraction)
        start = torch.where(self.calibrated, self.threshold, q)
        self.threshold.copy_(start.lerp(q, self.momentum))
        self.calibrated.fill_(True)

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        mask = getattr(ctx, "padding_mask", None)
        r = self.score(x).squeeze(-1)  # (B, N)
        topk = topk_membership(r, mask, self.attn_fraction)
        logits = self.predictor(x.detach()).squeeze(-1).float()  # stop-gradient into the model
        if self.training or self.evaluate_with_topk:
            chosen = topk
        else:
            chosen = logits > self.threshold
        if mask is not None:
            chosen = chosen & mask
        if self.training:
            with torch.no_grad():
                self._track_threshold(logits.detach(), mask)
        target = topk.float()  # already detached: a stop-gradient target
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        real = mask.float() if mask is not None else torch.ones_like(bce)
        aux = (bce * real).sum() / real.sum().clamp_min(1.0)
        with torch.no_grad():
            predicted = (logits > self.threshold) if self.calibrated else (logits > 0)
            agree = ((predicted == topk).float() * real).sum() / real.sum().clamp_min(1.0)
        assignment = chosen.long()
        # sigmoid(-r), not 1 - sigmoid(r): the latter rounds to exactly 0 in float32 once r is
        # above ~17, and a cheap-band token would then get no output at all
        weights = torch.stack([torch.sigmoid(-r.float()), torch.sigmoid(r.float())], dim=-1)
        weights = weights * F.one_hot(assignment, 2).to(weights.dtype)
        return Routing(
            assignment=assignment,
            weights=weights.to(x.dtype),
            aux_loss=aux if self.training else aux.detach(),
            stats={"fractions": token_fractions(assignment, 2, mask), "scores": r.detach(),
                   "predictor_accuracy": agree, "threshold": self.threshold.detach().clone()},
        )


@register_router(
    "mod-topk",
    description="LEAKY: Mixture-of-Depths evaluated with its non-causal per-sequence top-k",
)
class MoDTopKRouter(MoDRouter):
    causal = False
    leaky = True
    evaluate_with_topk = True
    record_flags = ()  # the leak flag says more than the note

