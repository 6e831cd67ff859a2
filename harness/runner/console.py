"""What the training loop shows while it runs: a live bar on a terminal, plain lines in a log.

On a terminal (stderr is a TTY): a tqdm bar with step/total, ETA, train loss, the last
validation-subset metric and tokens/s. Otherwise (a pipe, a log file, CI): one plain line about
every 5% of the steps and at each evaluation, each with step/total and an ETA, so a log read
later says how far the run came.

A long evaluation (the full splits at the end take minutes on WikiText or IMDB) shows its own
progress the same two ways (``EvalProgress``); a short one shows nothing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm.auto import tqdm

PLAIN_LINES = 20  # plain progress lines per run, besides the evaluations
# An evaluation stays silent this long before a bar or a first line appears: a quick one adds
# nothing to the output. Then a plain line at each further tenth of its batches.
EVAL_QUIET_S = 5.0


def _duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class ProgressDisplay:
    def __init__(self, total: int, initial: int, desc: str, log: Callable[[str], None],
                 enabled: bool = True, eval_every: int | None = None):
        self.total, self.log, self.eval_every = total, log, eval_every
        self.tty = enabled and sys.stderr.isatty()
        self.enabled = enabled
        self.bar = tqdm(total=total, initial=initial, unit="step", file=sys.stderr, desc=desc,
                        dynamic_ncols=True, disable=not self.tty)
        self.every = max(total // PLAIN_LINES, 1)
        self.valid: dict[str, str] = {}
        self._start, self._start_step, self._step = time.perf_counter(), initial, initial
        self._last: dict[str, float] = {}

    def eta(self) -> str:
        done = self._step - self._start_step
        if done <= 0:
            return "?"
        per_step = (time.perf_counter() - self._start) / done
        return _duration(per_step * (self.total - self._step))

    def step(self, step: int, loss: float, tokens_per_second: float) -> None:
        self._step, self._last = step, {"loss": loss, "tps": tokens_per_second}
        if self.tty:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{loss:.3f}", **self.valid,
                                 tok_s=f"{tokens_per_second:,.0f}", refresh=False)
        elif self.enabled and step % self.every == 0 and not self._evaluates(step):
            self.log(f"step {step}/{self.total}: train loss {loss:.4f}, "
                     f"{tokens_per_second:,.0f} tokens/s, ETA {self.eta()}")

    def _evaluates(self, step: int) -> bool:
        """An evaluation line follows at this step: no plain line of its own."""
        return step == self.total or bool(self.eval_every and step % self.eval_every == 0)

    def evaluated(self, step: int, metric: str, values: dict[str, float],
                  full: bool = False) -> None:
        """A validation evaluation (a subset, or the `full` split): shown on the bar and as a
        line of its own."""
        size = next((f"{int(values[k]):,} {k}" for k in ("examples", "tokens") if k in values),
                    "subset")
        short = {"accuracy": "val_acc", "perplexity": "val_ppl"}.get(metric, f"val_{metric}")
        self.valid = {short: f"{values[metric]:.4f}"}
        msg = (f"step {step}/{self.total}: train loss {self._last.get('loss', float('nan')):.4f}"
               f", valid {metric} {values[metric]:.4f} ({'full split' if full else 'subset'} of "
               f"{size}), ETA {self.eta()}")
        if self.tty:
            self.bar.write(msg, file=sys.stderr)
        elif self.enabled:
            self.log(msg)

    def close(self) -> None:
        self.bar.close()


class EvalProgress:
    """``evaluate``'s ``progress(done, total)`` callback for one split: a tqdm bar on a terminal
    once the evaluation has taken EVAL_QUIET_S, otherwise, from then on, a line "what:
    done/total batches, ETA" at each tenth of the batches (nine at most). ``log=None``: shows
    nothing (other ranks)."""

    def __init__(self, what: str, log: Callable[[str], None] | None,
                 quiet_s: float = EVAL_QUIET_S):
        self.what, self.log, self.quiet_s = what, log, quiet_s
        self.tty = log is not None and sys.stderr.isatty()
        self.bar: tqdm | None = None
        self._start = time.perf_counter()
        self._next_tenth = 1

    def __call__(self, done: int, total: int) -> None:
        if self.log is None:
            return
        if self.tty:
            if self.bar is None:
                self.bar = tqdm(total=total, desc=self.what, unit="batch", file=sys.stderr,
                                dynamic_ncols=True, leave=False, delay=self.quiet_s)
            self.bar.update(done - self.bar.n)
            return
        elapsed = time.perf_counter() - self._start
        if done < total and 10 * done >= self._next_tenth * total and elapsed >= self.quiet_s:
            self._next_tenth = 10 * done // total + 1
            eta = elapsed / done * (total - done)
            self.log(f"{self.what}: {done}/{total} batches, ETA {_duration(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
