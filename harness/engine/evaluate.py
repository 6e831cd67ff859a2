"""Evaluation of a model on one split of its task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.model import Model, ModelOutput
from tasks import Batch, Task


class Meter(Protocol):
    """Anything that accumulates what a forward measured (harness/engine/meters)."""

    def update(self, out: ModelOutput, batch: Batch) -> Any: ...


@torch.no_grad()
def evaluate(
    model: Model,
    task: Task,
    split: str,
    device: torch.device,
    batch_size: int,
    max_batches: int | None = None,
    meters: Sequence[Meter] = (),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """The task's metrics on `split` (the first `max_batches` batches, or all); each of
    `meters` also sees every forward's output; `progress(done, total)` is told each batch done
    (a full split of a large task takes minutes: harness/runner/console.py shows it)."""
    was_training = model.training
    model.eval()
    meter = task.meter(split)
    loader = DataLoader(by_length(task.dataset(split)), batch_size=batch_size, shuffle=False,
                        collate_fn=task.collate)
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        batch = batch.to(device)
        with autocast(device):
            out = model(batch)
        meter.update(out.logits, batch)
        for m in meters:
            m.update(out, batch)
        if progress is not None:
            progress(i + 1, len(loader) if max_batches is None else min(len(loader), max_batches))
    model.train(was_training)
    return meter.compute()


def better(task: Task, new: dict[str, float], old: dict[str, float]) -> bool:
    """Whether `new` improves on `old` in the task's own metric."""
    if task.higher_is_better:
        return new[task.metric] > old[task.metric]
    return new[task.metric] < old[task.metric]
