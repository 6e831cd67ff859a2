"""`copy`: a synthetic causal copy task (the example plugin's task).

Each example is a random string over ``n_symbols`` symbols, a separator, and the string again:

    a_1 a_2 ... a_m  SEP  a_1 a_2 ... a_m        (m = seq_len // 2)

trained as language modelling (next-token prediction, causal), with only the copy scored: the
first half is random and cannot be predicted. Predicting a_i in the copy needs the token m + 1
positions back, so a short convolution alone cannot solve it and attention can: a small task on
which routing between the two matters.

Data are generated in memory from the run's seed (one generator per split), so the task needs
no files and no download. Metric: token accuracy on the copy (higher is better); the meter also
reports loss, perplexity and the majority-symbol baseline.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor

from registry import ConfigError
from tasks import Batch, LanguageModelingTask
from tasks.base import IGNORE_INDEX, SPLITS, PerplexityMeter

PAD, SEP, FIRST_SYMBOL = 0, 1, 2


class CopyMeter(PerplexityMeter):
    """Loss and perplexity on the scored (copy) tokens, plus their accuracy and the accuracy of
    always predicting the split's most common symbol."""

    def __init__(self) -> None:
        super().__init__()
        self.correct = 0
        self.symbols: Counter[int] = Counter()

    def update(self, logits: Tensor, batch: Batch) -> None:
        super().update(logits, batch)
        scored = batch.targets != IGNORE_INDEX
        self.correct += int(((logits.argmax(-1) == batch.targets) & scored).sum())
        self.symbols.update(batch.targets[scored].tolist())

    def compute(self) -> dict[str, float]:
        out = super().compute()
        n = max(self.tokens, 1)
        out["accuracy"] = self.correct / n
        out["majority_accuracy"] = self.symbols.most_common(1)[0][1] / n if self.symbols else 0.0
        return out


class CopyTask(LanguageModelingTask):
    """Copy a random string after a separator; causal; only the copy is scored."""

    causal = True
    metric = "accuracy"
    higher_is_better = True
    pad_id = PAD
    # What each harness preset sets for this task (seq_len and task options).
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": {"seq_len": 16, "n_train": 256, "n_eval": 64},
        "cpu": {"seq_len": 64, "n_train": 20000, "n_eval": 512},
        "paper": {"seq_len": 256, "n_train": 100000, "n_eval": 2000},
    }

    class Options(LanguageModelingTask.Options):
        # --task-option n_symbols=12 and the presets' keys; the base class validates them (type,
        # bound, unknown keys) and keeps the result as self.options
        n_symbols: int = Field(8, ge=1, description="alphabet size")
        n_train: int = Field(20_000, ge=1, description="examples in the train split")
        n_eval: int = Field(512, ge=1, description="examples in each of valid and test")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)  # data_dir, seed, cache_dir and the options
        if seq_len < 2:
            raise ConfigError(f"task 'copy' needs --seq-len >= 2, got {seq_len}")
        self.n_symbols = self.options.n_symbols
        self.n_train, self.n_eval = self.options.n_train, self.options.n_eval
        self.vocab_size = FIRST_SYMBOL + self.n_symbols
        self.half = seq_len // 2  # m: the string and its copy, with SEP, fill 2m + 1 ids

    def load_split(self, split: str) -> list[tuple[Tensor, int]]:
        n = self.n_train if split == "train" else self.n_eval
        generator = torch.Generator().manual_seed(1000 * self.seed + SPLITS.index(split))
        strings = torch.randint(FIRST_SYMBOL, self.vocab_size, (n, self.half), generator=generator)
        sep = torch.full((n, 1), SEP, dtype=torch.long)
        windows = torch.cat([strings, sep, strings], dim=1)  # (n, 2m + 1)
        # (window, n_context): the first m targets (the rest of the string, then SEP) are
        # unpredictable and not scored; the last m (the copy) are.
        return [(window, self.half) for window in windows]

    def meter(self, split: str) -> CopyMeter:
        return CopyMeter()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "source": "generated in memory from the seed (chiaroscuro-example-plugin)",
            "n_symbols": self.n_symbols,
            "examples": {"train": self.n_train, "valid": self.n_eval, "test": self.n_eval},
            "scored_tokens_per_example": self.half,
        }
