"""The presets: the harness part of each (model, optimiser, budget), as plain data.

Kept apart from the pydantic models (harness/engine/config.py) so that ``--help`` can show
each preset's values without importing pydantic. The task's own ``presets[name]`` adds task
options and seq_len on top (see ``config.resolve``).
"""

from __future__ import annotations

from typing import Any

PRESETS = ("smoke", "cpu", "paper")

# Harness part of each preset. The task's own `presets[name]` adds task options and seq_len.
HARNESS_PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests and `check`
    "smoke": {
        "threads": 1,
        "model": {"layers": 1, "d_model": 32, "heads": 2},
        "optim": {"batch_size": 8, "warmup_steps": 2},
        "budget": {"max_steps": 6, "eval_every": 3, "eval_batches": 2},
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
}
