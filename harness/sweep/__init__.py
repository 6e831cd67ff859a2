"""``python -m harness sweep``: a grid of routers x operator sets x tasks x seeds.

    python -m harness sweep --routers entropy,random,single --ops dct,attn --tasks listops \\
        --seeds 0,1,2
    python -m harness sweep --file sweeps/listops.toml
    python -m harness sweep ... --executor ray [--ray-address HOST:6379]
    python -m harness sweep ... --executor slurm --slurm-partition gpu --slurm-time 240
    python -m harness sweep ... --tune optim.lr=1e-3,2e-3,4e-3 --seeds 0,1,2 --jobs 2

Each cell is an ordinary ``run`` (its own process, its own record and checkpoint), so a sweep
inherits resume for free: finished cells are skipped, interrupted ones continue from their
checkpoint. Invalid cells (a router given the wrong number of operators, a leaky variant without
--allow-leaky, an operator that cannot be built here) are skipped with the reason. The router
``single`` takes one operator, so with an operator set it runs once per operator: the baselines.

Where cells run is the executor's business (``executors/``): ``local`` (the default) runs them
one after another, one per visible GPU at a time, or ``--jobs N`` side by side on the CPU;
``ray`` makes each cell a Ray task; ``slurm`` submits them as one submitit job array. Whatever
the executor, finished cells are skipped before anything is dispatched and the summary table is
the same.

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

Tuning (``--tune optim.lr=1e-3,2e-3,4e-3``): each value runs at the first seed; per
configuration, the value whose record has the best validation metric (of its best-validation
checkpoint) is chosen, on validation only, and runs the remaining seeds. Every record stays:
the board shows the grid and the chosen value.

This module is imported to build the parser: it imports nothing heavy at module level.
"""

from __future__ import annotations

import argparse

EXECUTOR_NAMES = ("local", "ray", "slurm")


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
    p.add_argument("--tune", action="append", metavar="SECTION.KEY=V1,V2,...", default=[],
                   help="tune an option on validation: every value runs at the first seed, "
                        "the value with the best validation metric (its best-validation "
                        "checkpoint) runs the other seeds; e.g. --tune optim.lr=1e-3,2e-3,4e-3")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="local executor on CPU: N cells side by side, one thread each "
                        "(default 1)")
    p.add_argument("--gpus", type=int, default=None,
                   help="local: cells in parallel, one per GPU (default: all visible GPUs; "
                        "0 = serial)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and exit")
    g = p.add_argument_group("where cells run")
    g.add_argument("--executor", choices=EXECUTOR_NAMES, default="local",
                   help="local (default), ray (pip install -e '.[ray]'), "
                        "slurm (pip install -e '.[slurm]')")
    g.add_argument("--retries", type=int, default=2,
                   help="ray, slurm: times a failed cell is retried (it resumes from its "
                        "checkpoint) before it is reported failed")
    g.add_argument("--gpus-per-cell", type=int, default=None,
                   help="ray, slurm: GPUs each cell asks for (ray default: 1 if the cluster "
                        "has GPUs, else 0; slurm default 0)")
    g.add_argument("--cpus-per-cell", type=int, default=1, help="ray, slurm: CPUs per cell")
    g.add_argument("--ray-address", help="join a running Ray cluster (HOST:PORT or auto); "
                   "without it a local Ray instance starts")
    g.add_argument("--slurm-partition", help="SLURM partition")
    g.add_argument("--slurm-time", type=int, default=60,
                   help="time limit per cell in minutes; a cell cut off resumes when requeued")
    g.add_argument("--slurm-parallel", type=int, default=64,
                   help="array tasks running at once")
    g.add_argument("--slurm-cluster", choices=("slurm", "local", "debug"), default="slurm",
                   help="submitit cluster: 'local' runs the same job array on this machine")
    g.add_argument("--no-wait", action="store_true",
                   help="slurm: submit and exit; re-run the sweep later to collect results")


# The grid's names at package level (``from harness.sweep import Cell, record_path_of``),
# imported on first use so that building the parser stays light.
_GRID_NAMES = ("Cell", "expand", "grid_from_args", "record_path_of", "validate")


def __getattr__(name: str):
    if name in _GRID_NAMES:
        from harness.sweep import grid

        return getattr(grid, name)
    raise AttributeError(f"module 'harness.sweep' has no attribute '{name}'")


def run(args: argparse.Namespace) -> int:
    from harness.sweep.driver import run_sweep

    return run_sweep(args)
