"""MAD-style synthetic tasks (Poli et al. 2024) with per-token ground truth: `selective-copy` and
`noisy-recall`. Both are causal, scored only where a long-range lookup is needed, and mark those
positions in ``Batch.needs_attention`` (see tasks/mqar.py for the shared machinery).

`selective-copy`: ``n_copy`` symbols scattered at random positions of a blank region, then a
separator, then the symbols again in order::

    _ a _ _ b _ c _ _ _  SEP  a b c          (scored: SEP -> a, a -> b, b -> c)

The k-th output needs the k-th non-blank token of the region, wherever it fell: a lookup by
content order, which a fixed (linear time-invariant) convolution cannot do.

`noisy-recall`: MQAR with distractors: half of the blank filler between the queries is replaced
by random value tokens, so the model must ignore value-looking tokens that answer nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from registry import ConfigError
from tasks import register_task

from .mqar import BLANK_ID, MQAR, RecallTask, positive_int

SEP_ID, FIRST_SYMBOL = 2, 3


def selective_copy_examples(n: int, seq_len: int, n_copy: int, n_symbols: int,
                            g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Windows (n, seq_len + 1) and masks (n, seq_len) of the scored (output) positions."""
    region = seq_len - n_copy  # the region, SEP and the n_copy outputs fill seq_len + 1 ids
    symbols = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, (n, n_copy), generator=g)
    where = torch.rand(n, region, generator=g).argsort(1)[:, :n_copy].sort(1).values
    windows = torch.full((n, seq_len + 1), BLANK_ID, dtype=torch.long)
    windows.scatter_(1, where, symbols)
    windows[:, region] = SEP_ID
    windows[:, region + 1 :] = symbols
    queries = torch.zeros(n, seq_len, dtype=torch.bool)
    queries[:, region : region + n_copy] = True  # SEP predicts the first symbol, and so on
    return windows, queries


@register_task(
    "selective-copy",
    description="MAD selective copying: copy the symbols scattered in a blank region, in order, "
    "after a separator; causal, scored at the copy, which carries needs_attention ground truth",
)
class SelectiveCopy(RecallTask):
    """Options: ``vocab_size`` (total ids, default 16: 13 symbols), ``n_copy`` (4),
    ``n_train``/``n_valid``/``n_test``, ``data_seed`` (0)."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 24, "n_copy": 4, "n_train": 256, "n_valid": 64, "n_test": 64},
        # mqar's cpu setting. Measured (3 seeds): attn 0.999, dct 0.983, so it does NOT
        # separate them: a causal long convolution learns to copy. At 64 tokens / 8 copies
        # dct still reached 0.88; at 128 / 16 attn was at 0.70 after 600 steps (not finished).
        "cpu": {"seq_len": 32, "n_copy": 4, "n_train": 40_000, "n_valid": 1_000,
                "n_test": 1_000,
                "model": {"layers": 3, "d_model": 64, "heads": 1},
                "optim": {"batch_size": 64, "lr": 3e-3, "weight_decay": 0.0,
                          "warmup_steps": 100},
                "budget": {"max_steps": 1000, "eval_every": 200}},
        "paper": {"seq_len": 256, "vocab_size": 16, "n_copy": 16, "n_train": 100_000,
                  "n_valid": 3_000, "n_test": 3_000},
    }  # fmt: skip

    def __init__(self, seq_len: int, *, vocab_size: int = 16, n_copy: int = 4,
                 n_train: int = 40_000, n_valid: int = 1_000, n_test: int = 1_000,
                 data_seed: int = 0, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name = self.registry_name
        n_copy = positive_int(name, "n_copy", n_copy)
        vocab_size = positive_int(name, "vocab_size", vocab_size, FIRST_SYMBOL + 1)
        if seq_len < 2 * n_copy + 1:
            raise ConfigError(f"task '{name}': seq_len {seq_len} cannot hold {n_copy} symbols, "
                              f"a separator and their copy; raise --seq-len to at least "
                              f"{2 * n_copy + 1} or lower n_copy")
        self.vocab_size = vocab_size
        self.params = {
            "vocab_size": vocab_size, "n_copy": n_copy,
            "n_train": positive_int(name, "n_train", n_train),
            "n_valid": positive_int(name, "n_valid", n_valid),
            "n_test": positive_int(name, "n_test", n_test),
            "data_seed": positive_int(name, "data_seed", data_seed, 0),
        }  # fmt: skip

    def generate(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        p = self.params
        return selective_copy_examples(n, self.seq_len, p["n_copy"],
                                       self.vocab_size - FIRST_SYMBOL, g)


@register_task(
    "noisy-recall",
    description="MAD noisy in-context recall: mqar with value-token distractors in the filler; "
    "causal, scored at the queries, which carry needs_attention ground truth",
)
class NoisyRecall(MQAR):
    """MQAR's options and presets (cpu measured here too: attn 0.996, dct 0.335 over 3 seeds);
    half of the filler after the context is random value tokens."""

    noise = 0.5
