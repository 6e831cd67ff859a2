"""Reading the records: which records the board believes, and how they group into rows.

A record is on the board only if it is finished, has the task's metric, and its config hash is
the digest of its own config (``RunConfig.digest``): a record edited by hand, or one whose hash
was made up, is refused and named. One run (task, router, operators, config, preset, seed)
counts once: the same run in two files counts once if the numbers agree; if they differ it is a
conflict and both files are named: neither is on the board, unless they come from two folders
(``--include-local``), where the folder read last (your own runs) is shown.

Rows: the records of one configuration over seeds are a ``Group``. Configurations that share
every config field but the learning rate are a tuning family; the board shows one row per
family, the learning rate chosen on validation (``harness.core.protocol.validation_score``, the
sweep's ``--tune`` rule) with its grid (``Tuning``).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from harness.core import records as rec
from harness.core.config import RunConfig
from harness.core.options import OPTIONS, is_field
from harness.core.protocol import Budget, budget_of, validation_score
from harness.core.records import Measure, RunRecord, measure, task_measure
from harness.core.stats import mean
from harness.report.leaderboard.format import options_text
from harness.report.markdown import escape
from harness.report.roles import Roles, roles_of

ATTENTION_FRACTION = measure("attention_flop_fraction")
MIXING_FLOPS = measure("mixer_flops_per_token")  # the Pareto front's cost axis
TOP_TOKEN_SHARE = measure("top_token_share")
TOKENS_PER_SECOND = measure("tokens_per_second")


def best_measure(split: str, name: str) -> Measure:
    """A task metric of the best-validation checkpoint (``record.best_checkpoint``); the final
    weights' for a record without one (``Group.best_missing`` counts those)."""
    final = task_measure(split, name)

    def read(r: RunRecord) -> Any:
        best = r.best_checkpoint.metrics.get(split, {}) if r.best_checkpoint else {}
        return best[name] if name in best else final.read(r)

    return Measure(f"{split} {name} (best-validation checkpoint)", final.metric, read)


@dataclass
class Tuning:
    """A family's learning rates: its grid, the value chosen on validation at the family's
    lowest seed, and the validation scores it was chosen by (higher is better; None: the
    record has no validation metric)."""

    grid: list[float]
    chosen: float
    seed: int | None = None
    scores: dict[float, float | None] = field(default_factory=dict)

    @property
    def tuned(self) -> bool:
        return len(self.grid) > 1


@dataclass
class Group:
    """Runs of one configuration (router, operators, config hash, preset) over seeds. The
    config hash covers the preset's name; the preset is in the key as well, so that no row
    ever mixes presets whatever a hash covers. Rows trained to a plateau are ranked on their
    best-validation checkpoint, the others on their final weights."""

    task: str
    router: str
    operators: tuple[str, ...]
    config_hash: str
    records: list[RunRecord] = field(default_factory=list)  # sorted by seed
    preset: str = ""  # "" when the runs had none
    tuning: Tuning | None = None  # set by ``collect``: the row's family

    @property
    def key(self) -> tuple[str, tuple[str, ...], str, str]:
        return self.router, self.operators, self.config_hash, self.preset

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    # read once a row holds its records (the board asks these of every row many times)
    @cached_property
    def roles(self) -> Roles:
        return roles_of(self.first)

    @cached_property
    def budget(self) -> Budget:
        return budget_of(self.first)

    @cached_property
    def setting(self) -> dict[str, Any]:
        """The row's configuration as {dotted path: value} (``parameters``)."""
        return parameters(self.first)

    @property
    def lr(self) -> float | None:
        lr = self.first.config.get("optim", {}).get("lr")
        return float(lr) if isinstance(lr, (int, float)) else None

    @property
    def checkpoint(self) -> str:
        """The checkpoint the row is ranked on: "best-validation" (to a plateau) or "final"."""
        return "best-validation" if self.budget.plateau else "final"

    def measured(self, m: Measure) -> list[float]:
        """Per seed, the records' finite values of a measured quantity."""
        return [v for r in self.records if (v := m(r)) is not None]

    def mean_of(self, m: Measure) -> float | None:
        """Mean over seeds of a measured quantity; None when no seed has it."""
        xs = self.measured(m)
        return mean(xs) if xs else None

    def values(self, split: str, metric: str) -> list[float]:
        """Per seed, a task metric of the checkpoint the row is ranked on."""
        m = best_measure(split, metric) if self.budget.plateau else task_measure(split, metric)
        return self.measured(m)

    def by_seed(self, split: str, metric: str) -> dict[int, float]:
        """``values`` keyed by seed."""
        m = best_measure(split, metric) if self.budget.plateau else task_measure(split, metric)
        return {r.seed: v for r in self.records if (v := m(r)) is not None}

    @property
    def best_missing(self) -> int:
        """Plateau rows: runs without best-validation metrics (ranked on their final weights)."""
        if not self.budget.plateau:
            return 0
        return sum(1 for r in self.records
                   if not (r.best_checkpoint and r.best_checkpoint.metrics.get("test")))

    @property
    def plateau_missed(self) -> int:
        """Plateau rows: runs that stopped at their cap before reaching the plateau."""
        if not self.budget.plateau:
            return 0
        return sum(1 for r in self.records
                   if not (r.training.plateau and r.training.plateau.reached))

    @property
    def attention_fraction(self) -> float | None:
        return self.mean_of(ATTENTION_FRACTION)

    @property
    def requested_fraction(self) -> float | None:
        """The share of tokens the top band was asked for (--attn-fraction); None for a
        single operator, which routes nothing."""
        if len(self.operators) < 2:
            return None
        x = self.first.config.get("routing", {}).get("attn_fraction")
        return float(x) if isinstance(x, (int, float)) else None

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

    def speed_by_hardware(self) -> list[tuple[str, float]]:
        """(hardware and threads, mean tokens/s of the seeds that ran there), by hardware:
        speeds are compared only between runs of the same hardware and threads."""
        by: dict[str, list[float]] = {}
        for r in self.records:
            x = TOKENS_PER_SECOND(r)
            if x is not None:
                by.setdefault(str(r.environment.get("hardware", "unknown hardware")), []).append(x)
        return [(hw, mean(xs)) for hw, xs in sorted(by.items())]

    @property
    def commits(self) -> list[str]:
        """The git commits the seeds ran on (short), sorted; "unknown" where not recorded."""
        return sorted({str(r.environment.get("git_commit") or "unknown")[:7]
                       for r in self.records})

    @property
    def dirty(self) -> int:
        """Seeds that ran from a working tree with uncommitted changes."""
        return sum(1 for r in self.records if r.environment.get("git_dirty") is True)

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
    def notes(self) -> list[str]:
        """The records' notes, each once with the seeds that carry it: "note (seeds 0, 2)"."""
        seeds: dict[str, list[int]] = {}
        for r in sorted(self.records, key=lambda r: r.seed):
            for note in r.notes:
                seeds.setdefault(note, []).append(r.seed)
        n = len(self.records)
        return [note + ("" if len(s) == n and n > 1 else
                        f" (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})")
                for note, s in seeds.items()]

    @property
    def leaky(self) -> bool:
        return any(r.leaky for r in self.records)

    @property
    def flagged(self) -> bool:
        return bool(self.warning_flags)

    # -- text: every name here comes from a record, so it is escaped (harness/report/markdown)

    @property
    def router_text(self) -> str:
        opts = self.first.router_options
        return escape(self.router + (f" ({options_text(opts)})" if opts else ""))

    @property
    def operators_text(self) -> str:
        opts = self.first.operator_options
        return escape("+".join(op + (f"({options_text(opts[op])})" if opts.get(op) else "")
                               for op in self.operators))

    @property
    def name(self) -> str:
        """Router and operators, escaped: 'entropy dct+attn'."""
        return escape(f"{self.router} {'+'.join(self.operators)}")

    @property
    def label(self) -> str:
        return f"{self.name} [{self.config_hash[:8]}]"

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


# Config fields that are columns of their own (router, operators, learning rate) or say where
# a run went, not what it computed: never a "parameter that differs" column.
_NOT_PARAMETERS = {"routing.router", "routing.ops", "routing.router_options",
                   "routing.op_options", "optim.lr", "preset", "data.task", "data.data_dir",
                   "data.cache_dir"}
_PARAMETER_PATHS = [o.path for o in OPTIONS
                    if o.in_digest and is_field(o, OPTIONS) and o.path not in _NOT_PARAMETERS]
# options added after records were written: an older record ran at the default
_ADDED_DEFAULTS = {o.path: o.default for o in OPTIONS if o.added and o.default is not None}


# parameters only a routed row uses: a single operator's value is meaningless, never shown
ROUTED_ONLY = {"routing.attn_fraction", "routing.execution", "routing.aux_weight"}


def row_parameters(g: Group, paths: Iterable[str]) -> dict[str, Any]:
    """The row's values of some parameters, leaving out those it does not use."""
    setting = g.setting
    return {p: setting[p] for p in paths if p in setting
            and not (p in ROUTED_ONLY and len(g.operators) < 2)}


def parameters(record: RunRecord) -> dict[str, Any]:
    """The record's configuration as {dotted path: value}, over the options that determine a
    result (a dict option, such as the task's options, one entry per key). Compared between
    rows, it says which parameters differ."""
    out: dict[str, Any] = {}
    for path in _PARAMETER_PATHS:
        value: Any = record.config
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            value = _ADDED_DEFAULTS.get(path)
        if isinstance(value, dict):
            out.update({f"{path}.{k}": v for k, v in sorted(value.items())})
        elif value is not None:
            out[path] = value
    return out


@dataclass
class Loaded:
    groups: dict[str, list[Group]]  # task -> the rows: one group per tuning family (unsorted)
    headline: dict[str, tuple[str, bool]]  # task -> (metric, higher_is_better)
    problems: list[str]  # "file: message", sorted by file
    n_records: int  # records on the board (every learning rate of a family counted)
    records: list[RunRecord] = field(default_factory=list)  # those records


def _finished(folders: list[Path], problems: list[tuple[str, str]],
              folder_of: dict[int, int]) -> list[tuple[str, RunRecord]]:
    """(file name, record) of the readable, finished records, each record's folder (its index
    in ``folders``, by ``id``) in ``folder_of``; the others go to problems. Files are named by
    their name alone when there is one folder, else by their path."""
    entries: list[tuple[str, RunRecord]] = []
    for index, path, record, problem in ((i, *e) for i, folder in enumerate(folders)
                                         for e in rec.iter_records(folder)):
        name = path.name if len(folders) == 1 else path.as_posix()
        if record is not None:
            folder_of[id(record)] = index
        if record is None:
            problems.append((name, problem or "unreadable"))
        elif record.status != "finished":
            why = f"; {record.error.splitlines()[0]}" if record.error else ""
            problems.append((name, f"run not finished (status {record.status}{why}); "
                                   f"not on the board"))
        else:
            entries.append((name, record))
    return entries


def _family_of(config: RunConfig) -> str:
    """The digest of a config with its learning rate taken out: the tuning family."""
    return config.model_copy(update={"optim": config.optim.model_copy(update={"lr": 1.0})}
                             ).digest()


def _verified(entries: list[tuple[str, RunRecord]], problems: list[tuple[str, str]]
              ) -> tuple[list[tuple[str, RunRecord]], dict[int, str]]:
    """The records whose config hash is the digest of their own config, and each one's tuning
    family (by ``id`` of the record); the others are refused and named."""
    kept, family = [], {}
    for name, r in entries:
        try:
            config = RunConfig.model_validate(r.config)
            digest = config.digest()
        except (ValueError, RecursionError) as exc:
            problems.append((name, f"its config does not load in this harness ("
                                   f"{rec.describe_error(exc)}); not on the board"))
            continue
        if digest != r.config_hash:
            problems.append((name, f"config_hash {r.config_hash} is not the digest of its "
                                   f"config ({digest}): the record was edited or its hash made "
                                   f"up; not on the board (re-run it to get a true record)"))
            continue
        kept.append((name, r))
        family[id(r)] = _family_of(config)
    return kept, family


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


def _numbers(r: RunRecord) -> str:
    """What two copies of one run must agree on: the metrics of both checkpoints."""
    best = r.best_checkpoint.metrics if r.best_checkpoint else {}
    return json.dumps([r.metrics, best], sort_keys=True)


def _headline_text(r: RunRecord) -> str:
    h = r.headline()
    value = r.metrics.get("test", {}).get(h[0]) if h else None
    return f"test {h[0]} {value:.4f}" if h and value is not None else "other metrics"


def _one_per_run(kept: list[tuple[str, RunRecord]], folder_of: dict[int, int],
                 problems: list[tuple[str, str]]) -> dict[tuple[Any, ...], RunRecord]:
    """One record per run (configuration and seed). Copies with the same numbers count once.
    Copies with different numbers are a conflict, and every file is named: within one folder
    none is kept; across folders the one from the folder given last (``--include-local``: your
    own runs after the committed ones) is kept, and the conflict says so."""
    by_run: dict[tuple[Any, ...], list[tuple[str, RunRecord]]] = {}
    for name, r in kept:
        k = (r.task, r.router, tuple(r.operators), r.config_hash, r.preset or "", r.seed)
        by_run.setdefault(k, []).append((name, r))
    runs: dict[tuple[Any, ...], RunRecord] = {}
    for k, copies in by_run.items():
        copies.sort(key=lambda e: (folder_of[id(e[1])], e[0]))
        if len({_numbers(r) for _, r in copies}) == 1:
            for name, _ in copies[:-1]:
                problems.append((name, f"same run as {copies[-1][0]} with the same numbers; "
                                       f"counted once"))
            runs[k] = copies[-1][1]
            continue
        last = folder_of[id(copies[-1][1])]
        kept_one = (copies[-1] if sum(folder_of[id(r)] == last for _, r in copies) == 1
                    else None)
        outcome = (f"the board shows {kept_one[0]} (its folder is read last)" if kept_one
                   else "neither is on the board: remove the wrong one")
        for name, r in copies:
            others = "; ".join(f"{n} ({_headline_text(o)})" for n, o in copies if n != name)
            problems.append((name, f"conflict: run {r.run_id} ({_headline_text(r)}) is also in "
                                   f"{others} with different numbers; {outcome}"))
        if kept_one:
            runs[k] = kept_one[1]
    return runs


def _choose(members: list[Group]) -> Tuning:
    """The family's learning rate: at its lowest seed, the value whose record has the best
    validation score (the sweep's ``--tune`` rule); the smallest rate on a tie. Without any
    score, the value with the most seeds."""
    grid = sorted(lr for g in members if (lr := g.lr) is not None)
    seed = min((s for g in members for s in g.seeds), default=None)
    scores: dict[float, float | None] = {}
    for g in members:
        at_seed = [r for r in g.records if r.seed == seed]
        if g.lr is not None:
            scores[g.lr] = validation_score(at_seed[0]) if at_seed else None
    scored = [(s, lr) for lr, s in sorted(scores.items()) if s is not None]
    if scored:
        chosen = max(scored, key=lambda e: (e[0], -e[1]))[1]
    else:
        chosen = max(members, key=lambda g: (len(g.records), -(g.lr or 0.0))).lr or 0.0
    return Tuning(grid, chosen, seed, scores)


def _rows(groups: Iterable[Group], family: dict[int, str]) -> list[Group]:
    """One row per tuning family: its chosen learning rate's group, carrying the tuning."""
    families: dict[tuple[Any, ...], list[Group]] = {}
    for g in groups:
        families.setdefault((g.router, g.operators, g.preset, family[id(g.first)]),
                            []).append(g)
    rows = []
    for members in families.values():
        tuning = _choose(members)
        row = next((g for g in members if g.lr == tuning.chosen), members[0])
        row.tuning = tuning
        rows.append(row)
    return rows


def collect(runs: Path | list[Path]) -> Loaded:
    """Valid records of one folder or several, grouped by task and configuration, one row per
    tuning family; problems reported by file."""
    folders = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    problems: list[tuple[str, str]] = []
    folder_of: dict[int, int] = {}
    verified, family = _verified(_finished(folders, problems, folder_of), problems)
    headline, kept = _with_headline(verified, problems)
    runs_ = _one_per_run(kept, folder_of, problems)
    groups: dict[str, dict[tuple[Any, ...], Group]] = {}
    for (task, router, ops, chash, preset, _seed), r in sorted(runs_.items(),
                                                              key=lambda e: e[0]):
        g = groups.setdefault(task, {}).setdefault(
            (router, ops, chash, preset), Group(task, router, ops, chash, preset=preset))
        g.records.append(r)
    return Loaded(
        groups={t: _rows(gs.values(), family) for t, gs in groups.items()},
        headline=headline,
        problems=[f"{n}: {m}" for n, m in sorted(problems)],
        n_records=len(runs_),
        records=[runs_[k] for k in sorted(runs_)],
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
    for r in loaded.records:
        if r.run_id in reasons:
            r.flags = [*r.flags, f"superseded: {reasons[r.run_id]}"]
