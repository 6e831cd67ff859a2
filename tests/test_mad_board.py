"""The board's MAD section: the scores of harness/report/mad_score.py per configuration, per
task and overall, with the settings and the grid cell each chose; one line without MAD runs."""

from __future__ import annotations

import json
from pathlib import Path

from test_mad_score import record

from harness.core.metrics import fixed
from harness.core.records import record_filename
from harness.report.leaderboard import board as lb
from harness.report.leaderboard import mad
from harness.report.mad_score import mad_scores

RECORDS = [
    record("compression", 1e-4, 0.0, valid=0.2, test=0.9),
    record("compression", 5e-4, 0.1, valid=0.6, test=0.5),  # chosen on validation
    record("compression", 1e-3, 0.0, valid=0.7, test=0.7, seq_len=128, max_steps=400),
    record("memorization", 1e-4, 0.0, valid=0.5, test=0.4),
    record("memorization", 1e-4, 0.0, valid=0.5, test=0.4, ops=("dct",)),
]


def _row(lines: list[str], label: str) -> list[str]:
    line = next(line for line in lines if line.startswith(f"| {label} "))
    return [c.strip() for c in line.split("|")[1:-1]]


def test_the_section_shows_each_configurations_scores():
    lines = "\n".join(mad.section(RECORDS)).splitlines()
    assert lines[0] == mad.TITLE
    scores, _ = mad_scores(RECORDS)
    attn = next(s for s in scores if "attn" in s.label)
    row = _row(lines, attn.label)
    assert row[1 + mad.MAD_TASKS.index("compression")] == "0.600 (2)"  # (0.5 + 0.7) / 2
    assert row[1 + mad.MAD_TASKS.index("memorization")] == "0.400 (1)"
    assert row[1 + mad.MAD_TASKS.index("selective-copying")] == "—"
    assert row[-1] == f"{fixed(attn.overall, 3)} (incomplete)"
    dct = _row(lines, next(s.label for s in scores if "dct" in s.label))
    assert dct[-1] == "0.400 (incomplete)"
    settings = [line for line in lines if line.startswith(f"| {attn.label} | compression")]
    chosen = next(line for line in settings if "seq_len=64" in line)
    assert "| 0.0005 " in chosen and "| 0.1 " in chosen and chosen.rstrip(" |").endswith("0.500")


def test_without_mad_runs_the_section_is_one_line_naming_the_command():
    lines = mad.section([])
    assert lines[0] == mad.TITLE and lines[1] == "" and lines[3] == "" and len(lines) == 4
    assert mad.COMMAND in lines[2] and "sweeps/mad.py" in mad.COMMAND


def test_the_board_carries_the_section(tmp_path: Path):
    runs = tmp_path / "results" / "runs"
    runs.mkdir(parents=True)
    for r in RECORDS:
        path = runs / record_filename(r.run_id + "-" + "+".join(r.operators))
        path.write_text(json.dumps(r.model_dump(mode="json")))
    text = lb.generate(runs, tmp_path / "results" / "LEADERBOARD.md", tmp_path / "plots",
                       None).markdown
    assert mad.TITLE in text and "(incomplete)" in text
