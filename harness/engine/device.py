"""Where and how a run computes: device choice, precision policy, seeding, peak memory."""

from __future__ import annotations

import random
import resource
from contextlib import nullcontext

import numpy as np
import torch

from registry import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name} asked for CUDA, but torch sees no GPU; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, plain float32 elsewhere: the harness's one precision policy."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux: the process's peak resident set
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
