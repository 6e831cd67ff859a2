"""Training and evaluation of one router x operators x task combination."""

from __future__ import annotations

import json
import math
import random
import resource
import signal
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from harness.engine import checkpoint, distributed
from harness.engine.config import RunConfig
from harness.engine.data import EpochBatches, by_length
from harness.engine.model import Model, count_parameters
from harness.measure.cost import CostMeter
from harness.results import records
from operators import OPERATORS
from registry import ChiaroscuroError, ConfigError
from routers import ROUTERS
from tasks import TASKS, Task
from tasks.base import SPLITS

DEFAULT_SEQ_LEN = 256
CHECK_SEQ_LEN = 256  # causality is judged on sequences up to this long before training


class TrainingDiverged(ChiaroscuroError):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name} asked for CUDA, but torch sees no GPU; use --device cpu")
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
    from harness.measure.checks import run_checks

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


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Interrupted(ChiaroscuroError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so the checkpoint written
    on the way out is consistent."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def run_paths(cfg: RunConfig) -> tuple[Path, Path]:
    """(record path, work directory for checkpoint and metrics log) of a run."""
    rid = run_id(cfg)
    records_dir = results_dir(cfg)
    work = Path(cfg.work_dir) if cfg.work_dir else (Path(cfg.out) if cfg.out else Path("runs"))
    return records_dir / records.record_filename(rid), work / rid


class Trainer:
    """One run: build, (resume,) train, evaluate, record. Re-running the same config on the
    same --out continues from the last checkpoint; a finished run is not redone."""

    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print):
        self.cfg = cfg
        self.dist, device_name = distributed.setup(cfg.device)
        self.log = log if self.dist.is_main else (lambda msg: None)
        self.device = resolve_device(device_name)
        if cfg.threads and self.device.type == "cpu":
            torch.set_num_threads(cfg.threads)
        self.record_path, self.work_dir = run_paths(cfg)
        self.ckpt_path = self.work_dir / "checkpoint.pt"
        self.metrics_path = self.work_dir / "metrics.jsonl"
        o = cfg.optim
        if o.batch_size % (self.dist.world * o.grad_accum):
            raise ConfigError(
                f"--batch-size {o.batch_size} must be divisible by processes x --grad-accum "
                f"({self.dist.world} x {o.grad_accum})")

    # -- set-up ---------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.task = build_task(cfg)
        self.flags = [f"leaky: {r}" for r in refuse_leaks(cfg, self.task.causal)]
        if cfg.preset:
            self.flags.append(f"preset:{cfg.preset}")
        self.seq_len = seq_len_of(cfg)
        if self.task.causal:
            self.flags += guard_causal_task(cfg, self.task, self.seq_len, self.log)
        seed_everything(cfg.seed)
        self.model = Model(cfg, self.task, self.seq_len).to(self.device)
        self.n_params = count_parameters(self.model)
        self.log(f"model: {cfg.model.layers} layers, d_model {cfg.model.d_model}, "
                 f"{self.n_params:,} parameters; operators by cost: "
                 f"{', '.join(self.model.op_names)}; router: {cfg.routing.router}; "
                 f"device: {self.device}" + (f" x {self.dist.world} processes"
                                             if self.dist.enabled else ""))
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.forward_model: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # routed execution can leave an operator without tokens in a step
            self.forward_model = DDP(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=len(cfg.routing.ops) > 1)
        if cfg.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.batches = EpochBatches(self.task.dataset("train"), cfg.optim.batch_size, cfg.seed,
                                    bucket=cfg.data.length_bucketing)
        self.optimizer = make_optimizer(self.model, cfg)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(cfg.optim.warmup_steps, cfg.budget.max_steps))
        self.cost_kwargs = dict(d_model=cfg.model.d_model, heads=cfg.model.heads,
                                seq_len=self.seq_len, causal=self.task.causal)
        self.train_cost = CostMeter(self.model, **self.cost_kwargs)
        self.progress: dict[str, Any] = {
            "step": 0, "train_tokens": 0, "train_seconds": 0.0, "history": [], "best": None,
            "evals_since_best": 0, "stop_reason": None, "finished": False, "gate_history": [],
        }

    # -- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.model_dump_json(),
            "config_hash": self.cfg.digest(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": checkpoint.rng_state(),
            "progress": json.dumps(self.progress),
            "train_cost": self.train_cost.state_dict(),
        }

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            checkpoint.save(self.ckpt_path, self.state())
        distributed.barrier(self.dist)

    def maybe_resume(self) -> bool:
        if not self.ckpt_path.exists():
            return False
        state = checkpoint.load(self.ckpt_path)
        if state["config_hash"] != self.cfg.digest() or \
                json.loads(state["config"])["seed"] != self.cfg.seed:
            raise ConfigError(
                f"{self.ckpt_path} belongs to a run with a different configuration; use another "
                f"--out, or delete {self.work_dir} to start over")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        checkpoint.set_rng_state(state["rng"])
        self.progress = json.loads(state["progress"])
        self.train_cost.load_state_dict(state["train_cost"])
        self._truncate_metrics_log(self.progress["step"])
        self.log(f"resumed from {self.ckpt_path} at step {self.progress['step']}")
        return True

    def _truncate_metrics_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint: they will be written again."""
        if not (self.dist.is_main and self.metrics_path.exists()):
            return
        keep = [line for line in self.metrics_path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= step]
        records.atomic_write_text(self.metrics_path, "".join(f"{k}\n" for k in keep))

    def _log_metrics(self, entry: dict[str, Any]) -> None:
        if self.dist.is_main:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    # -- training ---------------------------------------------------------------------------

    def train_step(self, step: int) -> tuple[float, int]:
        """One optimiser step over the global batch (this rank's shards, accumulated)."""
        cfg, n_micro = self.cfg, self.cfg.optim.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, tokens = 0.0, 0
        for micro in range(n_micro):
            batch = self.batches.batch(self.task, step, self.dist.rank, self.dist.world,
                                       micro, n_micro).to(self.device)
            sync = micro == n_micro - 1 or not self.dist.enabled
            context = nullcontext() if sync else self.forward_model.no_sync()
            with context, autocast(self.device):
                logits, aux = self.forward_model(batch)
                loss = self.task.loss(logits, batch)
                total = (loss + cfg.routing.aux_weight * aux) / n_micro
            if not torch.isfinite(total):
                raise TrainingDiverged(
                    f"loss became {loss.item()} at step {step + 1} (router aux {aux.item()}); "
                    f"the last good checkpoint is kept in {self.work_dir}; lower --lr "
                    f"(now {cfg.optim.lr}) or check the operators")
            with context:
                total.backward()
            loss_sum += loss.item() / n_micro
            n_tokens = int(batch.padding_mask.sum())
            tokens += n_tokens
            self.train_cost.update(n_tokens, batch.tokens.shape[1], len(batch))
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else math.inf)
        if not torch.isfinite(norm):
            raise TrainingDiverged(
                f"gradient norm became {norm.item()} at step {step + 1}; the last good "
                f"checkpoint is kept in {self.work_dir}; lower --lr (now {cfg.optim.lr})")
        self.optimizer.step()
        self.schedule.step()
        if self.dist.enabled:  # the global batch's token count, not this rank's times world
            tokens = distributed.all_reduce_sum(tokens, self.device)
        return loss_sum, tokens

    def _telemetry(self) -> dict[str, Any]:
        layers = []
        for layer in self.model.mixing_layers:
            stats = layer.last_cost.stats if layer.last_cost else {}
            entry = {}
            if "fractions" in stats:
                entry["fractions"] = [round(float(f), 5) for f in stats["fractions"]]
            if "gate" in stats:
                entry["gate"] = round(float(stats["gate"].float().mean()), 5)
            layers.append(entry)
        return {"layers": layers}

    def evaluate_valid(self, limit: int | None) -> dict[str, float]:
        return evaluate(self.model, self.task, "valid", self.device,
                        self.cfg.optim.batch_size, limit)

    def fit(self) -> None:
        cfg, p = self.cfg, self.progress
        b = cfg.budget
        bar = tqdm(total=b.max_steps, initial=p["step"], unit="step", file=sys.stderr,
                   desc=f"{cfg.data.task} {cfg.routing.router} {'+'.join(cfg.routing.ops)}",
                   dynamic_ncols=True, disable=None if self.dist.is_main else True)
        self.model.train()
        with _StopSignals() as signals:
            while p["step"] < b.max_steps:
                t0 = time.perf_counter()
                loss, tokens = self.train_step(p["step"])
                p["step"] += 1
                p["train_tokens"] += tokens
                p["train_seconds"] += time.perf_counter() - t0
                step = p["step"]
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                if step % b.log_every == 0 or step == b.max_steps:
                    telemetry = self._telemetry()
                    self._log_metrics({
                        "step": step, "loss": loss, "lr": self.schedule.get_last_lr()[0],
                        "tokens_per_second": p["train_tokens"] / max(p["train_seconds"], 1e-9),
                        **telemetry})
                    gates = [layer["gate"] for layer in telemetry["layers"] if "gate" in layer]
                    if gates:
                        p["gate_history"].append({"step": step, "gate": gates})
                if step % b.eval_every == 0 or step == b.max_steps:
                    self._evaluate_during_training(step, loss, bar)
                stop = self._budget_exhausted()
                if stop:
                    p["stop_reason"] = stop
                    break
                if signals.received is not None:
                    self.save_checkpoint()
                    bar.close()
                    raise Interrupted(f"stopped by signal {signals.received} at step {step}; "
                                      f"checkpoint saved, re-run the same command to resume")
                if step % b.ckpt_every == 0:
                    self.save_checkpoint()
        bar.close()
        p["stop_reason"] = p["stop_reason"] or "max_steps"
        p["finished"] = True
        self.save_checkpoint()

    def _evaluate_during_training(self, step: int, loss: float, bar: Any) -> None:
        p, task = self.progress, self.task
        val = self.evaluate_valid(self.cfg.budget.eval_batches)
        entry = {"step": step, "train_loss": loss, "lr": self.schedule.get_last_lr()[0],
                 "valid": val,
                 "tokens_per_second": p["train_tokens"] / max(p["train_seconds"], 1e-9)}
        p["history"].append(entry)
        if p["best"] is None or _better(task, val, p["best"]["valid"]):
            p["best"], p["evals_since_best"] = entry, 0
        else:
            p["evals_since_best"] += 1
        msg = f"step {step}: train loss {loss:.4f}, valid {task.metric} {val[task.metric]:.4f}"
        if bar.disable:
            self.log(msg)
        else:
            bar.write(msg)

    def _budget_exhausted(self) -> str | None:
        b, p = self.cfg.budget, self.progress
        if b.max_time is not None and p["train_seconds"] >= b.max_time:
            return "max_time"
        if b.max_tokens is not None and p["train_tokens"] >= b.max_tokens:
            return "max_tokens"
        if b.patience is not None and p["evals_since_best"] >= b.patience:
            return "early_stopping"
        return None

    # -- results ----------------------------------------------------------------------------

    def make_record(self, status: str = "finished", error: str | None = None,
                    t_start: float | None = None) -> records.RunRecord:
        cfg, p = self.cfg, self.progress
        test_cost = CostMeter(self.model, **self.cost_kwargs)
        metrics: dict[str, dict[str, float]] = {}
        histogram = None
        if status == "finished":
            metrics["valid"] = evaluate(self.model, self.task, "valid", self.device,
                                        cfg.optim.batch_size)
            # spectral entropy of the tokens each operator received, on the test split
            telemetry = records.RoutingTelemetry(self.model.mixing_layers, self.model.op_names)
            with telemetry.collect_histogram("test"):
                metrics["test"] = evaluate(self.model, self.task, "test", self.device,
                                           cfg.optim.batch_size, cost=test_cost)
            telemetry.close()
            summary = telemetry.summary()
            histogram = summary.entropy_histogram if summary else None
        data = self.task.describe()
        data.setdefault("split_hashes", {split: records.split_hash(self.task.dataset(split))
                                         for split in SPLITS})
        extra = {"status": status, **({"error": error} if error else {})}
        return records.RunRecord(
            run_id=run_id(cfg),
            created=records.now(),
            task=cfg.data.task,
            router=cfg.routing.router,
            operators=self.model.op_names,
            seed=cfg.seed,
            preset=cfg.preset,
            config=cfg.model_dump(),
            config_hash=cfg.digest(),
            flags=self.flags,
            metrics=metrics,
            cost={"test": test_cost.summary() if status == "finished" else None,
                  "train": self.train_cost.summary(), "execution": cfg.routing.execution},
            training={
                "steps": p["step"],
                "stop_reason": p["stop_reason"],
                "train_tokens": p["train_tokens"],
                "tokens_per_second": p["train_tokens"] / max(p["train_seconds"], 1e-9),
                "train_seconds": p["train_seconds"],
                "wall_seconds": time.perf_counter() - t_start if t_start else None,
                "peak_memory_mb": peak_memory_mb(self.device),
                "processes": self.dist.world,
                "history": p["history"],
            },
            parameters=self.n_params,
            data=data,
            task_metric=self.task.metric,
            higher_is_better=self.task.higher_is_better,
            telemetry=records.Telemetry(entropy_histogram=histogram,
                                        gate_history=p["gate_history"]),
            environment=records.environment(self.device),
            **extra,
        )

    def write(self, record: records.RunRecord) -> Path:
        if self.dist.is_main:
            records.write_record(record, self.record_path.parent)
        distributed.barrier(self.dist)
        return self.record_path


def train(cfg: RunConfig, *, log: Callable[[str], None] = print) -> tuple[records.RunRecord, Path]:
    """Train (or resume, or reuse a finished run), evaluate, write and return the record."""
    t_start = time.perf_counter()
    trainer = Trainer(cfg, log)
    try:
        trainer.build()
        resumed = trainer.maybe_resume()
        if resumed and trainer.progress["finished"] and trainer.record_path.exists():
            log(f"already finished: {trainer.record_path}")
            record = records.RunRecord.model_validate_json(trainer.record_path.read_text())
            return record, trainer.record_path
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            trainer.write(trainer.make_record("diverged", str(exc), t_start))
            raise
        record = trainer.make_record(t_start=t_start)
        return record, trainer.write(record)
    finally:
        distributed.teardown()


def _better(task: Task, new: dict[str, float], old: dict[str, float]) -> bool:
    if task.higher_is_better:
        return new[task.metric] > old[task.metric]
    return new[task.metric] < old[task.metric]


def run_id(cfg: RunConfig) -> str:
    ops = "+".join(cfg.routing.ops)
    return f"{cfg.data.task}__{cfg.routing.router}__{ops}__{cfg.digest()}__seed{cfg.seed}"


def results_dir(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("results/runs")
