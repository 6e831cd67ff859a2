"""Training and evaluation of one router x operators x task combination."""

from __future__ import annotations

import math
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from operators import OPERATORS
from registry import ChiaroscuroError, ConfigError
from routers import ROUTERS
from tasks import TASKS, Task

from . import records
from .config import RunConfig
from .cost import CostMeter
from .model import Model, count_parameters

DEFAULT_SEQ_LEN = 256
CHECK_SEQ_LEN = 256  # causality is judged on sequences up to this long before training


class TrainingDiverged(ChiaroscuroError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} asked for CUDA, but torch sees no GPU; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_task(cfg: RunConfig) -> Task:
    task_cls = TASKS.get(cfg.data.task)
    return task_cls(
        seq_len_of(cfg),
        data_dir=cfg.data.data_dir,
        seed=cfg.seed,
        cache_dir=cfg.data.cache_dir,
        **cfg.data.task_options,
    )


def seq_len_of(cfg: RunConfig) -> int:
    return cfg.data.seq_len or DEFAULT_SEQ_LEN


def leak_flags(cfg: RunConfig, causal_task: bool) -> list[str]:
    """Why this combination may leak (future tokens or other examples), from declarations.
    Empty for an honest combination."""
    reasons = []
    router = ROUTERS.get(cfg.routing.router)
    if getattr(router, "leaky", False) or not router.batch_independent:
        reasons.append(f"router '{cfg.routing.router}' is a leaky variant")
    elif causal_task and not router.causal:
        reasons.append(f"router '{cfg.routing.router}' is not causal")
    if causal_task:
        for name in cfg.routing.ops:
            if getattr(OPERATORS.get(name), "leaky", False):
                reasons.append(f"operator '{name}' is a leaky variant (sees future tokens)")
    return reasons


def refuse_leaks(cfg: RunConfig, causal_task: bool) -> list[str]:
    reasons = leak_flags(cfg, causal_task)
    if reasons and not cfg.allow_leaky:
        raise ConfigError(
            f"{'; '.join(reasons)} on task '{cfg.data.task}': its results would not be honest. "
            f"Use an honest variant, or pass --allow-leaky to run it anyway (the record is then "
            f"marked leaky)"
        )
    return reasons


def guard_causal_task(cfg: RunConfig, task: Task, seq_len: int,
                      log: Callable[[str], None]) -> list[str]:
    """Before training on a causal task, check empirically that nothing sees the future or the
    rest of the batch: declarations can be wrong, plugins included. Refuse a leaking
    combination unless --allow-leaky, in which case the record is flagged."""
    from .checks import run_checks

    results = run_checks(cfg, task, min(seq_len, CHECK_SEQ_LEN),
                         which=("causality", "batch independence"), seed=cfg.seed)
    failed = [r for r in results if not r.passed]
    for r in results:
        log(f"check {r.name}: {'pass' if r.passed else 'FAIL'} ({r.detail})")
    if failed and not cfg.allow_leaky:
        raise ConfigError(
            "refusing to train a leaking combination: "
            + "; ".join(f"check '{r.name}' failed: {r.detail}" for r in failed)
            + ". Fix the component, or pass --allow-leaky (the record is then marked leaky)"
        )
    return [f"leaky: check '{r.name}' failed ({r.detail})" for r in failed]


def make_optimizer(model: Model, cfg: RunConfig) -> torch.optim.Optimizer:
    # decoupled weight decay on matrices only: norms, biases and embeddings' scales stay free
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    o = cfg.optim
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0}],
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


def batches_forever(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


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
    loader = DataLoader(task.dataset(split), batch_size=batch_size, shuffle=False,
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


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(cfg: RunConfig, *, log: Callable[[str], None] = print) -> records.RunRecord:
    """Train, evaluate on validation during training and on test at the end, and return the
    result record (the caller writes it)."""
    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    flags = [f"leaky: {r}" for r in refuse_leaks(cfg, task.causal)]
    if cfg.preset:
        flags.append(f"preset:{cfg.preset}")
    seq_len = seq_len_of(cfg)
    if task.causal:
        flags += guard_causal_task(cfg, task, seq_len, log)

    seed_everything(cfg.seed)
    model = Model(cfg, task, seq_len).to(device)
    n_params = count_parameters(model)
    log(f"model: {cfg.model.layers} layers, d_model {cfg.model.d_model}, {n_params:,} parameters; "
        f"operators by cost: {', '.join(model.op_names)}; router: {cfg.routing.router}; "
        f"device: {device}")

    train_set = task.dataset("train")
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(train_set, batch_size=cfg.optim.batch_size, shuffle=True,
                        drop_last=len(train_set) > cfg.optim.batch_size,
                        collate_fn=task.collate, generator=generator)
    optimizer = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.optim.warmup_steps, cfg.budget.max_steps))
    cost_kwargs = dict(d_model=cfg.model.d_model, heads=cfg.model.heads, seq_len=seq_len,
                       causal=task.causal)
    train_cost = CostMeter(model, **cost_kwargs)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    train_tokens, train_seconds, step = 0, 0.0, 0
    stop_reason = "max_steps"
    model.train()
    batches = batches_forever(loader)
    bar = tqdm(total=cfg.budget.max_steps, desc=f"{cfg.data.task} {cfg.routing.router}",
               unit="step", file=sys.stderr, dynamic_ncols=True, disable=None)
    for step in range(1, cfg.budget.max_steps + 1):
        t0 = time.perf_counter()
        batch = next(batches).to(device)
        with autocast(device):
            logits, aux = model(batch)
            loss = task.loss(logits, batch)
            total = loss + cfg.routing.aux_weight * aux
        if not torch.isfinite(total):
            raise TrainingDiverged(
                f"loss became {total.item()} at step {step} (task loss {loss.item()}, router "
                f"aux {aux.item()}); lower --lr (now {cfg.optim.lr}) or check the operators"
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        schedule.step()
        n_tokens = int(batch.padding_mask.sum())
        train_cost.update(n_tokens, batch.tokens.shape[1], len(batch))
        train_tokens += n_tokens
        train_seconds += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)

        if step % cfg.budget.eval_every == 0 or step == cfg.budget.max_steps:
            val = evaluate(model, task, "valid", device, cfg.optim.batch_size,
                           cfg.budget.eval_batches)
            entry = {"step": step, "train_loss": loss.item(), "lr": schedule.get_last_lr()[0],
                     "valid": val, "tokens_per_second": train_tokens / max(train_seconds, 1e-9)}
            history.append(entry)
            if best is None or _better(task, val, best["valid"]):
                best = entry
            msg = f"step {step}: train loss {loss.item():.4f}, valid {task.metric} " \
                  f"{val[task.metric]:.4f}"
            bar.write(msg) if bar.disable is False else log(msg)
        if cfg.budget.max_time is not None and train_seconds >= cfg.budget.max_time:
            stop_reason = "max_time"
            break
    bar.close()

    test_cost = CostMeter(model, **cost_kwargs)
    metrics = {
        "valid": evaluate(model, task, "valid", device, cfg.optim.batch_size),
        "test": evaluate(model, task, "test", device, cfg.optim.batch_size, cost=test_cost),
    }
    record = records.RunRecord(
        run_id=run_id(cfg),
        created=records.now(),
        task=cfg.data.task,
        router=cfg.routing.router,
        operators=model.op_names,
        seed=cfg.seed,
        preset=cfg.preset,
        config=cfg.model_dump(),
        config_hash=cfg.digest(),
        flags=flags,
        metrics=metrics,
        cost={"test": test_cost.summary(), "train": train_cost.summary(),
              "execution": cfg.routing.execution},
        training={
            "steps": step,
            "stop_reason": stop_reason,
            "train_tokens": train_tokens,
            "tokens_per_second": train_tokens / max(train_seconds, 1e-9),
            "train_seconds": train_seconds,
            "wall_seconds": time.perf_counter() - t_start,
            "peak_memory_mb": peak_memory_mb(device),
            "history": history,
        },
        parameters=n_params,
        data=task.describe(),
        environment=records.environment(device),
    )
    return record


def _better(task: Task, new: dict[str, float], old: dict[str, float]) -> bool:
    if task.higher_is_better:
        return new[task.metric] > old[task.metric]
    return new[task.metric] < old[task.metric]


def run_id(cfg: RunConfig) -> str:
    ops = "+".join(cfg.routing.ops)
    return f"{cfg.data.task}__{cfg.routing.router}__{ops}__{cfg.digest()}__seed{cfg.seed}"


def results_dir(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("results/runs")
