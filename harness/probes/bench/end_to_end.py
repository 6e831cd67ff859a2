"""End to end: the harness's training step for single attention vs each routed combination,
over sequence lengths, on a language-modelling (causal) and a classification task.

Each combination is ``router:op+op`` (``single:attn`` is the reference). At each N and task
every combination's model (``harness.engine.model.Model``, same shape and seed) takes the
harness's own optimiser step (``TrainStep``: forward, loss, backward, clipping, AdamW, cost
accounting) on a fixed random batch. Band routers are calibrated on that batch first
(``harness.engine.calibrate.calibrate_on``, as a run calibrates before step 1), so each routes
its configured share from the first timed step; then, after interleaved warm-up rounds (at
least --warmup, more until no step page-faults: ``_warm_up``), every round times one step of
each combination in a shuffled order, and a combination's ratio is the median
over rounds of (its step / single attention's step in the same round). The crossover of a
combination is the smallest measured N from which on its ratio stays below 1; None if it
never gets there. Each row also records the attention-FLOP fraction and the share of tokens
routed to attention that the step's own cost accounting measured.
"""

from __future__ import annotations

import functools
import random
import sys
from collections.abc import Callable
from typing import Any

import torch

from .settings import REFERENCE, EndToEndSettings, combo_key
from .timing import median_or_none, page_faults, paired_ratio, time_call, times_summary

# -- one sequence length and task ---------------------------------------------------------------


def _config(s, e: EndToEndSettings, router: str, ops: list[str]):
    from harness.core.config import ModelConfig, RoutingConfig, RunConfig

    return RunConfig(
        device=str(s.device), seed=s.seed,
        model=ModelConfig(layers=e.layers, d_model=s.d_model, heads=s.heads, mlp_ratio=4.0,
                          dropout=0.0),
        routing=RoutingConfig(router=router, ops=ops, attn_fraction=e.fraction),
    )


def _batch(task, n: int, e: EndToEndSettings, device, gen: torch.Generator):
    from tasks import Batch

    tokens = torch.randint(0, e.vocab, (e.batch_size, n), generator=gen)
    high = e.vocab if task.causal else task.num_classes
    targets = torch.randint(0, high, (e.batch_size, n) if task.causal else (e.batch_size,),
                            generator=gen)
    return Batch(tokens, torch.ones(e.batch_size, n, dtype=torch.bool), targets).to(device)


def _steps_at(n: int, kind: str, s, e: EndToEndSettings, gen: torch.Generator):
    """Each combination's model and its harness training step, at N = n."""
    from harness.engine.calibrate import calibrate_on
    from harness.engine.model import Model

    from .train_step import bench_tasks, make_harness_step

    task = bench_tasks(e.vocab)[kind](n)
    batch = _batch(task, n, e, s.device, gen)
    steps = {}
    for router, ops in e.combos:
        cfg = _config(s, e, router, ops)
        torch.manual_seed(s.seed)
        model = Model(cfg, task, n).to(s.device).train()
        # without it the thresholds start at their prior and drift (momentum 0.05), and
        # entropy routed 0.19-0.28 of tokens instead of 0.375: a cheaper step, not a fair one
        calibrate_on(model, [batch], s.device)
        steps[combo_key(router, ops)] = (model, make_harness_step(model, task, batch, cfg))
    return steps


# Warm-up goes on past --warmup rounds, up to this many more, until a whole round of every
# combination runs without page faults (at most QUIET_FAULTS per step). Each combination's
# model grows the heap to its own peak at its own first steps, and fragments it for the others:
# at N = 2048 single attention still faulted 16,000-65,000 pages (64-256 MiB) per step in
# rounds 2-3 and ran 8-35% slower than in round 4, which favoured the routed combinations.
EXTRA_WARMUP_ROUNDS = 4
QUIET_FAULTS = 256


def _faults_during(fn: Callable[[], Any]) -> tuple[Any, int | None]:
    """fn()'s result and the page faults while it ran (None where the OS does not count
    them)."""
    before = page_faults()
    result = fn()
    return result, None if before is None else page_faults() - before


def _warm_up(steps: dict[str, Any], kind: str, n: int, e: EndToEndSettings, bar) -> int:
    """Interleaved untimed rounds until the memory is settled; returns how many ran."""
    rounds = 0
    while rounds < e.warmup + EXTRA_WARMUP_ROUNDS:
        rounds += 1
        if rounds > e.warmup:
            bar.total += len(steps)
            bar.refresh()
        worst = 0
        for key, (_, step) in steps.items():
            bar.set_postfix_str(f"warm-up {kind} N={n} {key}", refresh=False)
            worst = max(worst, _faults_during(step)[1] or 0)
            bar.update(1)
        if rounds >= e.warmup and worst <= QUIET_FAULTS:
            break
    return rounds


def _measure_at(n: int, kind: str, s, e: EndToEndSettings, gen: torch.Generator,
                order_rng: random.Random, bar) -> dict[str, dict[str, Any]]:
    steps = _steps_at(n, kind, s, e, gen)
    times: dict[str, list[float]] = {key: [] for key in steps}
    faults: dict[str, list[int]] = {key: [] for key in steps}
    warmup_rounds = _warm_up(steps, kind, n, e, bar)
    for r in range(e.repeats):
        order = list(steps)
        order_rng.shuffle(order)
        for key in order:
            bar.set_postfix_str(f"{kind} N={n} round {r + 1} {key}", refresh=False)
            elapsed, count = _faults_during(functools.partial(time_call, steps[key][1], s.device))
            times[key].append(elapsed)
            if count is not None:
                faults[key].append(count)
            bar.update(1)
    rows = {}
    for key in steps:
        rows[key] = {**times_summary(times[key]),
                     **paired_ratio(times[key], times[REFERENCE]),
                     "warmup_rounds": warmup_rounds,
                     "page_faults": median_or_none(faults[key]),
                     **_routing_measured(steps[key][1].cost.summary())}
    return rows


def _routing_measured(cost: dict[str, Any]) -> dict[str, Any]:
    """From the harness step's own cost meter, over every step it took: the share of real
    tokens routed to the top operator and its FLOPs executed / its FLOPs on every token."""
    from harness.core.record_cost import SplitCost

    return {"attention_token_share": SplitCost.model_validate(cost).top_token_share(),
            "attention_flop_fraction": cost["attention_flop_fraction"]}


# -- the section --------------------------------------------------------------------------------


def crossover(points: list[tuple[int, float | None]]) -> int | None:
    """Smallest N from which on every measured ratio is below 1 (None: never)."""
    best = None
    for n, ratio in sorted(points, reverse=True):
        if ratio is None or ratio >= 1:
            break
        best = n
    return best


def run_end_to_end(s) -> dict[str, Any] | None:
    e: EndToEndSettings | None = s.end_to_end
    if e is None:
        return None
    from tqdm.auto import tqdm

    gen = torch.Generator().manual_seed(s.seed)
    order_rng = random.Random(s.seed)
    total = len(e.seq_lens) * len(e.tasks) * len(e.combos) * (e.warmup + e.repeats)
    bar = tqdm(total=total, desc="end to end", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)
    result: dict[str, Any] = {
        "shape": {"layers": e.layers, "d_model": s.d_model, "heads": s.heads,
                  "batch_size": e.batch_size, "vocab": e.vocab, "attn_fraction": e.fraction},
        "reference": REFERENCE, "tasks": {}}
    for kind in e.tasks:
        rows: dict[str, list[dict[str, Any]]] = {combo_key(*c): [] for c in e.combos}
        for n in e.seq_lens:  # the largest N last: a failure there keeps the smaller ones
            for key, row in _measure_at(n, kind, s, e, gen, order_rng, bar).items():
                rows[key].append({"seq_len": n, **row})
        result["tasks"][kind] = {
            "causal": kind == "lm",
            "combos": rows,
            "crossover": {key: crossover([(r["seq_len"], r["ratio"]) for r in points])
                          for key, points in rows.items() if key != REFERENCE},
        }
    bar.close()
    return result
