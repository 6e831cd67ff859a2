"""Router checks (``routers/base.py``): one function per check, each given a ``Probe``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from harness.probes.conformance.common import (
    Probe,
    check_batch_independent,
    check_finite,
    check_grads,
    check_padding_ignored,
    check_roles,
    fail,
    future_leak,
    under_bf16_autocast,
)
from operators import MixContext
from registry import ConfigError
from routers import ROUTER_ROLES


def _route(router: nn.Module, x: Tensor, ctx: MixContext):
    routing = router(x, ctx)
    for attr in ("assignment", "weights", "aux_loss", "stats"):
        if not hasattr(routing, attr):
            fail(f"forward returned {type(routing).__name__} without '{attr}' "
                  f"(return routers.Routing)")
    return routing


def _decisions(routing) -> Tensor:
    """What must not change: the weights, and the assignment (as a float column) if any."""
    w = routing.weights.float()
    if routing.assignment is None:
        return w
    return torch.cat([w, routing.assignment.float().unsqueeze(-1)], dim=-1)


def _router_contract(p: Probe) -> None:
    _check_router_declarations(p)
    k = p.n_ops()
    router = p.router()
    x, mask = p.ragged()
    b, n = mask.shape
    with torch.no_grad():
        routing = _route(router, x, p.ctx(mask))
    fractions = _check_routing_outputs(routing, b, n, k)
    a = routing.assignment
    if p.cls.hard:
        if a is None:
            fail("declares hard = True but returns no assignment")
    if a is not None:
        _check_assignment(a, routing.weights, fractions, b, n, k)


def _check_router_declarations(p: Probe) -> None:
    """Declarations are booleans, roles known ones, and an operator count outside
    [min_ops, max_ops] is refused."""
    cls, s = p.cls, p.s
    for attr in ("hard", "causal", "batch_independent", "leaky"):
        value = getattr(cls, attr, None)
        if not isinstance(value, bool):
            fail(f"{attr} must be a bool class attribute, got {value!r}")
    check_roles(cls, ROUTER_ROLES)
    lo, hi = getattr(cls, "min_ops", 1), getattr(cls, "max_ops", 16)
    for bad in (lo - 1, hi + 1):
        if bad < 1 or bad > 64:
            continue
        try:
            cls(s.d_model, bad, causal=p.causal, attn_fraction=s.attn_fraction,
                **dict(s.options))
        except ConfigError:
            continue
        fail(f"declares min_ops={lo}, max_ops={hi} but accepts {bad} operators without "
              f"raising ConfigError")


def _check_routing_outputs(routing, b: int, n: int, k: int) -> Tensor:
    """Weights (B, N, K), a scalar aux loss and stats['fractions'] (K,), all finite; returns
    the fractions."""
    w = routing.weights
    if not isinstance(w, Tensor) or tuple(w.shape) != (b, n, k) or not w.is_floating_point():
        fail(f"weights must be a float tensor (B, N, K) = {(b, n, k)}, got "
              f"{getattr(w, 'shape', w)!r}")
    check_finite("weights", w)
    aux = routing.aux_loss
    if not isinstance(aux, Tensor) or aux.dim() != 0:
        fail(f"aux_loss must be a scalar tensor, got {aux!r}")
    check_finite("aux_loss", aux)
    fractions = routing.stats.get("fractions") if isinstance(routing.stats, dict) else None
    if not isinstance(fractions, Tensor) or tuple(fractions.shape) != (k,):
        fail(f"stats['fractions'] must be a ({k},) tensor of shares per operator, got "
              f"{fractions!r}")
    check_finite("stats['fractions']", fractions)
    if bool((fractions < -1e-6).any()):
        fail(f"stats['fractions'] has negative shares: {fractions.tolist()}")
    return fractions


def _check_assignment(a, w: Tensor, fractions: Tensor, b: int, n: int, k: int) -> None:
    """A hard assignment: long (B, N) in [0, K), weight only at the assigned operator, and
    fractions summing to 1."""
    if not isinstance(a, Tensor) or tuple(a.shape) != (b, n) or a.dtype != torch.long:
        fail(f"assignment must be a long tensor (B, N) = {(b, n)}, got "
              f"{getattr(a, 'dtype', a)} {tuple(getattr(a, 'shape', ()))}")
    if bool(((a < 0) | (a >= k)).any()):
        fail(f"assignment has operator indices outside [0, {k})")
    off = w.masked_fill(torch.nn.functional.one_hot(a, k).bool(), 0)
    if bool((off != 0).any()):
        fail("hard routing puts non-zero weight on operators a token is not assigned to")
    total = float(fractions.sum())
    if abs(total - 1.0) > 1e-4:
        fail(f"stats['fractions'] of a hard router must sum to 1 over real tokens, got "
              f"{total:.4f}")


def _router_dtypes(p: Probe) -> None:
    router = p.router()
    x, mask = p.ragged()
    ctx = p.ctx(mask)
    k = p.n_ops()
    with torch.no_grad():
        ref = _route(router, x, ctx)
        for what, routing in under_bf16_autocast(p, x, lambda inp: _route(router, inp, ctx)):
            if tuple(routing.weights.shape) != tuple(ref.weights.shape):
                fail(f"{what}: weights {tuple(routing.weights.shape)}, expected "
                      f"{tuple(ref.weights.shape)}")
            check_finite(f"weights {what}", routing.weights)
            check_finite(f"aux_loss {what}", torch.as_tensor(routing.aux_loss))
            a = routing.assignment
            if a is not None and bool(((a < 0) | (a >= k)).any()):
                fail(f"{what}: assignment outside [0, {k})")


def _router_decisions(router: nn.Module) -> Callable[[Tensor, MixContext], Tensor]:
    return lambda x, ctx: _decisions(_route(router, x, ctx))


def _router_padding(p: Probe) -> None:
    check_padding_ignored(p, _router_decisions(p.router()), "the routing of real tokens")


def _router_causality(p: Probe) -> None:
    leak = future_leak(p, _router_decisions(p.router()), "decisions")
    if leak:
        declared = "" if p.cls.causal else (
            " (it declares causal = False: the harness refuses it on causal tasks unless "
            "--allow-leaky)")
        fail(f"routing on a causal task is not causal: {leak}{declared}")


def _router_batch_independence(p: Probe) -> None:
    hint = "" if p.cls.batch_independent else (
        " (it declares batch_independent = False: a leaky variant on every task)")
    check_batch_independent(p, _router_decisions(p.router()),
                            "example {i} is routed differently alone and in a batch of {size}",
                            hint)


def _router_gradients(p: Probe) -> None:
    router = p.router()
    router.train()
    x, mask = p.ragged()
    x.requires_grad_(True)
    routing = _route(router, x, p.ctx(mask))
    check_finite("weights in training mode", routing.weights)
    loss = (routing.weights.float() * p.randn(*routing.weights.shape) * mask[..., None]).sum()
    loss = loss + torch.as_tensor(routing.aux_loss).float()
    if loss.requires_grad:
        loss.backward()
    elif any(q.requires_grad for q in router.parameters()):
        fail("has trainable parameters but neither weights nor aux_loss depend on them")
    check_grads(router, x, "backward through weights and aux_loss", require_x=False)


_ROUTER_CHECKS: list[tuple[str, Callable[[Probe], None]]] = [
    ("contract", _router_contract),
    ("dtypes", _router_dtypes),
    ("padding", _router_padding),
    ("causality", _router_causality),
    ("batch independence", _router_batch_independence),
    ("gradients", _router_gradients),
]
ROUTER_CHECKS = tuple(name for name, _ in _ROUTER_CHECKS)
