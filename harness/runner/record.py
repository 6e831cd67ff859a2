"""The result record of a run, built from the run's values (config, counters, measurements).

``final_evaluation`` measures the trained model (full valid and test splits, test cost, entropy
histograms, ground truth, the best-validation checkpoint); ``build_record`` assembles the
record from that and from what training counted. Neither sees the training driver.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.core import records
from harness.core.config import RunConfig
from harness.core.paths import run_id
from harness.core.record_sections import at_plateau
from harness.engine import provenance
from harness.engine.meters.collapse import collapse_flags, find_collapses
from harness.engine.meters.cost import CostMeter
from harness.engine.meters.groundtruth import GroundTruthMeter
from harness.engine.meters.telemetry import EntropyHistogramMeter
from harness.engine.model import Model, band_map
from harness.engine.steps import WarmupStableDecay, evaluate
from harness.engine.watch import LeakWatch
from harness.runner.best import best_checkpoint_metrics
from harness.runner.console import EvalProgress
from harness.runner.progress import Progress
from registry import DataError
from tasks import Task


@dataclass
class FinalEvaluation:
    """What the trained model measured on the full splits."""

    metrics: dict[str, dict[str, float]]
    test_cost: dict[str, Any]
    entropy_histogram: records.EntropyHistogram | None = None
    ground_truth: list[dict[str, float]] | None = None
    predictor_accuracy: list[float] | None = None
    best_checkpoint: dict[str, Any] | None = None


def final_evaluation(model: Model, task: Task, device: torch.device, cfg: RunConfig,
                     seq_len: int, progress: Progress, work_dir: Path,
                     watch: LeakWatch | None = None,
                     log: Callable[[str], None] | None = None) -> FinalEvaluation:
    """Full valid and test splits of the final weights (with the test split's cost, the
    spectral entropy of the tokens each operator received and the routing against the task's
    ground truth), then the best-validation weights' valid and test metrics. Every one of these
    evaluations is probed for leaks by `watch` along its own path. Each split is capped at
    --final-eval-batches when set (the smoke preset); `log` shows a long one's progress."""
    batch_size, limit = cfg.optim.batch_size, cfg.budget.final_eval_batches

    def measure(split: str, weights: str, meters: tuple = ()) -> dict[str, float]:
        shown = EvalProgress(f"evaluating {split} ({weights} weights)", log)
        try:
            return evaluate(model, task, split, device, batch_size, limit, meters=meters,
                            watch=watch, progress=shown)
        finally:
            shown.close()

    cost = CostMeter(model, d_model=cfg.model.d_model, heads=cfg.model.heads, seq_len=seq_len,
                     causal=task.causal)
    n_layers = len(model.mixing_layers)
    histogram = EntropyHistogramMeter(n_layers, model.op_names, "test")
    truth = GroundTruthMeter(n_layers)
    metrics = {"valid": measure("valid", "final"),
               "test": measure("test", "final", meters=(cost, histogram, truth))}
    ground_truth, predictor_accuracy = truth.summary()

    def both_splits() -> dict[str, dict[str, float]]:
        return {split: measure(split, "best-validation") for split in ("valid", "test")}

    best = best_checkpoint_metrics(model, both_splits, work_dir, progress.best, progress.step,
                                   metrics, task.metric, cfg.budget.eval_batches)
    return FinalEvaluation(metrics, cost.summary(), histogram.summary(), ground_truth,
                           predictor_accuracy, best)


def bands(names: list[str], attn_fraction: float) -> list[dict]:
    """Which operator got which band, lowest scores first (the record's answer to "who got
    the top band")."""
    return [{"operator": op, "target_share": share} for op, share in band_map(names,
                                                                             attn_fraction)]


def bands_text(names: list[str], attn_fraction: float) -> str:
    return ", ".join(f"{op} {share:.1%}" for op, share in band_map(names, attn_fraction))


def plateau(progress: Progress, metric: str, higher_is_better: bool, patience: int | None,
            min_delta: float, cool_down: WarmupStableDecay | None = None) -> dict | None:
    """Whether the run reached its plateau (``at_plateau``: the gain below min_delta over the last
    `patience` evaluations), whether that stopped it or the cap did. On a warmup-stable-decay
    schedule the rule is read where the cool-down began (the cool-down itself improves the
    metric by design), and the record says where that was and why."""
    if patience is None:
        return None
    values = progress.valid_values(metric)
    extra = {}
    if cool_down is not None and cool_down.cool_from is not None:
        before = [e for e in progress.history if e["step"] <= cool_down.cool_from]
        values = values[:len(before)]
        extra = {"cooldown_from": cool_down.cool_from, "cooldown_steps": cool_down.cool_steps}
    reached, gain = at_plateau(values, higher_is_better, patience, min_delta)
    return {"reached": reached, "patience": patience,
            "min_delta": min_delta, "gain": gain, **extra}


def training_summary(progress: Progress, wall_seconds: float | None,
                     peak_memory_mb: float | None, processes: int,
                     plateau: dict | None = None) -> dict:
    p = progress
    return {
        "steps": p.step,
        "stop_reason": p.stop_reason,
        "plateau": plateau,
        "train_tokens": p.train_tokens,
        "tokens_per_second": p.tokens_per_second,
        "train_seconds": p.train_seconds,
        "wall_seconds": wall_seconds,
        "resumes": p.resumes,
        "peak_memory_mb": peak_memory_mb,
        "processes": processes,
        "history": p.history,
    }


def task_data(task: Task) -> dict[str, Any]:
    """``task.describe()`` with the hash of each split's exact examples."""
    data = task.describe()
    if "split_hashes" not in data:
        data["split_hashes"] = provenance.split_hashes(task)
    return data


def code_flags(code: list[str]) -> list[str]:
    """A run resumed on other code than it started on says so (the record's commit is the
    one it started on): shown under the board's table, not a reason to leave it unranked."""
    if len(code) < 2:
        return []
    return [f"note: resumed on other code: started on {code[0][:12]}, then ran "
            f"{', '.join(c[:12] for c in code[1:])}"]


def capped_evaluation_flags(cfg: RunConfig) -> list[str]:
    """A record evaluated on the first batches of each split only (the smoke preset) is not
    comparable with full-split records: flagged, so the board never ranks it above them."""
    n = cfg.budget.final_eval_batches
    return [] if n is None else [f"capped evaluation: the first {n} batches of each split "
                                 f"(--final-eval-batches {n})"]


def build_record(cfg: RunConfig, *, task: Task, op_names: list[str], parameters: int,
                 flags: list[str], progress: Progress, train_cost: dict[str, Any],
                 final: FinalEvaluation | None, device: torch.device, processes: int,
                 wall_seconds: float | None, peak_memory_mb: float | None,
                 backends: dict[str, str] | None = None, status: str = "finished",
                 error: str | None = None,
                 cool_down: WarmupStableDecay | None = None) -> records.RunRecord:
    """The record of a run; ``final`` is None for a run that did not finish (diverged)."""
    op_bands = bands(op_names, cfg.routing.attn_fraction)
    collapses = find_collapses(progress.routing_history, op_names,
                               targets=[b["target_share"] for b in op_bands])
    extra = {"status": status, **({"error": error} if error else {})}
    return records.RunRecord(
        run_id=run_id(cfg),
        created=provenance.now(),
        task=cfg.data.task,
        router=cfg.routing.router,
        operators=op_names,
        seed=cfg.seed,
        preset=cfg.preset,
        config=cfg.model_dump(),
        config_hash=cfg.digest(),
        flags=flags + collapse_flags(collapses) + capped_evaluation_flags(cfg)
        + code_flags(progress.code),
        metrics=final.metrics if final else {},
        cost={"test": final.test_cost if final else None, "train": train_cost,
              "execution": cfg.routing.execution, "bands": op_bands,
              **({"backends": backends} if backends else {})},
        training=training_summary(
            progress, wall_seconds, peak_memory_mb, processes,
            plateau(progress, task.metric, task.higher_is_better, cfg.budget.patience,
                    cfg.budget.min_delta, cool_down)),
        parameters=parameters,
        data=task_data(task),
        task_metric=task.metric,
        higher_is_better=task.higher_is_better,
        telemetry=records.Telemetry(
            entropy_histogram=final.entropy_histogram if final else None,
            gate_history=progress.gate_history,
            ground_truth=final.ground_truth if final else None,
            predictor_accuracy=final.predictor_accuracy if final else None,
            routing_history=progress.routing_history),
        environment=provenance.environment(device, used={
            "operator": list(op_names), "router": [cfg.routing.router],
            "task": [cfg.data.task]}, commit=progress.code[0] if progress.code else None),
        best_checkpoint=final.best_checkpoint if final else None,
        **extra,
    )


def finished_record(cfg: RunConfig, path: Path) -> records.RunRecord | None:
    """The record at `path` if it is this configuration's (hash and seed) and finished, so
    that a re-run answers at once, before it builds data or runs the guard; None otherwise (no
    record, an unfinished or unreadable one: the run goes on, and says what it finds)."""
    if not path.is_file():
        return None
    try:
        record = records.load_record(path)
    except (OSError, ValueError):
        return None
    if (record.status, record.config_hash, record.seed) != ("finished", cfg.digest(), cfg.seed):
        return None
    return record


def load_finished(path: Path) -> records.RunRecord:
    """The record of a finished run. A bad one is named: the checkpoint can write it again."""
    try:
        return records.load_record(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"record {path} of this finished run cannot be read "
                        f"({records.describe_error(exc)}); delete it and re-run the same command "
                        f"to write it again from the checkpoint") from exc
