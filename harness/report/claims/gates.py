"""What a language-modelling claim must pass before its rule's verdict stands (issue 32).

1. Seeds at the plateau: every arm has >= ``LM_SEEDS`` seeds whose runs reached their plateau
   (``Evidence`` keeps the others apart and the reason says how many did not).
2. One commit, clean trees: every arm's runs name the same git commit and a clean working tree
   (``environment.git_commit``, ``git_dirty``); the page names that commit.
3. The no-mixing floor: a claim about a mixer is judged only where single attention beats
   single identity (95% CI of the difference excludes 0) on the same budget. Attention's runs
   that the step cap stopped short of their plateau count here when they already beat a floor
   whose runs reached theirs: the value is a best-validation value, which more steps can only
   improve, so that verdict survives a longer run (the other answer would not: it is withheld).

A claim that fails a gate is **not testable here**, with the gate's reason; its measurement is
still shown.
"""

from __future__ import annotations

from dataclasses import replace

from harness.core.records import Measure
from harness.report.claims import rules
from harness.report.claims.evidence import Evidence, Runs
from harness.report.claims.rules import NOT_TESTABLE, SUPPORTED, Verdict
from harness.report.claims.runs import FLOOR, LM_FAMILIES, SPEC_BY_KEY

LM_SEEDS = 3  # seeds every arm of a language-modelling claim needs at its plateau


def is_lm(arms: tuple[str, ...]) -> bool:
    """Whether a claim with these arms is a language-modelling claim (gated here)."""
    return any(SPEC_BY_KEY[k].family in LM_FAMILIES for k in arms)


def one_commit(arms: list[Runs]) -> tuple[str | None, str | None]:
    """(the commit every arm's runs ran, None), or (None, why they did not all run on one
    commit from a clean tree)."""
    records = [r for runs in arms for r in runs.records]
    commits = sorted({str(r.environment.get("git_commit")) for r in records})
    if len(commits) != 1 or commits[0] == "None":
        named = ", ".join(c[:7] if c != "None" else "unknown" for c in commits)
        return None, (f"the arms ran on {len(commits)} commits ({named}): re-run them on one "
                      f"commit")
    dirty = [runs.label for runs in arms
             if any(r.environment.get("git_dirty") is not False for r in runs.records)]
    if dirty:
        return None, (f"runs of {', '.join(dirty)} came from a working tree with uncommitted "
                      f"changes (or do not say): re-run them from a clean checkout")
    return commits[0], None


def floor(ev: Evidence, value: Measure) -> Verdict:
    """Single attention against the no-mixing floor (single identity) on ``value``, with the
    seeds a language-modelling claim needs."""
    attn, identity = (ev.runs(k) for k in FLOOR)
    v = rules.beats(attn, identity, value)
    why = rules.missing(attn, identity, seeds=LM_SEEDS)
    if why is None:
        return v
    ahead = still_improving_ahead(attn, identity, value)
    return ahead if ahead is not None else gated(v, why)


def still_improving_ahead(attn: Runs, identity: Runs, value: Measure) -> Verdict | None:
    """The floor's verdict from attention's runs short of their plateau, when it is supported
    against a floor at its plateau, or None. ``value`` is a best-so-far validation value: the
    short runs' values only fall with more steps, so "attention beats the floor" survives a
    longer run; a verdict the other way would not, and is not given."""
    if attn.problem or rules.missing(identity, seeds=LM_SEEDS):
        return None
    if not attn.short or len(attn.finished) < LM_SEEDS:
        return None
    v = rules.beats(replace(attn, records=attn.finished, short=[]), identity, value)
    if v.status != SUPPORTED:
        return None
    return replace(v, why=(
        f"{v.why}; {len(attn.short)} of {attn.label}'s runs stopped at the step cap short of "
        f"their plateau, still improving, while {identity.label}'s reached theirs: their best "
        f"validation values can only fall with more steps, so the verdict survives a longer "
        f"run"))


def below_floor(ev: Evidence, value: Measure) -> str | None:
    """Why the claim cannot be judged at this budget because attention does not beat the
    floor, or None."""
    v = floor(ev, value)
    if v.status == SUPPORTED:
        return None
    attn, identity = (ev.runs(k).label for k in FLOOR)
    if v.status == NOT_TESTABLE:
        return f"the no-mixing floor is not measured: {v.why}"
    return (f"{attn} does not beat the no-mixing floor ({identity}) here, so mixing is not "
            f"measured ({v.status} on the floor's rule: {v.ours}; {v.test})")


def seeds_and_commit(ev: Evidence, arms: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Gates 1 and 2: (the arms' commit, None) or (None, why the claim is not testable)."""
    runs = [ev.runs(k) for k in arms]
    why = rules.missing(*runs, seeds=LM_SEEDS)
    if why:
        return None, why
    return one_commit(runs)


def gated(v: Verdict, why: str) -> Verdict:
    """The rule's verdict withheld: not testable here, with the measurement still shown."""
    return Verdict(NOT_TESTABLE, v.ours, why=why, details=v.details)
