"""The records a claim reads: per run spec, the finished records of its configuration.

A record belongs to a spec when its ``config_hash`` is the digest of the spec's resolved
options in the setting (the seed is not part of the digest): exactly the cells that
``reproduce`` runs, wherever and whenever they ran.

A tuned spec (``runs.TUNED``) is a tuning family: one configuration per learning rate of
``LR_GRID``. Its records at the first seed (the lowest seed any of them ran) choose the value by
the sweep's rule (``harness/sweep/driver.py``'s ``choose``: the best validation metric of the
best-validation checkpoint; validation only); the spec's runs are its records at the chosen
value, every seed. A language-modelling spec's runs are those that reached their plateau
(``training.plateau.reached``); the others are kept apart (``Runs.short``) so that the page says
how many did not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.metrics import task_metric
from harness.core.records import Measure, RunRecord, measure
from harness.report.claims.runs import (
    LM_FAMILIES,
    LR_GRID,
    SPEC_BY_KEY,
    TUNED_OPTION,
    RunSpec,
    lr_text,
    overrides,
    runnable,
    tuned,
)

# statuses of a tuning run that tried its value: a diverged learning rate lost, it is not missing
TRIED = ("finished", "diverged")


def spec_digest(spec: RunSpec, setting: str, data_dir: str | None = None,
                lr: float | None = None) -> str:
    from harness.core.config import resolve
    from tasks import TASKS

    cell = overrides(spec, setting, 0, out="results/runs", data_dir=data_dir, lr=lr)
    task_cls = TASKS.get(cell["data"]["task"])
    return resolve(cell, getattr(task_cls, "presets", {}) or {}).digest()


@dataclass
class Tuning:
    """How a tuned spec's learning rate was chosen: every value of the grid at one seed."""

    grid: tuple[float, ...]
    seed: int | None = None  # where the grid ran (None: nothing ran yet)
    scores: dict[float, float | None] = field(default_factory=dict)  # value -> valid metric
    chosen: float | None = None
    problem: str | None = None  # why there is no choice yet

    def text(self, digits: int = 2) -> str:
        """'lr tuned over 1e-3, 2e-3, 4e-3 at seed 0 (valid: 10.52, 10.31, diverged): 2e-3'."""
        grid = ", ".join(lr_text(v) for v in self.grid)
        if self.seed is None:
            return f"lr to tune over {grid}: no run yet"
        scores = ", ".join(
            "no run" if v not in self.scores else "no valid metric"
            if self.scores[v] is None else f"{self.scores[v]:.{digits}f}" for v in self.grid)
        head = f"lr tuned over {grid} at seed {self.seed} (best validation: {scores})"
        return f"{head}: {self.problem}" if self.chosen is None else \
            f"{head}: chose {lr_text(self.chosen)}"


@dataclass
class Runs:
    """One spec's finished records (one per seed) in a setting: at the chosen learning rate for
    a tuned spec, and at the plateau for a language-modelling one."""

    spec: RunSpec
    records: list[RunRecord]
    runnable: bool  # whether the setting can run this spec at all
    tuning: Tuning | None = None  # a tuned spec's grid and choice
    short: list[RunRecord] = field(default_factory=list)  # finished short of their plateau

    def values(self, value: Measure) -> dict[int, float]:
        """Per seed, the record's value (seeds without one are left out)."""
        return {r.seed: v for r in self.records if (v := value(r)) is not None}

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)

    @property
    def finished(self) -> list[RunRecord]:
        """Every finished record of the configuration, at its plateau or not (plots)."""
        return sorted(self.records + self.short, key=lambda r: r.seed)

    @property
    def leaky(self) -> bool:
        return any(r.leaky for r in self.records)

    @property
    def label(self) -> str:
        s = self.spec
        text = f"{s.router} {'+'.join(s.ops)}"
        return text + (" ⚠ leaky" if self.leaky or s.leaky else "")

    @property
    def problem(self) -> str | None:
        """Why the spec has no records to judge yet although some ran (tuning unfinished)."""
        return self.tuning.problem if self.tuning is not None else None


def reached_plateau(r: RunRecord) -> bool:
    return r.training.plateau is not None and r.training.plateau.reached


class Evidence:
    """The committed records, looked up by run spec for one setting."""

    def __init__(self, records: list[RunRecord], setting: str, data_dir: str | None = None):
        self.setting = setting
        self.data_dir = data_dir
        self._by_hash: dict[str, list[RunRecord]] = {}
        for r in records:
            if r.status in TRIED:
                self._by_hash.setdefault(r.config_hash, []).append(r)
        self._runs: dict[str, Runs] = {}

    def _latest(self, digest: str, statuses: tuple[str, ...] = ("finished",)) -> list[RunRecord]:
        """One record per seed (the latest), sorted by seed."""
        latest: dict[int, RunRecord] = {}
        for r in sorted(self._by_hash.get(digest, []), key=lambda r: r.created):
            latest[r.seed] = r
        return [latest[s] for s in sorted(latest) if latest[s].status in statuses]

    def runs(self, key: str) -> Runs:
        if key not in self._runs:
            self._runs[key] = self._find(SPEC_BY_KEY[key])
        return self._runs[key]

    def _find(self, spec: RunSpec) -> Runs:
        if not runnable(spec, self.setting):
            return Runs(spec, [], False)
        tuning = None
        if tuned(spec, self.setting):
            tuning = self._tune(spec)
            found = [] if tuning.chosen is None else \
                self._latest(spec_digest(spec, self.setting, self.data_dir, tuning.chosen))
        else:
            found = self._latest(spec_digest(spec, self.setting, self.data_dir))
        if spec.family not in LM_FAMILIES:
            return Runs(spec, found, True, tuning)
        return Runs(spec, [r for r in found if reached_plateau(r)], True, tuning,
                    [r for r in found if not reached_plateau(r)])

    def _tune(self, spec: RunSpec) -> Tuning:
        """The grid's runs at the first seed and the value the sweep's rule chooses."""
        tried = {lr: self._latest(spec_digest(spec, self.setting, self.data_dir, lr), TRIED)
                 for lr in LR_GRID}
        seeds = sorted({r.seed for rs in tried.values() for r in rs})
        if not seeds:
            return Tuning(LR_GRID, problem="no run of the grid yet")
        seed = seeds[0]
        at_seed = {lr: r for lr, rs in tried.items() for r in rs if r.seed == seed}
        scores = {lr: best(r, "valid", r.task_metric or "perplexity")
                  for lr, r in at_seed.items()}
        absent = [lr_text(lr) for lr in LR_GRID if lr not in at_seed]
        if absent:
            return Tuning(LR_GRID, seed, scores, problem=f"no run of lr {', '.join(absent)} at "
                          f"seed {seed} yet (every value runs at the first seed)")
        chosen = self._choose(spec, seed, at_seed)
        if chosen is None:
            return Tuning(LR_GRID, seed, scores,
                          problem=f"no value finished with a validation metric at seed {seed}")
        return Tuning(LR_GRID, seed, scores, chosen)

    def _choose(self, spec: RunSpec, seed: int, at_seed: dict[float, RunRecord]) -> float | None:
        """The sweep's own rule (``choose``) on the grid's records, as the sweep saw them."""
        from harness.sweep.driver import choose
        from harness.sweep.grid import Cell

        cells = []
        for lr, r in at_seed.items():
            cell_options = overrides(spec, self.setting, seed, out="results/runs",
                                     data_dir=self.data_dir, lr=lr)
            cell = Cell(spec.router, list(spec.ops), cell_options["data"]["task"], seed,
                        cell_options)
            cell.record = r.model_dump(mode="json", exclude_none=True)
            cells.append(cell)
        (pick,) = choose(cells, [TUNED_OPTION]).values()
        if pick is None:
            return None
        section, _, name = TUNED_OPTION.partition(".")
        return float(pick[section][name])


# -- the values claims read from a record ---------------------------------------------------------


def best(r: RunRecord, split: str, name: str) -> float | None:
    """``split``'s ``name`` of the best-validation checkpoint, or of the final weights for a
    record without one."""
    checkpoint = r.best_checkpoint
    metrics = checkpoint.metrics if checkpoint is not None and checkpoint.metrics else r.metrics
    value = metrics.get(split, {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def best_measure(split: str, name: str) -> Measure:
    """A task metric of the best-validation checkpoint (a run to its plateau is judged on it)."""
    return Measure(f"{split} {name}", task_metric(name), lambda r: best(r, split, name))


def tokens_per_step(r: RunRecord) -> float | None:
    t = r.training
    return t.train_tokens / t.steps if t.train_tokens and t.steps else None


def cap_tokens(r: RunRecord) -> float | None:
    """The run's step cap in training tokens."""
    per_step, cap = tokens_per_step(r), r.budget.get("max_steps")
    return per_step * cap if per_step is not None and isinstance(cap, int) else None


def evaluations(r: RunRecord) -> list[tuple[float, dict[str, float]]]:
    """(training tokens, validation metrics) at each evaluation during training. Records made
    before evaluations carried their tokens: step x the run's tokens per step."""
    per_step = tokens_per_step(r)
    out = []
    for e in r.training.history:
        tokens = getattr(e, "train_tokens", None)
        if tokens is None and per_step is not None:
            tokens = e.step * per_step
        if tokens is not None:
            out.append((float(tokens), e.valid))
    return out


def valid_until(r: RunRecord, name: str, tokens: float) -> float | None:
    """The best ``name`` over the evaluations up to the one nearest ``tokens`` training tokens:
    what a run stopped there would report from its best-validation checkpoint."""
    points = [(t, valid[name]) for t, valid in evaluations(r) if name in valid]
    if not points:
        return None
    nearest = min(range(len(points)), key=lambda i: abs(points[i][0] - tokens))
    pick = max if task_metric(name).higher_is_better else min
    return float(pick(v for _, v in points[: nearest + 1]))


def valid_at(name: str, tokens: float) -> Measure:
    """``valid_until`` as a measure: the claims' rules re-applied at a smaller budget."""
    return Measure(f"valid {name} at {tokens:,.0f} tokens", task_metric(name),
                   lambda r: valid_until(r, name, tokens))


# the numbers claims read from each record (with their metadata: digits, direction)
BEST_VALID_PPL = best_measure("valid", "perplexity")
BEST_TEST_PPL = best_measure("test", "perplexity")
ATTENTION_FLOP_FRACTION = measure("attention_flop_fraction")
TOP_TOKEN_SHARE = measure("top_token_share")  # the share of test tokens routed to attention
MODEL_FLOPS_PER_TOKEN = measure("model_flops_per_token")
GATE = measure("gate")  # the MetaRouter gate of the trained model on the test split


def routing_history(r: RunRecord) -> list[dict[str, Any]]:
    """The record's routing history as the collapse functions read it (plain dicts)."""
    return [p.model_dump() for p in r.telemetry.routing_history] if r.telemetry else []


# -- the MetaRouter gate over training (claim 4) ---------------------------------------------------


def gate_window(r: RunRecord, end_step: float) -> list[tuple[int, float]]:
    """(step, gate: mean over layers) of the logged gate over the last quarter of training up to
    ``end_step``."""
    points = [(p.step, sum(p.gate) / len(p.gate)) for p in
              (r.telemetry.gate_history if r.telemetry else []) if p.gate and p.step <= end_step]
    return [(s, g) for s, g in points if s >= 0.75 * end_step]


def gate_drift(r: RunRecord, end_step: float) -> float | None:
    """How far the logged gate moved over the last quarter of training up to ``end_step``: the
    least-squares trend across that window (one batch's gate is noisy; its trend is not).
    None with fewer than two logged points there."""
    window = gate_window(r, end_step)
    if len(window) < 2:
        return None
    steps, gates = [s for s, _ in window], [g for _, g in window]
    ms, mg = sum(steps) / len(steps), sum(gates) / len(gates)
    var = sum((s - ms) ** 2 for s in steps)
    if var == 0:
        return 0.0
    slope = sum((s - ms) * (g - mg) for s, g in window) / var
    return slope * (steps[-1] - steps[0])


def logged_gate(end_tokens: float) -> Measure:
    """The logged training gate, mean over the last quarter of training up to ``end_tokens``
    training tokens (the test gate exists only for the final weights)."""
    def read(r: RunRecord) -> float | None:
        per_step = tokens_per_step(r)
        window = gate_window(r, end_tokens / per_step) if per_step else []
        return sum(g for _, g in window) / len(window) if window else None

    return Measure(f"logged gate at {end_tokens:,.0f} tokens", GATE.metric, read)

