"""The default executor: cells one after another, or one per visible GPU at a time."""

from __future__ import annotations

import argparse
import sys
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
    if gpus and gpus > 1:
        # one worker per GPU, each pinned to its device through CUDA_VISIBLE_DEVICES
        queue = list(pending)

        def worker(gpu: int) -> None:
            while queue:
                cell, spec = queue.pop(0)
                done(cell, run_cell(spec, gpu))
                bar.update(1)

        with ThreadPoolExecutor(gpus) as pool:
            list(pool.map(worker, range(gpus)))
    else:
        for cell, spec in pending:
            bar.set_postfix_str(cell.label)
            done(cell, run_cell(spec))
            bar.update(1)
    bar.close()
