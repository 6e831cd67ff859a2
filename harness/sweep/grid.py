"""The grid of a sweep: cells (router x operator set x task x seed) and why a cell cannot run.

Pure bookkeeping, the same for every executor: ``grid_from_args`` reads the flags and the sweep
file (its options checked by the run's option declarations, harness/core/options.py),
``expand`` makes the cells and validates each from declarations alone (cheap, no data).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core.options import check_keys, deep_merge, nested
from registry import ChiaroscuroError, ConfigError, did_you_mean


@dataclass
class Cell:
    router: str
    ops: list[str]
    task: str
    seed: int
    overrides: dict[str, Any]
    skip_reason: str | None = None
    status: str = "pending"
    record: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.task} {self.router} {'+'.join(self.ops)} seed {self.seed}"


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


GRID_KEYS = ("routers", "ops", "tasks", "seeds")


def grid_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid and the options every cell shares (``base``). Keys of --set and of the sweep
    file's [base] are checked against the run's option declarations, and the values against
    the config, before any cell is made: a typo is one line, not a skip on every cell."""
    from harness.core.config import load_config_file
    from harness.core.values import parse_value

    grid: dict[str, Any] = {}
    base: dict[str, Any] = {}
    if args.file:
        data = load_config_file(args.file)
        unknown = set(data) - {"sweep", "base"}
        if unknown:
            raise ConfigError(f"sweep file {args.file}: unknown sections {sorted(unknown)}; "
                              f"use [sweep] and [base]")
        grid, base = dict(data.get("sweep", {})), dict(data.get("base", {}))
        for key in grid:
            if key not in GRID_KEYS:
                raise ConfigError(f"sweep file {args.file}: unknown [sweep] key '{key}'"
                                  f"{did_you_mean(key, GRID_KEYS)} (keys: "
                                  f"{', '.join(GRID_KEYS)})")
        check_keys(base, f"sweep file {args.file} [base]")
    if args.routers:
        grid["routers"] = _split(args.routers)
    if args.ops:
        grid["ops"] = [_split(o) for o in args.ops]
    if args.tasks:
        grid["tasks"] = _split(args.tasks)
    if args.seeds:
        grid["seeds"] = [int(s) for s in _split(args.seeds)]
    for key in ("routers", "ops", "tasks"):
        if not grid.get(key):
            raise ConfigError(f"the sweep needs --{key} (or '{key}' in the [sweep] table)")
    grid.setdefault("seeds", [0])
    if args.preset:
        base["preset"] = args.preset
    if args.max_steps:
        base = deep_merge(base, {"budget": {"max_steps": args.max_steps}})
    if args.out:
        base["out"] = args.out
    if args.allow_leaky:
        base["allow_leaky"] = True
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got '{item}'")
        update = nested(key.strip(), parse_value(value))
        check_keys(update, f"--set {item}")
        base = deep_merge(base, update)
    _check_values(base)
    return grid, base


def _check_values(base: dict[str, Any]) -> None:
    """The shared options' values, by the config's own rules (types, bounds, choices)."""
    from pydantic import ValidationError

    from harness.core.config import RunConfig, describe

    try:
        RunConfig.model_validate(base)
    except ValidationError as exc:
        raise ConfigError(f"sweep options (--set, [base]): {describe(exc)}") from None


def expand(grid: dict[str, Any], base: dict[str, Any]) -> list[Cell]:
    cells = []
    for task in grid["tasks"]:
        for router in grid["routers"]:
            for ops in grid["ops"]:
                ops = [ops] if isinstance(ops, str) else list(ops)
                op_sets = [[op] for op in ops] if router == "single" and len(ops) > 1 else [ops]
                for op_set in op_sets:
                    for seed in grid["seeds"]:
                        overrides = deep_merge(base, {
                            "seed": seed, "data": {"task": task},
                            "routing": {"router": router, "ops": op_set}})
                        cell = Cell(router, op_set, task, seed, overrides)
                        cell.skip_reason = validate(overrides)
                        cells.append(cell)
    # the same cell twice (e.g. single over overlapping sets) runs once
    unique: dict[str, Cell] = {}
    for cell in cells:
        unique.setdefault(json.dumps(cell.overrides, sort_keys=True), cell)
    return list(unique.values())


def validate(overrides: dict[str, Any]) -> str | None:
    """Why this cell cannot run here, from declarations alone (cheap), or None."""
    from harness.core.config import resolve
    from harness.runner.guard import refuse_leaks
    from operators import OPERATORS
    from routers import ROUTERS
    from tasks import TASKS

    try:
        task_cls = TASKS.get(overrides["data"]["task"])
        cfg = resolve(overrides, getattr(task_cls, "presets", {}) or {})
        router = ROUTERS.get(cfg.routing.router)
        n = len(cfg.routing.ops)
        if not router.min_ops <= n <= router.max_ops:
            return (f"router '{cfg.routing.router}' takes {router.min_ops}-{router.max_ops} "
                    f"operators, got {n}")
        for name in cfg.routing.ops:
            op_cls = OPERATORS.get(name)
            op_cls(8, 1, 8, task_cls.causal, **cfg.routing.op_options.get(name, {}))
        refuse_leaks(cfg, task_cls.causal)
    except ChiaroscuroError as exc:
        return str(exc)
    except Exception as exc:  # pydantic validation and friends
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def record_path_of(overrides: dict[str, Any]) -> Path:
    from harness.core.config import resolve
    from harness.core.paths import run_paths
    from tasks import TASKS

    task_cls = TASKS.get(overrides["data"]["task"])
    return run_paths(resolve(overrides, getattr(task_cls, "presets", {}) or {}))[0]
