"""Verdict rules: measurements in, one verdict out. Each rule is a small function of the
evidence with its thresholds as arguments; the claims (harness/report/claims/chiar_former.py)
pick a rule and its numbers, and the page prints the rule's text next to the verdict.

The verdict words: **supported**, **contradicted**, **inconclusive** (tested: the 95% CI holds
both answers) and **not testable here** (could not be tested: the runs are missing, cannot run
at this scale, or fail a gate of harness/report/claims/gates.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.core.metrics import fixed
from harness.core.records import Measure
from harness.core.stats import ALPHA, Comparison, compare, mean, sample_std
from harness.engine.meters.collapse import THRESHOLD, collapsed_ops, final_shares
from harness.report.claims.evidence import Runs, routing_history
from harness.report.claims.runs import LM_FAMILIES

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable here"
TESTED = (SUPPORTED, CONTRADICTED, INCONCLUSIVE)  # the words of a claim that could be tested
MORE_SEEDS = 5  # what an inconclusive verdict asks for when its CI is wider than the effect
REPRODUCE = "python -m harness reproduce chiar-former"


@dataclass
class Verdict:
    status: str
    ours: str  # our measurement, in one cell
    test: str = "—"  # the test and its p-value
    why: str = ""  # one sentence: how the rule decided
    details: list[str] = field(default_factory=list)
    # language modelling (harness/report/claims/gates.py and budgets.py): the one git commit
    # every arm ran, the verdict at smaller budgets (label, verdict), and how it moves with them
    commit: str | None = None
    budgets: list[tuple[str, Verdict]] = field(default_factory=list)
    budget_note: str = ""


def summary(values: dict[int, float], digits: int) -> str:
    """Mean ± sample std over seeds (n = seeds)."""
    xs = list(values.values())
    spread = sample_std(xs)
    return (f"{fixed(mean(xs), digits)}"
            + ("" if spread is None else f" ± {fixed(spread, digits)}") + f" (n={len(xs)})")


def test_text(c: Comparison, digits: int) -> str:
    p = "<0.001" if c.p < 0.001 else f"{c.p:.3f}"
    return (f"{c.test}: diff {fixed(c.diff, digits)}, 95% CI [{fixed(c.ci_low, digits)}, "
            f"{fixed(c.ci_high, digits)}], p = {p}")


def missing(*runs: Runs, seeds: int = 2) -> str | None:
    """Why these runs cannot decide anything yet, or None: too few seeds (at the plateau, for
    language modelling: how many finished short of it), or a tuning that has not chosen."""
    for r in runs:
        if not r.runnable:
            return f"{r.label} cannot run at this scale"
        if len(r.records) >= seeds:
            continue
        where = f" ({r.spec.family})"
        if not r.records and not r.short and (r.tuning is None or r.tuning.seed is None):
            return f"no records of {r.label}{where} yet; needs {seeds} seeds: run `{REPRODUCE}`"
        have = ",".join(map(str, r.seeds)) or "none"
        plateau = " at its plateau" if r.spec.family in LM_FAMILIES else ""
        text = f"{r.label}{where} has {len(r.records)} finished seed(s){plateau} (seeds: {have})"
        if r.short:
            text += (f"; {len(r.short)} more did not reach their plateau (seeds "
                     f"{','.join(str(x.seed) for x in r.short)}: the step cap stopped them)")
        if r.problem:
            text += f"; tuning: {r.problem}"
        return f"{text}; needs {seeds}: run `{REPRODUCE}`"
    return None


def inconclusive(ours: str, test: str, what: str, c: Comparison, *, effect: float | None,
                 effect_text: str) -> Verdict:
    """The CI holds both answers. Where it is wider than the effect the claim names (``effect``,
    in the value's units), the seeds at hand cannot resolve that effect: 5 seeds are needed."""
    width = c.ci_high - c.ci_low
    n = min(c.n_a, c.n_b)
    if effect is not None and width > abs(effect) and n < MORE_SEEDS:
        seeds = ",".join(map(str, range(MORE_SEEDS)))
        return Verdict(INCONCLUSIVE, ours, test,
                       f"{what}: the 95% CI (width {width:.3g}) is wider than the effect the "
                       f"claim names ({effect_text}, {abs(effect):.3g}): {MORE_SEEDS} seeds are "
                       f"needed (`{REPRODUCE} --seeds {seeds}`)")
    return Verdict(INCONCLUSIVE, ours, test, f"{what}: inconclusive at {n} seeds; more seeds "
                   "would decide")


def lacking(runs: Runs, values: dict[int, float], value: Measure, seeds: int = 2) -> str | None:
    """Why the runs' records cannot decide: too few of them hold the value (older records, or a
    router without it), or None."""
    if len(values) >= seeds:
        return None
    return (f"{runs.label}: {len(values)} of {len(runs.records)} records hold {value.name}; "
            f"needs {seeds}")


def beats(a: Runs, b: Runs, value: Measure, *, paper_gain: float | None = None) -> Verdict:
    """"A beats B" on a value whose metric says which way is better. With the 95% CI of
    mean(A) - mean(B): supported if A is significantly better and, when the paper gives the
    size of the gain (``paper_gain``, relative to B), that size is not excluded as too large;
    contradicted if A is significantly worse, or the CI excludes the paper's gain;
    otherwise inconclusive (5 seeds needed where the CI is wider than the paper's gain)."""
    if value.metric.higher_is_better is None:
        raise ValueError(f"'{value.name}' has no better direction: 'beats' cannot compare it")
    lower_is_better, digits = not value.metric.higher_is_better, value.metric.digits
    va, vb = a.values(value), b.values(value)
    why = missing(a, b) or lacking(a, va, value) or lacking(b, vb, value)
    ours = f"{summary(va, digits)} vs {summary(vb, digits)}" if va and vb else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    c = compare(va, vb)
    assert c is not None
    sign = 1.0 if lower_is_better else -1.0  # sign * diff < 0: A better
    lo, hi = sorted((sign * c.ci_low, sign * c.ci_high))
    test = test_text(c, digits)
    expected = None if paper_gain is None else -paper_gain * abs(c.mean_b)
    gain = -sign * c.diff / abs(c.mean_b) if c.mean_b else 0.0
    what = (f"{a.label} is {'better' if gain > 0 else 'worse'} than {b.label} by "
            f"{abs(gain):.1%} of the latter")
    if lo > 0:
        return Verdict(CONTRADICTED, ours, test, f"{what}: significantly worse "
                       f"(CI excludes 0, alpha {ALPHA})")
    if expected is not None and expected < lo:
        return Verdict(CONTRADICTED, ours, test, f"{what}; the paper's gain of "
                       f"{paper_gain:.1%} lies outside the 95% CI")
    if hi < 0:
        return Verdict(SUPPORTED, ours, test, f"{what}, significantly (CI excludes 0)")
    return inconclusive(ours, test, f"{what}; the CI includes 0"
                        + ("" if expected is None else " and the paper's gain"), c,
                        effect=expected, effect_text=f"the paper's {paper_gain:.1%} gain"
                        if paper_gain is not None else "")


def at_most(a: Runs, value: Measure, *, limit: float, tolerance: float, label: str) -> Verdict:
    """"A's measured value is at most ``limit``": supported if the mean over seeds is within
    ``tolerance`` of it or below, contradicted if above."""
    digits = value.metric.digits
    va = a.values(value)
    why = missing(a, seeds=1) or lacking(a, va, value, seeds=1)
    ours = summary(va, digits) if va else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    m = mean(list(va.values()))
    ok = m <= limit + tolerance
    return Verdict(SUPPORTED if ok else CONTRADICTED, ours,
                   why=f"{label} {fixed(m, digits)} is {'within' if ok else 'above'} "
                       f"{fixed(limit, digits)} + {fixed(tolerance, digits)}")


def near(a: Runs, value: Measure, *, target: float, tolerance: float, label: str) -> Verdict:
    """"A's value settles near ``target``": supported if the mean over seeds is within
    ``tolerance``, contradicted otherwise (needs two seeds)."""
    digits = value.metric.digits
    va = a.values(value)
    why = missing(a) or lacking(a, va, value)
    ours = summary(va, digits) if va else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    m = mean(list(va.values()))
    ok = abs(m - target) <= tolerance
    return Verdict(SUPPORTED if ok else CONTRADICTED, ours,
                   why=f"{label} {fixed(m, digits)} is {'within' if ok else 'outside'} "
                       f"{fixed(target, digits)} ± {fixed(tolerance, digits)}")


def rejects(a: Runs, op: str) -> Verdict:
    """"The router rejects ``op``": supported if ``op`` is flagged collapsed (share below
    the collapse threshold for the rest of training, harness/engine/meters/collapse.py) in a
    majority of seeds, contradicted if in at most a minority (needs two seeds with a routing
    history)."""
    why = missing(a)
    with_history = [r for r in a.records if routing_history(r)]
    if not why and len(with_history) < 2:
        why = f"{a.label}: fewer than 2 records with a routing history (recorded since #14)"
    shares = [final_shares(routing_history(r), r.operators).get(op) for r in with_history]
    shares = [s for s in shares if s is not None]
    n_collapsed = sum(op in collapsed_ops(r.flags) for r in with_history)
    share_text = ", ".join(f"{s:.1%}" for s in shares)
    ours = (f"{op} collapsed in {n_collapsed}/{len(with_history)} seeds; final {op} share "
            f"{share_text}") if with_history else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    others = sorted({o for r in with_history for o in collapsed_ops(r.flags) if o != op})
    details = [f"other operators collapsed: {', '.join(others)}"] if others else []
    ok = n_collapsed * 2 > len(with_history)
    return Verdict(SUPPORTED if ok else CONTRADICTED, ours,
                   why=f"{op} stayed below {THRESHOLD:.0%} of tokens to the end in "
                       f"{n_collapsed} of {len(with_history)} seeds "
                       f"({'a majority' if ok else 'not a majority'})", details=details)
