"""Deterministic batching: the data position is a function of the step alone.

Epoch e is the permutation drawn from a generator seeded with (seed, e); step s reads batch
s mod batches_per_epoch of epoch s // batches_per_epoch. Resuming at step s therefore needs no
loader state, and every rank of a distributed run can compute its shard of the same global
batch, so N processes see exactly the examples one process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tasks import Batch, Task


class EpochBatches:
    def __init__(self, dataset: Sequence[Any], batch_size: int, seed: int):
        if len(dataset) == 0:
            from registry import DataError

            raise DataError("the training split is empty")
        self.dataset = dataset
        self.batch_size = min(batch_size, len(dataset))
        self.seed = seed
        self.batches_per_epoch = len(dataset) // self.batch_size  # drop the ragged tail
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def indices(self, step: int) -> torch.Tensor:
        """Dataset indices of the global batch used at `step` (0-based)."""
        epoch, offset = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[offset * self.batch_size : (offset + 1) * self.batch_size]

    def batch(self, task: Task, step: int, rank: int = 0, world: int = 1,
              micro: int = 0, n_micro: int = 1) -> Batch:
        """This rank's micro-batch of the global batch at `step`: the global batch is split
        into world * n_micro equal contiguous shards."""
        idx = self.indices(step)
        shards = world * n_micro
        size = len(idx) // shards
        k = rank * n_micro + micro
        return task.collate([self.dataset[int(i)] for i in idx[k * size : (k + 1) * size]])
