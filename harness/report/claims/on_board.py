"""The leaderboard's section on the paper's claims: what the claims system says about the
records on the board.

Per claim: its verdict by its own rule (the same function that writes results/CLAIMS.md) from
the board's records that are the claims' runs, at each scale they ran at; and, for a claim that
names a measurement (``Claim.on_board``), that measurement on every board row that has it. The
board decides nothing about the claims; it lists its rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.records import RunRecord
from harness.report.claims.chiar_former import SOURCE, Claim
from harness.report.claims.evidence import Evidence
from harness.report.claims.paper import REPORTED, Paper
from harness.report.claims.render import judge
from harness.report.claims.runs import SETTINGS


@dataclass
class BoardRow:
    """One row of the board: a configuration's records over seeds."""

    task: str
    label: str
    records: list[RunRecord]


def settings_with_runs(claims: list[Claim], records: list[RunRecord]) -> list[Evidence]:
    """The evidence of each setting (scale) some of whose claims' runs are in ``records``."""
    keys = sorted({k for c in claims for k in c.needs})
    found = []
    for setting in SETTINGS:
        ev = Evidence(records, setting)
        if any(ev.runs(k).records for k in keys):
            found.append(ev)
    return found


def _verdicts(claim: Claim, evidence: list[Evidence]) -> str:
    parts = []
    for ev in evidence:
        v = judge(claim, ev, estimate=False)
        ours = f" (ours: {v.ours})" if v.ours != "—" else ""
        moves = f"; {v.budget_note}" if v.budget_note else ""
        parts.append(f"{ev.setting} scale: **{v.status}**{ours}{moves}.")
    return " ".join(parts)


def section_lines(claims: list[Claim], paper: Paper, records: list[RunRecord],
                  rows: list[BoardRow]) -> list[str]:
    if not claims:
        return []
    evidence = settings_with_runs(claims, records)
    intro = ("Each claim's verdict by its rule in `harness/report/claims` (rules, tests and "
             "runs: results/CLAIMS.md, written by `python -m harness reproduce "
             "chiar-former`), from the records on this board that are the claims' runs, at "
             "the scale they ran at")
    if not evidence:
        intro += ("; none of them is on this board yet (`python -m harness reproduce "
                  "chiar-former` runs them)")
    lines = ["## The paper's claims, against these records", "",
             f"{intro}. Under a claim: what each row of this board measures of it. The "
             f"paper's numbers are {REPORTED} ({paper.source_text(SOURCE)}).", ""]
    for claim in claims:
        verdicts = _verdicts(claim, evidence)
        note = f" {claim.note}." if claim.note else ""
        lines.append(f"- **{claim.number}. {claim.text}** (paper: {claim.paper})."
                     + (f" {verdicts}" if verdicts else "") + note)
        if claim.on_board is not None:
            found = [f"{row.task} {row.label}: {text}" for row in rows
                     if (text := claim.on_board(row.records)) is not None]
            lines += [f"  - here: {f}" for f in found] or ["  - here: no records bear on it yet."]
    return lines + [""]
