"""What the MAD suite's tasks (Poli et al. 2024, "Mechanistic Design and Scaling of Hybrid
Architectures"; MAD-lab's generators) share: their token ids and MAD's training setting.

Token ids: MAD's ids shifted up by one, so that id 0 stays the harness's padding (never used:
every MAD sequence has a fixed length); a task's ``vocab_size`` option is MAD's, and the model
sees ``vocab_size + 1`` ids.

Training: MAD trains each setting for 200 epochs over 12,800 examples at batch 128 (20,000
steps) with AdamW, no weight decay and a cosine schedule, and sweeps lr x weight decay over
``MAD_LRS`` x ``MAD_WEIGHT_DECAYS`` (harness/report/mad_score.py turns such a sweep into MAD's
score). Its model: 2 blocks of (mixer, SwiGLU) at width 128, 16 attention heads with rotary
embeddings; the harness's `paper` preset for these tasks is that width, depth and head count
with its own blocks (GELU MLP, learned positions). MAD has no validation split (it picks on
test); here valid and test are separate draws of MAD's test-set size.

Accuracy: MAD reports torchmetrics' macro-averaged accuracy over the scored tokens; every
task here reports it as ``macro_accuracy`` beside the harness's ``accuracy`` (tasks/recall.py).
"""

from __future__ import annotations

from typing import Any

# the suite, under MAD's names (registered in tasks/mad_*.py)
MAD_TASKS = ("in-context-recall", "fuzzy-in-context-recall", "noisy-in-context-recall",
             "selective-copying", "compression", "memorization")
MAD_ID_OFFSET = 1  # MAD's token id t is t + 1 here: 0 is the harness's padding
MAD_LRS = (1e-4, 5e-4, 1e-3)
MAD_WEIGHT_DECAYS = (0.0, 0.1)

# MAD's split sizes: its baseline's training set and its test set (twice: valid and test)
MAD_SPLITS: dict[str, int] = {"n_train": 12_800, "n_valid": 1_280, "n_test": 1_280}

# MAD's model and schedule, as the `paper` preset's model, optim and budget sections
MAD_TRAINING: dict[str, Any] = {
    "model": {"layers": 2, "d_model": 128, "heads": 16},
    "optim": {"batch_size": 128, "lr": 5e-4, "weight_decay": 0.0, "warmup_steps": 0},
    "budget": {"max_steps": 20_000, "eval_every": 1_000},
}

# The cpu presets' model and schedule: small enough for <= 5 minutes a run on one core
CPU_TRAINING: dict[str, Any] = {
    "model": {"layers": 2, "d_model": 64, "heads": 4},
    "optim": {"batch_size": 64, "lr": 3e-3, "weight_decay": 0.0, "warmup_steps": 100},
    "budget": {"max_steps": 1000, "eval_every": 200},
}


def smoke(seq_len: int, **task: Any) -> dict[str, Any]:
    """A smoke preset entry: a few examples of a short sequence."""
    return {"seq_len": seq_len, "n_train": 256, "n_valid": 64, "n_test": 64, **task}
