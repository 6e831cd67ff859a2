"""Running the claims' missing runs through the sweep machinery (harness/sweep), with tuning.

Stage 1: every tuned spec's learning-rate grid at its tuning seed (the seed its grid already
ran at, else the first of ``--seeds``). Stage 2: the other seeds, seed-major (an interrupted
reproduction leaves whole seeds done rather than some configurations at every seed), a tuned
spec at the value chosen on validation. The choice is the evidence's (``Evidence.runs(key)
.tuning``, the sweep's own rule), read from the records stage 1 wrote: the page and the runs
can never disagree about it. Cells run on the sweep's executor, ``--jobs N`` side by side with
one thread each.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.core.records import load_records
from harness.report.claims.evidence import Evidence
from harness.report.claims.runs import LR_GRID, RunSpec, overrides, runnable, tuned
from harness.sweep.driver import run_cells
from harness.sweep.executors import load_executor
from harness.sweep.grid import Cell, validate


def evidence(out: str, setting: str, data_dir: str | None) -> Evidence:
    records, _ = load_records(Path(out))
    return Evidence(records, setting, data_dir)


def make_cell(spec: RunSpec, setting: str, seed: int, *, out: str, work_dir: str,
              data_dir: str | None, lr: float | None = None, jobs: int = 1) -> Cell:
    cell_options = overrides(spec, setting, seed, out=out, work_dir=work_dir,
                             data_dir=data_dir, lr=lr)
    if jobs > 1:
        cell_options["threads"] = 1  # side by side: one core each (not in the config hash)
    cell = Cell(spec.router, list(spec.ops), cell_options["data"]["task"], seed, cell_options)
    cell.skip_reason = validate(cell_options)
    return cell


def tuning_seed(ev: Evidence, spec: RunSpec, seeds: list[int]) -> int:
    """Where the spec's grid runs: the seed it already ran at, else the first seed."""
    tuning = ev.runs(spec.key).tuning
    return tuning.seed if tuning is not None and tuning.seed is not None else seeds[0]


def stage1(specs: list[RunSpec], setting: str, seeds: list[int], ev: Evidence,
           **where: Any) -> list[Cell]:
    """Every tuned spec's grid at its tuning seed."""
    return [make_cell(spec, setting, tuning_seed(ev, spec, seeds), lr=lr, **where)
            for spec in specs if runnable(spec, setting) and tuned(spec, setting)
            for lr in LR_GRID]


def stage2(specs: list[RunSpec], setting: str, seeds: list[int], ev: Evidence,
           log: Callable[[str], None] = print, **where: Any) -> list[Cell]:
    """The other cells, seed-major: untuned specs at every seed, tuned ones at their chosen
    value at the seeds other than their tuning seed (none until the tuning has chosen)."""
    cells = []
    for seed in seeds:
        for spec in specs:
            if not runnable(spec, setting):
                continue
            if not tuned(spec, setting):
                cells.append(make_cell(spec, setting, seed, **where))
                continue
            tuning = ev.runs(spec.key).tuning
            assert tuning is not None
            if tuning.chosen is None:
                if seed == seeds[0]:
                    log(f"{spec.key}: no learning rate chosen yet ({tuning.problem}); its "
                        f"other seeds wait for it")
                continue
            if seed != tuning.seed:
                cells.append(make_cell(spec, setting, seed, lr=tuning.chosen, **where))
    return cells


def run_stage(cells: list[Cell], jobs: int, log_dir: Path,
              log: Callable[[str], None] = print) -> bool:
    """Run the cells without a finished record on the sweep's local executor; True if none
    failed."""
    for cell in cells:
        if cell.skip_reason:
            cell.status = "skipped"
            log(f"skip {cell.label}: {cell.skip_reason}")
    todo = [c for c in cells if not c.skip_reason]
    args = argparse.Namespace(executor="local", gpus=None, jobs=jobs)
    run_cells(todo, args, load_executor("local"), log_dir)
    return all(not c.status.startswith("failed") for c in todo)


def reproduce_runs(specs: list[RunSpec], setting: str, seeds: list[int], *, out: str,
                   work_dir: str, data_dir: str | None, jobs: int = 1,
                   log: Callable[[str], None] = print) -> bool:
    """Stage 1, then stage 2 at the values chosen from stage 1's records; True if no cell
    failed."""
    where = {"out": out, "work_dir": work_dir, "data_dir": data_dir, "jobs": jobs}
    log_dir = Path(work_dir).resolve() / "sweep-logs"
    first = stage1(specs, setting, seeds, evidence(out, setting, data_dir), **where)
    ok = run_stage(first, jobs, log_dir, log)
    second = stage2(specs, setting, seeds, evidence(out, setting, data_dir), log, **where)
    return run_stage(second, jobs, log_dir, log) and ok
