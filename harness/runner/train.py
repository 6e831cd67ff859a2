"""Training one router x operators x task combination: build, resume, the loop, the record.

The pieces live beside this file: ``optim.TrainStep`` (one optimiser step), ``evaluate``,
``guard`` (what may train), ``record`` (the result record), ``progress`` (the counters a
checkpoint carries). Re-running the same config on the same --out continues from the last
checkpoint; a finished run is not redone.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from harness.core import records
from harness.core.config import RunConfig, seq_len_of
from harness.core.paths import NOT_WRITABLE, SWEEP_PARENT_ENV, run_paths, writable_folder
from harness.core.record_sections import at_plateau
from harness.engine import checkpoint, distributed, provenance
from harness.engine.calibrate import calibrate_routers
from harness.engine.data import EpochBatches, build_task
from harness.engine.device import peak_memory_mb, resolve_device, seed_everything
from harness.engine.model import Model, count_parameters
from harness.engine.steps import StepResult, TrainingDiverged, TrainStep, better, evaluate
from harness.engine.watch import LeakWatch
from harness.runner import metrics_log, tracking
from harness.runner.best import save_best
from harness.runner.console import EvalProgress, ProgressDisplay
from harness.runner.guard import guard_leaks, guard_trained, refuse_leaks, run_flags
from harness.runner.lock import RunLock
from harness.runner.plan import device_memory, refuse_oversized
from harness.runner.progress import Progress
from harness.runner.record import (
    bands_text,
    build_record,
    final_evaluation,
    finished_record,
    load_finished,
)
from registry import ChiaroscuroError, ConfigError, files

__all__ = ["Interrupted", "Trainer", "TrainingDiverged", "train"]


class Interrupted(ChiaroscuroError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved and the run can be resumed."""


def router_flags(cfg: RunConfig) -> list[str]:
    """Flags a router class declares for every record it produces (``record_flags``): oracle
    marks itself privileged, mod notes that its training routed by a non-causal top-k."""
    from routers import ROUTERS

    return list(getattr(ROUTERS.get(cfg.routing.router), "record_flags", ()))


def look_up_names(cfg: RunConfig) -> None:
    """Look the task, router and operators up before anything is written: an unknown name, or
    an unknown or invalid task option, is one line (with "did you mean") and leaves no run
    folder or run.lock behind."""
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    TASKS.check_options(cfg.data.task, cfg.data.task_options)
    ROUTERS.entry(cfg.routing.router)
    for name in cfg.routing.ops:
        OPERATORS.entry(name)


def out_of_memory(exc: BaseException) -> bool:
    """torch's CUDA out-of-memory error, or its CPU allocator's (a plain RuntimeError)."""
    return isinstance(exc, torch.OutOfMemoryError) or "can't allocate memory" in str(exc)


def data_source(cfg: RunConfig, split: str) -> str:
    """Where a split's data comes from, as the user named it: its file, the training file it is
    carved from, the --data-dir, or the task's own source."""
    options = cfg.data.task_options
    given = options.get(f"{split}_file")
    if given is None and split == "valid" and options.get("train_file") is not None:
        given = options["train_file"]  # carved from the training file's tail
    if given is not None:
        return f"the file {given}"
    if cfg.data.data_dir is not None:
        return f"--data-dir {cfg.data.data_dir}"
    return f"the source of task '{cfg.data.task}'"


class _StopSignals:
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps, so the checkpoint written
    on the way out is consistent."""

    def __init__(self) -> None:
        self._received: int | None = None
        self._previous: dict[int, Any] = {}
        parent = os.environ.get(SWEEP_PARENT_ENV, "")
        self._sweep = int(parent) if parent.isdigit() else None

    @property
    def received(self) -> int | None:
        """The signal that stops the run, if one came; a sweep's cell whose sweep is gone (its
        parent changed) stops as on SIGTERM."""
        if self._received is None and self._sweep is not None and os.getppid() != self._sweep:
            self._received = signal.SIGTERM
        return self._received

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self._received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """One run: build, (resume,) train, evaluate, record."""

    def __init__(self, cfg: RunConfig, log: Callable[[str], None] = print):
        self.code = provenance.git_commit()  # the code this process runs, read before it does
        self.started = time.perf_counter()
        self.wall_before = 0.0  # the wall time of the processes before this one (a resume)
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
        self.micro = o.batch_size // (self.dist.world * o.grad_accum)  # one rank's micro-batch
        # before the data or the model: an impossible size is one line, not minutes of work
        refuse_oversized(cfg, self.micro, *device_memory(self.device))
        self.progress = Progress()
        self.saved_step: int | None = None  # step of the checkpoint on disk, once known
        self.tracker = tracking.open_tracker(cfg, self.work_dir, self.dist.is_main)

    # -- set-up ---------------------------------------------------------------------------

    def build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        self.task = build_task(cfg)
        self.flags = [f"leaky: {r}" for r in refuse_leaks(cfg, self.task.causal)]
        if cfg.preset:
            self.flags.append(f"preset:{cfg.preset}")
        self.flags += router_flags(cfg)
        self.seq_len = seq_len_of(cfg)
        self.flags += guard_leaks(cfg, self.task, self.seq_len, self.micro, cfg.optim.batch_size,
                                  self.log, self.device)
        seed_everything(cfg.seed)
        self.model = Model(cfg, self.task, self.seq_len).to(self.device)
        self.n_params = count_parameters(self.model)
        self._log_model()
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.batches = EpochBatches(self.task.dataset("train"), cfg.optim.batch_size, cfg.seed,
                                    bucket=cfg.data.length_bucketing)
        # the guard watches the whole run: a few training steps, then the final evaluation
        self.watch = LeakWatch.for_run(cfg, self.task.vocab_size, self.task.causal)
        self.step_fn = TrainStep(self.model, self.task, cfg, self.device, self.seq_len,
                                 forward_model=self._forward_model(), dist=self.dist,
                                 watch=self.watch)


    def _forward_model(self) -> torch.nn.Module:
        """The model as the step calls it: wrapped in DDP and/or torch.compile when asked."""
        forward: torch.nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            # routed execution can leave an operator without tokens in a step
            forward = DDP(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=len(self.cfg.routing.ops) > 1)
        if self.cfg.compile:
            forward = torch.compile(forward)
        return forward

    def _log_model(self) -> None:
        cfg = self.cfg
        processes = f" x {self.dist.world} processes" if self.dist.enabled else ""
        layers = f"{cfg.model.layers} layer{'' if cfg.model.layers == 1 else 's'}"
        self.log(f"model: {layers}, d_model {cfg.model.d_model}, "
                 f"{self.n_params:,} parameters; bands in --ops order (lowest first): "
                 f"{bands_text(self.model.op_names, cfg.routing.attn_fraction)}; router: "
                 f"{cfg.routing.router}; device: {self.device}{processes}")

    # -- checkpoints ------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "config": self.cfg.model_dump_json(),
            "config_hash": self.cfg.digest(),
            "model": self.model.state_dict(),
            **self.step_fn.state_dict(),
            "rng": checkpoint.rng_state(),
            "progress": self.progress.to_json(),
            "data_hashes": provenance.split_hashes(self.task),
        }

    def wall_seconds(self) -> float:
        """The run's wall time so far: this process's, plus its predecessors' to the checkpoint
        it resumed from."""
        return self.wall_before + time.perf_counter() - self.started

    def save_checkpoint(self) -> None:
        self.progress.wall_seconds = self.wall_seconds()
        if self.dist.is_main:
            checkpoint.save(self.ckpt_path, self.state())
        self.saved_step = self.progress.step
        distributed.barrier(self.dist)

    def maybe_resume(self) -> bool:
        if not self.ckpt_path.exists():
            self._truncate_metrics_log(0)  # starting over: every line is written again
            return False
        state = checkpoint.load(self.ckpt_path)
        with checkpoint.restoring(self.ckpt_path):
            if state["config_hash"] != self.cfg.digest() or \
                    json.loads(state["config"])["seed"] != self.cfg.seed:
                raise ConfigError(
                    f"{self.ckpt_path} belongs to a run with a different configuration; use "
                    f"another --out, or delete {self.work_dir} to start over")
            changed = checkpoint.changed_split(state, provenance.split_hashes(self.task))
            if changed:
                raise ConfigError(
                    f"{self.ckpt_path} was trained on other {changed} data than "
                    f"{data_source(self.cfg, changed)} holds now (its contents or tokenizer "
                    f"changed); resuming would mix two datasets in one run: restore that data, "
                    f"or delete {self.work_dir} to start over")
            self.model.load_state_dict(state["model"])
            self.step_fn.load_state_dict(state)
            checkpoint.set_rng_state(state["rng"])
            self.progress = Progress.from_json(state["progress"])
        self.progress.resumes += 1
        self.wall_before = self.progress.wall_seconds
        self.saved_step = self.progress.step
        self._truncate_metrics_log(self.progress.step)
        self.log(f"resumed from {self.ckpt_path} at step {self.progress.step}")
        return True

    def _truncate_metrics_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint (they will be written again) and a torn
        tail (see metrics_log)."""
        if self.dist.is_main:
            metrics_log.cut_back(self.metrics_path, step, self.log)

    def what_is_kept(self) -> str:
        """For messages on the way out: what a re-run will resume from."""
        if self.ckpt_path.exists():
            at = f" (step {self.saved_step})" if self.saved_step is not None else ""
            return f"the last good checkpoint{at} is kept in {self.ckpt_path}"
        return "no checkpoint had been written yet: a re-run starts from the beginning"

    # -- training ---------------------------------------------------------------------------

    def train_step(self, step: int) -> StepResult:
        """One optimiser step over the global batch (this rank's shards, accumulated)."""
        n_micro = self.cfg.optim.grad_accum

        def micro_batch(micro: int):
            return self.batches.batch(self.task, step, self.dist.rank, self.dist.world,
                                      micro, n_micro)

        return self.step_fn(micro_batch, step)

    def fit(self) -> None:
        cfg, p = self.cfg, self.progress
        bar = ProgressDisplay(cfg.budget.max_steps, p.step, log=self.log,
                              desc=f"{cfg.data.task} {cfg.routing.router} "
                                   f"{'+'.join(cfg.routing.ops)}", enabled=self.dist.is_main,
                              eval_every=cfg.budget.eval_every)
        if p.step == 0 and (line := calibrate_routers(self.model, self.task, self.device,
                                                      cfg.optim.batch_size)):
            self.log(line)
        self.model.train()
        with _StopSignals() as signals:
            while p.step < cfg.budget.max_steps:
                t0 = time.perf_counter()
                result = self.train_step(p.step)
                p.step += 1
                p.train_tokens += result.tokens
                p.train_seconds += time.perf_counter() - t0 - result.probe_seconds
                bar.step(p.step, result.loss, p.tokens_per_second)
                if self._after_step(result, bar, signals):
                    break
            bar.close()
            p.stop_reason = p.stop_reason or "max_steps"
            p.finished = True
            self.save_checkpoint()
            # a signal after the loop's last look (during the last step's checkpoint, or with
            # a budget's stop) must stop the run too, not be dropped with the handler
            if distributed.any_rank(self.dist, signals.received is not None, self.device):
                raise Interrupted(f"stopped by signal {signals.received or '(to another rank)'} "
                                  f"after the last training step ({p.step}); checkpoint saved, "
                                  f"re-run the same command to evaluate and write the record")

    def _after_step(self, result: StepResult, bar: Any, signals: _StopSignals) -> bool:
        """Logging, evaluation, budgets, signals and checkpoints after a step; True to stop."""
        b, p = self.cfg.budget, self.progress
        wsd = self.step_fn.wsd
        cooled = wsd is not None and wsd.cooled(p.step)  # the weights the run ends on
        step, last, loss = p.step, p.step == b.max_steps or cooled, result.loss
        if step % b.log_every == 0 or last:
            self._log_metrics(step, result)
        if step % b.eval_every == 0 or last:
            self._evaluate_during_training(step, loss, bar)
        stop = self._budget_exhausted()
        if stop:
            p.stop_reason = stop
            return True
        if distributed.any_rank(self.dist, signals.received is not None, self.device):
            self.save_checkpoint()
            bar.close()
            by = signals.received or "(to another rank)"
            raise Interrupted(f"stopped by signal {by} at step {step}; "
                              f"checkpoint saved, re-run the same command to resume")
        if step % b.ckpt_every == 0:
            self.save_checkpoint()
        return False

    @staticmethod
    def _telemetry(result: StepResult) -> dict[str, Any]:
        layers = []
        for stats in result.routing_stats:
            entry = {}
            if "fractions" in stats:
                entry["fractions"] = [round(float(f), 5) for f in stats["fractions"]]
            if "gate" in stats:
                entry["gate"] = round(float(stats["gate"].float().mean()), 5)
            layers.append(entry)
        return {"layers": layers}

    def _log_metrics(self, step: int, result: StepResult) -> None:
        telemetry = self._telemetry(result)
        entry = {"step": step, "loss": result.loss, "lr": self.step_fn.lr,
                 "tokens_per_second": self.progress.tokens_per_second, **telemetry}
        if self.dist.is_main:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with files.open_for_append(self.metrics_path, remedy="remove it and re-run") as f:
                f.write(json.dumps(entry) + "\n")
        self.tracker.log(step, entry, self.model.op_names)
        gates = [layer["gate"] for layer in telemetry["layers"] if "gate" in layer]
        if gates:
            self.progress.gate_history.append({"step": step, "gate": gates})
        fractions = [layer.get("fractions") for layer in telemetry["layers"]]
        if len(self.model.op_names) > 1 and all(fractions):
            self.progress.routing_history.append({"step": step, "fractions": fractions})

    def evaluate_valid(self, limit: int | None) -> dict[str, float]:
        # the full split (--eval-batches unset) can take minutes: shown like the final one's
        shown = EvalProgress(f"evaluating valid at step {self.progress.step}",
                             self.log if self.dist.is_main else None)
        try:
            return evaluate(self.model, self.task, "valid", self.device,
                            self.cfg.optim.batch_size, limit, progress=shown)
        finally:
            shown.close()

    def _evaluate_during_training(self, step: int, loss: float, bar: Any) -> None:
        p, task = self.progress, self.task
        val = self.evaluate_valid(self.cfg.budget.eval_batches)
        entry = {"step": step, "train_tokens": p.train_tokens, "train_loss": loss,
                 "lr": self.step_fn.lr, "valid": val, "tokens_per_second": p.tokens_per_second}
        p.history.append(entry)
        self.tracker.log(step, {"valid": val}, self.model.op_names)
        if p.best is None or better(task, val, p.best["valid"]):
            p.best = entry
            if self.dist.is_main:
                save_best(self.work_dir, step, self.cfg.digest(), self.model)
        bar.evaluated(step, task.metric, val, full=self.cfg.budget.eval_batches is None)

    def at_plateau(self) -> bool:
        """Over the last --patience evaluations the best validation metric improved by less
        than --min-delta (relative)."""
        b = self.cfg.budget
        return at_plateau(self.progress.valid_values(self.task.metric),
                          self.task.higher_is_better, b.patience or 0, b.min_delta)[0]

    def _budget_exhausted(self) -> str | None:
        b, p = self.cfg.budget, self.progress
        if b.max_time is not None and p.train_seconds >= b.max_time:
            return "max_time"
        if b.max_tokens is not None and p.train_tokens >= b.max_tokens:
            return "max_tokens"
        if self.step_fn.wsd is not None:
            return self._wsd_stop()
        if b.patience is not None and self.at_plateau():
            return "plateau"
        return None

    def _wsd_stop(self) -> str | None:
        """Warmup-stable-decay: the plateau rule (at the peak rate) or the last moment the cap
        leaves starts the cool-down; the run stops when it ends, for the reason that started
        it."""
        b, p, wsd = self.cfg.budget, self.progress, self.step_fn.wsd
        assert wsd is not None
        if wsd.cool_from is None:
            evaluated = p.history and p.history[-1]["step"] == p.step
            if b.patience is not None and evaluated and self.at_plateau():
                wsd.cool_down(p.step, "plateau")
            elif wsd.fits_before(p.step, b.max_steps):
                wsd.cool_down(p.step, "max_steps")
            else:
                return None
            self.log(f"cool-down from step {p.step} over {wsd.cool_steps} steps "
                     f"({'at the plateau' if wsd.reason == 'plateau' else 'the cap is near'})")
            return None
        return wsd.reason if wsd.cooled(p.step) else None

    # -- results ----------------------------------------------------------------------------

    def make_record(self, status: str = "finished",
                    error: str | None = None) -> records.RunRecord:
        final = None
        if status == "finished":
            cfg = self.cfg  # the trained model checked again, then probed along its evaluation
            guard_trained(cfg, self.model, self.task, self.seq_len, self.micro,
                          cfg.optim.batch_size, self.watch, self.log)
            final = final_evaluation(self.model, self.task, self.device, cfg, self.seq_len,
                                     self.progress, self.work_dir, self.watch,
                                     log=self.log if self.dist.is_main else None)
            self.flags += run_flags(cfg, self.watch, self.log)
        return build_record(
            self.cfg, task=self.task, op_names=self.model.op_names, parameters=self.n_params,
            flags=self.flags, progress=self.progress, train_cost=self.step_fn.cost.summary(),
            final=final, device=self.device, processes=self.dist.world,
            wall_seconds=self.wall_seconds(),
            peak_memory_mb=peak_memory_mb(self.device), backends=self.backends(),
            status=status, error=error, cool_down=self.step_fn.wsd)

    def backends(self) -> dict[str, str]:
        """The kernel each operator with a kernel table ran on (``attn.backend``)."""
        ops = self.model.mixing_layers[0].ops
        return {name: op.backend for name, op in zip(self.model.op_names, ops, strict=True)
                if getattr(op, "backend", None)}

    def write(self, record: records.RunRecord) -> Path:
        if self.dist.is_main:
            records.write_record(record, self.record_path.parent)
        distributed.barrier(self.dist)
        return self.record_path


def train(cfg: RunConfig, *, log: Callable[[str], None] = print) -> tuple[records.RunRecord, Path]:
    """Train (or resume, or reuse a finished run), evaluate, write and return the record."""
    look_up_names(cfg)
    trainer = Trainer(cfg, log)
    lock = RunLock(trainer.work_dir, log)
    try:
        if trainer.dist.is_main:  # rank 0 writes for every rank: one writer per run folder
            writable_folder(trainer.record_path.parent, "--out")
            writable_folder(trainer.work_dir, "--work-dir" if cfg.work_dir else "--out")
            lock.acquire()
        # a finished run answers from its record at once: no data built, no guard run again
        if (done := finished_record(cfg, trainer.record_path)) is not None:
            trainer.log(f"already finished: {trainer.record_path}")
            return done, trainer.record_path
        trainer.build()
        resumed = trainer.maybe_resume()
        trainer.progress.ran_on(trainer.code)
        if resumed and trainer.progress.finished and trainer.record_path.exists():
            log(f"already finished: {trainer.record_path}")
            return load_finished(trainer.record_path), trainer.record_path
        try:
            trainer.fit()
        except TrainingDiverged as exc:
            diverged = TrainingDiverged(f"{exc}; {trainer.what_is_kept()}")
            trainer.write(trainer.make_record("diverged", str(diverged)))
            raise diverged from exc
        record = trainer.make_record()
        return record, trainer.write(record)
    except (OSError, files.DiskFull) as exc:
        if isinstance(exc, OSError) and exc.errno in NOT_WRITABLE:  # made read-only meanwhile
            raise ConfigError(f"cannot write {exc.filename} ({exc.strerror}); "
                              f"{trainer.what_is_kept()}; fix the permissions and re-run the "
                              f"same command to resume") from exc
        full = files.disk_full(exc, trainer.what_is_kept())
        if full is None:
            raise
        raise full from exc
    except RuntimeError as exc:  # torch.OutOfMemoryError is one
        # past refuse_oversized's lower bound (attention scores, the allocator's overhead)
        if not out_of_memory(exc):
            raise
        raise ConfigError(
            f"out of memory on {trainer.device} ({' '.join(str(exc).split())[:160]}); "
            f"{trainer.what_is_kept()}; lower --batch-size (or raise --grad-accum), --seq-len, "
            f"--d-model, --layers or --mlp-ratio") from exc
    finally:
        trainer.tracker.close()
        lock.release()
        distributed.teardown()
