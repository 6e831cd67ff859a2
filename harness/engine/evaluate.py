"""Evaluation of a model on one split of its task, probed for leaks along the way when given a
``LeakWatch`` (harness/engine/watch.py): the probes' variants run through the same forward
line as the batches they vary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.model import Model, ModelOutput
from harness.engine.watch import LeakWatch, probed_forwards
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
    watch: LeakWatch | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """The task's metrics on `split` (the first `max_batches` batches, or all); each of
    `meters` also sees every forward's output. With a `watch`, a random sample of the batches
    is probed (the probes' outputs count nowhere). `progress(done, total)` is told each batch
    done (a full split of a large task takes minutes: harness/runner/console.py shows it)."""
    was_training = model.training
    model.eval()
    meter = task.meter(split)
    loader = DataLoader(by_length(task.dataset(split)), batch_size=batch_size, shuffle=False,
                        collate_fn=task.collate)
    n_batches = len(loader) if max_batches is None else min(len(loader), max_batches)
    sample = watch.evaluation_sample(n_batches) if watch is not None else frozenset()
    for i, batch in enumerate(loader):
        if i >= n_batches:
            break
        for run in probed_forwards(watch, model, batch.to(device), probed=i in sample, key=i,
                                   phase=f"{split} evaluation",
                                   where=f"in batch {i + 1} of {n_batches} of the {split} "
                                         f"evaluation"):
            with autocast(device):
                out = model(run.batch)
            run.took(out)
            if run.real:
                meter.update(out.logits, run.batch)
                for m in meters:
                    m.update(out, run.batch)
        if progress is not None:
            progress(i + 1, n_batches)
    model.train(was_training)
    return meter.compute()


def better(task: Task, new: dict[str, float], old: dict[str, float]) -> bool:
    """Whether `new` improves on `old` in the task's own metric."""
    if task.higher_is_better:
        return new[task.metric] > old[task.metric]
    return new[task.metric] < old[task.metric]
