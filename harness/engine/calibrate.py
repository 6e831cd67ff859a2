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

from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.meters.cost import attention_flop_fraction
from harness.engine.model import Model
from tasks import Batch, Task

CALIBRATION_BATCHES = 4
SEARCH_STEPS = 10  # bisection steps of the FLOP-matched share: resolution 2**-10


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


def calibration_batches(task: Task, batch_size: int) -> list[Batch]:
    """CALIBRATION_BATCHES validation batches formed as evaluation forms them (length order),
    evenly spaced over the split: short, middle and long sequences alike."""
    valid = by_length(task.dataset("valid"))
    n_batches = max(1, -(-len(valid) // batch_size))
    starts = sorted({round(i * (n_batches - 1) / max(CALIBRATION_BATCHES - 1, 1)) * batch_size
                     for i in range(min(CALIBRATION_BATCHES, n_batches))})
    return [task.collate([valid[j] for j in range(s, min(s + batch_size, len(valid)))])
            for s in starts]


def calibrate_routers(model: Model, task: Task, device: torch.device,
                      batch_size: int) -> str | None:
    """Calibrate on validation batches (``calibration_batches``); returns a log line, or None
    when no router keeps calibrated state."""
    if not any(hasattr(layer.router, "calibrated") for layer in model.mixing_layers):
        return None
    batches = calibration_batches(task, batch_size)
    calibrate_on(model, batches, device)
    line = (f"router calibrated before step 1 on {len(batches)} validation batches "
            f"(held out: no training step is decided by its own batch)")
    matched = match_flops(model, batches, device)
    return line + (f"; {matched}" if matched else "")


def spent_flop_fraction(model: Model, batches: list[Batch], device: torch.device) -> float:
    """FLOPs the top operator executed / FLOPs it costs on every token, over the batches, in
    eval mode: the definition of the record's ``attention_flop_fraction``."""
    costs = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            with autocast(device):
                costs += [report.cost for report in model(batch.to(device)).layers]
    model.train(was_training)
    return attention_flop_fraction(costs)


def match_flops(model: Model, batches: list[Batch], device: torch.device) -> str | None:
    """For routers asked to match attention FLOPs (``random`` with match=flops): bisect the
    top band's token share until the calibration batches spend the target fraction."""
    routers = [layer.router for layer in model.mixing_layers
               if getattr(layer.router, "flop_fraction", None) is not None]
    if not routers:
        return None
    target = routers[0].flop_fraction

    def spend(share: float) -> float:
        for router in routers:
            router.set_top_share(share)
        calibrate_on(model, batches, device)  # thresholds for the new bands
        return spent_flop_fraction(model, batches, device)

    lo, hi = 0.0, 1.0
    for _ in range(SEARCH_STEPS):  # the spend grows with the share
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if spend(mid) < target else (lo, mid)
    share = (lo + hi) / 2
    reached = spend(share)
    return (f"matched on attention FLOPs: the top band takes {share:.3f} of tokens and spends "
            f"{reached:.3f} of full attention (target {target:.3f}) on those batches")
