"""Timing primitives: wall-clock timing of one call, paired ratios, and the busy-CPU warning."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch


def autocast_context(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def page_faults() -> int | None:
    """Minor page faults of this process so far (None where the OS does not count them). A
    step that faults is touching memory the allocator just got from (or gave back to) the
    kernel: a first-touch cost its steady state does not pay."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def error_note(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "out of memory"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:160]


def median_or_none(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def paired_ratio(num: list[float], den: list[float]) -> float | None:
    """Median over repeats of num[r] / den[r]: both measured in the same round."""
    pairs = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    return median_or_none(pairs)


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def times_summary(times: list[float]) -> dict[str, Any]:
    """Median, minimum and every repeat of a non-empty list of times, in ms."""
    return {"median_ms": to_ms(median_or_none(times)), "min_ms": to_ms(min(times)),
            "times_ms": [round(v * 1e3, 4) for v in times]}


def load_average_warning(device: torch.device) -> float | None:
    """Warn when other processes keep the CPU busy: multi-threaded kernels then stall on the
    thread that is not scheduled, and small operators suffer most. Returns the 1-min load."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads()
    if device.type == "cpu" and threads > 1 and load > cores - threads + 0.5:
        print(f"warning: load average {load:.1f} on {cores} cores: other processes are busy, "
              f"and {threads} intra-op threads will stall behind them (each parallel region "
              f"waits for its slowest thread): times and even ratios are unreliable, small "
              f"operators suffer most. Consider --threads 1.", file=sys.stderr)
    return load
