"""`oracle`: routes the tokens the task says need attention to attention; an upper bound.

Privileged information: it reads the task's ground truth (``ctx.needs_attention``, set from
``Batch.needs_attention`` by the model), which no real router has. Its decision for a token
depends only on that token's own label and vector, so it is causal and batch independent, but
it is never ranked as a real router: the board marks it ``oracle`` (an upper bound).

Score = label + a fixed per-token hash in [0, 1) (the `random` router's), banded by the same
calibrated running-quantile thresholds as `entropy` and `random`. Labelled tokens therefore rank
above all others: while they fit in the attention budget they all get attention and the rest of
the budget is filled at random among the unlabelled ones; if they exceed it, a random subset of
them gets it. The attention share matches the run's fraction, so the oracle is compared with
the other routers at equal attention fraction. Without ground truth (a task that has none, or
the harness's random-input checks) it is exactly the `random` router.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from . import register_router
from .base import Routing
from .random import RandomRouter


@register_router(
    "oracle",
    description=(
        "UPPER BOUND, privileged: sends the task's ground-truth needs_attention tokens to the "
        "most expensive operator and fills the rest of its share at random"
    ),
)
class OracleRouter(RandomRouter):
    roles = ("privileged",)  # not random's "control": it routes by the ground truth
    # copied by the trainer into every record's flags: a warning flag, so never ranked
    record_flags = ("oracle: routes by the task's ground truth (privileged information; an "
                    "upper bound, not a real router)",)

    _labels: Tensor | None = None

    def forward(self, x: Tensor, ctx: Any) -> Routing:
        self._labels = getattr(ctx, "needs_attention", None)
        try:
            routing = super().forward(x, ctx)
        finally:
            self._labels = None
        return routing

    def score(self, x: Tensor) -> Tensor:
        hashed = super().score(x)
        if self._labels is None:
            return hashed
        return hashed + self._labels.to(hashed)
