"""Deterministic batching: the data position is a function of the step alone.

Epoch e is an order drawn from a generator seeded with (seed, e); step s reads batch
s mod batches_per_epoch of epoch s // batches_per_epoch. Resuming at step s therefore needs no
loader state, and every rank of a distributed run can compute its shard of the same global
batch, so N processes see exactly the examples one process would.

Length bucketing (on by default for variable-length data): each epoch's permutation is cut
into chunks of BUCKET_BATCHES batches, each chunk is sorted by length and cut into batches, and
the batch order is shuffled. Batches then hold examples of similar length, so little compute
goes to padding (ListOps lengths vary 10x), while every epoch still visits every example once
in a seeded random order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils.data

from harness.core.config import RunConfig, seq_len_of
from tasks import TASKS, Batch, Task

BUCKET_BATCHES = 50


def build_task(cfg: RunConfig, *, shape_only: bool = False) -> Task:
    """The run's task; ``shape_only``: for checks on random inputs, it reads no data."""
    task_cls = TASKS.get(cfg.data.task)
    task = task_cls(
        seq_len_of(cfg),
        data_dir=cfg.data.data_dir,
        seed=cfg.seed,
        cache_dir=cfg.data.cache_dir,
        **cfg.data.task_options,
    )
    task.shape_only = shape_only
    return task


class EpochBatches:
    def __init__(self, dataset: Sequence[Any], batch_size: int, seed: int, bucket: bool = True):
        if len(dataset) == 0:
            from registry import DataError

            raise DataError("the training split is empty")
        self.dataset = dataset
        self.batch_size = min(batch_size, len(dataset))
        self.seed = seed
        self.batches_per_epoch = len(dataset) // self.batch_size  # drop the ragged tail
        self._epoch = -1
        self._perm: torch.Tensor | None = None
        self.lengths = _lengths(dataset) if bucket else None

    def indices(self, step: int) -> torch.Tensor:
        """Dataset indices of the global batch used at `step` (0-based)."""
        epoch, offset = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._perm = self._epoch_order(epoch)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[offset * self.batch_size : (offset + 1) * self.batch_size]

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.dataset), generator=g)
        if self.lengths is None:
            return perm
        bs = self.batch_size
        chunk = bs * BUCKET_BATCHES
        pieces = []
        for start in range(0, len(perm), chunk):
            idx = perm[start : start + chunk]
            pieces.append(idx[torch.argsort(self.lengths[idx], stable=True)])
        ordered = torch.cat(pieces)
        n_batches = len(ordered) // bs
        batches = ordered[: n_batches * bs].view(n_batches, bs)
        return batches[torch.randperm(n_batches, generator=g)].flatten()

    def batch(self, task: Task, step: int, rank: int = 0, world: int = 1,
              micro: int = 0, n_micro: int = 1) -> Batch:
        """This rank's micro-batch of the global batch at `step`: the global batch is split
        into world * n_micro equal contiguous shards."""
        idx = self.indices(step)
        shards = world * n_micro
        size = len(idx) // shards
        k = rank * n_micro + micro
        return task.collate([self.dataset[int(i)] for i in idx[k * size : (k + 1) * size]])


def _lengths(dataset: Sequence[Any]) -> torch.Tensor | None:
    """Lengths of (ids, ...) examples, or None when all are equal (nothing to bucket)."""
    try:
        lengths = torch.tensor([len(example[0]) for example in dataset])
    except (TypeError, IndexError):
        return None
    return lengths if len(lengths) and bool((lengths != lengths[0]).any()) else None


def by_length(dataset: Sequence[Any]) -> Sequence[Any]:
    """The dataset in length order, for evaluation: metrics are sums over examples, so the
    order is free, and similar lengths in a batch waste little compute on padding."""
    lengths = _lengths(dataset)
    if lengths is None:
        return dataset
    return torch.utils.data.Subset(dataset, torch.argsort(lengths, stable=True).tolist())
