"""Verdict rules: measurements in, one of three verdicts out. Each rule is a small function of
the evidence with its thresholds as arguments; the claims
(harness/report/claims/chiar_former.py) pick a rule and its numbers, and the page prints the
rule's text next to the verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.records import RunRecord
from harness.engine.meters.collapse import THRESHOLD, collapsed_ops, final_shares
from harness.report.claims.evidence import Runs, routing_history
from harness.report.claims.stats import ALPHA, Comparison, compare, mean_std

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
NOT_TESTABLE = "not testable here"

Value = Callable[[RunRecord], float | None]


@dataclass
class Verdict:
    status: str
    ours: str  # our measurement, in one cell
    test: str = "—"  # the test and its p-value
    why: str = ""  # one sentence: how the rule decided
    details: list[str] = field(default_factory=list)


def fmt(x: float, digits: int = 2) -> str:
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def summary(values: dict[int, float], digits: int = 2) -> str:
    m, s = mean_std(list(values.values()))
    spread = f" ± {fmt(s, digits)}" if len(values) > 1 else ""
    return f"{fmt(m, digits)}{spread} (n={len(values)})"


def test_text(c: Comparison, digits: int = 2) -> str:
    p = "<0.001" if c.p < 0.001 else f"{c.p:.3f}"
    return (f"{c.test}: diff {fmt(c.diff, digits)}, 95% CI [{fmt(c.ci_low, digits)}, "
            f"{fmt(c.ci_high, digits)}], p = {p}")


def missing(*runs: Runs, seeds: int = 2) -> str | None:
    """Why these runs cannot decide anything yet, or None."""
    for r in runs:
        if not r.runnable:
            return f"{r.label} cannot run at this scale"
        if len(r.records) < seeds:
            have = ",".join(map(str, r.seeds)) or "none"
            return (f"{r.label} has {len(r.records)} finished seed(s) (seeds: {have}); "
                    f"needs {seeds}: run `python -m harness reproduce chiar-former`")
    return None


def beats(a: Runs, b: Runs, value: Value, *, lower_is_better: bool,
          paper_gain: float | None = None, digits: int = 2) -> Verdict:
    """"A beats B". With the 95% CI of mean(A) - mean(B):
    supported if A is significantly better and, when the paper gives the size of the gain
    (``paper_gain``, relative to B), that size is not excluded as too large;
    contradicted if A is significantly worse, or the CI excludes the paper's gain;
    otherwise not testable here (inconclusive at this number of seeds)."""
    why = missing(a, b)
    va, vb = a.values(value), b.values(value)
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
    return Verdict(NOT_TESTABLE, ours, test, f"{what}; the CI includes 0"
                   + ("" if expected is None else " and the paper's gain")
                   + ": inconclusive at this number of seeds; more seeds would decide")


def at_most(a: Runs, value: Value, *, limit: float, tolerance: float,
            label: str, digits: int = 3) -> Verdict:
    """"A's measured value is at most ``limit``": supported if the mean over seeds is within
    ``tolerance`` of it or below, contradicted if above."""
    why = missing(a, seeds=1)
    va = a.values(value)
    ours = summary(va, digits) if va else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    m, _ = mean_std(list(va.values()))
    ok = m <= limit + tolerance
    return Verdict(SUPPORTED if ok else CONTRADICTED, ours,
                   why=f"{label} {fmt(m, digits)} is {'within' if ok else 'above'} "
                       f"{fmt(limit, digits)} + {fmt(tolerance, digits)}")


def near(a: Runs, value: Value, *, target: float, tolerance: float, label: str,
         digits: int = 3) -> Verdict:
    """"A's value settles near ``target``": supported if the mean over seeds is within
    ``tolerance``, contradicted otherwise (needs two seeds)."""
    why = missing(a)
    va = a.values(value)
    ours = summary(va, digits) if va else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    m, _ = mean_std(list(va.values()))
    ok = abs(m - target) <= tolerance
    return Verdict(SUPPORTED if ok else CONTRADICTED, ours,
                   why=f"{label} {fmt(m, digits)} is {'within' if ok else 'outside'} "
                       f"{fmt(target, digits)} ± {fmt(tolerance, digits)}")


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
