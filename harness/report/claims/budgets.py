"""The budget curve of a language-modelling claim: its rule re-applied at smaller budgets.

The smaller budgets are fractions of the runs' step cap (``FRACTIONS``), in training tokens; a
run's value there is the best validation metric of the full split over its evaluations up to the
one nearest the budget (``evidence.valid_until``): what the run would have reported had it
stopped there. They are the same runs' earlier evaluations, whose learning rate had not yet
decayed, not separate runs trained to that budget. At each budget the floor is checked again
(attention must beat single identity there too). A verdict that changes with budget says so.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.report.claims.evidence import Evidence, cap_tokens, valid_at
from harness.report.claims.gates import below_floor, gated
from harness.report.claims.rules import NOT_TESTABLE, TESTED, Verdict

FRACTIONS = ((1, 8), (1, 4), (1, 2))  # of the step cap
AT_PLATEAU = "at the plateau (best-validation checkpoint)"

AtBudget = Callable[[Evidence, float], Verdict]  # the claim's rule at a budget in tokens


def budget_tokens(ev: Evidence, arms: tuple[str, ...]) -> list[tuple[str, float]]:
    """(label, training tokens) of each smaller budget; none where no arm's run says its cap."""
    caps = [c for k in arms for r in ev.runs(k).records if (c := cap_tokens(r)) is not None]
    if not caps:
        return []
    cap = min(caps)
    return [(f"{num}/{den} of the cap: {cap * num / den:,.0f} tokens", cap * num / den)
            for num, den in FRACTIONS]


def curve(at_budget: AtBudget, ev: Evidence, arms: tuple[str, ...],
          ) -> list[tuple[str, float, Verdict]]:
    """(label, tokens, verdict) at each smaller budget, the floor checked at each."""
    rows = []
    for label, tokens in budget_tokens(ev, arms):
        v = at_budget(ev, tokens)
        why = below_floor(ev, valid_at("perplexity", tokens))
        if why is not None and v.status != NOT_TESTABLE:
            v = gated(v, why)
        rows.append((label, tokens, v))
    return rows


def moves(rows: list[tuple[str, float, Verdict]], final: Verdict) -> str:
    """'budget-dependent: contradicted below N training tokens, supported at and above' where the
    tested verdicts differ between budgets (the plateau last), else ''."""
    points = [(f"{tokens:,.0f} training tokens", v.status) for _, tokens, v in rows]
    points.append(("the plateau", final.status))
    segments: list[list[str]] = []  # [status, first where, last where]
    for where, status in points:
        if status not in TESTED:
            continue
        if segments and segments[-1][0] == status:
            segments[-1][2] = where
        else:
            segments.append([status, where, where])
    if len(segments) <= 1:
        return ""
    if len(segments) == 2:
        (early, _, early_last), (late, late_first, _) = segments
        if late_first == "the plateau":
            return f"budget-dependent: {early} up to {early_last}, {late} at the plateau"
        return f"budget-dependent: {early} below {late_first}, {late} at and above"
    return "budget-dependent: " + ", ".join(
        f"{status} {'at' if first == 'the plateau' else 'from'} {first}"
        for status, first, _ in segments)
