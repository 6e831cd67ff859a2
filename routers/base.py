"""The router contract.

A router decides, per token, which of the K operators of a mixing layer handle it. The
operators arrive in the order the user gave (``--ops``), which is the band order: index 0 gets
the lowest band (by convention the cheapest operator), index K-1 the top band, the
``attn_fraction`` share (attention). The run prints and records which operator got which
band. ``forward(x, ctx)`` sees the normalised layer input x (B, N, D) and returns a
``Routing``.

Declarations (class attributes, the one place they are written: the registry reads them from
the source for ``python -m harness list`` and checks them when the class is imported):

- ``hard``: returns an ``assignment`` (each token goes to exactly one operator). Only hard
  routers let routed execution skip work; a soft router computes every operator everywhere and
  saves nothing (and the cost accounting says so).
- ``causal``: the decision for token t depends only on tokens <= t.
- ``batch_independent``: the decision for an example depends only on that example.
- ``leaky``: a variant that breaks one of the two above on purpose (the paper's forms); runs
  only with ``--allow-leaky`` and marks every record it touches.
- ``min_ops`` / ``max_ops``: how many operators it can route between.
- ``exact_fractions``: ``attn_fraction`` is honoured exactly at the ends (0.0 sends no token to
  the top operator, 1.0 sends every token). A router that only aims at it (a learned gate)
  leaves this False and is refused at 0.0 and 1.0 rather than silently missing them.
- ``roles``: what the router is, among ``routers.ROUTER_ROLES``: ``("control",)`` for a chance
  control (``random``), ``("privileged",)`` for one that reads ground truth (``oracle``),
  ``("single",)`` for no routing. The board reads roles, never names; a subclass that is
  something else than its parent says so.
- ``Options``: a pydantic model (``registry.options.ComponentOptions``) of the options it takes
  (``--router-option KEY=VALUE``); the constructor validates them and keeps ``self.options``.

The harness checks ``causal`` and ``batch_independent`` empirically; the flags are what the
router *claims*.

Calibration: before step 1 the harness sets ``router.calibrating = True`` and runs a few
held-out batches (data not trained at that step) through the model; a router with running
state (thresholds) sets it from them, so that no training step is decided by its own batch.
Routers without such state ignore the flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from harness.core.options import ATTN_FRACTION
from registry import ChiaroscuroError, ConfigError
from registry.options import ComponentOptions, Configurable


class NonFiniteRouting(ChiaroscuroError):
    """A router met a non-finite score in training: its state would be poisoned for good."""


@dataclass
class Routing:
    """What a router decided for one batch.

    assignment: (B, N) long in [0, K), the operator of each token; None for soft routers.
    weights:    (B, N, K) float. The layer output is sum_k weights[..., k] * op_k(x). A hard
                router puts its only non-zero weight at the assigned operator (1.0, or a gate
                probability so that a learned gate gets gradients).
    aux_loss:   scalar added to the training loss (times the configured weight); 0 if none.
    stats:      detached telemetry: 'fractions' (K,) share of real tokens per operator is
                always present; routers add their own ('scores' (B, N), 'gate' (B,) ...).
    """

    assignment: Tensor | None
    weights: Tensor
    aux_loss: Tensor
    stats: dict[str, Tensor] = field(default_factory=dict)


class Router(Configurable, nn.Module):
    hard: ClassVar[bool] = True
    causal: ClassVar[bool] = True
    batch_independent: ClassVar[bool] = True
    leaky: ClassVar[bool] = False
    min_ops: ClassVar[int] = 1
    max_ops: ClassVar[int] = 16
    exact_fractions: ClassVar[bool] = False
    # Non-empty (the reason) for a router whose training routing sees the future by design while
    # its evaluation routing is causal; the guard then lets causality fail in training mode only
    # (see harness/runner/guard.py) and the record carries a note.
    training_noncausal: ClassVar[str] = ""
    roles: ClassVar[tuple[str, ...]] = ()
    registry_name: ClassVar[str] = "?"  # set by the registry

    option_kind: ClassVar[str] = "router"  # Options and parse_options: registry.options
    options_flag: ClassVar[str] = "--router-option {key}=VALUE"

    def __init__(
        self,
        d_model: int,
        n_ops: int,
        *,
        causal: bool,
        attn_fraction: float = ATTN_FRACTION,
        **options: Any,
    ):
        super().__init__()
        self.options = self.parse_options(options)
        if not self.min_ops <= n_ops <= self.max_ops:
            want = (
                f"exactly {self.min_ops}"
                if self.min_ops == self.max_ops
                else f"{self.min_ops} to {self.max_ops}"
            )
            noun = "operator" if self.max_ops == 1 else "operators"
            names = "one name" if self.max_ops == 1 else f"{want} comma-separated names"
            raise ConfigError(
                f"router '{self.registry_name}' routes between {want} {noun}, got {n_ops}; "
                f"pass --ops with {names}"
            )
        if not 0.0 <= attn_fraction <= 1.0:
            raise ConfigError(f"--attn-fraction must be in [0, 1], got {attn_fraction}")
        if attn_fraction in (0.0, 1.0) and n_ops > 1 and not self.exact_fractions:
            raise ConfigError(
                f"router '{self.registry_name}' only aims at --attn-fraction and cannot honour "
                f"{attn_fraction} exactly; use --router entropy or random (or --router single "
                f"--ops attn for attention everywhere)")
        self.d_model, self.n_ops, self.is_causal_task = d_model, n_ops, causal
        self.attn_fraction = attn_fraction
        self.calibrating = False  # set by the harness around calibration (see above)

    def calibrate(self, on: bool) -> None:
        """Enter (True) or leave (False) calibration mode; see the module docstring."""
        self.calibrating = on

    def forward(self, x: Tensor, ctx: Any) -> Routing:  # pragma: no cover - abstract
        raise NotImplementedError


def band_fractions(n_ops: int, attn_fraction: float) -> list[float]:
    """Target share of tokens per operator (in --ops order): the last operator (the top band)
    gets ``attn_fraction``, the others split the rest equally. One operator gets everything."""
    if n_ops == 1:
        return [1.0]
    rest = (1.0 - attn_fraction) / (n_ops - 1)
    return [rest] * (n_ops - 1) + [attn_fraction]


def token_fractions(assignment: Tensor, n_ops: int, padding_mask: Tensor | None) -> Tensor:
    """Share of real tokens assigned to each operator, (K,)."""
    one_hot = torch.nn.functional.one_hot(assignment, n_ops).float()
    if padding_mask is not None:
        one_hot = one_hot * padding_mask.unsqueeze(-1).float()
        total = padding_mask.float().sum().clamp_min(1.0)
    else:
        total = torch.tensor(float(assignment.numel()), device=assignment.device)
    return (one_hot.sum(dim=(0, 1)) / total).detach()


def soft_fractions(weights: Tensor, padding_mask: Tensor | None) -> Tensor:
    """Mean soft weight per operator over real tokens, (K,)."""
    if padding_mask is not None:
        m = padding_mask.unsqueeze(-1).float()
        return ((weights * m).sum(dim=(0, 1)) / m.sum().clamp_min(1.0)).detach()
    return weights.mean(dim=(0, 1)).detach()


def validate_router(obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise TypeError(f"{obj!r} is not an nn.Module subclass")
    for attr in ("hard", "causal", "batch_independent", "forward"):
        if not hasattr(obj, attr):
            raise TypeError(f"{obj.__name__} does not declare '{attr}' (see routers/base.py)")
    options = getattr(obj, "Options", ComponentOptions)
    if not (isinstance(options, type) and issubclass(options, ComponentOptions)):
        raise TypeError(f"{obj.__name__}.Options is not a registry.options.ComponentOptions "
                        f"model (see routers/base.py)")
