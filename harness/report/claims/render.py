"""results/CLAIMS.md: per claim, the paper's number, ours, the test, the scale and the verdict.

A pure function of the records and the claims: sorted, fixed formats, no clock, so that
``reproduce --check`` can regenerate it in memory and compare (like ``leaderboard --check``).
"""

from __future__ import annotations

from harness.engine.meters.collapse import THRESHOLD
from harness.report.claims.budgets import AT_PLATEAU, curve, moves
from harness.report.claims.chiar_former import Claim
from harness.report.claims.curves import plot_name, plotted_families
from harness.report.claims.evidence import BEST_VALID_PPL, Evidence, Runs
from harness.report.claims.gates import LM_SEEDS, below_floor, floor, gated, is_lm, seeds_and_commit
from harness.report.claims.rules import MORE_SEEDS, NOT_TESTABLE, Verdict
from harness.report.claims.runs import (
    FLOOR,
    SPEC_BY_KEY,
    family_text,
    overrides,
    runnable,
    setting_text,
)
from harness.report.markdown import cell

PAPER_SEEDS = 3  # what a "not testable here" estimate assumes a reproduction would run


def gpu_hours(keys: list[str], seeds: int = PAPER_SEEDS) -> float:
    """Expected H100-hours of running these specs at the paper setting (run --dry-run)."""
    from harness.core.config import resolve
    from harness.runner.plan import make_plan
    from tasks import TASKS

    total = 0.0
    for key in keys:
        cell_options = overrides(SPEC_BY_KEY[key], "paper", 0, out="results/runs")
        task_cls = TASKS.get(cell_options["data"]["task"])
        total += make_plan(resolve(cell_options, task_cls.presets)).gpu_hours
    return total * seeds


def blocked(claim: Claim, setting: str) -> list[str]:
    """The runs a claim needs that the setting cannot run."""
    return [k for k in claim.needs if not runnable(SPEC_BY_KEY[k], setting)]


def what_it_takes(claim: Claim, keys: list[str]) -> str:
    hours = gpu_hours(keys)
    return (f"{claim.takes}; then {len(keys)} configurations x {PAPER_SEEDS} seeds at the "
            f"paper setting (`python -m harness reproduce chiar-former --preset paper "
            f"--data-dir DIR`): about {hours:.1f} H100 GPU-hours of training at 40% MFU "
            f"(`run --dry-run`, assumptions in harness/runner/plan.py)")


def judge(claim: Claim, ev: Evidence, *, estimate: bool = True) -> Verdict:
    """The claim's verdict on the evidence. A claim the setting cannot run is not testable
    here; ``estimate`` says what testing it would take (GPU-hours, from the run planner). A
    language-modelling claim passes the gates of harness/report/claims/gates.py first (seeds
    at the plateau, one clean commit, attention above the no-mixing floor) and carries its
    verdicts at smaller budgets (harness/report/claims/budgets.py)."""
    keys = blocked(claim, ev.setting)
    if keys:
        takes = what_it_takes(claim, keys) if estimate else claim.takes
        return Verdict(NOT_TESTABLE, "—", why=f"cannot run at this scale: {takes}")
    v = claim.judge(ev)
    if not is_lm(claim.judged_on):
        return v
    commit, why = seeds_and_commit(ev, claim.judged_on)
    if why is not None:
        return gated(v, why)
    why = below_floor(ev, BEST_VALID_PPL)
    if why is not None:
        v = gated(v, why)
    v.commit = commit
    if claim.at_budget is not None:
        rows = curve(claim.at_budget, ev, claim.judged_on)
        v.budgets = [(label, bv) for label, _, bv in rows]
        v.budget_note = moves(rows, v)
    return v


def scale_of(claim: Claim, setting: str, *, short: bool = False) -> str:
    families = sorted({SPEC_BY_KEY[k].family for k in claim.needs})
    texts = [family_text(setting, f, short=short) for f in families]
    return "; ".join(t for t in texts if t) or "—"


def verdict_text(v: Verdict) -> str:
    return f"**{v.status}**" + (f" ({v.budget_note})" if v.budget_note else "")


def runs_lines(claim: Claim, ev: Evidence) -> list[str]:
    lines = []
    for key in claim.needs:
        runs = ev.runs(key)
        if runs.runnable:
            lines.append(f"  - {runs.label} ({runs.spec.family}): {runs_text(runs)}")
    return lines


def runs_text(runs: Runs) -> str:
    ids = ", ".join(f"`{r.run_id}`" for r in runs.records) or "none yet"
    parts = [ids]
    if runs.short:
        parts.append(f"short of their plateau, not judged: "
                     f"{', '.join(f'`{r.run_id}`' for r in runs.short)}")
    if runs.tuning is not None:
        parts.insert(0, runs.tuning.text())
    return "; ".join(parts)


def budget_lines(v: Verdict) -> list[str]:
    if not v.budgets:
        return []
    lines = ["", "At smaller budgets (the same runs' earlier evaluations, on validation):", "",
             "| budget | ours | verdict |", "| --- | --- | --- |"]
    for label, bv in v.budgets:
        why = f": {bv.why}" if bv.status == NOT_TESTABLE else ""
        lines.append(f"| {cell(label)} | {cell(bv.ours)} | **{bv.status}**{cell(why)} |")
    lines.append(f"| {AT_PLATEAU} | {cell(v.ours)} | {verdict_text(v)} |")
    return lines


def floor_lines(ev: Evidence) -> list[str]:
    """The no-mixing floor of the setting's language modelling, which gates its claims."""
    attn, identity = (ev.runs(k) for k in FLOOR)
    if not attn.runnable:
        return []
    v = floor(ev, BEST_VALID_PPL)
    test = f"; {v.test}" if v.test != "—" else ""
    return ["## The no-mixing floor", "",
            f"A claim about a mixer is judged only where attention beats a model with no token "
            f"mixing at all. {attn.label} vs {identity.label} ({attn.spec.family}, validation "
            f"token perplexity at the plateau): {v.ours}{test}: **{v.status}**: {v.why}.", "",
            f"- {attn.label}: {runs_text(attn)}", f"- {identity.label}: {runs_text(identity)}",
            ""]


def render(ev: Evidence, claims: list[Claim], command: str) -> str:
    verdicts = [(c, judge(c, ev)) for c in claims]
    out = [
        "# CHIAR-Former's claims, tested here",
        "",
        f"Generated by `{command}` from the records in `results/runs/`; do not edit by hand. "
        "CI fails when it is stale (`python -m harness reproduce chiar-former --check`).",
        "",
        f"Scale ({ev.setting}):",
        "",
        *[f"- {line}" for line in setting_text(ev.setting)],
        "",
        "The paper's numbers are claims to test (arXiv 2606.08327); ours come from small runs "
        "on this project's machine and compare configurations at equal budget, not absolute "
        "perplexities with the paper's.",
        "",
        "Verdicts are computed by code (`harness/report/claims/`), one rule per claim, stated "
        "below it: **supported**, **contradicted**, **inconclusive** (tested: the 95% CI holds "
        "both answers) or **not testable here** (could not be tested: with what it would take "
        "or what is missing). Ours: mean ± sample std over seeds (n = seeds). Tests: paired "
        "t-test by seed where both sides ran the same seeds (`scipy.stats.ttest_rel`), Welch's "
        "otherwise; 95% confidence intervals of A − B; alpha 0.05. ⚠ leaky marks runs of the "
        "paper's leaky variants (they see future tokens or other examples; flagged in their "
        "records).",
        "",
        f"Language-modelling claims are judged on tuned runs at their plateau: each "
        f"configuration's learning rate is chosen on validation from the grid run at the first "
        f"seed (the sweep's rule), and its other seeds run at that value; only runs that "
        f"reached their plateau count, with at least {LM_SEEDS} seeds per arm ({MORE_SEEDS} "
        f"where an inconclusive CI is wider than the effect the claim names); every arm must "
        f"come from one git commit with a clean tree (named under the claim); and attention "
        f"must beat the no-mixing floor (there attention's runs still improving at the step "
        f"cap count when they already beat a floor at its plateau: more steps only lower a "
        f"best-validation value). Each is also judged at three smaller budgets: these "
        f"are the same runs' earlier evaluations (their learning rate had not yet decayed), "
        f"not separate runs; a verdict that changes with budget says so.",
        "",
        "| # | claim | paper | ours | test | scale | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c, v in verdicts:
        out.append(f"| {c.number} | {cell(c.text)} | {cell(c.paper)} | {cell(v.ours)} | "
                   f"{cell(v.test)} | {cell(scale_of(c, ev.setting, short=True))} | "
                   f"{verdict_text(v)} |")
    out.append("")
    out += floor_lines(ev)
    plots = plotted_families(ev)
    for c, v in verdicts:
        out += [f"## {c.number}. {c.text}", "",
                f"- paper: {c.paper}",
                f"- ours: {v.ours}",
                f"- test: {v.test}",
                f"- scale: {scale_of(c, ev.setting)}",
                f"- verdict: {verdict_text(v)}: {v.why}",
                *[f"  - {d}" for d in v.details],
                f"- rule: {c.rule_text}"]
        if v.commit:
            out.append(f"- commit: `{v.commit[:12]}` (every arm, clean tree)")
        runs = runs_lines(c, ev)
        if runs:
            out += ["- runs:", *runs]
        families = sorted({SPEC_BY_KEY[k].family for k in c.needs} & set(plots))
        out += [f"- plot: [{plot_name(f)}](plots/{plot_name(f)}) (validation against "
                f"training tokens, mean and spread over seeds)" for f in families]
        out += budget_lines(v)
        out.append("")
    out += ["Routing collapse (claim 3) is computed from each record's routing history "
            f"(`harness/engine/meters/collapse.py`: share below {THRESHOLD:.0%} to the end of "
            "training, over at least its last quarter); collapsed runs carry a `collapsed: "
            "<op>` flag on the leaderboard.", ""]
    return "\n".join(out)
