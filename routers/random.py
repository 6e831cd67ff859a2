"""The random control for ``entropy``: the same calibrated bands, a score unrelated to the
token's spectrum.

What it matches, option ``match``:

- ``tokens`` (default): the same share of tokens per band as ``entropy`` at the same
  ``--attn-fraction``. Its attention FLOPs can still differ: routed attention is charged for
  the query rows it computes, padded to the batch's largest count, so a router whose counts
  vary more between examples spends more (0.70 vs 0.67 in the committed ListOps records).
- ``flops``: the attention FLOP fraction given by option ``flop_fraction`` (the measured
  ``attention_flop_fraction`` of the row it controls). Before step 1 the harness searches the
  top band's token share that spends that fraction on the calibration batches
  (``harness/engine/calibrate.py``) and keeps it for the run (a buffer, so checkpoints carry
  it). The record shows both the share and the fraction reached.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor

from harness.core.options import ATTN_FRACTION

from . import register_router
from .base import band_fractions
from .entropy import CalibratedBandRouter


@register_router(
    "random",
    description=(
        "control for 'entropy': same calibrated bands and token shares (or, with "
        "match=flops, the same attention FLOP fraction), but the score is a fixed "
        "pseudo-random hash of the token (unrelated to spectral entropy)"
    ),
)
class RandomRouter(CalibratedBandRouter):
    """The control for ``entropy``: routes the same shares of tokens, at random.

    The score is a fixed hash of the token's own vector, ``frac(SCALE * <x/|x|, r>)`` with r a
    Gaussian direction drawn once from a generator seeded by option ``seed`` (default 0), and is
    banded by the same calibrated quantile thresholds as ``entropy``. The fractional part of a
    scaled random projection oscillates ``SCALE`` times across the projection's range, so it
    looks uniform and carries no information about the token's spectrum.

    Why a hash and not ``torch.rand``: fresh random numbers would make a token's decision
    depend on how many tokens came before it in the batch (the generator's state), so an
    example would route differently alone and in a batch, evaluation would not be repeatable,
    and the causality/batch-independence checks could not tell a leak from noise. The hash is
    deterministic and per token, exactly like the entropy score it replaces.

    SCALE is moderate on purpose: a larger one makes the score more chaotic but also more
    sensitive to float rounding in the token (round-off of 1e-7 moves the score by about
    SCALE * 1e-7), and a decision that flips under rounding noise would trip the harness's
    exact causality and batch-independence checks on real models.
    """

    SCALE = 16.0
    roles = ("control",)

    class Options(CalibratedBandRouter.Options):
        seed: int = Field(0, ge=0, le=9223372036854775807, description="seeds the random "
                          "direction each token's score is a hash along")
        match: Literal["tokens", "flops"] = Field("tokens", description="what it matches: "
                                                  "the token shares, or flop_fraction")
        flop_fraction: float | None = Field(None, gt=0, le=1, description="with match=flops: "
                                            "the attention FLOP fraction to spend (the "
                                            "attention_flop_fraction of the row it controls)")

        @model_validator(mode="after")
        def _fraction_with_flops(self) -> RandomRouter.Options:
            if self.match == "flops" and self.flop_fraction is None:
                raise ValueError("match=flops needs flop_fraction=F, the attention FLOP "
                                 "fraction to match (the attention_flop_fraction of the row "
                                 "this controls)")
            if self.match == "tokens" and self.flop_fraction is not None:
                raise ValueError("flop_fraction needs match=flops")
            return self

    top_share: Tensor

    def __init__(self, d_model: int, n_ops: int, *, causal: bool,
                 attn_fraction: float = ATTN_FRACTION, **options: Any):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.match = self.options.match
        self.flop_fraction = self.options.flop_fraction
        if self.match == "flops":  # the share that meets it is searched before step 1
            self.register_buffer("top_share", torch.tensor(float(attn_fraction)))
            self.register_load_state_dict_post_hook(lambda module, _: module._set_levels())
        generator = torch.Generator().manual_seed(self.options.seed)
        # A plain tensor, not a buffer: Module.to(dtype) must not round it (the hash would
        # change), and it is rebuilt from the seed, so checkpoints need not carry it.
        self._direction = torch.randn(d_model, generator=generator, dtype=torch.float64)
        self._direction_on: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def set_top_share(self, share: float) -> None:
        """The top band's token share (match=flops): the bands below split the rest."""
        self.top_share.fill_(min(max(float(share), 0.0), 1.0))
        self._set_levels()

    def _set_levels(self) -> None:
        targets = torch.tensor(band_fractions(self.n_ops, float(self.top_share)),
                               dtype=torch.float64)
        self.levels.copy_(targets[:-1].cumsum(0).clamp(0.0, 1.0))

    def _direction_for(self, device: torch.device, dtype: torch.dtype) -> Tensor:
        key = (device, dtype)
        if key not in self._direction_on:
            self._direction_on[key] = self._direction.to(device=device, dtype=dtype)
        return self._direction_on[key]

    def score(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            dtype = torch.float32 if x.device.type == "mps" else torch.float64
            v = x.detach().to(dtype)
            u = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
            projection = (u * self._direction_for(v.device, dtype)).sum(dim=-1)
            return torch.remainder(self.SCALE * projection, 1.0).float()
