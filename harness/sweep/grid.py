"""The grid of a sweep: cells (router x operator set x task x seed x config axes) and why a
cell cannot run.

Pure bookkeeping, the same for every executor: ``grid_from_args`` reads the flags and the sweep
file (its options checked by the run's option declarations, harness/core/options.py),
``expand`` makes the cells and validates each from declarations alone (cheap, no data).

Config axes (sweep file only): any other ``[sweep]`` key is a dotted config path with a list of
values, ``"model.d_model" = [32, 64, 128]`` (or the same as nested tables); ``cases`` is an
array of tables, each a partial config whose entries vary together (a difficulty setting that
sets the sequence length, the task's options and the batch size at once). The cells are the
product of every axis; an option given on the command line (``--set``, ``--preset``,
``--max-steps``) holds in every cell, over the file's axes, so ``--set model.d_model=32``
runs one width of a width sweep.
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
    variant: str = ""  # the config axes' values of this cell, e.g. "d_model=64"

    @property
    def label(self) -> str:
        variant = f" ({self.variant})" if self.variant else ""
        return f"{self.task} {self.router} {'+'.join(self.ops)}{variant} seed {self.seed}"


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


GRID_KEYS = ("routers", "ops", "tasks", "seeds")
CASES = "cases"  # [[sweep.cases]]: partial configs whose entries vary together
# set by the grid's own keys (routers, ops, tasks, seeds): never a config axis
OWN_PATHS = ("seed", "data.task", "routing.router", "routing.ops")


def grid_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The grid and the options every cell shares (``base``). Keys of --set and of the sweep
    file's [base] are checked against the run's option declarations, and the values against
    the config, before any cell is made: a typo is one line, not a skip on every cell."""
    from harness.core.config import load_config_file
    from harness.core.values import parse_value

    grid: dict[str, Any] = {}
    base: dict[str, Any] = {}
    axes: list[list[dict[str, Any]]] = []
    if args.file:
        data = load_config_file(args.file)
        unknown = set(data) - {"sweep", "base"}
        if unknown:
            raise ConfigError(f"sweep file {args.file}: unknown sections {sorted(unknown)}; "
                              f"use [sweep] and [base]")
        table, base = dict(data.get("sweep", {})), dict(data.get("base", {}))
        grid = {k: v for k, v in table.items() if k in GRID_KEYS}
        axes = config_axes({k: v for k, v in table.items() if k not in GRID_KEYS},
                           f"sweep file {args.file}")
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
    typed: dict[str, Any] = {}  # what the command line sets: it holds in every cell
    if args.preset:
        typed["preset"] = args.preset
    if args.max_steps:
        typed = deep_merge(typed, {"budget": {"max_steps": args.max_steps}})
    if args.out:
        typed["out"] = args.out
    if args.allow_leaky:
        typed["allow_leaky"] = True
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got '{item}'")
        update = nested(key.strip(), parse_value(value))
        check_keys(update, f"--set {item}")
        typed = deep_merge(typed, update)
    base = deep_merge(base, typed)
    _check_values(base)
    if axes:
        for values in axes:
            for value in values:
                _check_values(deep_merge(base, value), "sweep file config axes ([sweep])")
        grid["axes"] = [[deep_merge(value, typed) for value in values] for values in axes]
    return grid, base


def config_axes(table: dict[str, Any], where: str) -> list[list[dict[str, Any]]]:
    """The sweep file's config axes (module docstring): per axis, its values as config
    overrides. Keys are checked by the run's option declarations, like [base]."""
    axes = []
    for key, value in table.items():
        if key == CASES:
            if not (isinstance(value, list) and value and all(isinstance(v, dict) and v
                                                               for v in value)):
                raise ConfigError(f"{where}: [sweep] {CASES} must be an array of tables "
                                  f"([[sweep.{CASES}]]), each a partial config")
            cases = [dict(v) for v in value]
            for case in cases:
                check_keys(case, f"{where} [[sweep.{CASES}]]")
                _refuse_own_paths(case, where)
            axes.append(cases)
            continue
        for path, values in _leaves(key, value):
            update = nested(path, 0)
            try:
                check_keys(update, f"{where} [sweep]")
            except ConfigError:
                if "." in path:
                    raise
                raise ConfigError(f"{where}: unknown [sweep] key '{path}'"
                                  f"{did_you_mean(path, [*GRID_KEYS, CASES])} (keys: "
                                  f"{', '.join(GRID_KEYS)}, {CASES}, or a config path such as "
                                  f"\"model.d_model\")") from None
            _refuse_own_paths(update, where)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}: [sweep] \"{path}\" must be a list of values, "
                                  f"e.g. \"{path}\" = [{values!r}]")
            axes.append([nested(path, v) for v in values])
    return axes


def _leaves(key: str, value: Any) -> list[tuple[str, Any]]:
    """(dotted path, values) of one [sweep] entry: nested tables name a path in parts."""
    if not isinstance(value, dict):
        return [(key, value)]
    return [leaf for k, v in value.items() for leaf in _leaves(f"{key}.{k}", v)]


def _refuse_own_paths(update: dict[str, Any], where: str) -> None:
    for path in OWN_PATHS:
        node: Any = update
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"{where}: {path} is set by the grid's own keys ("
                              f"{', '.join(GRID_KEYS)}), not by a config axis")


def axis_product(axes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Every combination of one value per axis, merged: the cells' config-axis overrides."""
    combos: list[dict[str, Any]] = [{}]
    for values in axes:
        combos = [deep_merge(c, v) for c in combos for v in values]
    return combos


def variant_text(axes: list[list[dict[str, Any]]], combo: dict[str, Any]) -> str:
    """The axes' values of one combination, by the last part of each path: 'd_model=64'."""
    paths = sorted({p for values in axes for v in values for p in _flat(v)})
    flat = _flat(combo)
    return ", ".join(f"{p.rpartition('.')[2]}={flat[p]}" for p in paths if p in flat)


def _flat(update: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in update.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _check_values(base: dict[str, Any], where: str = "sweep options (--set, [base])") -> None:
    """The shared options' values, by the config's own rules (types, bounds, choices)."""
    from pydantic import ValidationError

    from harness.core.config import RunConfig, describe

    try:
        RunConfig.model_validate(base)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe(exc)}") from None


def expand(grid: dict[str, Any], base: dict[str, Any]) -> list[Cell]:
    axes = grid.get("axes", [])
    combos = axis_product(axes)
    cells = []
    for task in grid["tasks"]:
        for router in grid["routers"]:
            for ops in grid["ops"]:
                ops = [ops] if isinstance(ops, str) else list(ops)
                op_sets = [[op] for op in ops] if router == "single" and len(ops) > 1 else [ops]
                for op_set in op_sets:
                    for combo in combos:
                        for seed in grid["seeds"]:
                            overrides = deep_merge(deep_merge(base, combo), {
                                "seed": seed, "data": {"task": task},
                                "routing": {"router": router, "ops": op_set}})
                            cell = Cell(router, op_set, task, seed, overrides,
                                        variant=variant_text(axes, combo))
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
