"""Cells as one SLURM job array through submitit: ``sweep --executor slurm``.

    python -m harness sweep ... --executor slurm --slurm-partition gpu --slurm-time 240 \\
        --gpus-per-cell 1

One array task per cell (``--slurm-parallel`` at once), each with ``--gpus-per-cell`` GPUs,
``--cpus-per-cell`` CPUs and ``--slurm-time`` minutes. On preemption or at the time limit
SLURM signals the job; submitit calls ``CellJob.checkpoint``, which stops the run (it saves a
checkpoint on SIGTERM) and requeues the cell, which then resumes from that checkpoint. Job
files and logs go to ``<sweep logs>/submitit``; records to ``--out`` (a shared filesystem).
``--no-wait`` submits and exits: re-run the same sweep later to collect the records.
``--slurm-cluster local`` runs the same array on this machine (submitit's local executor).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import submitit

from harness.sweep.cell import CellFailed, CellResult, CellSpec, run_cell
from harness.sweep.grid import Cell
from registry import ConfigError


class CellJob(submitit.helpers.Checkpointable):
    """What one array task runs: the cell, with bounded retries, requeued on preemption."""

    def __init__(self, retries: int = 0):
        self.retries = retries
        self._proc: subprocess.Popen | None = None

    def __call__(self, spec: CellSpec) -> CellResult:
        for _ in range(self.retries + 1):  # each attempt resumes from the cell's checkpoint
            result = run_cell(spec, on_start=self._started)
            if not result.status.startswith("failed"):
                return result
        raise CellFailed(f"{spec.label}: {result.status} after {self.retries + 1} attempts")

    def _started(self, proc: subprocess.Popen) -> None:
        self._proc = proc

    def checkpoint(self, spec: CellSpec) -> submitit.helpers.DelayedSubmission:
        # SIGTERM makes the run save a checkpoint and exit; the requeued job resumes from it
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # the last periodic checkpoint still stands
        return submitit.helpers.DelayedSubmission(CellJob(self.retries), spec)

    def __getstate__(self) -> dict:
        return {"retries": self.retries, "_proc": None}  # a process handle does not pickle


def make_executor(args: argparse.Namespace, folder: Path) -> submitit.AutoExecutor:
    if args.slurm_cluster == "slurm" and shutil.which("srun") is None:
        raise ConfigError("--executor slurm: no SLURM here (srun not found); run it on a login "
                          "node, or try the array locally with --slurm-cluster local")
    executor = submitit.AutoExecutor(folder=folder, cluster=args.slurm_cluster)
    params = dict(name="chiaroscuro-sweep", timeout_min=args.slurm_time, nodes=1,
                  tasks_per_node=1, cpus_per_task=args.cpus_per_cell,
                  gpus_per_node=args.gpus_per_cell or 0,
                  slurm_array_parallelism=args.slurm_parallel)
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    executor.update_parameters(**params)
    return executor


def execute(pending: list[tuple[Cell, CellSpec]], args: argparse.Namespace,
            done: Callable[[Cell, CellResult], None]) -> None:
    folder = Path(pending[0][1].log_path).parent / "submitit"
    executor = make_executor(args, folder)
    with executor.batch():  # one job array for all cells
        jobs = [executor.submit(CellJob(args.retries), spec) for _, spec in pending]
    ids = jobs[0].job_id if len(jobs) == 1 else f"{jobs[0].job_id} .. {jobs[-1].job_id}"
    print(f"submitted {len(jobs)} cells: job {ids} (logs in {folder})")
    if args.no_wait:
        for (cell, _), job in zip(pending, jobs):
            done(cell, CellResult(f"submitted (job {job.job_id})", {}))
        return
    for (cell, _), job in zip(pending, jobs):
        try:
            result = job.result()
        except Exception as exc:  # submitit re-raises the task's failure, with its traceback
            result = CellResult(f"failed: {str(exc).strip().splitlines()[-1]}", {})
        done(cell, result)
