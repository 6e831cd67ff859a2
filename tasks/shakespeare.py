"""Shakespeare's plays and poems as a language-modelling corpus, split by work.

``../shared/data/shakespeare`` holds the Project Gutenberg editions as three files:
``shakespeare.{train,valid,test}.txt`` (35 works for training, 742,650 words; 4 for validation,
91,923; 3 for test, 70,445). Read with the WikiText reader (tasks/wikitext.py): every line is
scored once with one ``<eos>``, word perplexity counts whitespace words plus one per line, and
a byte-level BPE is trained on the training split only. There is no hub copy: pass
``--data-dir``.

Its ``cpu`` preset is this harness's language-modelling setting where mixing matters on a CPU
core: a near-character BPE (300 ids, so the head is a small share of the FLOPs), 4 layers
(the paper's depth), d_model 128, context 256, batch 8, cosine schedule over a cap of 4,000
steps (8.2M training tokens), full validation every 250 steps. The plateau (harness/core/
record_sections.py, ``plateau_gain``): the last quarter of training (4 evaluations) improved
the best validation perplexity by less than 1%; a run stops there, or at the cap, and says
whether it got there. With no token mixing (`single identity`) a model plateaus near
validation perplexity 19.6; attention passes 10 by step 2,200 (results/README.md).

Data-limited: option ``train_lines`` trains on the train split's first lines only; the first
four works (All's Well, Antony and Cleopatra, As You Like It, The Comedy of Errors) end at
line 19,415, 12% of the words (results/README.md says what it does to the plateau).
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
        "optim": {"batch_size": 8, "lr": 2e-3, "warmup_steps": 100},
        "budget": {"max_steps": 4000, "eval_every": 250, "eval_batches": None,
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
