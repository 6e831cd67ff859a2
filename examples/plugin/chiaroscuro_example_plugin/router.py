"""`flatness`: a hard per-token router with a calibrated threshold (the example plugin's router).

Score of a token x in R^d: how evenly its magnitude is spread over the features,

    s(x) = |x|_1 / (sqrt(d) * |x|_2)   in [1/sqrt(d), 1]

1 when every feature has the same magnitude, 1/sqrt(d) for a single non-zero feature. It is
scale invariant, so it still varies after the block's LayerNorm (which fixes every token's L2
norm: a plain norm threshold would see identical scores at initialisation).

Tokens whose score is above a threshold go to the second operator (index 1; the harness keeps
the --ops order, by convention cheapest first), the rest to the first (index 0). The threshold
is a buffer: in training mode each batch is decided with the current threshold and *then* the
threshold moves toward the batch's (1 - attn_fraction) quantile of scores (the first training
batch sets it, later ones move it by an exponential moving average, option ``momentum``); in
eval mode it is frozen. A token's decision therefore depends only on the token itself and the
buffer: causal and batch independent, as declared. Being buffers, the threshold and its
calibration flag are saved in checkpoints.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from routers import Router, Routing
from routers.base import token_fractions


class FlatnessRouter(Router):
    """Hard routing between two operators on each token's feature flatness |x|_1/(sqrt(d)|x|_2)."""

    # Declarations: class attributes, the one place they are written.
    hard = True  # one operator per token: routed execution really skips work
    causal = True  # a token's decision reads only that token
    batch_independent = True  # ... and never another example
    leaky = False
    min_ops = 2
    max_ops = 2

    class Options(Router.Options):
        # --router-option momentum=0.1, validated by the base class (self.options.momentum)
        momentum: float = Field(0.05, gt=0, le=1, description="EMA rate of the threshold "
                                "toward each training batch's quantile")

    threshold: Tensor
    calibrated: Tensor

    def __init__(self, d_model: int, n_ops: int, *, causal: bool,
                 attn_fraction: float = 0.375, **options: Any):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.momentum = self.options.momentum
        # Prior before any training: the expected score of a Gaussian token, sqrt(2/pi) ~ 0.80.
        self.register_buffer("threshold", torch.tensor(math.sqrt(2.0 / math.pi)))
        self.register_buffer("calibrated", torch.tensor(False))

    @staticmethod
    def score(x: Tensor) -> Tensor:
        """(B, N, D) -> (B, N) float32: each token's flatness, from that token alone."""
        x = x.detach().float()
        return x.abs().sum(-1) / (math.sqrt(x.shape[-1]) * x.norm(dim=-1)).clamp_min(1e-12)

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        mask = getattr(ctx, "padding_mask", None)  # (B, N) bool, True = real token, or None
        with torch.no_grad():
            scores = self.score(x)
            threshold = self.threshold.clone()
            assignment = (scores > threshold).long()  # 1 = the expensive operator
            if mask is not None:
                assignment = assignment.masked_fill(~mask, 0)  # padding: the cheap one
            if self.training:  # calibrate *after* deciding: decisions never see the batch
                real = scores[mask] if mask is not None else scores.flatten()
                if real.numel() > 0:
                    target = torch.quantile(real, 1.0 - self.attn_fraction)
                    rate = self.momentum if bool(self.calibrated) else 1.0  # first batch: set
                    self.threshold.lerp_(target.to(self.threshold), rate)
                    self.calibrated.fill_(True)
        return Routing(
            assignment=assignment,
            weights=F.one_hot(assignment, self.n_ops).to(x.dtype),  # (B, N, 2), one-hot
            aux_loss=torch.zeros((), device=x.device),
            stats={"fractions": token_fractions(assignment, self.n_ops, mask),
                   "scores": scores, "threshold": threshold},
        )
