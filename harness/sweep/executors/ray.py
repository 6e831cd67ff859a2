"""Cells as Ray tasks: ``sweep --executor ray [--ray-address HOST:PORT]``.

Each cell is one Ray task asking for what it needs (``--gpus-per-cell`` GPUs, default one when
the cluster has GPUs; ``--cpus-per-cell`` CPUs), so Ray packs cells onto the cluster and sets
CUDA_VISIBLE_DEVICES for each. A failed cell raises inside its task and Ray retries it up to
``--retries`` times; a retry resumes from the cell's checkpoint. On a cluster, ``--out`` (and
the cache) must be on a filesystem every node sees: records are written there by the cells.
Without ``--ray-address`` a local Ray instance starts for the sweep and stops after it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import ray

from harness.sweep.cell import CellFailed, CellResult, CellSpec, run_cell
from harness.sweep.grid import Cell


def _run_remote(spec: CellSpec) -> CellResult:
    result = run_cell(spec)  # Ray already pinned this worker's GPUs through CUDA_VISIBLE_DEVICES
    if result.status.startswith("failed"):
        raise CellFailed(f"{spec.label}: {result.status}")
    return result


def _start(args: argparse.Namespace, pythonpath: str) -> None:
    # workers import harness.sweep.cell: let them find the same code the driver runs
    runtime_env = {"env_vars": {"PYTHONPATH": pythonpath}}
    if args.ray_address:
        ray.init(address=args.ray_address, runtime_env=runtime_env, log_to_driver=False)
    else:  # "local": a fresh instance even if another one runs on this machine
        ray.init(address="local", runtime_env=runtime_env, include_dashboard=False,
                 log_to_driver=False)


def _gpus_per_cell(args: argparse.Namespace) -> float:
    if args.gpus_per_cell is not None:
        return args.gpus_per_cell
    return 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0


def execute(pending: list[tuple[Cell, CellSpec]], args: argparse.Namespace,
            done: Callable[[Cell, CellResult], None]) -> None:
    _start(args, pending[0][1].pythonpath)
    try:
        task = ray.remote(_run_remote).options(
            num_cpus=args.cpus_per_cell, num_gpus=_gpus_per_cell(args),
            max_retries=args.retries, retry_exceptions=True)
        refs = {task.remote(spec): cell for cell, spec in pending}
        print(f"ray: {len(refs)} tasks on {ray.cluster_resources()}")
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            cell = refs[ready[0]]
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
                result = CellResult(f"failed after {args.retries + 1} attempts: "
                                    f"{str(cause).splitlines()[-1]}", {})
            done(cell, result)
    finally:
        ray.shutdown()
