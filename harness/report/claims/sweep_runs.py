"""Running the claims' missing runs through the sweep machinery (harness/sweep)."""

from __future__ import annotations

from pathlib import Path

from harness.report.claims.runs import SPECS, RunSpec, overrides, runnable
from harness.sweep.cell import run_cell
from harness.sweep.driver import cell_spec
from harness.sweep.grid import Cell, validate


def cells_for(specs: list[RunSpec], setting: str, seeds: list[int], *, out: str,
              work_dir: str = "runs", data_dir: str | None = None) -> list[Cell]:
    """One sweep cell per runnable spec and seed, seeds outermost: an interrupted
    reproduction leaves whole seeds done rather than some configurations at every seed."""
    cells = []
    for seed in seeds:
        for spec in specs:
            if not runnable(spec, setting):
                continue
            cell_overrides = overrides(spec, setting, seed, out=out, work_dir=work_dir,
                                      data_dir=data_dir)
            cell = Cell(spec.router, list(spec.ops), cell_overrides["data"]["task"], seed,
                        cell_overrides)
            cell.skip_reason = validate(cell_overrides)
            cells.append(cell)
    return cells


def run_missing(cells: list[Cell], log_dir: Path, log=print) -> bool:
    """Run each cell that has no finished record, one after another; True if none failed."""
    ok = True
    for i, cell in enumerate(cells, 1):
        if cell.skip_reason:
            log(f"[{i}/{len(cells)}] skip {cell.label}: {cell.skip_reason}")
            continue
        result = run_cell(cell_spec(cell, log_dir))
        cell.status, cell.record, cell.seconds = result.status, result.record, result.seconds
        log(f"[{i}/{len(cells)}] {cell.label}: {cell.status}"
            + (f" ({cell.seconds:.0f} s)" if cell.seconds else ""))
        ok = ok and not cell.status.startswith("failed")
    return ok


__all__ = ["SPECS", "cells_for", "run_missing"]
