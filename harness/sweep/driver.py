"""The sweep itself: grid -> cells -> (skip invalid and finished) -> executor -> summary table.

Everything an executor must not decide differently lives here: which cells are invalid, which
are already finished, where records and logs go, and the summary printed at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.core.config import deep_merge
from harness.core.paths import LOCAL_RUNS
from harness.core.protocol import validation_score  # the one rule, shared with the board
from harness.core.values import nested, parse_value
from harness.sweep.cell import CellResult, CellSpec, finished_record
from harness.sweep.executors import load_executor
from harness.sweep.grid import Cell, expand, grid_from_args, record_path_of
from registry import ConfigError


def run_sweep(args: argparse.Namespace) -> int:
    execute = load_executor(args.executor)  # a missing extra fails before any work
    grid, base = grid_from_args(args)
    jobs = getattr(args, "jobs", 1)
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1:
        base.setdefault("threads", 1)  # side by side: one core each (not in the config hash)
    tune = tuning_axes(args.tune)
    seeds = list(grid["seeds"])
    if tune:  # stage 1: every value at the first seed
        grid = {**grid, "seeds": seeds[:1]}
        cells = [c for values in value_combinations(tune)
                 for c in expand(grid, deep_merge(base, values))]
    else:
        cells = expand(grid, base)
    runnable = [c for c in cells if c.skip_reason is None]
    for cell in cells:
        if cell.skip_reason:
            cell.status = "skipped"
            print(f"skip {cell.label}: {cell.skip_reason}")
    print(f"{len(runnable)} cells to run, {len(cells) - len(runnable)} skipped"
          + (f" (tuning {', '.join(tune)} at seed {seeds[0]}; the chosen values then run "
             f"seeds {seeds[1:]})" if tune else ""))
    if args.dry_run:
        for cell in runnable:
            print(f"  {cell.label}")
        return 0
    log_dir = Path(base.get("work_dir") or base.get("out") or LOCAL_RUNS).resolve() / "sweep-logs"
    run_cells(runnable, args, execute, log_dir)
    if tune and seeds[1:]:  # stage 2: the chosen value of each configuration, other seeds
        chosen = choose(runnable, list(tune))
        print_choices(chosen, list(tune))
        more = [c for pick in chosen.values() if pick is not None
                for c in expand({**grid, "seeds": seeds[1:]}, deep_merge(base, pick))]
        run_cells([c for c in more if c.skip_reason is None], args, execute, log_dir)
        cells += more
    print_summary(cells)
    print(f"records: {Path(base.get('out') or LOCAL_RUNS).resolve()}; logs: {log_dir}")
    return 0 if all(not c.status.startswith("failed") for c in cells) else 1


def run_cells(cells: list[Cell], args: argparse.Namespace, execute: Any, log_dir: Path) -> None:
    """Skip the finished cells, dispatch the others to the executor."""
    pending = []
    for cell in cells:
        spec = cell_spec(cell, log_dir)
        record = finished_record(spec.record_path)
        if record is not None:  # skipped before dispatch, whatever the executor
            finish(cell, CellResult("done before", record))
        else:
            pending.append((cell, spec))
    if pending:
        print(f"{len(pending)} cells to dispatch on the {args.executor} executor")
        execute(pending, args, finish)


# -- tuning -----------------------------------------------------------------------------------


def tuning_axes(items: list[str]) -> dict[str, list[Any]]:
    """'optim.lr=1e-3,2e-3' -> {'optim.lr': [0.001, 0.002]}."""
    axes: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or "." not in key or len(parsed) < 2:
            raise ConfigError(f"--tune expects SECTION.KEY=V1,V2,... with two values or more, "
                              f"got '{item}'")
        axes[key.strip()] = parsed
    return axes


def value_combinations(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the tuned values, as nested overrides."""
    combos: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        combos = [deep_merge(c, nested(key, v)) for c in combos for v in values]
    return combos


def _get(overrides: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        overrides = overrides[part]
    return overrides


def choose(cells: list[Cell], keys: list[str]) -> dict[str, dict[str, Any] | None]:
    """Per configuration (everything but the tuned keys and the seed), the tuned values of
    its finished cell with the best validation score; None where none finished."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        rest = json.loads(json.dumps(cell.overrides))
        for key in keys:
            section, _, name = key.rpartition(".")
            _get(rest, section).pop(name, None)
        rest.pop("seed", None)
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(cell)
    chosen: dict[str, dict[str, Any] | None] = {}
    for key, members in groups.items():
        scored = [(validation_score(c.record), c) for c in members if c.record]
        scored = [(s, c) for s, c in scored if s is not None]
        if not scored:
            chosen[key] = None
            continue
        best = max(scored, key=lambda sc: sc[0])[1]
        pick: dict[str, Any] = {}
        for k in keys:
            pick = deep_merge(pick, nested(k, _get(best.overrides, k)))
        chosen[key] = pick
    return chosen


def print_choices(chosen: dict[str, dict[str, Any] | None], keys: list[str]) -> None:
    for config, pick in chosen.items():
        label = _label(json.loads(config))
        if pick is None:
            print(f"tuning {label}: no finished cell; its other seeds do not run")
        else:
            values = ", ".join(f"{k}={_get(pick, k)}" for k in keys)
            print(f"tuning {label}: chose {values} (best validation metric)")


def _label(overrides: dict[str, Any]) -> str:
    routing, data = overrides.get("routing", {}), overrides.get("data", {})
    return f"{data.get('task')} {routing.get('router')} {'+'.join(routing.get('ops', []))}"


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
