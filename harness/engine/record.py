"""The result record of a run: final evaluation, cost, provenance, from a trained model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.engine.best import best_checkpoint_metrics
from harness.engine.device import peak_memory_mb
from harness.engine.evaluate import evaluate
from harness.engine.model import band_map
from harness.measure.collapse import collapse_flags, find_collapses
from harness.measure.cost import CostMeter
from harness.measure.groundtruth import GroundTruthMeter
from harness.results import provenance, records
from registry import DataError
from tasks.base import SPLITS

if TYPE_CHECKING:
    from harness.engine.train import Trainer


def final_metrics(trainer: Trainer, test_cost: CostMeter
                  ) -> tuple[dict[str, dict[str, float]], dict | None, GroundTruthMeter]:
    """Full valid and test splits, the spectral entropy of the tokens each operator
    received on the test split, and its routing against the task's ground truth."""
    model, task, device = trainer.model, trainer.task, trainer.device
    batch_size = trainer.cfg.optim.batch_size
    metrics = {"valid": evaluate(model, task, "valid", device, batch_size)}
    telemetry = records.RoutingTelemetry(model.mixing_layers, model.op_names)
    with telemetry.collect_histogram("test"), GroundTruthMeter(model.mixing_layers) as truth:
        metrics["test"] = evaluate(model, task, "test", device, batch_size, cost=test_cost)
    telemetry.close()
    summary = telemetry.summary()
    return metrics, (summary.entropy_histogram if summary else None), truth


def bands(names: list[str], attn_fraction: float) -> list[dict]:
    """Which operator got which band, lowest scores first (the record's answer to "who got
    the top band")."""
    return [{"operator": op, "target_share": share} for op, share in band_map(names,
                                                                             attn_fraction)]


def bands_text(names: list[str], attn_fraction: float) -> str:
    return ", ".join(f"{op} {share:.1%}" for op, share in band_map(names, attn_fraction))


def training_summary(trainer: Trainer, t_start: float | None) -> dict:
    p = trainer.progress
    return {
        "steps": p.step,
        "stop_reason": p.stop_reason,
        "train_tokens": p.train_tokens,
        "tokens_per_second": p.tokens_per_second,
        "train_seconds": p.train_seconds,
        "wall_seconds": time.perf_counter() - t_start if t_start else None,
        "peak_memory_mb": peak_memory_mb(trainer.device),
        "processes": trainer.dist.world,
        "history": p.history,
    }


def make_record(trainer: Trainer, status: str = "finished", error: str | None = None,
                t_start: float | None = None) -> records.RunRecord:
    from harness.engine.train import run_id

    cfg, task = trainer.cfg, trainer.task
    test_cost = CostMeter(trainer.model, **trainer.cost_kwargs)
    metrics, histogram, truth = (final_metrics(trainer, test_cost) if status == "finished"
                                 else ({}, None, GroundTruthMeter([])))
    ground_truth, predictor_accuracy = truth.summary()
    best = best_checkpoint_metrics(trainer, metrics) if status == "finished" else None
    op_bands = bands(trainer.model.op_names, cfg.routing.attn_fraction)
    data = task.describe()
    data.setdefault("split_hashes", {split: provenance.split_hash(task.dataset(split))
                                     for split in SPLITS})
    extra = {"status": status, **({"error": error} if error else {})}
    return records.RunRecord(
        run_id=run_id(cfg),
        created=provenance.now(),
        task=cfg.data.task,
        router=cfg.routing.router,
        operators=trainer.model.op_names,
        seed=cfg.seed,
        preset=cfg.preset,
        config=cfg.model_dump(),
        config_hash=cfg.digest(),
        flags=trainer.flags + collapse_flags(find_collapses(
            trainer.progress.routing_history, trainer.model.op_names,
            targets=[b["target_share"] for b in op_bands])),
        metrics=metrics,
        cost={"test": test_cost.summary() if status == "finished" else None,
              "train": trainer.step_fn.cost.summary(), "execution": cfg.routing.execution,
              "bands": op_bands},
        training=training_summary(trainer, t_start),
        parameters=trainer.n_params,
        data=data,
        task_metric=task.metric,
        higher_is_better=task.higher_is_better,
        telemetry=records.Telemetry(entropy_histogram=histogram,
                                    gate_history=trainer.progress.gate_history,
                                    ground_truth=ground_truth,
                                    predictor_accuracy=predictor_accuracy,
                                    routing_history=trainer.progress.routing_history),
        environment=provenance.environment(trainer.device, used={
            "operator": list(trainer.model.op_names), "router": [cfg.routing.router],
            "task": [cfg.data.task]}),
        best_checkpoint=best,
        **extra,
    )


def load_finished(path: Path) -> records.RunRecord:
    """The record of a finished run. A bad one is named: the checkpoint can write it again."""
    try:
        return records.load_record(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"record {path} of this finished run cannot be read "
                        f"({records.describe_error(exc)}); delete it and re-run the same command "
                        f"to write it again from the checkpoint") from exc
