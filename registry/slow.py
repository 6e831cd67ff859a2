"""Say what is loading when it takes long: a plugin slow to import (a heavy dependency, a network
mount) would otherwise stall every command that touches a registry, with no message."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SLOW_AFTER = 1.5  # seconds: longer than any healthy import of a plugin module


@contextmanager
def say_if_slow(what: str, after: float | None = None) -> Iterator[None]:
    """Around a slow step: after `after` seconds (SLOW_AFTER) still inside, print "loading
    <what> ..." on stderr, and when it ends, how long it took. Silent when it is quick."""
    delay = SLOW_AFTER if after is None else after
    t0 = time.perf_counter()
    said = threading.Event()

    def say() -> None:
        said.set()
        print(f"loading {what} (still importing after {delay:g} s) ...", file=sys.stderr,
              flush=True)

    timer = threading.Timer(delay, say)
    timer.daemon = True  # never keeps the process alive
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        if said.is_set():
            print(f"loaded {what} in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
