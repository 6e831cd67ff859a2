"""The presets: the harness part of each (model, optimiser, budget), as plain data.

Kept apart from the pydantic models (harness/core/config.py) so that ``--help`` can show
each preset's values without importing pydantic. The task's own ``presets[name]`` adds task
options and seq_len on top (see ``config.resolve``).
"""

from __future__ import annotations

from typing import Any

from harness.core.options import ATTN_FRACTION

PRESETS = ("smoke", "cpu", "paper", "paper-400m")

# Harness part of each preset. The task's own `presets[name]` adds task options and seq_len.
HARNESS_PRESETS: dict[str, dict[str, Any]] = {
    # seconds on every task: for tests and `check`. The final evaluation reads the first 8
    # batches of each split, not the full ones (WikiText-2's test split alone took minutes);
    # the run summary and the record's flags say so.
    "smoke": {
        "threads": 1,
        "model": {"layers": 1, "d_model": 32, "heads": 2},
        "optim": {"batch_size": 8, "warmup_steps": 2},
        "budget": {"max_steps": 6, "eval_every": 3, "eval_batches": 2,
                   "final_eval_batches": 8},
    },
    # the default without a GPU: about two minutes on 2 cores. One thread: for a model this
    # small two threads gain ~20% on an idle machine but lose up to 10x when another process
    # holds a core (OpenMP workers wait on each other), so one thread is the robust choice.
    # 1000 steps: the committed ListOps rows (results/runs) were trained with exactly this, so
    # the README's main command reproduces one of them and lands in its row (a test guards it).
    "cpu": {
        "threads": 1,
        "model": {"layers": 2, "d_model": 64, "heads": 4},
        "optim": {"batch_size": 32, "lr": 2e-3, "warmup_steps": 50},
        "budget": {"max_steps": 1000, "eval_every": 250, "eval_batches": 8},
    },
    # the CHIAR-Former setting: 4 layers (the paper's stated depth); width and heads our choice
    "paper": {
        "model": {"layers": 4, "d_model": 512, "heads": 8},
        "optim": {"batch_size": 32, "lr": 5e-4, "warmup_steps": 1000},
        "budget": {"max_steps": 50000, "eval_every": 1000, "eval_batches": 50},
    },
    # the paper's 400M-parameter model; every number here is ours (PAPER_ASSUMPTIONS)
    "paper-400m": {
        "model": {"layers": 24, "d_model": 1152, "heads": 18},
        "data": {"seq_len": 1024},
        "optim": {"batch_size": 32, "lr": 3e-4, "warmup_steps": 2000},
        "budget": {"max_steps": 50000, "eval_every": 2000, "eval_batches": 50},
    },
}

# What the paper states and what the presets above had to assume (shown by `run --dry-run`
# and on the claims page).
PAPER_ASSUMPTIONS: dict[str, list[str]] = {
    "paper": [
        "stated: 4 layers, WikiText-103, DCT+attention at 62.5% fewer attention FLOPs "
        f"(--attn-fraction {ATTN_FRACTION})",
        "assumed: d_model 512, 8 heads, MLP ratio 4, context 512 tokens, byte-level BPE "
        "(8192), batch 32, AdamW lr 5e-4 with 1000 warm-up steps, 50k steps",
    ],
    "paper-400m": [
        "stated: about 400M parameters, WikiText-103 test perplexity, 35-40% fewer FLOPs",
        "assumed: 24 layers, d_model 1152, 18 heads (64 per head), context 1024, byte-level "
        "BPE (8192), batch 32, AdamW lr 3e-4 with 2000 warm-up steps, 50k steps (1.6B tokens)",
    ],
}
