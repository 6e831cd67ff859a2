"""``python -m harness sweep``: a grid of routers x operator sets x tasks x seeds.

    python -m harness sweep --routers entropy,random,single --ops dct,attn --tasks listops \\
        --seeds 0,1,2
    python -m harness sweep --file sweeps/listops.toml

Each cell is an ordinary ``run`` (its own process, its own record and checkpoint), so a sweep
inherits resume for free: finished cells are skipped, interrupted ones continue from their
checkpoint. Invalid cells (a router given the wrong number of operators, a leaky variant without
--allow-leaky, an operator that cannot be built here) are skipped with the reason. The router
``single`` takes one operator, so with an operator set it runs once per operator: the baselines.
Cells run one after another, or one per visible GPU at a time.

A sweep file::

    [sweep]
    routers = ["entropy", "random", "single"]
    ops = [["dct", "attn"], ["dct", "rbf", "attn"]]
    tasks = ["listops"]
    seeds = [0, 1, 2]

    [base]            # any run options, shaped like the resolved config
    preset = "cpu"
    [base.budget]
    max_steps = 400
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry import ChiaroscuroError, ConfigError


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


DESCRIPTION = """\
Run a grid of routers x operator sets x tasks x seeds, each cell an ordinary `run` (its own
process, record and checkpoint): finished cells are skipped, interrupted ones resume, invalid
ones are skipped with the reason, and a summary table is printed at the end."""

EPILOG = """\
examples:
  python -m harness sweep --routers entropy,random,single --ops dct,attn --tasks listops \\
      --seeds 0,1,2
  python -m harness sweep --file sweeps/listops.toml --dry-run
  python -m harness sweep --routers entropy --ops dct,attn --ops dct,rbf,attn --tasks listops \\
      --preset smoke --set model.layers=4"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", help="TOML sweep file ([sweep] grid and [base] run options)")
    p.add_argument("--routers", help="comma-separated routers")
    p.add_argument("--ops", action="append",
                   help="comma-separated operator set; repeat for several sets")
    p.add_argument("--tasks", help="comma-separated tasks")
    p.add_argument("--seeds", help="comma-separated seeds (default 0)")
    p.add_argument("--preset", help="preset for every cell")
    p.add_argument("--max-steps", type=int, help="budget for every cell")
    p.add_argument("--out", help="folder for records (default runs/, git-ignored; "
                   "results/runs holds the committed ones)")
    p.add_argument("--allow-leaky", action="store_true",
                   help="let leaky variants run (their records are marked leaky)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", default=[],
                   help="any run option for every cell, e.g. --set model.layers=4")
    p.add_argument("--gpus", type=int, default=None,
                   help="cells in parallel, one per GPU (default: all visible GPUs; 0 = serial)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and exit")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def grid_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from harness.cli.main import _parse_value
    from harness.engine.config import deep_merge, load_config_file

    grid: dict[str, Any] = {}
    base: dict[str, Any] = {}
    if args.file:
        data = load_config_file(args.file)
        unknown = set(data) - {"sweep", "base"}
        if unknown:
            raise ConfigError(f"sweep file {args.file}: unknown sections {sorted(unknown)}; "
                              f"use [sweep] and [base]")
        grid, base = dict(data.get("sweep", {})), dict(data.get("base", {}))
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
        if not sep:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got '{item}'")
        base = deep_merge(base, _nested(key.strip(), _parse_value(value)))
    return grid, base


def expand(grid: dict[str, Any], base: dict[str, Any]) -> list[Cell]:
    from harness.engine.config import deep_merge

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
    from harness.engine.config import resolve
    from harness.engine.guard import refuse_leaks
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
    from harness.engine.config import resolve
    from harness.engine.train import run_paths
    from tasks import TASKS

    task_cls = TASKS.get(overrides["data"]["task"])
    return run_paths(resolve(overrides, getattr(task_cls, "presets", {}) or {}))[0]


def run_cell(cell: Cell, gpu: int | None, log_dir: Path) -> None:
    path = record_path_of(cell.overrides)
    if path.exists():
        record = json.loads(path.read_text())
        if record.get("status", "finished") == "finished":
            cell.status, cell.record = "done before", record
            return
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cell.overrides, f)
        config_file = f.name
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / (path.stem + ".log")
    t0 = time.perf_counter()
    with log.open("a") as out:
        result = subprocess.run([sys.executable, "-m", "harness", "run", "--config", config_file],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    Path(config_file).unlink(missing_ok=True)
    cell.seconds = time.perf_counter() - t0
    if result.returncode == 0 and path.exists():
        cell.status, cell.record = "ran", json.loads(path.read_text())
    else:
        cell.status = f"failed (exit {result.returncode}, log {log})"


def run(args: argparse.Namespace) -> int:
    from tabulate import tabulate
    from tqdm.auto import tqdm

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
    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    log_dir = Path(base.get("work_dir") or base.get("out") or "runs") / "sweep-logs"
    bar = tqdm(total=len(runnable), unit="cell", file=sys.stderr, disable=None)
    if gpus and gpus > 1:
        # one worker per GPU, each pinned to its device through CUDA_VISIBLE_DEVICES
        queue = list(runnable)

        def worker(gpu: int) -> None:
            while queue:
                cell = queue.pop(0)
                run_cell(cell, gpu, log_dir)
                bar.update(1)

        with ThreadPoolExecutor(gpus) as pool:
            list(pool.map(worker, range(gpus)))
    else:
        for cell in runnable:
            bar.set_postfix_str(cell.label)
            run_cell(cell, None, log_dir)
            bar.update(1)
            print(f"{cell.label}: {cell.status}")
    bar.close()
    print(tabulate([_summary_row(c) for c in cells],
                   headers=["task", "router", "operators", "seed", "status", "test metric",
                            "attn FLOP frac", "seconds"]))
    return 0 if all(not c.status.startswith("failed") for c in cells) else 1


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
