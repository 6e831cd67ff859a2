"""Two variants of MAD tasks (Poli et al. 2024) that this harness had before the MAD suite:
`selective-copy` and `noisy-recall`. They keep their names, presets and data (their committed
rows were made with them); MAD's own definitions are the MAD suite, under MAD's names
(tasks/mad_recall.py, tasks/mad_copying.py, tasks/mad_compression.py,
tasks/mad_memorization.py). Both are causal, scored only where a long-range lookup is needed,
and mark those positions in ``Batch.needs_attention``.

`selective-copy`: ``n_copy`` symbols scattered at random positions of a blank region, then a
separator, then the symbols again in order, teacher forced::

    _ a _ _ b _ c _ _ _  SEP  a b c          (scored: SEP -> a, a -> b, b -> c)

The k-th output needs the k-th non-blank token of the region, wherever it fell: a lookup by
content order, which a fixed (linear time-invariant) convolution cannot do. It differs from
MAD's `selective-copying`: the copy is teacher forced (each copied symbol is the next input),
and the region may end with blanks (in MAD's, its last symbol ends it).

`noisy-recall`: this harness's first `mqar` form (blank filler, values with replacement,
uniform query slots) with distractors: half of the blank filler between the queries is
replaced by random value tokens, so the model must ignore value-looking tokens that answer
nothing. MAD's noisy in-context recall is another task (`noisy-in-context-recall`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from registry import ConfigError
from tasks import register_task

from .base import IGNORE_INDEX
from .mqar import BLANK_ID, FIRST_FORM_PRESETS, MQAR
from .recall import RecallData, RecallTask

SEP_ID, FIRST_SYMBOL = 2, 3  # SelectiveCopy.Options: vocab_size >= FIRST_SYMBOL + 1


def selective_copy_examples(n: int, seq_len: int, n_copy: int, n_symbols: int,
                            g: torch.Generator) -> RecallData:
    """``n`` examples of ``seq_len`` inputs; scored at the copy (SEP predicts the first
    symbol, and so on)."""
    region = seq_len - n_copy  # the region, SEP and the n_copy outputs fill seq_len + 1 ids
    symbols = torch.randint(FIRST_SYMBOL, FIRST_SYMBOL + n_symbols, (n, n_copy), generator=g)
    where = torch.rand(n, region, generator=g).argsort(1)[:, :n_copy].sort(1).values
    window = torch.full((n, seq_len + 1), BLANK_ID, dtype=torch.long)
    window.scatter_(1, where, symbols)
    window[:, region] = SEP_ID
    window[:, region + 1 :] = symbols
    copy = torch.zeros(n, seq_len, dtype=torch.bool)
    copy[:, region : region + n_copy] = True
    targets = window[:, 1:].masked_fill(~copy, IGNORE_INDEX)
    return RecallData(window[:, :-1].clone(), targets, copy, copy.clone())


@register_task(
    "selective-copy",
    description="selective copying, teacher forced (a variant of MAD's selective-copying): copy "
    "the symbols scattered in a blank region, in order, after a separator; causal, scored at "
    "the copy, which carries needs_attention ground truth",
)
class SelectiveCopy(RecallTask):
    """Options (``Options`` below): ``vocab_size`` (16: 13 symbols), ``n_copy``, the split
    sizes and ``data_seed``."""

    ground_truth = "needs_attention = the scored copy positions"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 24, "n_copy": 4, "n_train": 256, "n_valid": 64, "n_test": 64},
        # mqar's first cpu setting. Measured (3 seeds): attn 0.999, dct 0.983, so it does NOT
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

    class Options(RecallTask.Options):
        vocab_size: int = Field(16, ge=4, description="total ids: pad, blank, separator, then "
                                                      "the symbols (at least one)")
        n_copy: int = Field(4, ge=1, description="symbols to copy")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, vocab_size, n_copy = self.registry_name, self.options.vocab_size, self.options.n_copy
        if seq_len < 2 * n_copy + 1:
            raise ConfigError(f"task '{name}': seq_len {seq_len} cannot hold {n_copy} symbols, "
                              f"a separator and their copy; raise --seq-len to at least "
                              f"{2 * n_copy + 1} or lower n_copy")
        self.vocab_size = vocab_size
        self.params = {"vocab_size": vocab_size, "n_copy": n_copy, **self.split_sizes()}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        p = self.params
        return selective_copy_examples(n, self.seq_len, p["n_copy"],
                                       self.vocab_size - FIRST_SYMBOL, g)


@register_task(
    "noisy-recall",
    description="mqar's first form with value-token distractors in the filler (a variant of "
    "MAD's noisy-in-context-recall); causal, scored at the queries, which carry "
    "needs_attention ground truth",
)
class NoisyRecall(MQAR):
    """The first form of MQAR's options and presets (cpu measured here too: attn 0.996, dct
    0.335 over 3 seeds); half of the filler after the context is random value tokens."""

    noise = 0.5
    presets = FIRST_FORM_PRESETS
