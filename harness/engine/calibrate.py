"""Router calibration before step 1.

A router with running state (the quantile thresholds of ``entropy`` and ``random``) would
otherwise decide its first training batch with thresholds taken from that same batch, so a
token's route would depend on later tokens and on other examples. Instead, before step 1 the
model runs a few batches of the *validation* split (never trained on, at any step) with every
router in calibration mode; training then decides each batch with thresholds from earlier
data only, and moves them afterwards (routers/entropy.py). A resumed run does not calibrate
again: its thresholds come from the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.data import DataLoader

from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.model import Model
from tasks import Batch, Task

CALIBRATION_BATCHES = 4


@contextmanager
def calibrating(model: Model) -> Iterator[None]:
    """Eval mode (no dropout), no autograd, every router in calibration mode."""
    was_training = model.training
    # a plugin router need not subclass Router: without calibrate() it has nothing to set
    routers = [layer.router for layer in model.mixing_layers if hasattr(layer.router, "calibrate")]
    model.eval()
    for router in routers:
        router.calibrate(True)
    try:
        with torch.no_grad():
            yield
    finally:
        for router in routers:
            router.calibrate(False)
        model.train(was_training)


def calibrate_on(model: Model, batches: list[Batch], device: torch.device) -> None:
    with calibrating(model), torch.random.fork_rng(devices=[]):
        for batch in batches:
            with autocast(device):
                model(batch.to(device))


def calibrate_routers(model: Model, task: Task, device: torch.device,
                      batch_size: int) -> str | None:
    """Calibrate on the first CALIBRATION_BATCHES validation batches; returns a log line, or
    None when no router keeps calibrated state."""
    if not any(hasattr(layer.router, "calibrated") for layer in model.mixing_layers):
        return None
    with torch.random.fork_rng(devices=[]):  # a DataLoader draws a seed: keep training's RNG
        loader = DataLoader(by_length(task.dataset("valid")), batch_size=batch_size,
                            shuffle=False, collate_fn=task.collate)
        batches = [b for _, b in zip(range(CALIBRATION_BATCHES), loader, strict=False)]
    calibrate_on(model, batches, device)
    return (f"router calibrated before step 1 on {len(batches)} validation batches "
            f"(held out: no training step is decided by its own batch)")
