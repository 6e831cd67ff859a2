"""The default executor: cells one after another, one per visible GPU at a time, or (CPU,
``--jobs N``) N at a time, each run with one thread (the sweep sets ``threads`` for them)."""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from harness.sweep.cell import CellResult, CellSpec, run_cell
from harness.sweep.grid import Cell


def execute(pending: list[tuple[Cell, CellSpec]], args: argparse.Namespace,
            done: Callable[[Cell, CellResult], None]) -> None:
    from tqdm.auto import tqdm

    gpus = args.gpus
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    bar = tqdm(total=len(pending), unit="cell", file=sys.stderr, disable=None)
    jobs = getattr(args, "jobs", 1) or 1
    if (gpus and gpus > 1) or jobs > 1:
        # one worker per GPU, each pinned to its device through CUDA_VISIBLE_DEVICES; or, on
        # the CPU, `jobs` workers side by side
        queue = list(pending)
        lock = threading.Lock()

        def worker(slot: int) -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    cell, spec = queue.pop(0)
                done(cell, run_cell(spec, slot if gpus and gpus > 1 else None))
                bar.update(1)

        workers = gpus if gpus and gpus > 1 else jobs
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(worker, range(workers)))
    else:
        for cell, spec in pending:
            bar.set_postfix_str(cell.label)
            done(cell, run_cell(spec))
            bar.update(1)
    bar.close()
