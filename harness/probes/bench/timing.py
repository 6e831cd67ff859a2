"""Timing primitives: one call timed on ``torch.utils.benchmark``'s clock, paired ratios with the
spread of their repeats, and the busy-CPU warning.

The bench's method is paired: each repeat times every case once, interleaved, and a ratio is the
median over repeats of the per-repeat ratio, so machine noise hits numerator and denominator
alike. ``torch.utils.benchmark.Timer`` does not time that way: ``timeit`` adds two untimed calls
before every measurement and ``blocked_autorange`` a block-size search, both at ``num_threads=1``
unless told otherwise; three calls per repeat would triple the end-to-end section's time. So
each call is timed with the clock ``Timer`` itself uses, ``torch.utils.benchmark.timer``
(``perf_counter`` read after synchronising the accelerator), and the repeats are summarised
here: median, the interquartile range (IQR, linear interpolation as in ``Measurement``) and
IQR / median, the spread.

A target is judged from a median ratio. When the repeats disagree too much (spread above
``MAX_SPREAD``) and do not all fall on one side of the bound, it is not judged: the verdict
would depend on which repeat one looked at (``repeats_disagree``).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.benchmark import timer as clock

# IQR / median above which the repeats disagree: the threshold at which
# torch.utils.benchmark.Measurement calls a measurement unreliable.
MAX_SPREAD = 0.10


def autocast_context(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes on ``device`` (its queued kernels included)."""
    on_device = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
    with on_device:  # the clock synchronises the current accelerator: make it this one
        t0 = clock()
        fn()
        return clock() - t0


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


def spread(values: list[float]) -> float | None:
    """IQR / median of the repeats (None with fewer than two, or a zero median)."""
    if len(values) < 2:
        return None
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / median if median > 0 else None


def paired_ratio(num: list[float], den: list[float]) -> dict[str, Any]:
    """The ratio of two cases timed in the same repeats: ``ratio``, the median over repeats of
    num[r] / den[r]; ``ratio_spread``, IQR / median of those per-repeat ratios; and
    ``ratio_range``, their [min, max]. All None when nothing was measured."""
    pairs = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    return {"ratio": median_or_none(pairs), "ratio_spread": spread(pairs),
            "ratio_range": [min(pairs), max(pairs)] if pairs else None}


def repeats_disagree(measured: dict[str, Any], bound: float) -> bool:
    """Too much disagreement to judge ``ratio <= bound``: the repeats spread by more than
    MAX_SPREAD and fall on both sides of the bound."""
    rng, s = measured.get("ratio_range"), measured.get("ratio_spread")
    return rng is not None and s is not None and s > MAX_SPREAD and rng[0] <= bound < rng[1]


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


def times_summary(times: list[float]) -> dict[str, Any]:
    """Median, minimum, spread (IQR / median) and every repeat of a non-empty list of times,
    in ms."""
    return {"median_ms": to_ms(median_or_none(times)), "min_ms": to_ms(min(times)),
            "spread": spread(times), "times_ms": [round(v * 1e3, 4) for v in times]}


def fmt_spread(value: float | None) -> str:
    """A spread for the tables: a percentage, marked ``!`` above MAX_SPREAD."""
    if value is None:
        return "-"
    return f"{value:.0%}{'!' if value > MAX_SPREAD else ''}"


def spread_warning(count: int, what: str) -> str | None:
    """The line under a table with ``count`` spreads above MAX_SPREAD (None when there are
    none)."""
    if not count:
        return None
    return (f"warning: the repeats of {count} {what} disagree by more than {MAX_SPREAD:.0%} "
            f"(IQR / median, marked !): their ratios are uncertain; a target they decide is not "
            f"judged when its repeats fall on both sides of the bound. Rerun on a quiet "
            f"machine, with --threads 1 or more --repeats")


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
