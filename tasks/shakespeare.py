"""Shakespeare's plays and poems as a language-modelling corpus, split by work.

``../shared/data/shakespeare`` holds the Project Gutenberg editions as three files:
``shakespeare.{train,valid,test}.txt`` (35 works for training, 742,650 words; 4 for validation,
91,923; 3 for test, 70,445). Read with the WikiText reader (tasks/wikitext.py): every line is
scored once with one ``<eos>``, word perplexity counts whitespace words plus one per line, and
a byte-level BPE is trained on the training split only. There is no hub copy: pass
``--data-dir``.

Its ``cpu`` preset is this harness's language-modelling setting where mixing matters on a CPU
core: a near-character BPE (300 ids, so the head is a small share of the FLOPs), 4 layers
(the paper's depth), d_model 128, context 256, batch 8, full validation every 250 steps, and
a budget every arm can finish: warmup-stable-decay (the peak rate until the plateau rule fires,
then a cool-down of a fifth of the steps so far) under a cap of 24,000 steps (49M training
tokens). The plateau (harness/core/record_sections.py, ``at_plateau``): the last 4
evaluations improved the best validation loss by less than 1%. With no token mixing
(`single identity`) a model plateaus near validation perplexity 19.7 by step 2,000; attention
at 1e-3 (its best rate on this schedule) plateaus at step 6,500 (13.3M tokens) and cools down
to 7.3 (results/README.md). A cosine schedule tied to the cap kept lowering the validation
loss until the cap, so "to the plateau" on it measured the anneal: hence WSD.

Data-limited: option ``train_lines`` trains on the train split's first lines only; the first
four works (All's Well, Antony and Cleopatra, As You Like It, The Comedy of Errors) end at
line 19,415, 12% of the words. There attention reaches its best validation in ~16 minutes of
one core and then overfits, 8.5 token perplexity below no mixing (3 seeds, tuned):
sweeps/shakespeare_data_limited.toml is that setting, results/README.md its numbers.
"""

from __future__ import annotations

from typing import Any, ClassVar

from . import register_task
from .wikitext import _WikiText

_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"seq_len": 64, "vocab_size": 300},
    "cpu": {
        "seq_len": 256, "vocab_size": 300,
        "model": {"layers": 4, "d_model": 128, "heads": 4},
        "optim": {"batch_size": 8, "lr": 1e-3, "warmup_steps": 100, "schedule": "wsd"},
        "budget": {"max_steps": 24000, "eval_every": 250, "eval_batches": None,
                   "patience": 4, "min_delta": 0.01},
    },
    "paper": {"seq_len": 512},
}


@register_task(
    "shakespeare", description="Shakespeare's works, language modelling (causal), split by "
                               "work; shakespeare.*.txt files",
)
class Shakespeare(_WikiText):
    title = "Shakespeare"
    hub_config = ""
    folders = ("shakespeare",)
    file_stem = "shakespeare"
    extensions = ("txt",)
    presets: ClassVar[dict[str, dict[str, Any]]] = _PRESETS


__all__ = ["Shakespeare"]
