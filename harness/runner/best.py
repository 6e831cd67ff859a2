"""The best-validation checkpoint: its weights kept beside the last checkpoint, and its test
metrics recorded next to the final checkpoint's.

Which checkpoint is evaluated changes the number reported (a known reproduction trap in the
Long Range Arena code), so a record holds both: ``metrics`` (the final weights, what the board
ranks by) and ``best_checkpoint`` (the weights of the evaluation with the best validation
metric on the training-time subset). The weights go to ``best.pt`` in the work directory when
an evaluation improves, so they survive a resume like every other file there.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness.engine import checkpoint
from registry import ConfigError

BEST_FILE = "best.pt"


def save_best(work_dir: Path, step: int, config_hash: str, model: torch.nn.Module) -> None:
    """Keep the current weights as the best so far."""
    checkpoint.save(work_dir / BEST_FILE,
                    {"step": step, "config_hash": config_hash, "model": model.state_dict()})


def best_checkpoint_metrics(model: torch.nn.Module, evaluate_splits: Callable[[], dict],
                            work_dir: Path, best: dict[str, Any] | None, final_step: int,
                            final: dict[str, dict[str, float]], metric: str,
                            eval_batches: int | None) -> dict[str, Any] | None:
    """Full valid and test metrics (``evaluate_splits()``) of the best-validation weights
    (``best``: the history entry of the best evaluation, chosen on the training-time
    evaluations: the full valid split, or its first `eval_batches` batches); the model is left
    as it was. None when no evaluation ran."""
    if best is None:
        return None
    step = int(best["step"])
    seen = ("the full split" if eval_batches is None
            else f"its first {eval_batches} batches (--eval-batches)")
    info: dict[str, Any] = {"step": step,
                            "selected_by": f"valid {metric} at training time, on {seen}"}
    if step == final_step:  # the best weights are the final ones
        return {**info, "same_as_final": True, "metrics": final}
    path = work_dir / BEST_FILE
    try:
        state = _load(path)
    except ConfigError as exc:  # the final metrics stand; say why these are missing
        return {**info, "metrics": {}, "missing": str(exc)}
    if state["step"] != step:
        return {**info, "metrics": {}, "missing": f"{path} holds step {state['step']}, not "
                                                  f"{step}"}
    with checkpoint.restoring(path), weights_swapped(model, state["model"]):
        metrics = evaluate_splits()
    return {**info, "same_as_final": False, "metrics": metrics}


@contextmanager
def weights_swapped(model: torch.nn.Module, state: dict[str, Any]) -> Iterator[None]:
    """Run the block with `state` loaded, then put the model's own weights back exactly.

    The copy keeps the state dict's ``_metadata`` (each module's version): a module that
    migrates older checkpoints in ``_load_from_state_dict`` reads it, and a plain dict of
    tensors would be taken for a version-1 checkpoint (the causal dct then transposed its
    spectrum: a size mismatch, or silently wrong weights where d_model == seq_len)."""
    own = copy.deepcopy(model.state_dict())
    model.load_state_dict(state)
    try:
        yield
    finally:
        model.load_state_dict(own)


def _load(path: Path) -> dict[str, Any]:
    """best.pt, checked like a checkpoint (weights only, named when unreadable); it holds the
    model and its step, not the optimiser (nothing resumes from it)."""
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file must say which file
        raise checkpoint.unreadable(path, exc) from exc
    if not (isinstance(state, dict) and isinstance(state.get("step"), int)
            and isinstance(state.get("model"), dict)):
        raise checkpoint.unreadable(path, "not a best-validation checkpoint (step, model)")
    return state
