"""The copy task: seeded, in memory, only the copy scored."""

import torch
from chiaroscuro_example_plugin.task import SEP, CopyTask

from tasks.base import IGNORE_INDEX


def test_copy_examples_score_only_the_copy():
    task = CopyTask(10, seed=3, n_train=5, n_eval=2)
    batch = task.collate(task.dataset("train"))
    assert batch.tokens.shape == (5, 10) and bool(batch.padding_mask.all())
    assert (batch.tokens[:, 5] == SEP).all()
    scored = batch.targets != IGNORE_INDEX
    assert scored[:, 5:].all() and not scored[:, :5].any()
    assert torch.equal(batch.targets[:, 5:], batch.tokens[:, :5])  # the copy of the string
    assert len(task.dataset("valid")) == 2


def test_copy_data_are_seeded():
    first = CopyTask(8, seed=1, n_train=4).dataset("train")
    again = CopyTask(8, seed=1, n_train=4).dataset("train")
    other = CopyTask(8, seed=2, n_train=4).dataset("train")
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))
