"""The spectral entropy of the tokens each operator received: a histogram per layer for the
record's telemetry (the paper's "routing by entropy" made visible), from the layer reports of
an evaluation's forwards."""

from __future__ import annotations

from typing import Any

import torch

from harness.core.records import ENTROPY_BINS, EntropyHistogram
from operators.spectral import spectral_entropy


class EntropyHistogramMeter:
    """Every forward bins the spectral entropy of each real token of a mixing layer's input by
    the operator it went to (hard routers: ``assignment``; soft routers: ``weights`` summed).
    Fixed bins over [0, 1], so histograms from different runs add up."""

    def __init__(self, n_layers: int, op_names: list[str], split: str = "test",
                 bins: int = ENTROPY_BINS):
        self.op_names = list(op_names)
        self.split = split
        self.bins = bins
        self.counts = [torch.zeros(bins, len(op_names), dtype=torch.float64)
                       for _ in range(n_layers)]

    @torch.no_grad()
    def update(self, out: Any, batch: Any = None) -> None:
        """Add one forward's layer reports (``ModelOutput.layers``)."""
        k = len(self.op_names)
        for index, report in enumerate(out.layers):
            h = spectral_entropy(report.x.detach().float()).float().clamp(0.0, 1.0)  # (B, N)
            mask = report.ctx.padding_mask
            real = torch.ones_like(h, dtype=torch.bool) if mask is None else mask.bool()
            bins = torch.clamp((h * self.bins).long(), max=self.bins - 1)  # [0, 1] -> bin
            routing = report.routing
            if routing.assignment is not None:
                w = torch.nn.functional.one_hot(routing.assignment.long(), k).float()
            else:
                w = routing.weights.detach().float()
            w = w * real.unsqueeze(-1).float()
            counts = torch.zeros(self.bins, k, dtype=torch.float64, device=w.device)
            counts.index_add_(0, bins.reshape(-1), w.reshape(-1, k).double())
            self.counts[index] += counts.cpu()

    def summary(self) -> EntropyHistogram | None:
        """The histogram, or None when no token was seen."""
        if not any(float(layer.sum()) for layer in self.counts):
            return None
        return EntropyHistogram(
            split=self.split,
            bin_edges=[round(i / self.bins, 10) for i in range(self.bins + 1)],
            per_layer=[{name: [float(c) for c in layer[:, k].tolist()]
                        for k, name in enumerate(self.op_names)} for layer in self.counts])
