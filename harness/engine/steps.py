"""What the engine does with a model and its task's batches: a training step and an evaluation.

``TrainStep`` (AdamW with warmup and cosine decay, or warmup-stable-decay, clipping,
accumulation, accounting) is the one public way to take a training step, used by the training
loop and by
``harness bench`` (which times it against a bare reference step). Given a ``LeakWatch``, the
steps it names are probed for leaks on their own batch (harness/engine/watch.py): the probes'
forwards and backwards go through the same call as the step's own, and leave its gradients,
router state and RNG as they were.

``evaluate`` runs the model over one split of its task, probed for leaks along the way when given
a ``LeakWatch``: the probes' variants run through the same forward line as the batches they
vary."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader

from harness.core.config import RunConfig
from harness.engine.data import by_length
from harness.engine.device import autocast
from harness.engine.distributed import Dist, all_reduce_sum
from harness.engine.meters.cost import CostMeter
from harness.engine.model import Model, ModelOutput
from harness.engine.watch import LeakWatch, probed_forwards
from registry import ChiaroscuroError
from routers.base import NonFiniteRouting
from tasks import Batch, Task


class TrainingDiverged(ChiaroscuroError):
    """The loss or the gradient norm became NaN or infinite."""


class StepResult(NamedTuple):
    loss: float  # mean over the micro-batches
    tokens: int  # real tokens of the global batch
    routing_stats: list[dict[str, torch.Tensor]]  # per layer, the last micro-batch's (detached)
    probe_seconds: float = 0.0  # spent on leak probes: not training time


def make_optimizer(model: Model, cfg: RunConfig) -> torch.optim.Optimizer:
    # decoupled weight decay on matrices only: norms, biases and embeddings' scales stay free
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    o = cfg.optim
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr, betas=(o.beta1, o.beta2),
    )


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to 10% of the peak."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class WarmupStableDecay:
    """Linear warm-up, the peak rate for as long as the run needs, then a linear cool-down
    over ``share`` x the steps before it, once ``cool_down`` is called (warmup-stable-decay:
    MiniCPM, Hu et al. 2024; Hägele et al. 2024 find it matches cosine at equal steps).

    Why it exists: a cosine tied to the cap keeps improving the validation loss until the cap
    because the rate keeps falling, so a run "to its plateau" on it mostly measures the anneal
    and stops at the cap. Here the plateau rule watches a run at a constant rate, where a flat
    validation loss means the model stopped learning at that rate; the cool-down then takes it
    to its low-rate optimum, and the run ends there. An object, not a closure: ``LambdaLR``
    saves its attributes in the checkpoint, so a resumed run cools down where it was."""

    def __init__(self, warmup: int, share: float):
        self.warmup, self.share = warmup, share
        self.cool_from: int | None = None  # the first step of the cool-down (0-based)
        self.cool_steps = 0
        self.reason = ""  # what started it: "plateau" or "max_steps"

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.cool_from is None or step < self.cool_from:
            return 1.0
        return max(0.0, 1.0 - (step - self.cool_from) / max(self.cool_steps, 1))

    def cool_down(self, steps_done: int, reason: str) -> None:
        """Start the cool-down at the next step: ``share`` x `steps_done` steps long."""
        self.cool_from, self.reason = steps_done, reason
        self.cool_steps = max(1, math.ceil(self.share * steps_done))

    def fits_before(self, steps_done: int, max_steps: int) -> bool:
        """Whether a cool-down started now would still end by `max_steps`, and one started a
        step later would not: the last moment the cap leaves for it."""
        return steps_done + max(1, math.ceil(self.share * (steps_done + 1))) >= max_steps

    def cooled(self, steps_done: int) -> bool:
        return self.cool_from is not None and steps_done >= self.cool_from + self.cool_steps


class TrainStep:
    """One optimiser step over a global batch, given as this process's micro-batches:
    forward under the precision policy, loss plus the routers' auxiliary loss, finiteness
    checks, backward (DDP gradient sync on the last micro-batch only), clipping, AdamW,
    schedule, and training cost accounting."""

    def __init__(self, model: Model, task: Task, cfg: RunConfig, device: torch.device,
                 seq_len: int, *, forward_model: nn.Module | None = None,
                 dist: Dist | None = None, watch: LeakWatch | None = None):
        self.model, self.task, self.cfg, self.device = model, task, cfg, device
        self.forward_model = forward_model if forward_model is not None else model
        self.dist = dist
        self.watch = watch
        self.optimizer = make_optimizer(model, cfg)
        # wsd: the training loop decides when the cool-down starts (runner/train.py)
        self.wsd = (WarmupStableDecay(cfg.optim.warmup_steps, cfg.optim.cooldown)
                    if cfg.optim.schedule == "wsd" else None)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, self.wsd or lr_lambda(cfg.optim.warmup_steps, cfg.budget.max_steps))
        self.cost = CostMeter(model, d_model=cfg.model.d_model, heads=cfg.model.heads,
                              seq_len=seq_len, causal=task.causal)

    @property
    def lr(self) -> float:
        return self.schedule.get_last_lr()[0]

    def __call__(self, micro_batch: Callable[[int], Batch], step: int) -> StepResult:
        """Take step `step` (0-based); `micro_batch(i)` gives micro-batch i of this process."""
        n_micro = self.cfg.optim.grad_accum
        distributed = self.dist is not None and self.dist.enabled
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        stats: list[dict[str, torch.Tensor]] = []
        probe_seconds = self.watch.seconds if self.watch is not None else 0.0
        for micro in range(n_micro):
            batch = micro_batch(micro).to(self.device)
            last = micro == n_micro - 1
            probed = last and self.watch is not None and self.watch.probes_step(step)
            for run in probed_forwards(self.watch, self.model, batch, probed=probed, key=step,
                                       phase="training", where=f"at training step {step + 1}"):
                # gradients sync on the last micro-batch; a probe's never leave this process
                sync = not distributed or (last and run.real)
                context = nullcontext() if sync else self.forward_model.no_sync()
                try:
                    with context:
                        loss, out = self._backward(run.batch, step, n_micro)
                except TrainingDiverged as exc:
                    if run.real:
                        raise
                    run.failed(str(exc))  # a probe's variant: a finding, not the run's end
                    continue
                run.took(out)
                if run.real:
                    self.cost.update(out, batch)
                    loss_sum += loss / n_micro
                    tokens += int(batch.padding_mask.sum())
                    stats = [{k: v.detach() for k, v in report.routing.stats.items()}
                             for report in out.layers]
        self._clip_and_step(step)
        if distributed:  # the global batch's token count, not this rank's times world
            tokens = all_reduce_sum(tokens, self.device)
        if self.watch is not None:
            probe_seconds = self.watch.seconds - probe_seconds
        return StepResult(loss_sum, tokens, stats, probe_seconds)

    def _backward(self, batch: Batch, step: int, n_micro: int) -> tuple[float, ModelOutput]:
        with autocast(self.device):
            try:
                out = self.forward_model(batch)
            except NonFiniteRouting as exc:
                raise TrainingDiverged(f"{exc} at step {step + 1}; lower --lr (now "
                                       f"{self.cfg.optim.lr}) or check the operators") from exc
            loss = self.task.loss(out.logits, batch)
            total = (loss + self.cfg.routing.aux_weight * out.aux_loss) / n_micro
        if not torch.isfinite(total):
            raise TrainingDiverged(
                f"loss became {loss.item()} at step {step + 1} (router aux "
                f"{out.aux_loss.item()}); lower --lr (now {self.cfg.optim.lr}) or check the "
                f"operators")
        total.backward()
        return loss.item(), out

    def _clip_and_step(self, step: int) -> None:
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                              clip if clip > 0 else math.inf)
        if not torch.isfinite(norm):
            raise TrainingDiverged(
                f"gradient norm became {norm.item()} at step {step + 1}; lower --lr "
                f"(now {self.cfg.optim.lr})")
        self.optimizer.step()
        self.schedule.step()

    def state_dict(self) -> dict:
        state = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
                 "train_cost": self.cost.state_dict()}
        if self.watch is not None:  # what the probes found survives a kill
            state["leak_findings"] = self.watch.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.cost.load_state_dict(state["train_cost"])
        if self.watch is not None:
            self.watch.load_state_dict(state.get("leak_findings", []))


# -- evaluation ------------------------------------------------------------------------------------


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
