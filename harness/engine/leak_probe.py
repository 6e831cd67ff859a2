"""Leak probes on a live model: variants of a batch, the comparison of outputs, the blame.

A probe runs a batch, then a *variant* of it from the same state (buffers, RNG), and compares
the outputs that must not change:

- causality: each example's tokens after its own cut t replaced; outputs at <= t must agree;
- batch independence: some examples replaced by others, or one example alone; the kept
  example's outputs must agree.

The run's own probes (``watch``: the training step and the evaluation run the variants through
their own call sites) and the checks (harness/probes/checks.py) all build, compare and blame
through this module, so every leak check tolerates and names the same way.

Blame (``culprits``) asks each router and operator of the model that failed, the instance
itself and not a fresh copy (a component may change its behaviour over a run), the same
question on its own input: the layer's input in the reference forward, with what the variant
changed taken from the variant's forward. A component that answers honestly when called on
its own (it may look at who calls it) is still located: the first mixing layer whose output
changed where its input did not. A located failure can be float32 rounding that a hard decision
amplified, with no information from the future or the other examples; it is no leak only under
the conditions of ``rounding_note`` (float64 among them).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from harness.engine.model import Model, ModelOutput
from operators import MixContext
from tasks import Batch

CAUSALITY, BATCH_INDEPENDENCE = "causality", "batch independence"
# float32: reordered reductions differ by ~1e-6; anything above this is a real leak
ATOL, RTOL = 1e-4, 1e-4
# bf16/fp16 outputs (autocast on CUDA) carry 8-11 bits of mantissa; a leak moves them far more
LOW_PRECISION_RTOL = 2e-2


# -- comparing ---------------------------------------------------------------------------------


def max_diff(a: Tensor, b: Tensor) -> float:
    """Largest |a - b|; equal non-finite values (NaN and NaN, inf and inf) count as equal, a
    non-finite value against anything else as an infinite difference (a NaN must not hide a
    leak: NaN > tolerance is False)."""
    if not a.numel():
        return 0.0
    a, b = a.float(), b.float()
    fast = float(torch.linalg.vector_norm(a - b, ord=math.inf))  # NaN or inf: non-finite values
    if math.isfinite(fast):
        return fast
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    diff = torch.where(same, torch.zeros_like(a), (a - b).abs())
    return float(torch.nan_to_num(diff, nan=math.inf).max())


def tolerance(ref: Tensor) -> float:
    """ATOL + RTOL x the largest finite |value| of ref (RTOL wider for bf16/fp16 outputs). No
    boolean indexing: a nonzero and a gather of the guard's (32, 128, 8192) logits took 0.8 s a
    call."""
    if not ref.numel():
        return ATOL
    rtol = RTOL if ref.dtype in (torch.float32, torch.float64) else LOW_PRECISION_RTOL
    magnitude = float(torch.linalg.vector_norm(ref.float(), ord=math.inf))
    if not math.isfinite(magnitude):  # the slow pass only when there is something to skip
        magnitude = float(torch.where(torch.isfinite(ref), ref.abs().float(), 0.0).max())
    return ATOL + rtol * magnitude


def moved_where_agree(ref: Tensor, out: Tensor, agree: Tensor) -> float:
    """How far `out` moved from `ref` where `agree` (B, N) says it must not, tolerance not
    applied. Per-position outputs (B, N, ...) are compared at `agree`; per-example ones
    (B, ...), a classifier's logits, on the examples whose every position agrees."""
    rows = agree if ref.dim() >= 3 else agree.all(dim=1)
    # one pass over the (large) outputs, then the (B, N) mask: no gather of the agreeing rows
    worst = torch.linalg.vector_norm(ref.float() - out.float(), ord=math.inf,
                                     dim=tuple(range(rows.dim(), ref.dim())) or None)
    diff = float(torch.where(rows, worst, 0.0).max()) if rows.any() else 0.0
    if not math.isfinite(diff):  # equal non-finite values count as equal: the careful pass
        diff = max_diff(ref[rows], out[rows])
    return diff


def beyond_tolerance(ref: Tensor, out: Tensor, agree: Tensor) -> float:
    """``moved_where_agree``, or 0.0 within tolerance."""
    diff = moved_where_agree(ref, out, agree)
    return diff if diff > tolerance(ref) else 0.0


# -- variants ----------------------------------------------------------------------------------


@dataclass
class Variant:
    """A perturbed batch and what must not change. ``agree`` (B, N) marks the outputs that
    must equal the reference's; ``row`` instead says that this batch of one holds the
    reference's example ``row`` alone."""

    check: str
    batch: Batch
    how: str
    agree: Tensor | None = None
    row: int | None = None

    def moved(self, ref: Tensor, out: Tensor, exact: bool = False) -> float:
        """How far `out` (this variant's) moved from `ref` (the reference's) where it must
        not, beyond tolerance; 0.0 when it did not. `exact`: any move, tolerance not
        applied."""
        compare = moved_where_agree if exact else beyond_tolerance
        if self.row is None:
            assert self.agree is not None
            return compare(ref, out, self.agree.to(ref.device))
        ref = ref[self.row: self.row + 1]
        return compare(ref, out, torch.ones(out.shape[:2], dtype=torch.bool, device=out.device))

    def component_input(self, x_ref: Tensor, x_var: Tensor) -> Tensor:
        """A component's input for the same question: its reference input with what the
        variant changed (the later positions, the other examples) taken from `x_var`."""
        if self.row is not None:
            return x_ref[self.row: self.row + 1]
        assert self.agree is not None
        return torch.where(self.agree.to(x_ref.device)[..., None], x_ref, x_var)


def _with_tokens(batch: Batch, tokens: Tensor) -> Batch:
    """`batch` with other tokens; everything else, a task's own fields included, kept."""
    varied = copy.copy(batch)
    varied.tokens = tokens
    return varied


def _noise(batch: Batch, g: torch.Generator, vocab_size: int) -> Tensor:
    noise = torch.randint(1, vocab_size, tuple(batch.tokens.shape), generator=g)
    return noise.to(batch.tokens.device)


def future_changed(batch: Batch, cuts: Sequence[int], g: torch.Generator,
                   vocab_size: int) -> Variant:
    """Example i's real tokens after position cuts[i] replaced by random ones."""
    n = batch.tokens.shape[1]
    device = batch.tokens.device
    later = (torch.arange(n, device=device)[None, :]
             > torch.tensor(list(cuts), device=device)[:, None])
    tokens = torch.where(later & batch.padding_mask, _noise(batch, g, vocab_size), batch.tokens)
    shown = sorted(set(cuts))
    at = ", ".join(map(str, shown[:4])) + (", ..." if len(shown) > 4 else "")
    return Variant(CAUSALITY, _with_tokens(batch, tokens), f"tokens after t={at} changed",
                   agree=~later & batch.padding_mask)


def others_replaced(batch: Batch, keep: Tensor, g: torch.Generator,
                    vocab_size: int) -> Variant:
    """The examples not in `keep` (B,) bool replaced by random ones of the same lengths."""
    keep = keep.to(batch.tokens.device)
    change = ~keep[:, None] & batch.padding_mask
    tokens = torch.where(change, _noise(batch, g, vocab_size), batch.tokens)
    n_other = int((~keep).sum())
    return Variant(BATCH_INDEPENDENCE, _with_tokens(batch, tokens),
                   f"{n_other} other example{'' if n_other == 1 else 's'} of the batch "
                   f"replaced", agree=keep[:, None] & batch.padding_mask)


def alone(batch: Batch, row: int) -> Variant:
    """Example `row` in a batch of its own."""
    values = (v[row: row + 1] if v is not None else None
              for v in (batch.tokens, batch.padding_mask, batch.targets, batch.needs_attention))
    return Variant(BATCH_INDEPENDENCE, Batch(*values), "an example alone instead of in its "
                   "batch", row=row)


def random_variants(batch: Batch, g: torch.Generator, vocab_size: int,
                    causal: bool) -> list[Variant]:
    """The run's probes of a batch: on causal tasks each example's tokens after a random t of
    its own changed; on every task half the examples, drawn at random, replaced."""
    variants = []
    b = batch.tokens.shape[0]
    if causal:
        lengths = batch.padding_mask.sum(dim=1).tolist()
        cuts = [int(torch.randint(0, max(int(n) - 1, 1), (1,), generator=g)) for n in lengths]
        variants.append(future_changed(batch, cuts, g, vocab_size))
    if b > 1:
        keep = torch.zeros(b, dtype=torch.bool)
        keep[torch.randperm(b, generator=g)[: b // 2]] = True
        variants.append(others_replaced(batch, keep, g, vocab_size))
    return variants


# -- state -------------------------------------------------------------------------------------


class SameState:
    """The model's buffers and the RNG streams as they are at construction; ``restore()`` puts
    them back, so that forwards start from the same state (router thresholds move in training
    mode, dropout draws random numbers) and a probe leaves nothing behind."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
        self.device = next(model.parameters()).device
        self.cpu_rng = torch.get_rng_state()
        self.device_rng = (torch.cuda.get_rng_state(self.device)
                           if self.device.type == "cuda" else None)

    def restore(self) -> None:
        with torch.no_grad():
            for n, b in self.model.named_buffers():
                b.copy_(self.buffers[n])
        torch.set_rng_state(self.cpu_rng)
        if self.device_rng is not None:
            torch.cuda.set_rng_state(self.device_rng, self.device)


@contextmanager
def gradients_aside(model: nn.Module) -> Iterator[None]:
    """Backward passes inside leave every parameter's gradient as it was."""
    params = list(model.parameters())
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        yield
    finally:
        for p, grad in zip(params, saved, strict=True):
            p.grad = grad


@contextmanager
def rng_kept(device: torch.device) -> Iterator[None]:
    """The RNG streams (CPU and the model's CUDA device) as they were, whatever runs inside."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


# -- evidence and blame ------------------------------------------------------------------------


@dataclass
class Trace:
    """What one forward computed, detached: its outputs and, per mixing layer, the input, the
    router's weights and the context."""

    logits: Tensor
    inputs: list[Tensor]
    weights: list[Tensor]
    contexts: list[MixContext]


def trace(out: ModelOutput) -> Trace:
    return Trace(out.logits.detach(), [r.x.detach() for r in out.layers],
                 [r.routing.weights.detach() for r in out.layers], [r.ctx for r in out.layers])


def router_name(router: nn.Module) -> str:
    return f"router '{getattr(type(router), 'registry_name', type(router).__name__)}'"


@dataclass(frozen=True)
class Blame:
    """What a failed probe comes to: the components at fault, named as records name them
    (``operator 'dct'``, ``router 'meta'``), or, when ``rounding`` says so, no leak at all."""

    culprits: tuple[str, ...]
    rounding: str = ""  # set: float32 rounding amplified by a hard decision (``rounding_note``)


def blame(model: Model, batch: Batch, ref: Trace, var: Trace, variant: Variant) -> Blame:
    """Why `variant` moved the outputs of `model` from `ref` (the forward of `batch`) to `var`.
    Each router and operator is asked the same question on its own input; when none answers
    differently, the first layer whose output moved where its input did not is located, and a
    move that float32 rounding explains (``rounding_note``) is no leak. Asked in the current
    mode (training or evaluation, autograd or not), from the state the model is in, which must
    be the one both forwards started from; it is left as it was found."""
    found = culprits(model, ref, var, variant)
    if found:
        return Blame(found)
    layer = first_moved_layer(model, ref, var, variant)
    if layer is None:
        return Blame(())
    mixing = model.mixing_layers[layer]
    if variant.moved(ref.weights[layer], var.weights[layer]) > 0:
        at_fault: tuple[str, ...] = (router_name(mixing.router),)
    else:
        at_fault = tuple(f"operator '{name}'" for name in dict.fromkeys(mixing.op_names))
    return Blame(at_fault, rounding_note(model, batch, ref, var, variant, layer, at_fault))


def culprits(model: Model, ref: Trace, var: Trace, variant: Variant) -> tuple[str, ...]:
    """The components of `model` that move the outputs when asked on their own: each router and
    operator gets its layer's input in the reference forward, with what the variant changed
    taken from the variant's forward. Empty when every one answers as it should."""
    state = SameState(model)
    found: list[str] = []

    def answers_differently(fn: Callable[[Tensor, MixContext], Tensor], x: Tensor,
                            x_var: Tensor, ctx: MixContext, ctx_var: MixContext) -> bool:
        state.restore()
        a = fn(x, ctx).detach()
        state.restore()
        b = fn(variant.component_input(x, x_var), ctx_var).detach()
        return variant.moved(a, b) > 0

    try:
        for i, layer in enumerate(model.mixing_layers):
            x, x_var, ctx, ctx_var = ref.inputs[i], var.inputs[i], ref.contexts[i], var.contexts[i]
            router = layer.router
            if answers_differently(lambda inp, c, r=router: r(inp, c).weights, x, x_var, ctx,
                                   ctx_var):
                found.append(router_name(router))
            for name, op in zip(layer.op_names, layer.ops, strict=True):
                if answers_differently(op, x, x_var, ctx, ctx_var):
                    found.append(f"operator '{name}'")
    finally:
        state.restore()
    return tuple(dict.fromkeys(found))


def first_moved_layer(model: Model, ref: Trace, var: Trace, variant: Variant) -> int | None:
    """The first mixing layer whose output (its router's weights, or what it hands the next
    layer) moved where its input did not: where a component that answers honestly when asked
    on its own sits."""
    outputs = list(zip(ref.inputs[1:] + [ref.logits], var.inputs[1:] + [var.logits],
                       strict=True))
    for i in range(len(model.mixing_layers)):
        if variant.moved(ref.weights[i], var.weights[i]) > 0 or variant.moved(*outputs[i]) > 0:
            return i
    return None


# -- rounding, amplified -----------------------------------------------------------------------
#
# An honest model can fail a float32 probe. The causal dct computes every position with one FFT
# over the whole sequence, so its outputs at <= t move with the tokens after t by ~1e-6 of
# rounding (within tolerance); a hard routing threshold downstream turns that into a flipped
# decision and an output that moves by 1 (seen on trained Shakespeare models: one probe in a
# few hundred). Information did not flow from the future: in float64 the same two forwards
# agree. So a failure is rounding, and no leak, only when all of this holds:
#
# - no component moves its outputs when asked on its own (``culprits`` is empty);
# - at the located layer, the input moved where it must not, within tolerance but not by
#   exactly 0: a layer that moves on an unchanged input leaks however it hides;
# - run again in float64 from the same state, the two forwards agree at the outputs that must
#   not change.
#
# What it cannot tell apart: a plugin that leaks below the tolerance in float32 only, and
# amplifies it with a discontinuity of its own. A leak above the tolerance is caught as before.


def rounding_note(model: Model, batch: Batch, ref: Trace, var: Trace, variant: Variant,
                  layer: int, at_fault: tuple[str, ...]) -> str:
    """'' unless the failure located at `layer` is float32 rounding amplified by a hard
    decision (see above); then a note that says so, where and by how much."""
    input_moved = variant.moved(ref.inputs[layer], var.inputs[layer], exact=True)
    if not input_moved or float64_moved(model, batch, variant) != 0.0:
        return ""
    return (f"{variant.check}: float32 rounding at the input of mixing layer {layer} "
            f"(moved by {input_moved:.1e}, within tolerance) flipped a hard decision of "
            f"{', '.join(at_fault)}; in float64 the outputs agree, so no leak")


def float64_moved(model: Model, batch: Batch, variant: Variant) -> float | None:
    """How far the outputs that must not change move when a float64 copy of `model`, from its
    current state, runs `batch` and the variant; None when the copy cannot run in float64."""
    twin = copy.deepcopy(model).double()
    device = next(twin.parameters()).device
    try:
        with rng_kept(device), torch.autocast(device.type, enabled=False):
            state = SameState(twin)
            ref = twin(batch.to(device)).logits.detach()
            state.restore()
            out = twin(variant.batch.to(device)).logits.detach()
    except (RuntimeError, TypeError, NotImplementedError):
        return None  # a kernel without float64 (xformers, a plugin's): the failure stands
    return variant.moved(ref, out)
