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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.engine import checkpoint
from harness.engine.evaluate import evaluate
from registry import ConfigError

if TYPE_CHECKING:
    from harness.engine.train import Trainer

BEST_FILE = "best.pt"


def save_best(trainer: Trainer, step: int) -> None:
    """Keep the current weights as the best so far (rank 0 writes)."""
    if trainer.dist.is_main:
        checkpoint.save(trainer.work_dir / BEST_FILE,
                        {"step": step, "config_hash": trainer.cfg.digest(),
                         "model": trainer.model.state_dict()})


def best_checkpoint_metrics(trainer: Trainer, final: dict[str, dict[str, float]]
                            ) -> dict[str, Any] | None:
    """Full valid and test metrics of the best-validation weights; the final model is left as
    it was. None when no evaluation ran or the weights are gone."""
    best = trainer.progress.best
    if best is None:
        return None
    step, task = int(best["step"]), trainer.task
    info: dict[str, Any] = {"step": step, "selected_by": f"valid {task.metric} on the "
                            f"training-time subset (--eval-batches)"}
    if step == trainer.progress.step:  # the best weights are the final ones
        return {**info, "same_as_final": True, "metrics": final}
    path = trainer.work_dir / BEST_FILE
    try:
        state = _load(path)
    except ConfigError as exc:  # the final metrics stand; say why these are missing
        return {**info, "metrics": {}, "missing": str(exc)}
    if state["step"] != step:
        return {**info, "metrics": {}, "missing": f"{path} holds step {state['step']}, not "
                                                  f"{step}"}
    batch_size = trainer.cfg.optim.batch_size
    with checkpoint.restoring(path), weights_swapped(trainer.model, state["model"]):
        metrics = {split: evaluate(trainer.model, task, split, trainer.device, batch_size)
                   for split in ("valid", "test")}
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
