"""Toy tasks the tests register as plugins (tests/test_guard.py, test_run_guard.py, conftest.py):
random tokens over a vocabulary of 11, small enough to build and train in-process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from tasks import TASKS, ClassificationTask, LanguageModelingTask


class ToyLM(LanguageModelingTask):
    """A causal task: 16 random sequences per split."""

    vocab_size = 11

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (self.seq_len + 1,), generator=g), 0) for _ in range(16)]


class ToyClasses(ClassificationTask):
    """A non-causal task: 32 random sequences of random lengths (padding), 3 random labels."""

    vocab_size = 11
    num_classes = 3

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (int(torch.randint(4, self.seq_len + 1, (1,),
                                                            generator=g)),), generator=g),
                 int(torch.randint(0, 3, (1,), generator=g))) for _ in range(32)]


@contextmanager
def registered_tasks(tasks: dict[str, type]) -> Iterator[None]:
    """Each class registered as a task under its name inside the block, removed after it. Each
    registration gets a subclass of its own: the registry names a class once
    (registry.bind_name), and these classes serve under several names."""
    for name, cls in tasks.items():
        TASKS.add(name, type(cls.__name__, (cls,), {}))
    try:
        yield
    finally:
        for name in tasks:
            del TASKS._entries[name]
