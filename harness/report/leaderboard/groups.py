"""Reading the records: records grouped by task and configuration."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.core import records as rec
from harness.core.records import Measure, RunRecord, measure, task_measure
from harness.core.stats import mean
from harness.report.leaderboard.format import options_text
from harness.report.roles import Roles, roles_of

ATTENTION_FRACTION = measure("attention_flop_fraction")
MIXING_FLOPS = measure("mixer_flops_per_token")  # the Pareto front's cost axis
TOP_TOKEN_SHARE = measure("top_token_share")


@dataclass
class Group:
    """Runs of one configuration (router, operators, config hash, preset) over seeds. The
    config hash covers the preset's name; the preset is in the key as well, so that no row
    ever mixes presets whatever a hash covers."""

    task: str
    router: str
    operators: tuple[str, ...]
    config_hash: str
    records: list[RunRecord] = field(default_factory=list)  # sorted by seed
    preset: str = ""  # "" when the runs had none

    @property
    def key(self) -> tuple[str, tuple[str, ...], str, str]:
        return self.router, self.operators, self.config_hash, self.preset

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    @property
    def roles(self) -> Roles:
        return roles_of(self.first)

    def measured(self, m: Measure) -> list[float]:
        """Per seed, the records' finite values of a measured quantity."""
        return [v for r in self.records if (v := m(r)) is not None]

    def mean_of(self, m: Measure) -> float | None:
        """Mean over seeds of a measured quantity; None when no seed has it."""
        xs = self.measured(m)
        return mean(xs) if xs else None

    def values(self, split: str, metric: str) -> list[float]:
        """Per seed, a task metric of the final weights."""
        return self.measured(task_measure(split, metric))

    @property
    def attention_fraction(self) -> float | None:
        return self.mean_of(ATTENTION_FRACTION)

    @property
    def mixing_flops(self) -> float | None:
        """Mean analytic FLOPs per real token of all mixing operators (test): the cost the
        Pareto front ranks on."""
        return self.mean_of(MIXING_FLOPS)

    @property
    def top_token_share(self) -> float | None:
        """Mean over seeds of the share of real test tokens the top band computed: what the
        ``random`` control matches by default."""
        return self.mean_of(TOP_TOKEN_SHARE)

    @property
    def matched_on(self) -> str:
        """What a ``random`` control holds equal to the row it controls."""
        if self.first.router_options.get("match") == "flops":
            return "attention FLOPs"
        return "token share"

    @property
    def warning_flags(self) -> list[str]:
        return sorted({f for r in self.records for f in r.warning_flags})

    @property
    def leaky(self) -> bool:
        return any(r.leaky for r in self.records)

    @property
    def flagged(self) -> bool:
        return bool(self.warning_flags)

    @property
    def router_text(self) -> str:
        opts = self.first.router_options
        return self.router + (f" ({options_text(opts)})" if opts else "")

    @property
    def operators_text(self) -> str:
        opts = self.first.operator_options
        return "+".join(op + (f"({options_text(opts[op])})" if opts.get(op) else "")
                        for op in self.operators)

    @property
    def label(self) -> str:
        return f"{self.router} {'+'.join(self.operators)} [{self.config_hash[:8]}]"

    @property
    def mark(self) -> str:
        if self.leaky:
            return "⚠ leaky"
        if self.flagged:
            return "⚠ flagged"
        return ""


def control_key(record: RunRecord) -> str:
    """The configuration without what makes a router a router: two groups with the same key
    differ only in routing decisions (same operators, shares, model, data, budget)."""
    cfg = json.loads(json.dumps(record.config, sort_keys=True, default=str))
    for k in ("out", "seed", "device"):
        cfg.pop(k, None)
    routing = cfg.get("routing")
    if isinstance(routing, dict):
        routing.pop("router", None)
        routing.pop("router_options", None)
    return json.dumps(cfg, sort_keys=True)


@dataclass
class Loaded:
    groups: dict[str, list[Group]]  # task -> groups (unsorted)
    headline: dict[str, tuple[str, bool]]  # task -> (metric, higher_is_better)
    problems: list[str]  # "file: message", sorted by file
    n_records: int


def _finished(folders: list[Path], problems: list[tuple[str, str]]
              ) -> list[tuple[str, RunRecord]]:
    """(file name, record) of the readable, finished records; the others go to problems.
    Files are named by their name alone when there is one folder, else by their path."""
    entries: list[tuple[str, RunRecord]] = []
    for path, record, problem in (e for folder in folders for e in rec.iter_records(folder)):
        name = path.name if len(folders) == 1 else path.as_posix()
        if record is None:
            problems.append((name, problem or "unreadable"))
        elif record.status != "finished":
            why = f"; {record.error.splitlines()[0]}" if record.error else ""
            problems.append((name, f"run not finished (status {record.status}{why}); "
                                   f"not on the board"))
        else:
            entries.append((name, record))
    return entries


def _with_headline(entries: list[tuple[str, RunRecord]], problems: list[tuple[str, str]]
                   ) -> tuple[dict[str, tuple[str, bool]], list[tuple[str, RunRecord]]]:
    """The task's headline metric: what its records declare (majority), else inferred; and the
    records with a finite test value of it."""
    by_task: dict[str, list[tuple[str, RunRecord]]] = {}
    for name, record in entries:
        by_task.setdefault(record.task, []).append((name, record))
    headline: dict[str, tuple[str, bool]] = {}
    kept: list[tuple[str, RunRecord]] = []
    for task, items in sorted(by_task.items()):
        votes = Counter(h for _, r in items if (h := r.headline()) is not None)
        if not votes:
            problems += [(n, f"task '{task}': no headline metric in metrics.test")
                         for n, _ in items]
            continue
        best_votes = max(votes.values())
        headline[task] = sorted(h for h, c in votes.items() if c == best_votes)[0]
        metric = headline[task][0]
        for name, r in items:
            value = r.metrics.get("test", {}).get(metric)
            if value is None or not math.isfinite(value):
                problems.append((name, f"no finite test '{metric}' (the task's metric); skipped"))
            else:
                kept.append((name, r))
    return headline, kept


def _latest_per_seed(kept: list[tuple[str, RunRecord]], problems: list[tuple[str, str]]
                     ) -> dict[tuple[Any, ...], tuple[str, RunRecord]]:
    """One record per (configuration, seed): the latest wins, the others are reported."""
    latest: dict[tuple[Any, ...], tuple[str, RunRecord]] = {}
    for name, r in sorted(kept, key=lambda e: (e[1].created, e[0])):
        k = (r.task, r.router, tuple(r.operators), r.config_hash, r.preset or "", r.seed)
        if k in latest:
            problems.append((latest[k][0], f"duplicate of seed {r.seed} in {name} (newer); "
                                           f"skipped"))
        latest[k] = (name, r)
    return latest


def collect(runs: Path | list[Path]) -> Loaded:
    """Valid records of one folder or several, grouped by task and configuration; problems
    reported by file. A seed recorded in two folders counts once: the newer record wins."""
    folders = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    problems: list[tuple[str, str]] = []
    headline, kept = _with_headline(_finished(folders, problems), problems)
    latest = _latest_per_seed(kept, problems)
    groups: dict[str, dict[tuple[Any, ...], Group]] = {}
    for (task, router, ops, chash, preset, _seed), (_, r) in sorted(latest.items(),
                                                                   key=lambda e: e[0]):
        g = groups.setdefault(task, {}).setdefault(
            (router, ops, chash, preset), Group(task, router, ops, chash, preset=preset))
        g.records.append(r)
    return Loaded(
        groups={t: list(gs.values()) for t, gs in groups.items()},
        headline=headline,
        problems=[f"{n}: {m}" for n, m in sorted(problems)],
        n_records=len(latest),
    )



# Committed records produced by code whose behaviour has since changed in a way that moves
# their numbers, listed with the reason until they are re-run: data, like reference.json, so
# that the board says so wherever the row is shown (a flag: marked, never ranked).
SUPERSEDED_FILE = "superseded.json"


def mark_superseded(loaded: Loaded, path: Path) -> None:
    """Flag every record named in ``path`` ({run_id: reason}) as ``superseded: <reason>``."""
    if not path.exists():
        return
    reasons = json.loads(path.read_text(encoding="utf-8"))
    for groups in loaded.groups.values():
        for g in groups:
            for r in g.records:
                if r.run_id in reasons:
                    r.flags = [*r.flags, f"superseded: {reasons[r.run_id]}"]
