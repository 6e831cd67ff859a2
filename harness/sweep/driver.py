"""The sweep itself: grid -> cells -> (skip invalid and finished) -> executor -> summary table.

Everything an executor must not decide differently lives here: which cells are invalid, which
are already finished, where records and logs go, and the summary printed at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.sweep.cell import CellResult, CellSpec, finished_record
from harness.sweep.executors import load_executor
from harness.sweep.grid import Cell, expand, grid_from_args, record_path_of


def run_sweep(args: argparse.Namespace) -> int:
    execute = load_executor(args.executor)  # a missing extra fails before any work
    grid, base = grid_from_args(args)
    cells = expand(grid, base)
    runnable = [c for c in cells if c.skip_reason is None]
    for cell in cells:
        if cell.skip_reason:
            cell.status = "skipped"
            print(f"skip {cell.label}: {cell.skip_reason}")
    print(f"{len(runnable)} cells to run, {len(cells) - len(runnable)} skipped")
    if args.dry_run:
        for cell in runnable:
            print(f"  {cell.label}")
        return 0
    log_dir = Path(base.get("work_dir") or base.get("out") or "runs").resolve() / "sweep-logs"
    pending = []
    for cell in runnable:
        spec = cell_spec(cell, log_dir)
        record = finished_record(spec.record_path)
        if record is not None:  # skipped before dispatch, whatever the executor
            finish(cell, CellResult("done before", record))
        else:
            pending.append((cell, spec))
    if pending:
        print(f"{len(pending)} cells to dispatch on the {args.executor} executor")
        execute(pending, args, finish)
    print_summary(cells)
    return 0 if all(not c.status.startswith("failed") for c in cells) else 1


def cell_spec(cell: Cell, log_dir: Path) -> CellSpec:
    record_path = record_path_of(cell.overrides).resolve()
    return CellSpec(
        label=cell.label, overrides=cell.overrides, record_path=str(record_path),
        log_path=str(log_dir / (record_path.stem + ".log")), cwd=str(Path.cwd()),
        pythonpath=str(Path(__file__).resolve().parents[2]))


def finish(cell: Cell, result: CellResult) -> None:
    """Record an executor's result on the cell and say so, one line per cell."""
    cell.status, cell.record, cell.seconds = result.status, result.record, result.seconds
    print(f"{cell.label}: {cell.status}")
    sys.stdout.flush()


def print_summary(cells: list[Cell]) -> None:
    from tabulate import tabulate

    print(tabulate([_summary_row(c) for c in cells],
                   headers=["task", "router", "operators", "seed", "status", "test metric",
                            "attn FLOP frac", "seconds"]))


def _summary_row(cell: Cell) -> list[Any]:
    metric = frac = ""
    if cell.record:
        name = cell.record.get("task_metric") or "accuracy"
        value = cell.record.get("metrics", {}).get("test", {}).get(name)
        metric = f"{name} {value:.4f}" if isinstance(value, float) else ""
        cost = (cell.record.get("cost") or {}).get("test") or {}
        if "attention_flop_fraction" in cost:
            frac = f"{cost['attention_flop_fraction']:.3f}"
    status = cell.status if cell.status != "skipped" else f"skipped: {cell.skip_reason}"
    return [cell.task, cell.router, "+".join(cell.ops), cell.seed, status, metric, frac,
            f"{cell.seconds:.0f}" if cell.seconds else ""]
