"""The leak watch: probes along the run itself, through the run's own call sites.

The guard before step 1 probes fresh copies; a component can be honest while watched and leak
afterwards (after N training forwards, N optimiser steps or N backward passes, or only when no
check module is on the call stack). So the run probes itself:

- the evaluation that produces the reported metrics re-runs a random sample of its batches
  as variants (``leak_probe.random_variants``: on causal tasks the tokens after a random t
  changed, on every task half the examples replaced);
- training does the same at a few random steps and at every step a checkpoint follows, on
  that step's own batch, forward and backward.

Each variant goes through the same line of the same function as the batch it varies
(``probed_forwards`` yields both to the caller's loop), so who calls a component tells it
nothing. A variant starts from the state the real forward started from (buffers, RNG), with
the real forward's gradients set aside, and afterwards the state the real forward left is put
back: an honest run's numbers are bit-identical with and without the watch.

What the probes find (``Finding``: the check, where, by how much, the components at fault)
stays here; the runner judges it (a router's declared training-mode exemption) and flags the
record. Findings made in training travel in the checkpoint.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from harness.core.config import RunConfig
from harness.engine.leak_probe import (
    SameState,
    Trace,
    Variant,
    blame,
    gradients_aside,
    random_variants,
    trace,
)
from harness.engine.model import Model, ModelOutput
from tasks import Batch

RANDOM_STEP_SHARE = 0.005  # of the training steps, probed at random (besides checkpoints)
MIN_RANDOM_STEPS = 3
EVAL_SHARE = 0.1  # of an evaluation's batches, probed


@dataclass
class Finding:
    """A probe whose outputs moved where they must not. ``phase`` groups repeats ("training",
    "test evaluation"); ``count`` says how many probes of the phase failed the same check in
    the same mode (the first one is blamed). ``rounding`` set: no leak, float32 rounding
    amplified by a hard decision (harness/engine/leak_probe.py says when), and the note that
    says what moved and why it is rounding; counted apart."""

    check: str
    mode: str  # "train" or "eval"
    phase: str
    where: str
    detail: str
    culprits: tuple[str, ...]
    count: int = 1
    rounding: str = ""

    def to_json(self) -> dict:
        return {**asdict(self), "culprits": list(self.culprits)}

    @classmethod
    def from_json(cls, data: dict) -> Finding:
        return cls(**{**data, "culprits": tuple(data["culprits"])})


class Forward:
    """One forward for the caller to run: ``batch``, then ``took(output)``. ``real`` is False
    for a probe's variant, whose output the caller must not count."""

    def __init__(self, batch: Batch, real: bool = True, keep: bool = False):
        self.batch, self.real, self.keep = batch, real, keep
        self.trace: Trace | None = None
        self.failure = ""

    def took(self, out: ModelOutput) -> None:
        if self.keep:
            self.trace = trace(out)

    def failed(self, why: str) -> None:
        """A variant's forward raised (its loss became non-finite where the batch's was not)."""
        self.failure = why


def probe_steps(seed: int, max_steps: int, ckpt_every: int) -> frozenset[int]:
    """The (0-based) training steps whose batch is probed: a few at random, and every step a
    checkpoint follows."""
    g = torch.Generator().manual_seed(seed + 104_729)
    n_random = min(max_steps, max(MIN_RANDOM_STEPS, math.ceil(RANDOM_STEP_SHARE * max_steps)))
    drawn = torch.randperm(max_steps, generator=g)[:n_random].tolist()
    checkpoints = [*range(ckpt_every - 1, max_steps, ckpt_every), max_steps - 1]
    return frozenset(drawn + checkpoints)


class LeakWatch:
    """The probes of one run, and what they found."""

    def __init__(self, seed: int, vocab_size: int, causal: bool,
                 steps: frozenset[int] = frozenset(), eval_share: float = 0.0):
        self.seed, self.vocab_size, self.causal = seed, vocab_size, causal
        self.steps, self.eval_share = steps, eval_share
        self.findings: list[Finding] = []
        self.probes = 0  # variants run
        self.seconds = 0.0  # spent on them
        self._evaluations = 0

    @classmethod
    def for_run(cls, cfg: RunConfig, vocab_size: int, causal: bool) -> LeakWatch:
        b = cfg.budget
        return cls(cfg.seed, vocab_size, causal, probe_steps(cfg.seed, b.max_steps, b.ckpt_every),
                   EVAL_SHARE)

    def probes_step(self, step: int) -> bool:
        return step in self.steps

    def evaluation_sample(self, n_batches: int) -> frozenset[int]:
        """The batches of an evaluation to probe (a fresh draw for each evaluation)."""
        self._evaluations += 1
        if n_batches <= 0 or self.eval_share <= 0:
            return frozenset()
        g = self._generator(f"sample {self._evaluations}")
        k = min(n_batches, max(1, math.ceil(self.eval_share * n_batches)))
        return frozenset(torch.randperm(n_batches, generator=g)[:k].tolist())

    def _generator(self, key: str) -> torch.Generator:
        # its own stream: the run's RNG never sees what the probes draw
        return torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(key.encode()))

    def variants(self, model: Model, batch: Batch, key: int, phase: str,
                 where: str) -> Iterator[Forward]:
        """Yield the real forward of `batch`, then its variants (see the module docstring)."""
        start = time.perf_counter()
        before = SameState(model)
        self.seconds += time.perf_counter() - start
        real = Forward(batch, keep=True)
        yield real
        start = time.perf_counter()
        after = SameState(model)
        assert real.trace is not None, "the caller must call took() with the output"
        try:
            with gradients_aside(model):
                g = self._generator(f"{phase} {self._evaluations} {key}")
                for variant in random_variants(batch, g, self.vocab_size, self.causal):
                    before.restore()
                    probe = Forward(variant.batch, real=False, keep=True)
                    yield probe
                    self.probes += 1
                    mode = "train" if model.training else "eval"
                    if probe.trace is not None:
                        before.restore()  # blame asks from the state both forwards started in
                        self._judge(model, batch, real.trace, probe.trace, variant, mode, phase,
                                    where)
                    elif not self._seen(variant.check, mode, phase):
                        self.findings.append(Finding(variant.check, mode, phase, where,
                                                     f"{variant.how}: {probe.failure}", ()))
        finally:
            after.restore()
            self.seconds += time.perf_counter() - start

    def _judge(self, model: Model, batch: Batch, ref: Trace, out: Trace, variant: Variant,
               mode: str, phase: str, where: str) -> None:
        moved = variant.moved(ref.logits, out.logits)
        if not moved or self._seen(variant.check, mode, phase):  # blamed once per phase
            return
        found = blame(model, batch, ref, out, variant)
        if found.rounding and self._seen(variant.check, mode, phase, rounding=True):
            return
        b, n = variant.batch.tokens.shape
        detail = (f"{variant.how}, batch {b} x {n}: outputs that must not change moved by "
                  f"{moved:.2e}")
        rounding = f"{detail}; {found.rounding}" if found.rounding else ""
        self.findings.append(Finding(variant.check, mode, phase, where, detail, found.culprits,
                                     rounding=rounding))

    def _seen(self, check: str, mode: str, phase: str, rounding: bool = False) -> bool:
        """Whether `check` already failed in `mode` and `phase` (as rounding, when `rounding`);
        if so it counts one more. A leak after rounding is still blamed."""
        for finding in self.findings:
            if ((finding.check, finding.mode, finding.phase) == (check, mode, phase)
                    and bool(finding.rounding) == rounding):
                finding.count += 1
                return True
        return False

    def state_dict(self) -> list[dict]:
        """Training's findings, for the checkpoint (plain values: weights_only loads them)."""
        return [f.to_json() for f in self.findings]

    def load_state_dict(self, state: list[dict]) -> None:
        self.findings = [Finding.from_json(f) for f in state]


def probed_forwards(watch: LeakWatch | None, model: Model, batch: Batch, *, probed: bool,
                    key: int, phase: str, where: str) -> Iterator[Forward]:
    """The forwards a caller runs for `batch`: the batch itself, then, when `probed`, the
    watch's variants of it."""
    if watch is None or not probed:
        yield Forward(batch)
        return
    yield from watch.variants(model, batch, key, phase, where)
