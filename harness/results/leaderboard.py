"""``python -m harness leaderboard``: regenerate results/LEADERBOARD.md from the run records.

The board is a pure function of the records in ``--runs`` and the reference file: files are read
in sorted order, every table is sorted, floats have fixed formats, and nothing depends on the
clock, the machine or the working directory. ``--check`` regenerates the markdown in memory and
exits 1 when the committed file differs, so CI catches a stale or hand-edited board. Plots
(matplotlib PNG) are written by the same command but never compared: PNG bytes vary across
matplotlib versions. ``--check`` writes nothing and does not need matplotlib.

Ranking, per task: honest rows (no warning flag) first, by the mean over seeds of the test
metric (accuracy: higher is better; perplexity: lower; language modelling ranks on word-level
perplexity when every row has it, since it compares across tokenizers). Rows with a warning
flag (leaky variants, anything but ``preset:``) come after every honest row, are marked and are
not ranked. Rows are groups of records with the same (router, operators, config hash): repeats
over seeds of one configuration. Statistical ties with the best honest row use Welch's t-test.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import records as rec
from harness.results.records import RunRecord

DEFAULT_RUNS = "results/runs"
DEFAULT_OUT = "results/LEADERBOARD.md"
DEFAULT_PLOTS = "results/plots"
DEFAULT_REFERENCE = "results/reference.json"

ALPHA = 0.05  # significance level for ties and for the chance comparison
EQUAL_COST_TOLERANCE = 0.02  # attention FLOP fractions closer than this count as equal cost
REPORTED = "reported, not reproduced"


# -- statistics (pure Python: deterministic, no scipy) -----------------------------------------


def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, betainc(df / 2.0, 0.5, df / (df + t * t))))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile (q > 0.5) of Student's t, by bisection on the two-sided tail."""
    target = 2.0 * (1.0 - q)
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > target:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_two_sided_p(mid, df) > target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Welch:
    diff: float  # mean(a) - mean(b)
    t: float
    df: float
    p: float
    ci: tuple[float, float]  # 95% confidence interval of the difference


def welch_test(a: list[float], b: list[float]) -> Welch | None:
    """Welch's two-sided t-test (unequal variances) of mean(a) == mean(b); None with fewer
    than two values on either side."""
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = mean(a), mean(b)
    va, vb = sample_std(a) ** 2, sample_std(b) ** 2  # type: ignore[operator]
    sa, sb = va / len(a), vb / len(b)
    se2 = sa + sb
    diff = ma - mb
    if se2 == 0.0:  # no spread at all: identical means tie, different ones do not
        df = float(len(a) + len(b) - 2)
        return Welch(diff, 0.0 if diff == 0 else math.copysign(math.inf, diff), df,
                     1.0 if diff == 0 else 0.0, (diff, diff))
    df = se2 ** 2 / (sa ** 2 / (len(a) - 1) + sb ** 2 / (len(b) - 1))
    t = diff / math.sqrt(se2)
    half = t_quantile(1.0 - ALPHA / 2, df) * math.sqrt(se2)
    return Welch(diff, t, df, t_two_sided_p(t, df), (diff - half, diff + half))


# -- formatting ---------------------------------------------------------------------------------


def fmt(x: float, digits: int) -> str:
    s = f"{x:.{digits}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s


def fmt_signed(x: float, digits: int) -> str:
    s = fmt(x, digits)
    return s if s.startswith("-") or float(s) == 0.0 else "+" + s


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def metric_digits(metric: str) -> int:
    return 2 if "perplexity" in metric else 4


def metric_label(metric: str) -> str:
    return {"perplexity": "token PPL", "word_perplexity": "word PPL"}.get(metric, metric)


def mean_std(xs: list[float], digits: int) -> str:
    if not xs:
        return "—"
    s = sample_std(xs)
    return fmt(mean(xs), digits) + ("" if s is None else f" ± {fmt(s, digits)}")


def cell(text: Any) -> str:
    """Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def options_text(options: dict[str, Any]) -> str:
    return ",".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True)}"
                    for k, v in sorted(options.items()))


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    from tabulate import tabulate

    return tabulate([[cell(c) for c in row] for row in rows], headers=[cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


# -- grouping -----------------------------------------------------------------------------------


@dataclass
class Group:
    """Runs of one configuration (router, operators, config hash) over seeds."""

    task: str
    router: str
    operators: tuple[str, ...]
    config_hash: str
    records: list[RunRecord] = field(default_factory=list)  # sorted by seed

    @property
    def key(self) -> tuple[str, tuple[str, ...], str]:
        return self.router, self.operators, self.config_hash

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.records]

    def values(self, split: str, metric: str) -> list[float]:
        out = []
        for r in self.records:
            v = r.metrics.get(split, {}).get(metric)
            if v is not None and math.isfinite(v):
                out.append(float(v))
        return out

    def cost_values(self, name: str) -> list[float]:
        out = []
        for r in self.records:
            v = (r.cost.get("test") or {}).get(name) if isinstance(r.cost, dict) else None
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append(float(v))
        return out

    def training_values(self, name: str) -> list[float]:
        out = []
        for r in self.records:
            v = r.training.get(name)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append(float(v))
        return out

    @property
    def attention_fraction(self) -> float | None:
        xs = self.cost_values("attention_flop_fraction")
        return mean(xs) if xs else None

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
class Reference:
    task: str
    label: str
    router: str
    operators: str
    split: str
    metric: str
    value: float
    source: str
    attention_flop_fraction: float | None = None
    flops: str | None = None
    parameters: str | None = None
    note: str | None = None


@dataclass
class ReferenceSet:
    caveat: str = ""
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    rows: list[Reference] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)

    def source_text(self, key: str) -> str:
        src = self.sources.get(key, {})
        citation = src.get("citation", key)
        url = src.get("url")
        return f"{citation} ({url})" if url else citation


def load_reference(path: Path | None) -> tuple[ReferenceSet, list[str]]:
    if path is None or not Path(path).exists():
        return ReferenceSet(), []
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        refs = ReferenceSet(caveat=str(data.get("caveat", "")),
                            sources=dict(data.get("sources", {})),
                            claims=list(data.get("claims", [])))
        for row in data.get("rows", []):
            known = {k: row[k] for k in Reference.__dataclass_fields__ if k in row}
            known["value"] = float(known["value"])
            refs.rows.append(Reference(**known))
        return refs, []
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        return ReferenceSet(), [f"{Path(path).name}: reference file unreadable, reference rows "
                                f"omitted ({rec.describe_error(exc)})"]


@dataclass
class Loaded:
    groups: dict[str, list[Group]]  # task -> groups (unsorted)
    headline: dict[str, tuple[str, bool]]  # task -> (metric, higher_is_better)
    problems: list[str]  # "file: message", sorted by file
    n_records: int


def collect(runs: Path) -> Loaded:
    """Valid records grouped by task and configuration; problems reported by file name."""
    problems: list[tuple[str, str]] = []
    entries: list[tuple[str, RunRecord]] = []
    for path, record, problem in rec.iter_records(runs):
        if record is None:
            problems.append((path.name, problem or "unreadable"))
        elif record.status != "finished":
            why = f"; {record.error.splitlines()[0]}" if record.error else ""
            problems.append((path.name, f"run not finished (status {record.status}{why}); "
                                        f"not on the board"))
        else:
            entries.append((path.name, record))

    # the task's headline metric: what its records declare (majority), else inferred
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

    # one record per (configuration, seed): the latest wins, the others are reported
    latest: dict[tuple[Any, ...], tuple[str, RunRecord]] = {}
    for name, r in sorted(kept, key=lambda e: (e[1].created, e[0])):
        k = (r.task, r.router, tuple(r.operators), r.config_hash, r.seed)
        if k in latest:
            problems.append((latest[k][0], f"duplicate of seed {r.seed} in {name} (newer); "
                                           f"skipped"))
        latest[k] = (name, r)

    groups: dict[str, dict[tuple[Any, ...], Group]] = {}
    for (task, router, ops, chash, _seed), (_, r) in sorted(latest.items(), key=lambda e: e[0]):
        g = groups.setdefault(task, {}).setdefault(
            (router, ops, chash), Group(task, router, ops, chash))
        g.records.append(r)
    return Loaded(
        groups={t: list(gs.values()) for t, gs in groups.items()},
        headline=headline,
        problems=[f"{n}: {m}" for n, m in sorted(problems)],
        n_records=len(latest),
    )


# -- one task's board ---------------------------------------------------------------------------


@dataclass
class ChanceRow:
    group: Group
    control: Group
    welch: Welch | None

    @property
    def cost_gap(self) -> float | None:
        """|attention FLOP fraction of the router - that of the control|; None if unknown."""
        x, c = self.group.attention_fraction, self.control.attention_fraction
        return None if x is None or c is None else abs(x - c)

    @property
    def equal_cost(self) -> bool:
        gap = self.cost_gap
        return gap is not None and gap <= EQUAL_COST_TOLERANCE


@dataclass
class TaskBoard:
    task: str
    metric: str  # the task's headline metric
    higher: bool
    rank_metric: str
    ranked: list[Group]  # honest by quality, then flagged by quality
    vs_best: dict[tuple[Any, ...], tuple[str, Welch | None]]
    chance: list[ChanceRow]  # equal-cost pairs first
    no_control: list[Group]
    references: list[Reference]
    pareto: set[tuple[Any, ...]]

    @property
    def honest(self) -> list[Group]:
        return [g for g in self.ranked if not g.flagged]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher else a < b


def build_task(task: str, groups: list[Group], headline: tuple[str, bool] | None,
               references: list[Reference]) -> TaskBoard:
    if headline is None:  # only reference rows
        ref_metric = references[0].metric if references else "metric"
        headline = (ref_metric, rec._infer_direction(ref_metric) is not False)
    metric, higher = headline
    rank_metric = metric
    if metric == "perplexity" and groups and all(
            len(g.values("test", "word_perplexity")) == len(g.records) for g in groups):
        rank_metric = "word_perplexity"

    def quality(g: Group) -> float:
        m = mean(g.values("test", rank_metric))
        return -m if higher else m

    def cost(g: Group) -> float:
        x = g.attention_fraction
        return 1.0 if x is None else x

    # equal quality: the cheaper row first, then the one with more seeds, then by name
    ranked = sorted(groups, key=lambda g: (g.flagged, quality(g), cost(g), -len(g.records),
                                           g.key))
    honest = [g for g in ranked if not g.flagged]
    vs_best: dict[tuple[Any, ...], tuple[str, Welch | None]] = {}
    if honest:
        best = honest[0]
        best_values = best.values("test", rank_metric)
        vs_best[best.key] = ("best", None)
        for g in honest[1:]:
            w = welch_test(g.values("test", rank_metric), best_values)
            if w is None:
                vs_best[g.key] = (f"n/a ({min(len(g.records), len(best.records))} seed)", None)
            elif w.p > ALPHA:
                vs_best[g.key] = (f"tied (p={fmt_p(w.p)})", w)
            else:
                vs_best[g.key] = (f"behind (p={fmt_p(w.p)})", w)

    # Pareto front over honest rows: lower attention FLOP fraction, better metric
    points = [(g, g.attention_fraction, mean(g.values("test", rank_metric))) for g in honest]
    points = [(g, x, y) for g, x, y in points if x is not None]
    pareto = set()
    for g, x, y in points:
        dominated = any(
            (x2 <= x and (y2 >= y if higher else y2 <= y)) and (x2 < x or y2 != y)
            for g2, x2, y2 in points if g2 is not g
        )
        if not dominated:
            pareto.add(g.key)

    # routing vs the random control with the same configuration
    controls: dict[str, list[Group]] = {}
    for g in groups:
        if g.router == "random":
            controls.setdefault(control_key(g.first), []).append(g)
    chance, missing = [], []
    candidates = [g for g in groups if g.router not in ("random", "single")
                  and len(g.operators) > 1]
    candidates.sort(key=lambda g: (g.router != "entropy", g.flagged, g.key))
    for g in candidates:
        matches = sorted(controls.get(control_key(g.first), []), key=lambda c: c.key)
        if not matches:
            missing.append(g)
            continue
        for c in matches:
            chance.append(ChanceRow(g, c, welch_test(g.values("test", rank_metric),
                                                     c.values("test", rank_metric))))
    chance.sort(key=lambda row: not row.equal_cost)  # stable: the order above within each
    return TaskBoard(task, metric, higher, rank_metric, ranked, vs_best, chance, missing,
                     references, pareto)


# -- plot specifications (rendered by harness/plots.py) -----------------------------------------


def plot_specs(board: TaskBoard, plots_dir: Path,
               paper_gate: float | None = None) -> list[dict[str, Any]]:
    """What to plot for a task, as plain data. Which plots exist depends only on the records,
    so the markdown links are the same whether or not the PNGs are written."""
    if not board.ranked:
        return []
    t = slug(board.task)
    label = f"test {metric_label(board.rank_metric)}"
    specs: list[dict[str, Any]] = []

    points = []
    for g in board.ranked:
        x = g.attention_fraction
        ys = g.values("test", board.rank_metric)
        if x is None or not ys:
            continue
        points.append({"label": g.label, "router": g.router, "x": x, "y": mean(ys),
                       "yerr": sample_std(ys) or 0.0, "honest": not g.flagged,
                       "pareto": g.key in board.pareto})
    refs = [{"label": f"{r.label} ({REPORTED})", "x": r.attention_flop_fraction, "y": r.value}
            for r in board.references
            if r.attention_flop_fraction is not None and r.split == "test"
            and r.metric == board.rank_metric]
    if points:
        specs.append({"kind": "pareto", "task": board.task, "file": f"{t}_pareto.png",
                      "title": f"{board.task}: quality vs attention FLOP fraction",
                      "metric": label, "higher": board.higher, "points": points,
                      "references": refs})

    fractions = []
    for g in board.ranked:
        layers = _layer_fractions(g)
        if layers is not None:
            fractions.append({"label": g.label, "operators": list(g.operators),
                              "layers": layers})
    if fractions:
        specs.append({"kind": "routing_fractions", "task": board.task,
                      "file": f"{t}_routing_fractions.png",
                      "title": f"{board.task}: share of tokens per operator, per layer (test)",
                      "groups": fractions})

    hists = []
    for g in board.ranked:
        total: dict[str, list[float]] | None = None
        edges: list[float] | None = None
        for r in g.records:
            h = r.telemetry.entropy_histogram if r.telemetry else None
            if h is None or (edges is not None and h.bin_edges != edges):
                continue
            edges = h.bin_edges
            total = total or {}
            for op, counts in h.totals().items():
                acc = total.setdefault(op, [0.0] * len(counts))
                for j, c in enumerate(counts):
                    acc[j] += c
        if total and edges:
            ops = [op for op in g.operators if op in total] + sorted(
                op for op in total if op not in g.operators)
            hists.append({"label": g.label, "bin_edges": edges,
                          "counts": {op: total[op] for op in ops}})
    if hists:
        specs.append({"kind": "entropy_histograms", "task": board.task,
                      "file": f"{t}_entropy_histograms.png",
                      "title": f"{board.task}: spectral entropy of routed tokens (test)",
                      "groups": hists})

    gates = []
    for g in board.ranked:
        seeds = []
        for r in g.records:
            hist = r.telemetry.gate_history if r.telemetry else []
            if hist:
                seeds.append({"seed": r.seed, "steps": [p.step for p in hist],
                              "gate": [mean(p.gate) if p.gate else float("nan") for p in hist]})
        if seeds:
            gates.append({"label": g.label, "seeds": seeds})
    if gates:
        specs.append({"kind": "gate", "task": board.task, "file": f"{t}_gate.png",
                      "title": f"{board.task}: MetaRouter gate over training",
                      "groups": gates, "paper_value": paper_gate})
    for s in specs:
        s["path"] = str(Path(plots_dir) / s["file"])
    return specs


def _layer_fractions(g: Group) -> list[list[float]] | None:
    """Mean over seeds of each layer's share per operator; None for single-operator rows and
    soft routers without a weight share (their token shares are 1/K by construction)."""
    if len(g.operators) < 2:
        return None
    per_seed = []
    for r in g.records:
        layers = (r.cost.get("test") or {}).get("per_layer") if isinstance(r.cost, dict) else None
        if not isinstance(layers, list) or not layers:
            continue
        rows = []
        for layer in layers:
            row = []
            for op in g.operators:
                entry = layer.get(op) if isinstance(layer, dict) else None
                if not isinstance(entry, dict):
                    return None
                if "weight_fraction" in entry:
                    row.append(float(entry["weight_fraction"]))
                elif "gate_mean" in layer:  # soft router: token shares say nothing
                    return None
                else:
                    row.append(float(entry.get("token_fraction", 0.0)))
            rows.append(row)
        per_seed.append(rows)
    if not per_seed or len({len(p) for p in per_seed}) != 1:
        return None
    n_layers = len(per_seed[0])
    return [[mean([p[i][k] for p in per_seed]) for k in range(len(g.operators))]
            for i in range(n_layers)]


# -- markdown -----------------------------------------------------------------------------------


def rel_link(target: Path, out: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(out).resolve().parent)).as_posix()


def _columns(board: TaskBoard) -> list[tuple[str, str]]:
    cols = [("test", board.rank_metric)]
    if board.rank_metric != board.metric:
        cols.append(("test", board.metric))
    cols.append(("valid", board.metric))
    return cols


def _steps_text(g: Group) -> str:
    budget = g.first.budget
    max_steps = budget.get("max_steps")
    done = sorted({int(s) for s in g.training_values("steps")})
    if not done:
        return f"{max_steps} steps" if max_steps else "—"
    if max_steps and done == [int(max_steps)]:
        return f"{max_steps} steps"
    span = str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}"
    return f"{span} of {max_steps} steps (time budget {budget.get('max_time')} s)"


def _config_details(g: Group) -> str:
    c = g.first.config
    m, d, o = c.get("model", {}), c.get("data", {}), c.get("optim", {})
    r = c.get("routing", {})
    parts = [f"preset {g.first.preset}" if g.first.preset else "no preset"]
    if m:
        layers = m.get("layers")
        parts.append(f"{layers} layer{'' if layers == 1 else 's'} × d_model {m.get('d_model')}, "
                     f"{m.get('heads')} heads")
    seq = d.get("seq_len") or g.first.data.get("seq_len")
    if seq:
        parts.append(f"seq_len {seq}")
    if d.get("task_options"):
        parts.append(f"task options {options_text(d['task_options'])}")
    if r:
        parts.append(f"attn_fraction {r.get('attn_fraction')}, {r.get('execution')} execution")
    parts.append(_steps_text(g) + (f", batch {o.get('batch_size')}, lr {o.get('lr')}" if o else ""))
    unused = {k: v for k, v in g.first.operator_options.items() if k not in g.operators}
    if unused:
        parts.append("operator options " + "; ".join(f"{k}: {options_text(v)}"
                                                     for k, v in sorted(unused.items())))
    measured = []
    flops = g.cost_values("model_flops_per_token")
    if flops:
        measured.append(f"{mean(flops):.3g} model FLOPs/token (forward)")
    wall = g.training_values("wall_seconds")
    if wall:
        measured.append(f"wall {mean(wall):,.0f} s")
    memory = g.training_values("peak_memory_mb")
    if memory:
        measured.append(f"peak memory {mean(memory):,.0f} MB")
    if measured:
        parts.append(", ".join(measured) + " (mean over seeds)")
    hashes = sorted({r_.split_hashes.get("test", "") for r_ in g.records} - {""})
    if len(hashes) == 1:
        parts.append(f"test set {hashes[0][:19]}")
    elif hashes:
        parts.append(f"test set differs across seeds ({len(hashes)} hashes)")
    return "; ".join(parts)


def render_task(board: TaskBoard, specs: list[dict[str, Any]], out: Path,
                refs: ReferenceSet) -> list[str]:
    lines = [f"## {board.task}", ""]
    cols = _columns(board)
    direction = "higher is better" if board.higher else "lower is better"
    n_runs = sum(len(g.records) for g in board.ranked)
    if board.ranked:
        lines.append(f"{len(board.ranked)} configurations, {n_runs} runs. Ranked by test "
                     f"{metric_label(board.rank_metric)} ({direction}), mean ± sample standard "
                     f"deviation over seeds.")
    else:
        lines.append(f"No runs recorded for this task; only the paper's numbers "
                     f"({REPORTED}).")
    lines.append("")

    headers = ["rank", "router", "operators", "config", "seeds"]
    headers += [f"{split} {metric_label(metric)}" for split, metric in cols]
    headers += ["attn FLOP frac", "params", "tokens/s", "hardware", "vs best", "flags"]
    rows = []
    rank = 0
    for g in board.ranked:
        if not g.flagged:
            rank += 1
        verdict = board.vs_best.get(g.key, ("—", None))[0]
        x = g.attention_fraction
        params = sorted({r.parameters for r in g.records})
        tps = g.training_values("tokens_per_second")
        row = [str(rank) if not g.flagged else "—", g.router_text, g.operators_text,
               g.config_hash, str(len(g.records))]
        row += [mean_std(g.values(split, metric), metric_digits(metric)) for split, metric in cols]
        row += [
            "—" if x is None else fmt(x, 3) + (" ◆" if g.key in board.pareto else ""),
            f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}",
            f"{mean(tps):,.0f}" if tps else "—",
            "; ".join(sorted({str(r.environment.get("hardware", "?")) for r in g.records})),
            verdict,
            g.mark,
        ]
        rows.append(row)
    for i, r in enumerate(board.references, 1):
        row = ["ref", r.router, r.operators, "—", "—"]
        placed = False
        for split, metric in cols:
            if (split, metric) == (r.split, r.metric):
                row.append(fmt(r.value, metric_digits(metric)))
                placed = True
            else:
                row.append("")
        flags = f"{REPORTED} [ref {i}]"
        if not placed:
            flags += f"; {r.split} {metric_label(r.metric)} {fmt(r.value, 2)}"
        x = ("—" if r.attention_flop_fraction is None else fmt(r.attention_flop_fraction, 3))
        if r.flops:
            x += f" ({r.flops})"
        row += [x, r.parameters or "—", "—", "—", "—", flags]
        rows.append(row)
    lines += [md_table(headers, rows), ""]

    notes = []
    if board.ranked:
        notes.append(
            f"**vs best**: Welch's two-sided t-test (unequal variances) over seeds between each "
            f"honest row and the best honest row, on test {metric_label(board.rank_metric)}. "
            f"*tied* means p > {ALPHA} (not shown to differ; with few seeds the test has little "
            f"power, so this is not evidence of equality); *behind* means p ≤ {ALPHA}; *n/a* "
            f"needs at least 2 seeds on both sides. No correction for multiple comparisons.")
        notes.append("**attn FLOP frac**: analytic FLOPs the attention operator executed on the "
                     "test set / FLOPs of attention on every token (1.000 = nothing skipped). "
                     "◆ marks the Pareto front of honest rows (no honest row has both a lower "
                     "fraction and a better metric).")
        if board.rank_metric == "word_perplexity":
            notes.append("Language modelling ranks on word-level perplexity (exp of total NLL / "
                         "words), which compares across tokenizers; token PPL is per token of "
                         "each row's own tokenizer.")
    flagged = [g for g in board.ranked if g.flagged]
    if flagged:
        notes.append("**⚠ rows** carry a warning flag and are listed after every honest row, "
                     "unranked:")
    lines += [f"- {n}" for n in notes]
    for g in flagged:
        lines.append(f"  - `{g.config_hash}` {g.router} {'+'.join(g.operators)}: "
                     + "; ".join(cell(f) for f in g.warning_flags))
    if board.metric == "accuracy":
        majority = sorted({fmt(v, 4) for g in board.ranked
                           for v in g.values("test", "majority_accuracy")})
        if majority:
            lines.append(f"- Majority-class baseline (test): {', '.join(majority)}.")
    test_sets = {h for g in board.ranked for r in g.records
                 if (h := r.split_hashes.get("test"))}
    if len(test_sets) > 1:
        lines.append(f"- Records in this table were scored on {len(test_sets)} different test "
                     f"sets (see the test-set hashes below): compare rows with care.")
    if board.references:
        lines.append(f"- **Reference rows ({REPORTED})**: {refs.caveat}")
        for i, r in enumerate(board.references, 1):
            note = f" {r.note[:1].upper()}{r.note[1:]}." if r.note else ""
            lines.append(f"  - [ref {i}] {r.label}: {r.split} {metric_label(r.metric)} "
                         f"{fmt(r.value, 2)}. Source: {refs.source_text(r.source)}.{note}")
    if board.ranked:
        lines.append("- Configurations:")
        seen = set()
        for g in board.ranked:
            if g.config_hash in seen:
                continue
            seen.add(g.config_hash)
            lines.append(f"  - `{g.config_hash}` ({g.router} {'+'.join(g.operators)}): "
                         f"{cell(_config_details(g))}")
    lines.append("")

    if board.chance or board.no_control:
        lines += _render_chance(board)
    if specs:
        lines += ["### Plots", ""]
        for s in specs:
            lines.append(f"![{s['title']}]({rel_link(Path(s['path']), out)})")
            lines.append("")
    return lines


def _render_chance(board: TaskBoard) -> list[str]:
    m = board.rank_metric
    d = metric_digits(m)
    lines = ["### Does routing beat chance?", "",
             f"Each routed configuration against the `random` control with the same "
             f"configuration (same operators, token shares, model, data and budget; only the "
             f"routing decision differs). Δ = router − random on test {metric_label(m)} "
             f"({'higher' if board.higher else 'lower'} is better) with its 95% Welch "
             f"confidence interval; p from Welch's t-test over seeds. The comparison is at "
             f"equal cost only when the measured attention FLOP fractions agree within "
             f"{EQUAL_COST_TOLERANCE}; pairs that do not are marked and listed last.", ""]
    if board.chance:
        headers = ["router", "operators", "config", "random config", "seeds",
                   "attn FLOP frac", f"router {metric_label(m)}", f"random {metric_label(m)}",
                   "Δ [95% CI]", "p", "verdict"]
        rows = []
        for c in board.chance:
            g, r, w = c.group, c.control, c.welch
            gv, rv = g.values("test", m), r.values("test", m)
            if w is None:
                delta, p, verdict = fmt_signed(mean(gv) - mean(rv), d), "—", "too few seeds"
            else:
                delta = f"{fmt_signed(w.diff, d)} [{fmt_signed(w.ci[0], d)}, " \
                        f"{fmt_signed(w.ci[1], d)}]"
                p = fmt_p(w.p)
                if w.p > ALPHA:
                    verdict = "no significant difference"
                elif board.better(mean(gv), mean(rv)):
                    verdict = f"{g.router} better"
                else:
                    verdict = "random better"
            if not c.equal_cost:
                gap = c.cost_gap
                verdict += (" (⚠ not at equal cost: attention fraction unknown)" if gap is None
                            else f" (⚠ not at equal cost: fractions differ by {fmt(gap, 3)})")
            if g.flagged or r.flagged:
                verdict += " (⚠ flagged row)"
            xg, xr = g.attention_fraction, r.attention_fraction
            rows.append([g.router_text, g.operators_text, g.config_hash, r.config_hash,
                         f"{len(gv)} / {len(rv)}",
                         f"{'—' if xg is None else fmt(xg, 3)} / "
                         f"{'—' if xr is None else fmt(xr, 3)}",
                         mean_std(gv, d), mean_std(rv, d), delta, p, verdict])
        lines += [md_table(headers, rows), ""]
    for g in board.no_control:
        lines.append(f"- No `random` control with the same configuration for {g.router} "
                     f"{'+'.join(g.operators)} `{g.config_hash}`: run it with `--router random` "
                     f"and otherwise identical options.")
    if board.no_control:
        lines.append("")
    return lines


def _claim_lines(claims: list[dict[str, Any]], boards: list[TaskBoard],
                 refs: ReferenceSet) -> list[str]:
    if not claims:
        return []
    lines = ["## The paper's other claims, against these records", ""]
    for claim in claims:
        cid = claim.get("id")
        src = refs.source_text(str(claim.get("source", "")))
        note = str(claim.get("note", ""))
        note = f" {note[:1].upper()}{note[1:]}." if note else ""
        lines.append(f"- **{claim.get('text', cid)}** ({REPORTED}; {src}).{note}")
        found = []
        for b in boards:
            for g in b.ranked:
                if cid == "meta-gate":
                    gates = [_mean_gate(r) for r in g.records]
                    gates = [x for x in gates if x is not None]
                    if gates:
                        found.append(f"{b.task} {g.label}: test gate {mean_std(gates, 3)} "
                                     f"({len(gates)} seeds)")
                elif cid == "rbf-rejected" and "rbf" in g.operators:
                    layers = _layer_fractions(g)
                    k = g.operators.index("rbf")
                    if layers is not None:
                        share = mean([row[k] for row in layers])
                        found.append(f"{b.task} {g.label}: rbf share {fmt(share, 3)} (mean over "
                                     f"layers and seeds)")
        if cid in ("meta-gate", "rbf-rejected"):
            lines += [f"  - here: {f}" for f in found] or ["  - here: no records bear on it yet."]
    lines.append("")
    return lines


def _mean_gate(r: RunRecord) -> float | None:
    layers = (r.cost.get("test") or {}).get("per_layer") if isinstance(r.cost, dict) else None
    gates = [float(layer["gate_mean"]) for layer in layers or []
             if isinstance(layer, dict) and isinstance(layer.get("gate_mean"), (int, float))]
    return mean(gates) if gates else None


@dataclass
class Board:
    markdown: str
    specs: list[dict[str, Any]]
    problems: list[str]
    n_records: int


def generate(runs: Path, out: Path, plots: Path, reference: Path | None) -> Board:
    """Everything the board says, as text, plus the plots to draw. Deterministic."""
    loaded = collect(runs)
    refs, ref_problems = load_reference(reference)
    paper_gate = next((float(c["value"]) for c in refs.claims
                       if c.get("id") == "meta-gate" and isinstance(c.get("value"), (int, float))),
                      None)
    problems = loaded.problems + ref_problems
    tasks = sorted(set(loaded.groups) | {r.task for r in refs.rows})
    boards, all_specs = [], []
    for task in tasks:
        board = build_task(task, loaded.groups.get(task, []), loaded.headline.get(task),
                           [r for r in refs.rows if r.task == task])
        boards.append(board)

    runs_rel = rel_link(runs, out)
    lines = [
        "# Leaderboard",
        "",
        f"<!-- Generated by `python -m harness leaderboard` from the records in `{runs_rel}/`. "
        "Do not edit by hand: CI runs `python -m harness leaderboard --check`, which fails when "
        "this file differs from what the records produce. The check compares this markdown "
        "only; the PNG plots are regenerated by the same command but not compared, since "
        "their bytes vary across matplotlib versions. -->",
        "",
        f"Generated from {loaded.n_records} run records in `{runs_rel}/` "
        f"({sum(len(b.ranked) for b in boards)} configurations over "
        f"{len([b for b in boards if b.ranked])} tasks)"
        + (f"; {len(problems)} problem{'s' if len(problems) != 1 else ''} reported at the "
           f"end." if problems else "."),
        "Each row is one configuration (router, operators, config hash) repeated over seeds. "
        "Rows flagged ⚠ (leaky variants that see future tokens or other examples, or any other "
        "warning flag) are never ranked above honest rows. Rows labelled "
        f"*{REPORTED}* are the paper's numbers, shown for reference only.",
        "",
    ]
    for board in boards:
        specs = plot_specs(board, plots, paper_gate)
        all_specs += specs
        lines += render_task(board, specs, out, refs)
    lines += _claim_lines(refs.claims, boards, refs)
    if problems:
        lines += ["## Problems", "", "Records skipped or questioned (by file):", ""]
        lines += [f"- `{cell(p.split(': ', 1)[0])}`: {cell(p.split(': ', 1)[-1])}"
                  for p in problems]
        lines.append("")
    lines += [
        "## Columns",
        "",
        "- **config**: hash of the resolved configuration without seed, device and output "
        "directory (`RunConfig.digest()`); the same hash means repeats of one setup.",
        "- **seeds**: runs averaged; mean ± sample standard deviation (n − 1) over them.",
        "- **params**: trainable and frozen parameters of the model.",
        "- **tokens/s**: training tokens per second of the run's own hardware (not comparable "
        "across hardware).",
        "- Full records (versions, git commit, data hashes, histories) are the JSON files in "
        f"`{runs_rel}/`.",
        "",
    ]
    text = "\n".join(lines).rstrip("\n") + "\n"
    return Board(text, all_specs, problems, loaded.n_records)


# -- command ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", default=DEFAULT_RUNS,
                        help=f"directory of run records (default {DEFAULT_RUNS})")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"markdown file to write (default {DEFAULT_OUT})")
    parser.add_argument("--plots", default=DEFAULT_PLOTS,
                        help=f"directory for PNG plots (default {DEFAULT_PLOTS})")
    parser.add_argument("--reference", default=DEFAULT_REFERENCE,
                        help="JSON file of the paper's reported numbers "
                             f"(default {DEFAULT_REFERENCE})")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the markdown is stale with respect to the "
                             "records (CI)")
    parser.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if any record was skipped as malformed")


def run(args: argparse.Namespace) -> int:
    runs, out, plots = Path(args.runs), Path(args.out), Path(args.plots)
    reference = Path(args.reference) if args.reference else None
    if not runs.is_dir():
        print(f"note: no records directory {runs}; the board will have no runs", file=sys.stderr)
    board = generate(runs, out, plots, reference)
    for problem in board.problems:
        print(f"warning: {problem}", file=sys.stderr)
    status = 1 if (args.strict and board.problems) else 0

    if args.check:
        current = out.read_text(encoding="utf-8") if out.exists() else None
        if current == board.markdown:
            print(f"{out} is up to date ({board.n_records} records)")
            return status
        if current is None:
            print(f"{out} does not exist; generate it with `python -m harness leaderboard`",
                  file=sys.stderr)
            return 1
        diff = list(difflib.unified_diff(current.splitlines(), board.markdown.splitlines(),
                                         f"{out} (committed)", f"{out} (from the records)",
                                         lineterm="", n=1))
        print(f"{out} is stale: it differs from what the records in {runs} produce. Regenerate "
              f"it with `python -m harness leaderboard` (never edit it by hand).",
              file=sys.stderr)
        for line in diff[:40]:
            print(line, file=sys.stderr)
        if len(diff) > 40:
            print(f"... ({len(diff) - 40} more diff lines)", file=sys.stderr)
        return 1

    rec.atomic_write_text(out, board.markdown)
    print(f"wrote {out} ({board.n_records} records)")
    if not args.no_plots:
        from harness.results import plots as plots_mod

        written, failures = plots_mod.render_all(board.specs)
        for failure in failures:
            print(f"warning: plot not written: {failure}", file=sys.stderr)
        removed = plots_mod.remove_stale(plots, [Path(s["path"]) for s in board.specs])
        print(f"wrote {len(written)} plots to {plots}"
              + (f", removed {len(removed)} no longer linked" if removed else ""))
    return status
