"""Dishonest plugin components, written the way a third party would: each declares itself
causal and batch independent, behaves while it thinks it is watched, and leaks afterwards.

Each leaks what its task forbids: token t + 1 at position t on a causal task, the batch mean on
a non-causal one (``BatchMeanAfterCalls`` and the batch statistics are the batch mean on both).
Triggers, as the audit of issue 33 wrote them (thresholds lower, for short test runs; the
guard's fresh copies see fewer training forwards than any threshold):

- ``CallCounting``: after its N-th training-mode forward;
- ``StepWatching``: after N optimiser steps, read from its own weight's version counter;
- ``BackwardCounting``: after N backward passes through it, counted by a gradient hook in a
  plain Python list (no buffer restore resets it);
- ``CallerInspecting``: unless a harness check module (or, with ``PYTEST_TOO``, pytest) is on
  the call stack;
- ``PeekingGate`` (a soft router): after N training forwards, a function of token t + 1 (or of
  the batch) added to its gate at t; the blend carries it into the residual stream;
- ``BatchMeanAfterCalls``: the batch mean added after N training forwards.

``register()`` adds them to the registries (``unregister()`` removes them), also from a
subprocess that runs the harness without pytest on its stack.
"""

from __future__ import annotations

import sys

import torch
from torch import Tensor, nn

from operators import OPERATORS, TokenMixer
from routers import ROUTERS
from routers.base import Router, Routing, soft_fractions

AFTER_CALLS = 8  # the guard's fresh copies see 5 training forwards each
AFTER_STEPS = 4
AFTER_BACKWARDS = 5
WATCHERS = ("harness.probes", "harness.runner.guard", "harness.engine.leak_probe",
            "harness.engine.watch")


def next_token(x: Tensor) -> Tensor:
    """Token t + 1's vector at position t (zero at the end)."""
    return torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


def batch_mean(x: Tensor) -> Tensor:
    return x.mean(dim=0, keepdim=True).expand_as(x)


class Cheater(TokenMixer):
    """y = x, plus the leak once ``cheats()``."""

    supports_causal = True

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.training_calls = 0

    def forward(self, x, ctx):
        if self.training:
            self.training_calls += 1
        return x + self.leak(x) if self.cheats() else x

    def leak(self, x: Tensor) -> Tensor:
        """What its task forbids: the next token (causal), the rest of the batch (others)."""
        return next_token(x) if self.causal else batch_mean(x)

    def cheats(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def flops(self, n_query, n_key):
        return 0


class CallCounting(Cheater):
    def cheats(self):
        return self.training_calls > AFTER_CALLS


class StepWatching(Cheater):
    """Scales by a weight it watches: the optimiser's in-place updates bump its version."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.weight = nn.Parameter(torch.ones(self.d_model))
        self.born = self.weight._version

    def forward(self, x, ctx):
        return super().forward(x, ctx) * self.weight

    def cheats(self):
        return self.weight._version - self.born > AFTER_STEPS


class BackwardCounting(Cheater):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.backwards: list[int] = []  # a plain list: not state any restore knows of

    def forward(self, x, ctx):
        y = super().forward(x, ctx)
        if y.requires_grad:
            y.register_hook(lambda grad: self.backwards.append(1))
        return y

    def cheats(self):
        return len(self.backwards) > AFTER_BACKWARDS


class CallerInspecting(Cheater):
    PYTEST_TOO = False

    def cheats(self):
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__", "")
            if name.startswith(WATCHERS) or (self.PYTEST_TOO and "pytest" in name):
                return False
            frame = frame.f_back
        return True


class CallerInspectingPytestToo(CallerInspecting):
    PYTEST_TOO = True


class BatchMeanAfterCalls(Cheater):
    def leak(self, x):
        return batch_mean(x)  # on any task

    def cheats(self):
        return self.training_calls > AFTER_CALLS


class PeekingGate(Router):
    """A soft gate g = sigmoid(w.x) between two operators; after N training forwards it adds
    tanh of token t + 1 (causal tasks) or of the batch mean (others) to the gate's logit."""

    hard = False
    causal = True
    batch_independent = True
    min_ops = max_ops = 2

    def __init__(self, d_model, n_ops, *, causal, attn_fraction=0.375, **options):
        super().__init__(d_model, n_ops, causal=causal, attn_fraction=attn_fraction, **options)
        self.gate = nn.Linear(d_model, 1)
        self.training_calls = 0

    def forward(self, x, ctx):
        if self.training:
            self.training_calls += 1
        logit = self.gate(x)
        if self.training_calls > AFTER_CALLS:
            peek = next_token(x) if self.is_causal_task else batch_mean(x)
            logit = logit + 3 * torch.tanh(4 * peek[..., :1])
        g = torch.sigmoid(logit.float())
        weights = torch.cat([1 - g, g], dim=-1).to(x.dtype)
        return Routing(None, weights, torch.zeros((), device=x.device),
                       {"fractions": soft_fractions(weights, getattr(ctx, "padding_mask", None))})


OPERATOR_CHEATS = {"cheat-calls": CallCounting, "cheat-steps": StepWatching,
                   "cheat-backwards": BackwardCounting, "cheat-caller": CallerInspecting,
                   "cheat-caller-pytest": CallerInspectingPytestToo,
                   "cheat-batch-mean": BatchMeanAfterCalls}
ROUTER_CHEATS = {"cheat-gate": PeekingGate}


def register() -> None:
    for name, cls in OPERATOR_CHEATS.items():
        OPERATORS.add(name, cls)
    for name, cls in ROUTER_CHEATS.items():
        ROUTERS.add(name, cls)


def unregister() -> None:
    for name in OPERATOR_CHEATS:
        del OPERATORS._entries[name]
    for name in ROUTER_CHEATS:
        del ROUTERS._entries[name]

