"""What may train, and whether what trained stayed honest: leaky variants refused from their
declarations, an empirical check before training that nothing sees the future or the rest of
the batch, and the same checks on the trained model and along the run.

Declarations can be wrong, plugins included, so before every run (causal task or not) the
guard probes the assembled model the way the run will use it:

- with its parameters moved away from their initial values, over several random draws (a leak
  gated by a parameter that starts at zero, or at the identity, shows);
- in training mode with autograd on, at the training micro-batch size, and in eval mode
  without autograd, at the evaluation batch size (a component may peek only in one mode, or
  only in batches of five or more);
- at the run's full sequence length (a leak may start late in the sequence).

Checks: causality (causal tasks) and batch independence (every task). A failing combination
is refused unless --allow-leaky, in which case the record is flagged.

One declared exception: a router whose *training* routing is non-causal by design
(``training_noncausal``, a reason; Mixture-of-Depths' per-sequence top-k) may fail causality in
training mode, and only there, and only when the router alone is at fault. Evaluation mode is
checked as for everyone, so every number a record reports comes from causal routing; the
record carries a note with what the guard measured. An operator that leaks in training mode
next to such a router is still refused.

Fresh copies cannot show a component that behaves while new and leaks later (after N training
forwards, optimiser steps or backward passes, or when no check module is on its call stack).
So the guard watches the whole run: ``guard_trained`` checks the trained instance itself
after training, in training mode with a backward pass and in eval mode, and the run's
``LeakWatch`` (harness/engine/watch.py) probes a few training steps and the final evaluation
along their own call sites. Their failures cannot be refused any more: ``run_flags`` turns
them into the record's leaky flags (the same declared exception applies), which keep it off
the ranking. A failure that is float32 rounding amplified by a hard decision, and vanishes in
float64 (harness/engine/leak_probe.py says exactly when), is a note, not a flag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from harness.core.config import RunConfig
from harness.engine.model import Model
from harness.engine.watch import Finding, LeakWatch
from operators import OPERATORS
from registry import ConfigError
from routers import ROUTERS
from tasks import Task

if TYPE_CHECKING:
    from harness.probes.checks import CheckResult

DRAWS = 2  # random parameter draws; each probes both modes


def leak_flags(cfg: RunConfig, causal_task: bool) -> list[str]:
    """Why this combination may leak (future tokens or other examples), from declarations.
    Empty for an honest combination."""
    reasons = []
    router = ROUTERS.get(cfg.routing.router)
    if getattr(router, "leaky", False) or not router.batch_independent:
        reasons.append(f"router '{cfg.routing.router}' is a leaky variant")
    elif causal_task and not router.causal:
        reasons.append(f"router '{cfg.routing.router}' is not causal")
    if causal_task:
        for name in cfg.routing.ops:
            if getattr(OPERATORS.get(name), "leaky", False):
                reasons.append(f"operator '{name}' is a leaky variant (sees future tokens)")
    return reasons


def refuse_leaks(cfg: RunConfig, causal_task: bool) -> list[str]:
    reasons = leak_flags(cfg, causal_task)
    if reasons and not cfg.allow_leaky:
        raise ConfigError(
            f"{'; '.join(reasons)} on task '{cfg.data.task}': its results would not be honest. "
            f"Use an honest variant, or pass --allow-leaky to run it anyway (the record is then "
            f"marked leaky)"
        )
    return reasons


def guard_leaks(cfg: RunConfig, task: Task, seq_len: int, train_batch: int, eval_batch: int,
                log: Callable[[str], None], device: torch.device | str = "cpu") -> list[str]:
    """Probe the run's model for leaks (see the module docstring); refuse a leaking
    combination unless --allow-leaky. Returns the record's flags for what failed."""
    from harness.probes.checks import build_checked_model

    t0 = time.perf_counter()
    failed: dict[str, CheckResult] = {}
    declared: CheckResult | None = None  # a train-mode failure the router declares
    names: list[str] = []
    rounding: list[str] = []  # passes whose only failures were float32 rounding
    for draw in range(DRAWS):
        model = build_checked_model(cfg, task, seq_len, cfg.seed + 7919 * draw, device)
        g = torch.Generator().manual_seed(cfg.seed + 7919 * draw + 2)
        for mode, result in _leak_checks(model, task, seq_len, g, train_batch, eval_batch):
            if result.rounding and result.rounding not in rounding:
                rounding.append(result.rounding)
            if not result.passed and result.name not in failed:
                if mode == "train" and declares_training_leak(cfg, result.name, result.culprits):
                    declared = declared or result
                else:
                    failed[result.name] = result
            if result.name not in names:
                names.append(result.name)
    seconds = time.perf_counter() - t0
    for name in names:
        if name not in failed:
            log(f"check {name}: pass ({DRAWS} parameter draws moved from init; train mode with "
                f"autograd at batch {train_batch}, eval mode at batch {eval_batch}; length "
                f"{seq_len}; {seconds:.1f} s)")
    for result in failed.values():
        log(f"check {result.name}: FAIL ({result.message()})")
    for note in rounding:
        log(f"check passed as float32 rounding, not a leak: {note}")
    notes = [rounding_flag(note, "before training") for note in rounding]
    if declared is not None and "causality" not in failed:
        why = ROUTERS.get(cfg.routing.router).training_noncausal
        finding = (f"causality fails in training mode only, through router "
                   f"'{cfg.routing.router}' as it declares ({why}); evaluation mode passes, "
                   f"so the reported metrics come from causal routing")
        notes.append(f"note: {finding}")
        log(f"check causality (train mode): fails as declared, {finding}")
    if failed and not cfg.allow_leaky:
        raise ConfigError(
            "refusing to train a leaking combination: "
            + "; ".join(f"check '{r.name}' failed: {r.message()}" for r in failed.values())
            + ". Fix the component, or pass --allow-leaky (the record is then marked leaky)"
        )
    return notes + [f"leaky: check '{r.name}' failed ({r.message()})" for r in failed.values()]


def _leak_checks(model: Model, task: Task, seq_len: int, g: torch.Generator, train_batch: int,
                 eval_batch: int, backward: bool = False) -> Iterator[tuple[str, CheckResult]]:
    """(mode, result) of causality (causal tasks) and batch independence on `model`, in
    training mode with autograd at the training micro-batch size (and a backward pass after
    each forward when `backward`), and in eval mode at the evaluation batch size."""
    from harness.probes.checks import check_batch_independence, check_causality

    checks = [check_causality] if task.causal else []
    checks.append(check_batch_independence)
    for check in checks:
        for mode, batch in (("train", train_batch), ("eval", eval_batch)):
            yield mode, check(model, task, seq_len, g, batch, modes=(mode,), backward=backward)


def guard_trained(cfg: RunConfig, model: Model, task: Task, seq_len: int, train_batch: int,
                  eval_batch: int, watch: LeakWatch, log: Callable[[str], None]) -> None:
    """After training, before the final evaluation: the leak checks again, on the trained
    instance itself (not a copy: a component may change its behaviour over a run), in
    training mode with a backward pass after each forward and in eval mode. What fails joins
    the watch's findings (``run_flags`` turns them into the record's flags). The model's state,
    its gradients and the RNG streams are left as they were."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(cfg.seed + 3)
    names, failed, declared = [], 0, 0
    for mode, result in _leak_checks(model, task, seq_len, g, train_batch, eval_batch,
                                     backward=True):
        names += [result.name] if result.name not in names else []
        if result.rounding:
            watch.findings.append(Finding(result.name, mode, "trained model",
                                          "on the trained model", result.detail, (),
                                          rounding=result.rounding))
        if result.passed:
            continue
        watch.findings.append(Finding(result.name, mode, "trained model", "on the trained model",
                                      result.detail, result.culprits))
        if mode == "train" and declares_training_leak(cfg, result.name, result.culprits):
            declared += 1
        else:
            failed += 1
    verdict = f"{failed} FAILED" if failed else "pass"
    verdict += " (causality fails in train mode as the router declares)" if declared else ""
    log(f"checks of the trained model ({' and '.join(names)}; train mode with a backward pass "
        f"at batch {train_batch}, eval mode at batch {eval_batch}): {verdict} "
        f"({time.perf_counter() - t0:.1f} s)")


def run_flags(cfg: RunConfig, watch: LeakWatch, log: Callable[[str], None]) -> list[str]:
    """The record's flags for what was found after the pre-training guard (on the trained model
    and by the probes along the run; harness/engine/watch.py): one per check and components at
    fault, saying where it failed and by how much at first. The router's declared
    training-mode exemption applies as in ``guard_leaks``."""
    groups: dict[tuple[str, tuple[str, ...]], list[Finding]] = {}
    rounding: list[Finding] = []
    for f in watch.findings:
        if f.rounding:
            rounding.append(f)
        elif not (f.mode == "train" and declares_training_leak(cfg, f.check, f.culprits)):
            groups.setdefault((f.check, f.culprits), []).append(f)
    flags = [rounding_flag(f.rounding, _places([f])) for f in rounding]
    for (check, culprits), found in groups.items():
        at_fault = f"; at fault: {', '.join(culprits)}" if culprits else ""
        flags.append(f"leaky: check '{check}' failed {_places(found)} (first: "
                     f"{found[0].detail}){at_fault}")
    leaks = [f for f in flags if f.startswith("leaky")]
    seen = f", {len(rounding)} with float32 rounding only (noted)" if rounding else ""
    log(f"leak probes along the run: {'FAIL' if leaks else 'pass'} ({watch.probes} probes of "
        f"training steps and evaluation batches{seen}, {watch.seconds:.1f} s)")
    return flags


def rounding_flag(note: str, where: str) -> str:
    """The record's note for a leak-check failure that was float32 rounding amplified by a
    hard decision, not a leak (harness/engine/leak_probe.py says when): shown, never ranked
    against."""
    return f"note: leak check passed {where} only as rounding ({note})"


def _places(found: list[Finding]) -> str:
    """Where the findings failed, one phrase per phase: "at training step 5 (train mode, +2
    more)", "on the trained model (train and eval mode)"."""
    phases: dict[str, list[Finding]] = {}
    for f in found:
        phases.setdefault(f.phase, []).append(f)
    parts = []
    for same in phases.values():
        modes = " and ".join(dict.fromkeys(f.mode for f in same))
        more = sum(f.count for f in same) - len(dict.fromkeys(f.mode for f in same))
        parts.append(f"{same[0].where} ({modes} mode{f', +{more} more' if more else ''})")
    return ", ".join(parts)


def declares_training_leak(cfg: RunConfig, check: str, culprits: tuple[str, ...]) -> bool:
    """Whether a failed train-mode check is the one the run's router declares: causality,
    with the router as the only component at fault."""
    router = ROUTERS.get(cfg.routing.router)
    return (check == "causality" and bool(getattr(router, "training_noncausal", ""))
            and culprits == (f"router '{cfg.routing.router}'",))
