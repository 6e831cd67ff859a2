"""`selective-copying`: MAD's selective copying, not teacher forced.

``n_copy`` symbols (drawn with replacement) with blanks inserted at random before them (each
blank lands before a symbol chosen uniformly, so the region always ends with its last symbol),
then a copy token, then ``n_copy`` blanks; at those blanks the model must emit the symbols in
order::

    a _ _ b _ c _ _ _ d  COPY  _ _ _ _          (targets at the last four: a b c d)

The copy is emitted while blanks are read: the model never sees its own output, so the k-th
output must find the k-th symbol of the region by itself, wherever it fell (a lookup by
content order, which a fixed convolution cannot do). Trained and scored at the copy only.
Ground truth: ``needs_attention`` at the copy positions. The harness's older, teacher-forced
variant is `selective-copy` (tasks/mad.py).

Ids (MAD's shifted by one, tasks/mad_common.py): symbols 1 .. vocab_size - 2, blank
vocab_size - 1, copy token vocab_size.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from registry import ConfigError
from tasks import register_task

from .base import IGNORE_INDEX
from .mad_common import CPU_TRAINING, MAD_ID_OFFSET, MAD_SPLITS, MAD_TRAINING, smoke
from .mad_options import MadOptions
from .recall import RecallData, RecallTask


def selective_copying_examples(n: int, seq_len: int, n_copy: int, vocab_size: int,
                               g: torch.Generator) -> RecallData:
    """``n`` sequences of ``seq_len`` inputs (module docstring), in MAD's ids shifted."""
    blank, copy = vocab_size - 2, vocab_size - 1
    n_blanks = seq_len - 2 * n_copy - 1
    symbols = torch.randint(0, vocab_size - 2, (n, n_copy), generator=g)
    before = torch.randint(0, n_copy, (n, n_blanks), generator=g)  # the symbol each precedes
    counts = torch.zeros(n, n_copy, dtype=torch.long).scatter_add_(1, before,
                                                                   torch.ones_like(before))
    where = torch.arange(n_copy) + counts.cumsum(1)  # symbol j after its blanks and j symbols
    sequence = torch.full((n, seq_len), blank, dtype=torch.long)
    sequence.scatter_(1, where, symbols)
    region = seq_len - n_copy - 1
    sequence[:, region] = copy
    targets = torch.full_like(sequence, IGNORE_INDEX)
    targets[:, region + 1 :] = symbols + MAD_ID_OFFSET
    answers = targets != IGNORE_INDEX
    return RecallData(sequence + MAD_ID_OFFSET, targets, answers, answers.clone())


@register_task(
    "selective-copying",
    description="MAD selective copying: emit the symbols scattered among blanks, in order, "
    "while reading blanks after a copy token (not teacher forced); causal, scored at the "
    "copy, which carries needs_attention ground truth",
)
class SelectiveCopying(RecallTask):
    """MAD's selective copying; its options (``Options`` below) are MAD's."""

    ground_truth = "needs_attention = the scored copy positions"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(24, n_copy=4),
        # measured (seed 0, one thread on 2 busy cores): attn 0.958, identity 0.072 (237 s)
        "cpu": {"seq_len": 64, "vocab_size": 16, "n_copy": 8, **MAD_SPLITS, **CPU_TRAINING},
        "paper": {"seq_len": 256, "vocab_size": 16, "n_copy": 16, **MAD_SPLITS,
                  **MAD_TRAINING},
    }

    class Options(MadOptions):
        vocab_size: int = Field(16, ge=3, description="MAD's vocabulary: the symbols, blank and "
                                                      "copy")
        n_copy: int = Field(16, ge=1, description="symbols to copy (MAD's num_tokens_to_copy)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, vocab_size, n_copy = self.registry_name, self.options.vocab_size, self.options.n_copy
        if seq_len <= 2 * n_copy + 1:
            raise ConfigError(f"task '{name}': seq_len {seq_len} must exceed twice n_copy plus "
                              f"the copy token ({2 * n_copy + 1}); raise --seq-len or lower "
                              f"n_copy")
        self.vocab_size = vocab_size + MAD_ID_OFFSET
        self.params = {"vocab_size": vocab_size, "n_copy": n_copy, **self.split_sizes()}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        p = self.params
        return selective_copying_examples(n, self.seq_len, p["n_copy"], p["vocab_size"], g)
