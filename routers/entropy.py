"""Score-and-band routers: spectral entropy (the method) and the paper's per-sequence top-k
form. Its random control is in ``random.py``.

``entropy`` and ``random`` share ``CalibratedBandRouter``: a per-token score, and K-1
thresholds that split the score axis into K bands whose target shares are
``band_fractions(K, attn_fraction)`` (in ``--ops`` order). The highest band goes to the last
operator (index K-1, by convention attention), the lowest to the first (index 0).

Thresholds are running quantiles of the score over real tokens, and a token is decided with
the thresholds as they were *before* its batch, so no decision depends on the batch's other
tokens (future ones included) or other examples:

- calibration (``calibrating = True``, set by the harness before step 1 on held-out data that
  is not trained at that step, see ``harness/engine/calibrate.py``): the thresholds become the
  running mean of the calibration batches' quantiles, and those batches are decided with them;
- training mode: every batch is decided with the current thresholds and then moves them toward
  its quantiles by an exponential moving average (``momentum``); an uncalibrated router decides
  its first batch with the prior below, then starts from that batch's quantiles;
- eval mode: they are frozen.

Only finite scores enter the quantiles; a non-finite score in training mode raises
``NonFiniteRouting`` (the run stops and says so). A band whose target share is 0 gets no token
and one whose share is 1 gets every token (``--attn-fraction 1.0`` is attention everywhere).

They are buffers (``thresholds``, ``calibrated``), so they live in ``state_dict`` and in
checkpoints. The decision for a token therefore depends only on that token and the buffers:
causal and batch independent. An uncalibrated router uses the quantiles of a uniform score
(``thresholds == cumulative band shares``) as its prior.

``entropy-topk`` is the paper's capacity routing: within each sequence the
``ceil(attn_fraction * length)`` highest-entropy real tokens go to attention. Which tokens
make the cut depends on the other tokens of the sequence, future ones included: it is NOT
causal, and is offered only as a flagged leaky variant.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from harness.core.options import ATTN_FRACTION
from operators.spectral import spectral_entropy

from . import register_router
from .base import NonFiniteRouting, Router, Routing, band_fractions, token_fractions

# torch.quantile refuses inputs above 2**24 elements; larger batches are subsampled (strided).
_QUANTILE_MAX = 1 << 24


def _padding_mask(ctx: Any) -> Tensor | None:
    return getattr(ctx, "padding_mask", None)


def _hard_routing(assignment: Tensor, n_ops: int, mask: Tensor | None, x: Tensor,
                  **stats: Tensor) -> Routing:
    """Padding tokens go to the first operator (index 0); weights are one-hot."""
    if mask is not None:
        assignment = assignment.masked_fill(~mask, 0)
    weights = torch.nn.functional.one_hot(assignment, n_ops).to(x.dtype)
    return Routing(
        assignment=assignment,
        weights=weights,
        aux_loss=torch.zeros((), device=x.device),
        stats={"fractions": token_fractions(assignment, n_ops, mask), **stats},
    )


def entropy_scores(x: Tensor) -> Tensor:
    """Spectral entropy of each token over the feature axis, (B, N) float32, no grad."""
    with torch.no_grad():
        return spectral_entropy(x.detach().float()).float()


class CalibratedBandRouter(Router):
    """Base class: a per-token ``score`` (B, N) banded by running-quantile thresholds.

    Option ``momentum``: EMA rate of the thresholds toward each training batch's quantiles.
    Subclasses implement ``score``.
    """

    hard = True
    causal = True
    batch_independent = True
    min_ops = 2
    exact_fractions = True

    class Options(Router.Options):
        momentum: float = Field(0.05, gt=0, le=1, description="EMA rate of the band thresholds "
                                "toward each training batch's quantiles")

    thresholds: Tensor
    calibrated: Tensor
    levels: Tensor

    def __init__(
        self,
        d_model: int,
        n_ops: int,
        *,
        causal: bool,
        attn_fraction: float = ATTN_FRACTION,
        **options: Any,
    ):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.momentum = self.options.momentum
        targets = torch.tensor(band_fractions(n_ops, attn_fraction), dtype=torch.float64)
        # Quantile levels of the K-1 thresholds: cumulative shares of the bands below each.
        levels = targets[:-1].cumsum(0).clamp(0.0, 1.0).float()
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("thresholds", levels.clone())
        self.register_buffer("calibrated", torch.tensor(False))
        self.n_calibration = 0  # calibration batches seen (not state: calibration ends first)

    def score(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """(B, N, D) -> (B, N) float32, a function of each token's own vector only."""
        raise NotImplementedError

    def calibrate(self, on: bool) -> None:
        super().calibrate(on)
        self.n_calibration = 0

    def _batch_quantiles(self, scores: Tensor, mask: Tensor | None) -> Tensor | None:
        real = scores[mask] if mask is not None else scores.reshape(-1)
        real = real[torch.isfinite(real)]  # a non-finite value never enters router state
        if real.numel() == 0:
            return None
        if real.numel() > _QUANTILE_MAX:
            real = real[:: math.ceil(real.numel() / _QUANTILE_MAX)]
        return torch.quantile(real.float(), self.levels.float())

    def _decide(self, scores: Tensor) -> Tensor:
        """Band index per token from the current thresholds; ties go to the cheaper band. A
        band with share 0 is empty and one with share 1 takes everything, whatever the scores."""
        thresholds = self.thresholds.float()
        inf = torch.full_like(thresholds, math.inf)
        thresholds = torch.where(self.levels <= 0, -inf,
                                 torch.where(self.levels >= 1, inf, thresholds))
        return torch.bucketize(scores, thresholds)

    def _update(self, quantiles: Tensor) -> None:
        q = quantiles.to(self.thresholds)
        if self.calibrating:  # mean over the calibration batches
            self.n_calibration += 1
            self.thresholds.lerp_(q, 1.0 / self.n_calibration)
        elif self.calibrated:
            self.thresholds.lerp_(q, self.momentum)
        else:
            self.thresholds.copy_(q)
        self.calibrated.fill_(True)

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        mask = _padding_mask(ctx)
        with torch.no_grad():
            scores = self.score(x).float()
            real = scores[mask] if mask is not None else scores
            if (self.training or self.calibrating) and not bool(torch.isfinite(real).all()):
                raise NonFiniteRouting(
                    f"router '{self.registry_name}': {int((~torch.isfinite(real)).sum())} "
                    f"tokens have a non-finite score (the layer input holds NaN or inf)")
            update = self.training or self.calibrating
            quantiles = self._batch_quantiles(scores, mask) if update else None
            if self.calibrating and quantiles is not None:
                self._update(quantiles)  # held-out data: decided with its own calibration
                quantiles = None
            thresholds = self.thresholds.float().clone()  # what this batch is decided with
            assignment = self._decide(scores)
            if quantiles is not None:  # training: only after deciding, for later batches
                self._update(quantiles)
        return _hard_routing(
            assignment, self.n_ops, mask, x,
            scores=scores.detach(), thresholds=thresholds,
        )


@register_router(
    "entropy",
    description=(
        "spectral entropy of each token, banded by running-quantile thresholds: the "
        "highest-entropy attn_fraction of tokens go to the most expensive operator"
    ),
)
class EntropyRouter(CalibratedBandRouter):
    """CHIAR-Former's router in its causal form: a threshold on each token's own spectral
    entropy (not a per-sequence top-k), so it never looks at other tokens."""

    roles = ("method",)

    def score(self, x: Tensor) -> Tensor:
        return entropy_scores(x)


@register_router(
    "entropy-topk",
    description=(
        "LEAKY: the paper's capacity routing, the top ceil(attn_fraction * length) "
        "spectral-entropy tokens of each sequence go to the most expensive operator"
    ),
)
class EntropyTopKRouter(Router):
    """Per sequence, the ``ceil(attn_fraction * L)`` highest-entropy real tokens go to operator
    K-1 (L = real length); for K > 2 the rest are split into equal rank bands, lower entropy to
    cheaper operators. Ties are broken by position (earlier first).

    Whether token t makes the cut depends on every other token of its sequence, the future
    ones included: ``causal = False`` and ``leaky = True``. It never looks at other examples,
    so it stays batch independent.
    """

    hard = True
    causal = False
    batch_independent = True
    leaky = True
    min_ops = 2

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        mask = _padding_mask(ctx)
        b, n = x.shape[:2]
        real = mask if mask is not None else torch.ones(b, n, dtype=torch.bool, device=x.device)
        scores = entropy_scores(x)
        with torch.no_grad():
            ranked = scores.masked_fill(~real, float("-inf"))
            order = torch.argsort(ranked, dim=1, descending=True, stable=True)
            rank_desc = torch.empty_like(order).scatter_(
                1, order, torch.arange(n, device=x.device).expand(b, n).contiguous()
            )
            length = real.sum(dim=1, keepdim=True)  # (B, 1)
            rank_asc = length - 1 - rank_desc  # 0 = lowest entropy among real tokens
            n_top = torch.ceil(length.double() * self.attn_fraction - 1e-9).long()
            rest = length - n_top
            j = torch.arange(1, self.n_ops, device=x.device)  # (K-1,)
            # bounds[:, j-1] = number of real tokens in operators 0..j-1 (bounds[:, -1] = rest)
            bounds = (j * rest) // (self.n_ops - 1)
            assignment = (rank_asc.unsqueeze(-1) >= bounds.unsqueeze(1)).sum(dim=-1)
        return _hard_routing(assignment, self.n_ops, mask, x, scores=scores.detach())
