"""One task's board: ranking (flagged rows never above honest ones), ties with the best row,
the Pareto front, and each router against the random control with the same configuration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.core.metrics import infer_direction
from harness.core.stats import ALPHA, Comparison, mean, welch
from harness.report.claims.paper import Reference
from harness.report.leaderboard.groups import Group, control_key
from harness.report.markdown import fmt_p

EQUAL_COST_TOLERANCE = 0.02  # attention FLOP fractions closer than this count as equal cost


@dataclass
class ChanceRow:
    group: Group
    control: Group
    comparison: Comparison | None  # Welch's t-test of router against control

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
    vs_best: dict[tuple[Any, ...], tuple[str, Comparison | None]]
    chance: list[ChanceRow]  # equal-cost pairs first
    no_control: list[Group]
    references: list[Reference]
    pareto: set[tuple[Any, ...]]

    @property
    def honest(self) -> list[Group]:
        return [g for g in self.ranked if not g.flagged]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher else a < b


def _rank_metric(metric: str, groups: list[Group]) -> str:
    """Language modelling ranks on word-level perplexity when every row has it."""
    if metric == "perplexity" and groups and all(
            len(g.values("test", "word_perplexity")) == len(g.records) for g in groups):
        return "word_perplexity"
    return metric


def _rank(groups: list[Group], rank_metric: str, higher: bool) -> list[Group]:
    """Honest rows first, by quality; equal quality: the cheaper row first, then the one with
    more seeds, then by name."""

    def quality(g: Group) -> float:
        m = mean(g.values("test", rank_metric))
        return -m if higher else m

    def cost(g: Group) -> float:
        x = g.attention_fraction
        return 1.0 if x is None else x

    return sorted(groups, key=lambda g: (g.flagged, quality(g), cost(g), -len(g.records),
                                         g.key))


def _vs_best(honest: list[Group], rank_metric: str
             ) -> dict[tuple[Any, ...], tuple[str, Comparison | None]]:
    """Each honest row against the best honest row: best, tied, behind or n/a."""
    vs_best: dict[tuple[Any, ...], tuple[str, Comparison | None]] = {}
    if not honest:
        return vs_best
    best = honest[0]
    best_values = best.values("test", rank_metric)
    vs_best[best.key] = ("best", None)
    for g in honest[1:]:
        w = welch(g.values("test", rank_metric), best_values)
        if w is None:
            vs_best[g.key] = (f"n/a ({min(len(g.records), len(best.records))} seed)", None)
        elif w.p > ALPHA:
            vs_best[g.key] = (f"tied (p={fmt_p(w.p)})", w)
        else:
            vs_best[g.key] = (f"behind (p={fmt_p(w.p)})", w)
    return vs_best


def _pareto(honest: list[Group], rank_metric: str, higher: bool) -> set[tuple[Any, ...]]:
    """Pareto front over honest rows: fewer total mixing FLOPs per token, better metric. Not
    the attention FLOP fraction: a mix whose cheap operators cost more than the attention they
    replace (dct+rbf+attn) has a low attention fraction and no saving."""
    points = [(g, g.mixing_flops, mean(g.values("test", rank_metric))) for g in honest]
    points = [(g, x, y) for g, x, y in points if x is not None]
    pareto = set()
    for g, x, y in points:
        dominated = any(
            (x2 <= x and (y2 >= y if higher else y2 <= y)) and (x2 < x or y2 != y)
            for g2, x2, y2 in points if g2 is not g
        )
        if not dominated:
            pareto.add(g.key)
    return pareto


def _chance(groups: list[Group], rank_metric: str) -> tuple[list[ChanceRow], list[Group]]:
    """Routing vs the random control with the same configuration (equal-cost pairs first), and
    the routed rows without such a control."""
    controls: dict[str, list[Group]] = {}
    for g in groups:
        if g.roles.control:
            controls.setdefault(control_key(g.first), []).append(g)
    chance, missing = [], []
    candidates = [g for g in groups if g.roles.routed]
    candidates.sort(key=lambda g: (not g.roles.method, g.flagged, g.key))
    for g in candidates:
        matches = sorted(controls.get(control_key(g.first), []), key=lambda c: c.key)
        if not matches:
            missing.append(g)
            continue
        for c in matches:
            chance.append(ChanceRow(g, c, welch(g.values("test", rank_metric),
                                                     c.values("test", rank_metric))))
    chance.sort(key=lambda row: not row.equal_cost)  # stable: the order above within each
    return chance, missing


def build_task(task: str, groups: list[Group], headline: tuple[str, bool] | None,
               references: list[Reference]) -> TaskBoard:
    if headline is None:  # only reference rows
        ref_metric = references[0].metric if references else "metric"
        headline = (ref_metric, infer_direction(ref_metric) is not False)
    metric, higher = headline
    rank_metric = _rank_metric(metric, groups)
    ranked = _rank(groups, rank_metric, higher)
    honest = [g for g in ranked if not g.flagged]
    chance, missing = _chance(groups, rank_metric)
    return TaskBoard(task, metric, higher, rank_metric, ranked, _vs_best(honest, rank_metric),
                     chance, missing, references, _pareto(honest, rank_metric, higher))
