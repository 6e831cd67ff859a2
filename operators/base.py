"""The token-mixer contract.

A token mixer maps x (B, N, D) to (B, N, D): it is the part of a transformer block that moves
information *between* positions (attention, spectral mixing, kernel mixing, ...).

Declarations (class attributes, the one place they are written: the registry reads them from
the source for ``python -m harness list`` and checks them when the class is imported):

- ``supports_causal``: the operator has a form in which output t depends only on inputs <= t.
  It is told ``causal`` at construction and must never leak in causal mode; the harness checks
  this empirically (it perturbs the future) for every operator, plugins included.
- ``supports_query_subset``: it can compute outputs for a subset of query positions cheaply
  (keys/values still the whole sequence). Routed execution then runs it only on the tokens
  routed to it, and only then is the skipped work counted as saved.
- ``leaky``: a deliberately non-causal variant of a causal operator (the paper's form). It runs
  on a causal task only with ``--allow-leaky`` and every record it produces is marked leaky.
- ``roles``: what the operator is, among ``operators.OPERATOR_ROLES`` (``("attention",)`` for
  full softmax attention, ``("no-mixing",)`` for the identity); the board reads roles, never
  names. Inherited like any attribute: a subclass that is something else says so.
- ``Options``: a pydantic model (``registry.options.ComponentOptions``) of the options it takes
  (``--op-option NAME.KEY=VALUE``). The constructor validates them and keeps ``self.options``;
  a subclass extends its parent's model (``class Options(Parent.Options)``).
- ``flops(n_query, n_key)``: analytic forward FLOPs for one example (multiply-add = 2 FLOPs),
  counting the projections it owns. Used for cost accounting (bands follow the ``--ops``
  order, never a cost order). Where the work of a query subset depends on *where* the queries
  are (causal attention computes only keys <= each query), ``batch_flops(ctx, n_key, batch)``
  says what one call really computed;
  its default is ``batch * flops(Q, n_key)``. The harness reads both through
  ``executed_flops``, so a plugin that declares only ``flops`` keeps working.
  ``untracked_flops`` is flops() minus what torch's FLOP counter reports for the same call:
  positive for work it cannot see (FFTs, elementwise), negative for work it charges that the
  kernel skips (the causal triangle of fused attention).

Forward contract: ``forward(x, ctx)`` with x (B, N, D) and a ``MixContext``:

- ``ctx.padding_mask`` (B, N) bool, True for real tokens. Padding keys must not influence real
  outputs (an example's prediction never changes when padding is appended).
- ``ctx.causal``: equals the constructor's ``causal``; passed for operators that want it.
- ``ctx.query_positions`` (B, Q) long: if set, return (B, Q, D), the outputs at those positions
  only (causal masking by *original* position). Real positions arrive in increasing order per
  example, packed at the front. ``ctx.query_mask`` (B, Q) bool marks real query
  slots; the rest are padding slots whose outputs are ignored (but must be finite).
  Only operators with ``supports_query_subset`` receive query positions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from registry import ConfigError
from registry.options import ComponentOptions, Configurable


@dataclass(frozen=True)
class MixContext:
    padding_mask: Tensor | None = None  # (B, N) bool, True = real token
    causal: bool = False
    query_positions: Tensor | None = None  # (B, Q) long
    query_mask: Tensor | None = None  # (B, Q) bool, True = real query slot
    needs_attention: Tensor | None = None  # (B, N) bool task ground truth (see tasks/base.py)

    def with_queries(self, positions: Tensor, mask: Tensor) -> MixContext:
        return MixContext(self.padding_mask, self.causal, positions, mask, self.needs_attention)

    def with_causal(self, causal: bool) -> MixContext:
        """This context with `causal`: an operator runs as its constructor was told (that
        promise wins over the caller's flag, so a causal operator never leaks)."""
        return self if causal == self.causal else replace(self, causal=causal)


class TokenMixer(Configurable, nn.Module):
    """Base class for operators. Subclasses set the ClassVars, extend ``Options`` and implement
    forward/flops."""

    supports_causal: ClassVar[bool] = True
    supports_query_subset: ClassVar[bool] = False
    leaky: ClassVar[bool] = False
    roles: ClassVar[tuple[str, ...]] = ()
    registry_name: ClassVar[str] = "?"  # set by the registry

    option_kind: ClassVar[str] = "operator"  # Options and parse_options: registry.options
    options_flag: ClassVar[str] = "--op-option {name}.{key}=VALUE"

    def __init__(self, d_model: int, n_heads: int, max_len: int, causal: bool, **options: Any):
        super().__init__()
        self.options = self.parse_options(options)
        for label, value in (("d_model", d_model), ("n_heads", n_heads), ("max_len", max_len)):
            if value <= 0:
                raise ConfigError(f"{label} must be positive, got {value}")
        if causal and not self.supports_causal:
            raise ConfigError(
                f"operator '{self.registry_name}' has no causal form and cannot run on a causal "
                f"task; choose a causal operator (see `python -m harness list`)"
            )
        self.d_model, self.n_heads, self.max_len, self.causal = d_model, n_heads, max_len, causal

    def forward(self, x: Tensor, ctx: MixContext) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def flops(self, n_query: int, n_key: int) -> int:  # pragma: no cover - abstract
        """Analytic forward FLOPs for one example with n_query outputs over n_key inputs."""
        raise NotImplementedError

    def untracked_flops(self, n_query: int, n_key: int) -> int:
        """flops() minus what torch.utils.flop_counter reports for the same call (FFTs and
        elementwise work it cannot see; minus work it charges that the kernel skips). The FLOP
        check compares flops() - untracked_flops() with the counter."""
        return 0

    def batch_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        """Forward FLOPs of one call on `batch` examples of n_key tokens with this context,
        as it really runs (query positions may matter). Default: batch * flops(Q, n_key)."""
        return batch * self.flops(query_count(ctx, n_key), n_key)

    def batch_untracked_flops(self, ctx: MixContext, n_key: int, batch: int) -> int:
        """batch_flops() minus what torch.utils.flop_counter reports for the same call."""
        return batch * self.untracked_flops(query_count(ctx, n_key), n_key)


def query_count(ctx: MixContext, n_key: int) -> int:
    return n_key if ctx.query_positions is None else ctx.query_positions.shape[1]


def executed_flops(op: Any, ctx: MixContext, n_key: int, batch: int) -> tuple[int, int]:
    """(FLOPs, of which untracked by torch's counter) of one call of `op` on `batch` examples:
    what cost accounting charges. Works for plugins that declare only flops(n_query, n_key)."""
    if hasattr(op, "batch_flops"):
        return op.batch_flops(ctx, n_key, batch), op.batch_untracked_flops(ctx, n_key, batch)
    q = query_count(ctx, n_key)
    untracked = op.untracked_flops(q, n_key) if hasattr(op, "untracked_flops") else 0
    return batch * op.flops(q, n_key), batch * untracked


def validate_operator(obj: Any) -> None:
    """Registry validation: a plugin operator must be a TokenMixer-like nn.Module class."""
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise TypeError(f"{obj!r} is not an nn.Module subclass")
    for attr in ("supports_causal", "supports_query_subset", "flops", "forward"):
        if not hasattr(obj, attr):
            raise TypeError(f"{obj.__name__} does not declare '{attr}' (see operators/base.py)")
    options = getattr(obj, "Options", ComponentOptions)
    if not (isinstance(options, type) and issubclass(options, ComponentOptions)):
        raise TypeError(f"{obj.__name__}.Options is not a registry.options.ComponentOptions "
                        f"model (see operators/base.py)")


def check_heads(d_model: int, n_heads: int) -> None:
    """ConfigError unless the heads split d_model evenly (a mixer with per-head widths)."""
    if d_model % n_heads:
        raise ConfigError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")


def gather_queries(x: Tensor, ctx: MixContext) -> Tensor:
    """x (B, N, D) -> the rows at ctx.query_positions (B, Q, D), or x itself if none."""
    if ctx.query_positions is None:
        return x
    index = ctx.query_positions.unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return torch.gather(x, 1, index)


def attention_mask(
    ctx: MixContext, n_key: int, n_query: int, device: torch.device
) -> Tensor | None:
    """Boolean mask (B or 1, 1, Q, N) of allowed (query, key) pairs, or None if all allowed.

    Combines padding (keys that are padding are never attended), causality by original
    position, and guarantees no query row is empty (an empty row would make softmax NaN; such
    rows are padding query slots whose outputs are discarded).
    """
    allowed = None
    if ctx.padding_mask is not None:
        allowed = ctx.padding_mask[:, None, None, :]  # (B, 1, 1, N)
    if ctx.causal:
        key_pos = torch.arange(n_key, device=device)
        if ctx.query_positions is None:
            q_pos = torch.arange(n_query, device=device)[None, :]
        else:
            q_pos = ctx.query_positions
        causal = key_pos[None, None, None, :] <= q_pos[:, None, :, None]  # (B|1, 1, Q, N)
        allowed = causal if allowed is None else allowed & causal
    if allowed is None:
        return None
    if allowed.shape[-2] == 1 and n_query != 1:
        allowed = allowed.expand(-1, -1, n_query, -1)
    return allowed | ~allowed.any(dim=-1, keepdim=True)
