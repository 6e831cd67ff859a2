"""What may train: leaky variants refused from their declarations, and an empirical check
before training that nothing sees the future or the rest of the batch."""

from __future__ import annotations

from collections.abc import Callable

from harness.engine.config import RunConfig
from operators import OPERATORS
from registry import ConfigError
from routers import ROUTERS
from tasks import Task

CHECK_SEQ_LEN = 256  # causality is judged on sequences up to this long before training


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


def guard_causal_task(cfg: RunConfig, task: Task, seq_len: int,
                      log: Callable[[str], None]) -> list[str]:
    """Before training on a causal task, check empirically that nothing sees the future or the
    rest of the batch: declarations can be wrong, plugins included. Refuse a leaking
    combination unless --allow-leaky, in which case the record is flagged."""
    from harness.measure.checks import run_checks

    results = run_checks(cfg, task, min(seq_len, CHECK_SEQ_LEN),
                         which=("causality", "batch independence"), seed=cfg.seed)
    failed = [r for r in results if not r.passed]
    for r in results:
        log(f"check {r.name}: {'pass' if r.passed else 'FAIL'} ({r.detail})")
    if failed and not cfg.allow_leaky:
        raise ConfigError(
            "refusing to train a leaking combination: "
            + "; ".join(f"check '{r.name}' failed: {r.detail}" for r in failed)
            + ". Fix the component, or pass --allow-leaky (the record is then marked leaky)"
        )
    return [f"leaky: check '{r.name}' failed ({r.detail})" for r in failed]
