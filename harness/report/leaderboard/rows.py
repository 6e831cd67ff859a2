"""One task's board: its rows split by budget, and within each budget the ranking (flagged rows
never above honest ones, one-seed rows after the others), the reference row each row is
compared with, the no-mixing floor, the Pareto front, and each router against the random
control with the same configuration. Nothing is ranked or compared across budgets.

Every verdict a page prints about a row (vs best, vs the floor, its marks) is decided here, so
that the markdown, the CSV and the JSON say the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.core.metrics import fixed, infer_direction
from harness.core.protocol import Budget
from harness.core.stats import ALPHA, Comparison, welch
from harness.report.claims.paper import Reference
from harness.report.leaderboard.format import slug
from harness.report.leaderboard.groups import Group, control_key, row_parameters
from harness.report.markdown import fmt_p

EQUAL_COST_TOLERANCE = 0.02  # attention FLOP fractions closer than this count as equal cost
SOFT_FRACTION = 0.999  # a routed row at this attention FLOP fraction ran attention everywhere
NO_BETTER = "no better than no mixing"
MATCHED = ("token share", "attention FLOPs")  # what a random control can hold equal


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
class Section:
    """The rows of one task at one budget: what is ranked against what."""

    task: str
    budget: Budget
    name: str  # the task, with the budget when the task has several
    file_stem: str  # plot files: the task's slug, with the budget's when it has several
    higher: bool
    rank_metric: str
    ranked: list[Group]  # honest rows with >= 2 seeds, honest one-seed rows, flagged rows
    reference: Group | None  # "vs best": the best honest row among those with the most seeds
    vs_best: dict[tuple[Any, ...], tuple[str, Comparison | None]]
    # every honest no-mixing row (single identity), most seeds first, the one each row is
    # compared with, and the verdict of that comparison
    floors: list[Group]
    floor_of: dict[tuple[Any, ...], Group]
    vs_floor: dict[tuple[Any, ...], tuple[str, Comparison | None]]
    chance: list[ChanceRow]  # equal-cost pairs first
    no_control: list[Group]
    pareto: set[tuple[Any, ...]]
    ranks: dict[tuple[Any, ...], int] = field(default_factory=dict)  # honest rows only
    parameters: list[str] = field(default_factory=list)  # differing between these rows
    lr_differs: bool = False  # the rows ran at more than one learning rate

    @property
    def floor(self) -> Group | None:
        """The section's floor: the no-mixing row with the most seeds."""
        return self.floors[0] if self.floors else None

    @property
    def honest(self) -> list[Group]:
        return [g for g in self.ranked if not g.flagged]

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher else a < b

    def over_share(self, g: Group) -> str | None:
        """Why a routed row costs more attention than it asked for, or None: a soft router
        runs attention on every token; a hard one may spend more FLOPs than its token share
        (keys and values for every token, padded query slots)."""
        x, asked = g.attention_fraction, g.requested_fraction
        if x is None or asked is None:
            return None
        if x >= SOFT_FRACTION:
            return "soft: attention on every token (attn FLOP frac 1.000)"
        if x > asked + EQUAL_COST_TOLERANCE:
            return f"attn FLOP frac {fixed(x, 3)} above the requested {fixed(asked, 3)}"
        return None

    def marks(self, g: Group) -> list[str]:
        """What a reader must know about a row before comparing it, in words."""
        marks = [g.mark] if g.mark else []
        if any(g is f for f in self.floors):
            marks.append("no-mixing floor")
        if (over := self.over_share(g)) is not None:
            marks.append(over)
        if g.plateau_missed:
            marks.append(f"plateau not reached in {g.plateau_missed} of {len(g.records)} runs")
        if g.best_missing:
            marks.append(f"{g.best_missing} of {len(g.records)} runs have no best-validation "
                         f"metrics: final weights")
        return marks  # commits and dirty trees: the row's code column


@dataclass
class TaskBoard:
    task: str
    metric: str  # the task's headline metric
    higher: bool
    rank_metric: str
    sections: list[Section]  # one per budget, smallest token budget first
    references: list[Reference]
    parameters: list[str]  # config paths whose values differ between the task's rows

    @property
    def ranked(self) -> list[Group]:
        return [g for s in self.sections for g in s.ranked]


def _rank_metric(metric: str, groups: list[Group]) -> str:
    """Language modelling ranks on word-level perplexity when every row has it."""
    if metric == "perplexity" and groups and all(
            len(g.values("test", "word_perplexity")) == len(g.records) for g in groups):
        return "word_perplexity"
    return metric


def _rank(groups: list[Group], rank_metric: str, higher: bool) -> list[Group]:
    """Honest rows first, those with several seeds before one-seed rows, each by quality;
    equal quality: the cheaper row first, then the one with more seeds, then by name."""

    def quality(g: Group) -> float:
        xs = g.values("test", rank_metric)
        m = sum(xs) / len(xs)
        return -m if higher else m

    def cost(g: Group) -> float:
        x = g.attention_fraction
        return 1.0 if x is None else x

    return sorted(groups, key=lambda g: (g.flagged, len(g.records) < 2, quality(g), cost(g),
                                         -len(g.records), g.key))


def _verdict(g: Group, ref: Group, rank_metric: str, higher: bool
             ) -> tuple[str, Comparison | None]:
    """A row against a reference row: ahead, tied, behind, or n/a with fewer than 2 seeds."""
    w = welch(g.values("test", rank_metric), ref.values("test", rank_metric))
    if w is None:
        return f"n/a ({min(len(g.records), len(ref.records))} seed)", None
    if w.p > ALPHA:
        return f"tied (p={fmt_p(w.p)})", w
    ahead = w.diff > 0 if higher else w.diff < 0
    return f"{'ahead' if ahead else 'behind'} (p={fmt_p(w.p)})", w


def _reference(honest: list[Group]) -> Group | None:
    """The row every other is compared with: the best among those with the most seeds (so
    that a one-seed row never makes every comparison n/a)."""
    if not honest:
        return None
    most = max(len(g.records) for g in honest)
    return next(g for g in honest if len(g.records) == most)


def _vs_best(honest: list[Group], ref: Group | None, rank_metric: str, higher: bool
             ) -> dict[tuple[Any, ...], tuple[str, Comparison | None]]:
    if ref is None:
        return {}
    out: dict[tuple[Any, ...], tuple[str, Comparison | None]] = {ref.key: ("best", None)}
    for g in honest:
        if g is not ref:
            out[g.key] = _verdict(g, ref, rank_metric, higher)
    return out


def _floors(groups: list[Group]) -> list[Group]:
    """The section's no-mixing rows (single identity, honest), the most seeds first."""
    floors = [g for g in groups if g.roles.floor and not g.flagged]
    return sorted(floors, key=lambda g: (len(g.records), g.key), reverse=True)


def _floor_of(g: Group, floors: list[Group], paths: list[str]) -> Group | None:
    """The floor row `g` is compared with: like with like, the first (most seeds) that ran at
    g's values of the parameters that differ between the section's rows (`paths`; those both
    use, so a mixer's own options aside), such as the schedule; else the section's floor."""
    mine = row_parameters(g, paths)
    for f in floors:
        theirs = row_parameters(f, paths)
        if all(mine[p] == theirs[p] for p in mine.keys() & theirs.keys()):
            return f
    return floors[0] if floors else None


def _vs_floor(groups: list[Group], floor_of: dict[tuple[Any, ...], Group], rank_metric: str,
              higher: bool) -> dict[tuple[Any, ...], tuple[str, Comparison | None]]:
    """Each row against its floor: "better" only when the 95% interval of the difference
    excludes 0 on the better side; else no better than no mixing. A floor row is the floor."""
    out: dict[tuple[Any, ...], tuple[str, Comparison | None]] = {}
    for g in groups:
        floor = floor_of.get(g.key)
        if floor is None:
            continue
        if floor is g:
            out[g.key] = ("the floor", None)
            continue
        w = welch(g.values("test", rank_metric), floor.values("test", rank_metric))
        if w is None:
            n = min(len(g.records), len(floor.records))
            out[g.key] = (f"{NO_BETTER} (not shown: {n} seed)", None)
        elif (w.ci_low > 0) if higher else (w.ci_high < 0):
            out[g.key] = ("better", w)
        else:
            out[g.key] = (NO_BETTER, w)
    return out


def _pareto(honest: list[Group], rank_metric: str, higher: bool) -> set[tuple[Any, ...]]:
    """Pareto front over honest rows: fewer total mixing FLOPs per token, better metric. Not
    the attention FLOP fraction: a mix whose cheap operators cost more than the attention they
    replace (dct+rbf+attn) has a low attention fraction and no saving. One sweep over the
    rows sorted by cost: linear after the sort, whatever the number of rows."""
    sign = 1.0 if higher else -1.0
    points = []
    for g in honest:
        x, ys = g.mixing_flops, g.values("test", rank_metric)
        if x is not None and ys:
            points.append((x, -sign * sum(ys) / len(ys), g))  # by cost, then best first
    points.sort(key=lambda p: (p[0], p[1]))
    front: set[tuple[Any, ...]] = set()
    best: float | None = None  # the best quality (as -sign*y, lower is better) at lower cost
    i = 0
    while i < len(points):
        j = i
        while j < len(points) and points[j][0] == points[i][0]:
            j += 1
        top = points[i][1]  # the best quality at this cost
        if best is None or top < best:
            front |= {g.key for x, y, g in points[i:j] if y == top}
            best = top
        i = j
    return front


def _chance(groups: list[Group], rank_metric: str) -> tuple[list[ChanceRow], list[Group]]:
    """Routing vs the random control with the same configuration, and the routed rows
    without one. Each routed row meets at most one control per kind of matching (token share,
    attention FLOPs): the one with the most seeds, then the closest cost. Linear in the rows,
    whatever the input: one t-test per pair, at most two pairs per routed row."""
    best: dict[tuple[str, str], Group] = {}
    for c in groups:
        if not c.roles.control or c.matched_on not in MATCHED:
            continue
        k = (control_key(c.first), c.matched_on)
        held = best.get(k)
        if held is None or (len(c.records), c.key) > (len(held.records), held.key):
            best[k] = c
    chance, missing = [], []
    candidates = sorted((g for g in groups if g.roles.routed),
                        key=lambda g: (not g.roles.method, g.flagged, g.key))
    for g in candidates:
        key = control_key(g.first)
        matches = [c for kind in MATCHED if (c := best.get((key, kind))) is not None]
        if not matches:
            missing.append(g)
        for c in matches:
            chance.append(ChanceRow(g, c, welch(g.values("test", rank_metric),
                                                c.values("test", rank_metric))))
    chance.sort(key=lambda row: not row.equal_cost)  # stable: the order above within each
    return chance, missing


def _section(task: str, budget: Budget, groups: list[Group], several: bool, rank_metric: str,
             higher: bool) -> Section:
    ranked = _rank(groups, rank_metric, higher)
    honest = [g for g in ranked if not g.flagged]
    ref = _reference(honest)
    floors = _floors(groups)
    parameters = differing_parameters(groups)
    floor_of = {g.key: f for g in honest
                if (f := g if g.roles.floor else _floor_of(g, floors, parameters)) is not None}
    chance, missing = _chance(groups, rank_metric)
    name = f"{task} · {budget.label}" if several else task
    stem = f"{slug(task)}_{slug(budget.slug)}" if several else slug(task)
    section = Section(task, budget, name, stem, higher, rank_metric, ranked, ref,
                      _vs_best(honest, ref, rank_metric, higher), floors, floor_of,
                      _vs_floor(honest, floor_of, rank_metric, higher), chance, missing,
                      _pareto(honest, rank_metric, higher))
    section.ranks = {g.key: i for i, g in enumerate(honest, 1)}
    section.parameters = parameters
    section.lr_differs = len({g.lr for g in groups}) > 1
    return section


def differing_parameters(groups: list[Group]) -> list[str]:
    """The config paths whose values differ between rows (a value missing from a config counts
    as one; a parameter a row does not use, such as a single operator's attention share, does
    not), the learning rate aside (its own column)."""
    paths = sorted({p for g in groups for p in g.setting})
    values: dict[str, set[str]] = {p: set() for p in paths}
    for g in groups:
        setting, used = g.setting, row_parameters(g, paths)
        for p in paths:
            if p in used or p not in setting:
                values[p].add(repr(setting.get(p)))
    return [p for p in paths if len(values[p]) > 1]


def build_task(task: str, groups: list[Group], headline: tuple[str, bool] | None,
               references: list[Reference]) -> TaskBoard:
    if headline is None:  # only reference rows
        ref_metric = references[0].metric if references else "metric"
        headline = (ref_metric, infer_direction(ref_metric) is not False)
    metric, higher = headline
    rank_metric = _rank_metric(metric, groups)
    budgets = sorted({g.budget for g in groups}, key=lambda b: (
        b.preset, b.plateau, b.tokens or 0, b.train_lines is not None, b.train_lines or 0))
    sections = [_section(task, b, [g for g in groups if g.budget == b], len(budgets) > 1,
                         rank_metric, higher) for b in budgets]
    return TaskBoard(task, metric, higher, rank_metric, sections, references,
                     differing_parameters(groups))
