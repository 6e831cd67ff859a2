"""Evaluation of a model on one split of its task."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.model import Model
from harness.measure.cost import CostMeter
from tasks import Task


@torch.no_grad()
def evaluate(
    model: Model,
    task: Task,
    split: str,
    device: torch.device,
    batch_size: int,
    max_batches: int | None = None,
    cost: CostMeter | None = None,
) -> dict[str, float]:
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
            logits, _ = model(batch)
        meter.update(logits, batch)
        if cost is not None:
            cost.update(int(batch.padding_mask.sum()), batch.tokens.shape[1], len(batch))
    model.train(was_training)
    return meter.compute()


def better(task: Task, new: dict[str, float], old: dict[str, float]) -> bool:
    """Whether `new` improves on `old` in the task's own metric."""
    if task.higher_is_better:
        return new[task.metric] > old[task.metric]
    return new[task.metric] < old[task.metric]
