"""The C allocator's policy for freed memory: the one process-wide setting a CPU step's speed
depends on besides threads."""

from __future__ import annotations

import ctypes
import os

# glibc hands freed memory back to the OS (unmapping big blocks, trimming the heap), so on CPU
# the MB-sized temporaries of a step are page-faulted in afresh on every call: the causal
# dct's kernel idct at (256, 2048) took 1,500 page faults per call, 1.5 ms, more than its FFT
# (0.3 ms), and a 4-layer training step at N=2048 about 100,000. Serving every block from the
# heap (no mmap) and trimming only above 1 GiB keeps freed memory for reuse, as the jemalloc
# and tcmalloc allocators that PyTorch's CPU tuning guide recommends do; the price is that a
# process keeps its peak heap. CHIAROSCURO_MALLOC=system leaves glibc's defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_THRESHOLD = 1 << 30
_malloc_setting: str | None = None


def keep_freed_memory() -> str:
    """Make glibc keep freed memory for reuse (see above); idempotent. Returns what the process
    runs with, for the records: 'glibc keep-freed (...)', 'system' or 'system (...)'."""
    global _malloc_setting
    if _malloc_setting is None:
        _malloc_setting = _set_malloc_policy()
    return _malloc_setting


def malloc_setting() -> str:
    """What keep_freed_memory set in this process ('system' when it was not called)."""
    return _malloc_setting or "system"


def _set_malloc_policy() -> str:
    if os.environ.get("CHIAROSCURO_MALLOC", "").strip().lower() == "system":
        return "system (CHIAROSCURO_MALLOC=system)"
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl without it): nothing to tune
        return "system (not glibc)"
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)):
        return "system (mallopt refused)"
    return f"glibc keep-freed (no mmap, trim_threshold {_TRIM_THRESHOLD >> 30} GiB)"
