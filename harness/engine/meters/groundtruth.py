"""Routing against ground truth: did the tokens that need attention get it?

On a task whose batches carry ``needs_attention`` (B, N) (mqar and the MAD-style tasks), every
mixing layer's decision "routed to the top-band (last) operator" is scored against it over the
real tokens of a split:

    precision = |routed & needed| / |routed|     recall = |routed & needed| / |needed|
    F1 = 2 P R / (P + R)

A hard router's decision is its assignment; a soft router (meta) counts the weight it gives the
expensive operator, so P and R are weighted shares (a soft router that blends everything scores
recall 1 at precision = the needed share: no selection). Routers that train an auxiliary
predictor (mod) report its agreement with their training-time choice as
``stats['predictor_accuracy']``; it is averaged here too.

``GroundTruthMeter`` collects both from the layer reports each forward returns; ``summary()``
gives per-layer dicts for the record's telemetry (``GroundTruthLayer``,
harness/core/record_sections.py); ``harness run`` prints them (harness/cli/summary.py).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor


def confusion(routed: Tensor, needed: Tensor, real: Tensor | None) -> tuple[float, float, float]:
    """(sum routed & needed, sum routed, sum needed) over real tokens; ``routed`` is a bool or a
    weight in [0, 1] per token."""
    routed = routed.float()
    needed = needed.float()
    if real is not None:
        routed, needed = routed * real.float(), needed * real.float()
    return float((routed * needed).sum()), float(routed.sum()), float(needed.sum())


def scores(hit: float, routed: float, needed: float) -> dict[str, float]:
    precision = hit / routed if routed > 0 else 0.0
    recall = hit / needed if needed > 0 else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def expensive_share(routing: Any) -> Tensor:
    """Per token, how much of it went to the top-band operator (the last, index K-1)."""
    if routing.assignment is not None:
        return routing.assignment == routing.weights.shape[-1] - 1
    return routing.weights[..., -1].detach().clamp(0, 1)


class GroundTruthMeter:
    """Per-layer confusion counts and predictor accuracy, accumulated over forwards."""

    def __init__(self, n_layers: int):
        self.counts = [[0.0, 0.0, 0.0, 0.0] for _ in range(n_layers)]  # hit, routed, needed, real
        self.predictor = [[0.0, 0] for _ in range(n_layers)]  # sum of batch accuracies, batches

    def update(self, out: Any, batch: Any = None) -> None:
        """Add one forward's layer reports (``ModelOutput.layers``)."""
        for index, report in enumerate(out.layers):
            routing, ctx = report.routing, report.ctx
            if "predictor_accuracy" in routing.stats:
                self.predictor[index][0] += float(routing.stats["predictor_accuracy"])
                self.predictor[index][1] += 1
            needed = ctx.needs_attention
            if needed is None:
                continue
            real = ctx.padding_mask
            hit, routed, need = confusion(expensive_share(routing), needed, real)
            n_real = float(real.sum()) if real is not None else float(needed.numel())
            for j, v in enumerate((hit, routed, need, n_real)):
                self.counts[index][j] += v

    def summary(self) -> tuple[list[dict[str, float]] | None, list[float] | None]:
        """(per-layer ground-truth scores or None, per-layer predictor accuracy or None)."""
        truth = None
        if any(c[3] for c in self.counts):
            truth = []
            for hit, routed, need, real in self.counts:
                truth.append({**scores(hit, routed, need),
                              "routed_fraction": routed / real if real else 0.0,
                              "needed_fraction": need / real if real else 0.0,
                              "tokens": real})
        predictor = None
        if any(n for _, n in self.predictor):
            predictor = [s / n if n else float("nan") for s, n in self.predictor]
        return truth, predictor
