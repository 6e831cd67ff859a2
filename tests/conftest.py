import os

import pytest
import torch

from operators import OPERATORS, TokenMixer
from tasks import TASKS, LanguageModelingTask

# Small tensors on a busy 2-core machine run many times faster on one thread, and results are
# then independent of the thread count.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


class _TinyLM(LanguageModelingTask):
    """A causal task small enough to build in-process."""

    vocab_size = 11

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (self.seq_len + 1,), generator=g), 0) for _ in range(16)]


class _FutureOnly(TokenMixer):
    supports_causal = False

    def forward(self, x, ctx):
        return x

    def flops(self, n_query, n_key):
        return 0


@pytest.fixture
def causal_task_and_noncausal_op():
    TASKS.add("tiny-lm-test", _TinyLM)
    OPERATORS.add("future-only-test", _FutureOnly)
    yield
    del TASKS._entries["tiny-lm-test"]
    del OPERATORS._entries["future-only-test"]


class _NaNAfterThreeSteps(TokenMixer):
    """Healthy for three optimiser steps, then poisons the output. It counts the steps by its
    own weight moving, not by its calls: the leak probes add training forwards along the run
    (and the guard's fresh copies take none)."""

    supports_causal = True

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.seen: torch.Tensor | None = None
        self.steps = 0

    def forward(self, x, ctx):
        if self.training:
            now = self.scale.detach().clone()
            self.steps += self.seen is not None and not torch.equal(now, self.seen)
            self.seen = now
        y = x * self.scale
        return y * float("nan") if self.steps >= 3 else y

    def flops(self, n_query, n_key):
        return 0


@pytest.fixture
def nan_operator():
    """The name of a registered operator that turns the loss NaN at the fourth training step."""
    OPERATORS.add("nan-after-3-test", _NaNAfterThreeSteps)
    yield "nan-after-3-test"
    del OPERATORS._entries["nan-after-3-test"]
