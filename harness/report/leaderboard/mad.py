"""The board's MAD section: MAD's score of each configuration the records hold (per task and
overall), and the difficulty settings it averages, each with the learning rate x weight decay
cell chosen on validation. The score is computed by harness/report/mad_score.py alone; this
module only writes it. One line, with the command that makes them, when no MAD run is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.core.metrics import fixed
from harness.core.records import RunRecord
from harness.report.leaderboard.format import options_text
from harness.report.mad_score import MadScore, mad_scores
from harness.report.markdown import escape, md_table
from tasks.mad_common import MAD_TASKS

TITLE = "## MAD score"
COMMAND = "python sweeps/mad.py --ops attn --out results/runs"


def _score_rows(scores: list[MadScore]) -> list[list[str]]:
    rows = []
    for s in scores:
        per_task = s.per_task
        counts = {t: sum(1 for x in s.settings if x.task == t) for t in per_task}
        cells = [f"{fixed(per_task[t], 3)} ({counts[t]})" if t in per_task else "—"
                 for t in MAD_TASKS]
        overall = fixed(s.overall, 3) + ("" if s.complete else " (incomplete)")
        rows.append([escape(s.label), *cells, overall])
    return rows


def _setting_rows(scores: list[MadScore]) -> list[list[str]]:
    return [[escape(s.label), escape(x.task), escape(options_text(x.setting)), f"{x.lr:g}",
             f"{x.weight_decay:g}", str(x.cells), str(x.seeds), fixed(x.valid, 3),
             fixed(x.test, 3)] for s in scores for x in s.settings]


def section(records: Iterable[RunRecord]) -> list[str]:
    """The markdown lines of the MAD section."""
    scores, problems = mad_scores(records)
    if not scores:
        return [TITLE, "", f"No MAD runs in the records (MAD's six tasks, tasks/mad_*.py): "
                           f"`{COMMAND}` runs MAD's protocol for one configuration "
                           f"(sweeps/mad.py; `--preset cpu --baseline-only` for one setting "
                           f"a task on CPU).", ""]
    lines = [TITLE, "",
             "MAD's score (Poli et al. 2024) per configuration: per difficulty setting, the "
             "test accuracy (MAD's convention: the macro average over classes) of the learning "
             "rate x weight decay cell with the best validation accuracy; a task's score is "
             "the mean over its settings (their count in brackets), the MAD score the mean "
             "over the six tasks (*incomplete* when some task has no run). Unfinished, leaky "
             "or flagged records are left out.", "",
             md_table(["configuration", *MAD_TASKS, "MAD score"], _score_rows(scores)), "",
             "The settings:", "",
             md_table(["configuration", "task", "setting", "lr", "weight decay", "cells",
                       "seeds", "valid", "test"], _setting_rows(scores)), ""]
    if problems:
        lines += [f"{len(problems)} record{'s' if len(problems) != 1 else ''} of MAD's tasks "
                  f"without a validation and test macro accuracy left out.", ""]
    return lines
