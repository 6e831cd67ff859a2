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


class _NaNAfterThreeCalls(TokenMixer):
    """Healthy for three training forwards, then poisons the output. Counted per instance:
    the leak guard probes its own copies of the model in training mode first."""

    supports_causal = True
    calls = 0

    def forward(self, x, ctx):
        if self.training:
            self.calls += 1
        return x * float("nan") if self.calls > 3 else x

    def flops(self, n_query, n_key):
        return 0


@pytest.fixture
def nan_operator():
    """The name of a registered operator that turns the loss NaN at the fourth training step."""
    _NaNAfterThreeCalls.calls = 0
    OPERATORS.add("nan-after-3-test", _NaNAfterThreeCalls)
    yield "nan-after-3-test"
    del OPERATORS._entries["nan-after-3-test"]
