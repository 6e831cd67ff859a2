"""The ranked tables as data: one CSV and one JSON file next to the markdown
(results/leaderboard.csv and .json beside results/LEADERBOARD.md), one row per board row, so
that a reader can load the board instead of parsing markdown.

The same facts as the markdown, from the same functions (the rank, the verdicts, the marks are
decided in rows.py; the cells in render.py), written as numbers where they are numbers. Names
are written as the records hold them: CSV and JSON are data, not markup. Deterministic, so
that ``leaderboard --check`` compares them like the markdown.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from harness.core.stats import mean, sample_std
from harness.report.leaderboard.groups import Group
from harness.report.leaderboard.render import code_text, lr_text, speed_text
from harness.report.leaderboard.rows import Section, TaskBoard

COLUMNS = [
    "task", "budget", "budget_kind", "budget_tokens", "preset", "checkpoint", "rank", "router",
    "operators", "router_options", "operator_options", "config_hash", "parameters", "lr",
    "lr_grid", "lr_text", "seeds", "metric", "test_mean", "test_std", "valid_metric",
    "valid_mean", "valid_std", "attention_flop_fraction", "requested_fraction",
    "mixer_flops_per_token", "pareto", "params", "tokens_per_second", "code", "vs_best",
    "vs_best_diff", "vs_best_ci_low", "vs_best_ci_high", "vs_best_p", "vs_no_mixing",
    "vs_no_mixing_diff", "vs_no_mixing_ci_low", "vs_no_mixing_ci_high", "no_mixing_floor",
    "flagged", "marks",
]


def _stats(xs: list[float]) -> tuple[float | None, float | None]:
    return (mean(xs) if xs else None), sample_std(xs)


def _comparison(prefix: str, verdict: tuple[str, Any]) -> dict[str, Any]:
    text, w = verdict
    out: dict[str, Any] = {prefix: None if text == "—" else text, f"{prefix}_diff": None,
                           f"{prefix}_ci_low": None,
                           f"{prefix}_ci_high": None}
    if w is not None:
        out.update({f"{prefix}_diff": w.diff, f"{prefix}_ci_low": w.ci_low,
                    f"{prefix}_ci_high": w.ci_high})
        if prefix == "vs_best":
            out["vs_best_p"] = w.p
    return out


def row_data(board: TaskBoard, section: Section, g: Group) -> dict[str, Any]:
    """One board row as a flat dict of the COLUMNS, plus its per-seed values (JSON only)."""
    b = section.budget
    test_mean, test_std = _stats(g.values("test", board.rank_metric))
    valid_mean, valid_std = _stats(g.values("valid", board.metric))
    setting = g.setting
    params = sorted({r.parameters for r in g.records})
    row: dict[str, Any] = {
        "task": board.task, "budget": b.label, "budget_kind": b.kind,
        "budget_tokens": b.tokens, "preset": b.preset, "checkpoint": g.checkpoint,
        "rank": section.ranks.get(g.key), "router": g.router,
        "operators": "+".join(g.operators),
        "router_options": json.dumps(g.first.router_options, sort_keys=True),
        "operator_options": json.dumps(g.first.operator_options, sort_keys=True),
        "config_hash": g.config_hash,
        "parameters": json.dumps({p: setting.get(p) for p in board.parameters}, sort_keys=True),
        "lr": g.lr, "lr_grid": " ".join(f"{x:g}" for x in (g.tuning.grid if g.tuning else [])),
        "lr_text": lr_text(g), "seeds": len(g.records), "metric": board.rank_metric,
        "test_mean": test_mean, "test_std": test_std, "valid_metric": board.metric,
        "valid_mean": valid_mean, "valid_std": valid_std,
        "attention_flop_fraction": g.attention_fraction,
        "requested_fraction": g.requested_fraction,
        "mixer_flops_per_token": g.mixing_flops, "pareto": g.key in section.pareto,
        "params": params[0] if len(params) == 1 else f"{params[0]}-{params[-1]}",
        "tokens_per_second": speed_text(g), "code": code_text(g),
        "vs_best_p": None, "flagged": g.flagged, "marks": "; ".join(section.marks(g)),
    }
    row.update(_comparison("vs_best", section.vs_best.get(g.key, ("—", None))))
    row.update(_comparison("vs_no_mixing", section.vs_floor.get(g.key, ("—", None))))
    floor = section.floor_of.get(g.key)
    row["no_mixing_floor"] = None if floor is None else floor.config_hash
    return row


def tables(boards: list[TaskBoard]) -> list[tuple[dict[str, Any], dict[int, float]]]:
    """Every board row in page order, with its per-seed test values."""
    return [(row_data(board, s, g), g.by_seed("test", board.rank_metric))
            for board in boards for s in board.sections for g in s.ranked]


def csv_text(boards: list[TaskBoard]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row, _ in tables(boards):
        writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    return buffer.getvalue()


def json_text(boards: list[TaskBoard], source: str) -> str:
    rows = [{**row, "test_by_seed": {str(s): v for s, v in sorted(values.items())}}
            for row, values in tables(boards)]
    return json.dumps({"generated_from": source, "columns": COLUMNS, "rows": rows},
                      indent=1, sort_keys=False, ensure_ascii=False) + "\n"
