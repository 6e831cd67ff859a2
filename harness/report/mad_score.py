"""MAD's score, from records only (Poli et al. 2024; MAD-lab's analysis.compute_model_mad_scores).

For one configuration (what is scored: the model, the routing and operators, the preset and
the optimiser but its learning rate and weight decay), on each MAD task:

1. every *difficulty setting* (the task's data: sequence length and task options) was run over
   a small grid of learning rate x weight decay (MAD's: 1e-4, 5e-4, 1e-3 x 0, 0.1);
2. per setting, the grid cell with the best *validation* accuracy is chosen (MAD, which has no
   validation split, picks on test) and its *test* accuracy is the setting's score; seeds of a
   cell are averaged first, and a record's numbers come from its best-validation checkpoint
   when it has one (the one the board ranks), else from its final weights;
3. the task's score is the mean over its settings; the overall MAD score is the mean over the
   six tasks (``complete`` says whether all six were scored).

The accuracy is MAD's convention, torchmetrics' macro average (``macro_accuracy``, see
tasks/recall.py), unless another metric is asked for. The budget is not part of the
configuration: MAD trains every setting for 200 epochs, so a setting with fewer training
examples runs fewer steps. Records that are unfinished, leaky or flagged are left out.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.core.protocol import checkpoint_metrics
from harness.core.records import RunRecord
from tasks.mad_common import MAD_TASKS

# config entries that do not define the configuration being scored (where and how it ran, the
# data, which is the difficulty setting, and the budget, which follows the data in MAD)
NOT_CONFIGURATION = ("seed", "out", "work_dir", "device", "compile", "threads", "tracker",
                     "data", "budget")
SWEPT = ("lr", "weight_decay")  # optim entries the grid varies


def configuration_key(record: RunRecord) -> str:
    config = {k: v for k, v in record.config.items() if k not in NOT_CONFIGURATION}
    config["optim"] = {k: v for k, v in config.get("optim", {}).items() if k not in SWEPT}
    return json.dumps(config, sort_keys=True, default=str)


def setting_of(record: RunRecord) -> dict[str, Any]:
    """The difficulty setting a record ran: its sequence length and task options."""
    data = record.config.get("data", {})
    return {"seq_len": data.get("seq_len"), **data.get("task_options", {})}


def cell_of(record: RunRecord) -> tuple[float, float]:
    optim = record.config.get("optim", {})
    return float(optim.get("lr", "nan")), float(optim.get("weight_decay", "nan"))


@dataclass
class SettingScore:
    """One difficulty setting of one task: the chosen grid cell and its numbers."""

    task: str
    setting: dict[str, Any]
    lr: float
    weight_decay: float
    valid: float  # mean over the chosen cell's seeds
    test: float
    cells: int  # grid cells with a record (MAD's grid has 6)
    seeds: int  # seeds of the chosen cell


@dataclass
class MadScore:
    configuration: str  # configuration_key
    label: str  # router, operators and preset, for people
    settings: list[SettingScore] = field(default_factory=list)

    @property
    def per_task(self) -> dict[str, float]:
        tasks: dict[str, list[float]] = {}
        for s in self.settings:
            tasks.setdefault(s.task, []).append(s.test)
        return {t: statistics.fmean(v) for t, v in sorted(tasks.items())}

    @property
    def overall(self) -> float | None:
        per_task = self.per_task
        return statistics.fmean(per_task.values()) if per_task else None

    @property
    def complete(self) -> bool:
        return set(self.per_task) == set(MAD_TASKS)


def mad_scores(records: Iterable[RunRecord], metric: str = "macro_accuracy",
               tasks: Iterable[str] = MAD_TASKS) -> tuple[list[MadScore], list[str]]:
    """MAD scores of every configuration found in ``records`` (module docstring), and one
    line per record left out for lack of ``metric``."""
    wanted = set(tasks)
    cells: dict[str, dict[tuple[str, str], dict[tuple[float, float], list]]] = {}
    labels: dict[str, str] = {}
    problems = []
    for r in records:
        if r.task not in wanted or r.status != "finished" or r.warning_flags:
            continue
        numbers = checkpoint_metrics(r)
        valid, test = numbers.get("valid", {}).get(metric), numbers.get("test", {}).get(metric)
        if valid is None or test is None:
            problems.append(f"{r.run_id}: no valid and test {metric}; left out")
            continue
        key = configuration_key(r)
        labels.setdefault(key, f"{r.router} {'+'.join(r.operators)} ({r.preset or 'no preset'})")
        setting = (r.task, json.dumps(setting_of(r), sort_keys=True))
        grid = cells.setdefault(key, {}).setdefault(setting, {})
        grid.setdefault(cell_of(r), []).append((valid, test))
    scores = []
    for key, settings in cells.items():
        score = MadScore(key, labels[key])
        for (task, setting), grid in sorted(settings.items()):
            means = {cell: (statistics.fmean(v for v, _ in runs),
                            statistics.fmean(t for _, t in runs), len(runs))
                     for cell, runs in sorted(grid.items())}
            (lr, wd), (valid, test, seeds) = max(means.items(), key=lambda kv: kv[1][0])
            score.settings.append(SettingScore(task, json.loads(setting), lr, wd, valid, test,
                                               len(grid), seeds))
        scores.append(score)
    return sorted(scores, key=lambda s: s.label), problems


def render(scores: list[MadScore]) -> str:
    """A markdown table: one row per configuration, one column per MAD task, then overall."""
    head = ["configuration", *MAD_TASKS, "MAD score"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scores:
        per_task = s.per_task
        counts = {t: sum(1 for x in s.settings if x.task == t) for t in per_task}
        cells = [f"{per_task[t]:.3f} ({counts[t]})" if t in per_task else "-" for t in MAD_TASKS]
        overall = f"{s.overall:.3f}" + ("" if s.complete else " (incomplete)")
        lines.append("| " + " | ".join([s.label, *cells, overall]) + " |")
    return "\n".join(lines) + "\n\n(n): difficulty settings averaged; each setting's test " \
        "accuracy is its best cell of the lr x weight-decay grid, chosen on validation.\n"
