"""`memorization`: MAD's memorization, a fixed key-to-value map learnt into the weights.

One map, drawn once from ``data_seed``, sends each of the (vocab_size - 1) // 2 key ids to a
distinct value id; every sequence is ``seq_len / 2`` keys drawn uniformly, each followed by an
insert token at which the model must emit the key's value (not teacher forced: values never
appear in the input)::

    k7 INS k2 INS k7 INS ...                    (targets at INS: map[k7] map[k2] map[k7])

Nothing in the context answers a query: the value is in the weights, and the model needs only
the token just before (a one-token shift), no lookup far back. So the task has no per-token
ground truth (``needs_attention`` is None) and the oracle router has nothing to route by.
MAD trains on 256 sequences and tests on others over the same map.

Ids (MAD's shifted by one, tasks/mad_common.py): keys 1 .. K, values K + 1 .. vocab_size - 1,
insert token vocab_size, with K = (vocab_size - 1) // 2.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from registry import ConfigError
from tasks import register_task

from .base import IGNORE_INDEX
from .mad_common import CPU_TRAINING, MAD_ID_OFFSET, MAD_TRAINING, smoke
from .mad_options import MadOptions
from .recall import RecallData, RecallTask


def memorization_examples(n: int, seq_len: int, vocab_size: int,
                          g: torch.Generator) -> RecallData:
    """The map, then ``n`` sequences of ``seq_len`` inputs (module docstring)."""
    n_keys = (vocab_size - 1) // 2
    n_values = vocab_size - 1 - n_keys
    value_of = torch.randperm(n_values, generator=g)[:n_keys] + n_keys  # one-to-one
    keys = torch.randint(0, n_keys, (n, seq_len // 2), generator=g)
    inputs = torch.full((n, seq_len // 2, 2), vocab_size - 1, dtype=torch.long)
    inputs[..., 0] = keys
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[..., 1] = value_of[keys] + MAD_ID_OFFSET
    targets = targets.flatten(1)
    return RecallData(inputs.flatten(1) + MAD_ID_OFFSET, targets, targets != IGNORE_INDEX, None)


@register_task(
    "memorization",
    description="MAD memorization: emit a fixed key-to-value map's value after each key (not "
    "teacher forced); causal; no per-token ground truth (the answer is in the weights)",
)
class Memorization(RecallTask):
    """MAD's memorization; its options (``Options`` below) are MAD's (256 training sequences,
    1,280 to evaluate)."""

    ground_truth = "none: the value is a fixed function of the previous token (in the weights)"
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "smoke": smoke(16, vocab_size=64),
        # MAD's baseline data; measured (seed 0, 2 busy cores): attn 1.000, identity 0.008
        # (162 s): the key is the previous token, which identity cannot see
        "cpu": {"seq_len": 32, "vocab_size": 256, "n_train": 256, "n_valid": 1_280,
                "n_test": 1_280, **CPU_TRAINING},
        "paper": {"seq_len": 32, "vocab_size": 256, "n_train": 256, "n_valid": 1_280,
                  "n_test": 1_280, **MAD_TRAINING,
                  # MAD: 200 epochs of 256 sequences at batch 128
                  "budget": {"max_steps": 400, "eval_every": 50}},
    }

    class Options(MadOptions):
        vocab_size: int = Field(256, ge=4, description="MAD's vocabulary: keys, values and the "
                                                       "insert token")
        n_train: int = Field(256, ge=1, description="training sequences (MAD's)")

    def __init__(self, seq_len: int, **kwargs: Any):
        super().__init__(seq_len, **kwargs)
        name, vocab_size = self.registry_name, self.options.vocab_size
        if seq_len < 2 or seq_len % 2:
            raise ConfigError(f"task '{name}': its sequences are (key, insert) pairs; --seq-len "
                              f"must be even and >= 2, got {seq_len}")
        self.vocab_size = vocab_size + MAD_ID_OFFSET
        self.params = {"vocab_size": vocab_size, **self.split_sizes()}

    def generate(self, n: int, g: torch.Generator) -> RecallData:
        return memorization_examples(n, self.seq_len, self.params["vocab_size"], g)
