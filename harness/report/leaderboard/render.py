"""The markdown of one task's board: the ranked table, its notes, the chance comparison and
the plot links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.metrics import BOARD_COLUMN, BOARD_NOTE, fixed, task_metric
from harness.core.records import Measure, measures
from harness.core.stats import ALPHA, mean
from harness.report.claims.paper import REPORTED, Paper, Reference
from harness.report.leaderboard.format import fmt_signed, options_text
from harness.report.leaderboard.groups import (
    ATTENTION_FRACTION,
    MIXING_FLOPS,
    TOP_TOKEN_SHARE,
    Group,
)
from harness.report.leaderboard.rows import EQUAL_COST_TOLERANCE, ChanceRow, TaskBoard
from harness.report.markdown import cell, fmt_p, md_table, mean_std, rel_link

COST_COLUMNS = [m for m in measures(BOARD_COLUMN) if m.section == "test_cost"]
TRAINING_COLUMNS = [m for m in measures(BOARD_COLUMN) if m.section == "training"]


def _columns(board: TaskBoard) -> list[tuple[str, str]]:
    cols = [("test", board.rank_metric)]
    if board.rank_metric != board.metric:
        cols.append(("test", board.metric))
    cols.append(("valid", board.metric))
    return cols


def _steps_text(g: Group) -> str:
    budget = g.first.budget
    max_steps = budget.get("max_steps")
    done = sorted({r.training.steps for r in g.records if r.training.steps is not None})
    if not done:
        return f"{max_steps} steps" if max_steps else "—"
    if max_steps and done == [int(max_steps)]:
        return f"{max_steps} steps"
    span = str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}"
    return f"{span} of {max_steps} steps (time budget {budget.get('max_time')} s)"


def _measured_text(g: Group) -> str | None:
    """Measured cost, wall time and memory, as means over seeds; None when none is recorded."""
    measured = [m.metric.sentence(x) for m in measures(BOARD_NOTE)
                if (x := g.mean_of(m)) is not None]
    return ", ".join(measured) + " (mean over seeds)" if measured else None


def _config_details(g: Group) -> str:
    c = g.first.config
    m, d, o = c.get("model", {}), c.get("data", {}), c.get("optim", {})
    r = c.get("routing", {})
    parts = [f"preset {g.first.preset}" if g.first.preset else "no preset"]
    if m:
        layers = m.get("layers")
        parts.append(f"{layers} layer{'' if layers == 1 else 's'} × d_model {m.get('d_model')}, "
                     f"{m.get('heads')} heads")
    seq = d.get("seq_len") or g.first.data.get("seq_len")
    if seq:
        parts.append(f"seq_len {seq}")
    if d.get("task_options"):
        parts.append(f"task options {options_text(d['task_options'])}")
    if r:
        parts.append(f"attn_fraction {r.get('attn_fraction')}, {r.get('execution')} execution")
    parts.append(_steps_text(g) + (f", batch {o.get('batch_size')}, lr {o.get('lr')}" if o else ""))
    unused = {k: v for k, v in g.first.operator_options.items() if k not in g.operators}
    if unused:
        parts.append("operator options " + "; ".join(f"{k}: {options_text(v)}"
                                                     for k, v in sorted(unused.items())))
    measured = _measured_text(g)
    if measured:
        parts.append(measured)
    hashes = sorted({r_.split_hashes.get("test", "") for r_ in g.records} - {""})
    if len(hashes) == 1:
        parts.append(f"test set {hashes[0][:19]}")
    elif hashes:
        parts.append(f"test set differs across seeds ({len(hashes)} hashes)")
    return "; ".join(parts)


# -- the ranked table ---------------------------------------------------------------------------


def _intro(board: TaskBoard) -> list[str]:
    direction = "higher is better" if board.higher else "lower is better"
    n_runs = sum(len(g.records) for g in board.ranked)
    if board.ranked:
        text = (f"{len(board.ranked)} configurations, {n_runs} runs. Ranked by test "
                f"{task_metric(board.rank_metric).label} ({direction}) of the final checkpoint, "
                f"mean ± sample standard deviation over seeds (records made since the "
                f"best-validation checkpoint is kept also hold its metrics, "
                f"`best_checkpoint`).")
    else:
        text = f"No runs recorded for this task; only the paper's numbers ({REPORTED})."
    return [f"## {board.task}", "", text, ""]


def _measured_cell(board: TaskBoard, g: Group, m: Measure) -> str:
    x = g.mean_of(m)
    if x is None:
        return "—"
    return m.metric.format(x) + (" ◆" if m == MIXING_FLOPS and g.key in board.pareto else "")


def _group_row(board: TaskBoard, g: Group, rank: int, cols: list[tuple[str, str]]) -> list[str]:
    verdict = board.vs_best.get(g.key, ("—", None))[0]
    params = sorted({r.parameters for r in g.records})
    row = [str(rank) if not g.flagged else "—", g.router_text, g.operators_text,
           g.config_hash, str(len(g.records))]
    row += [mean_std(g.values(split, metric), task_metric(metric).digits)
            for split, metric in cols]
    row += [_measured_cell(board, g, m) for m in COST_COLUMNS]
    row.append(f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}")
    row += [_measured_cell(board, g, m) for m in TRAINING_COLUMNS]
    row += ["; ".join(sorted({str(r.environment.get("hardware", "?")) for r in g.records})),
            verdict, g.mark]
    return row


def _reference_row(r: Reference, i: int, cols: list[tuple[str, str]]) -> list[str]:
    row = ["ref", r.router, r.operators, "—", "—"]
    placed = False
    for split, metric in cols:
        if (split, metric) == (r.split, r.metric):
            row.append(fixed(r.value, task_metric(metric).digits))
            placed = True
        else:
            row.append("")
    flags = f"{REPORTED} [ref {i}]"
    if not placed:
        flags += f"; {r.split} {task_metric(r.metric).label} {fixed(r.value, 2)}"
    for m in COST_COLUMNS:  # the paper states an attention fraction and a FLOP saving
        if m.name != "attention_flop_fraction":
            row.append("—")
            continue
        x = "—" if r.attention_flop_fraction is None else m.metric.format(
            r.attention_flop_fraction)
        row.append(x + (f" ({r.flops_text})" if r.flops_text else ""))
    row.append(r.parameters or "—")
    row += ["—"] * len(TRAINING_COLUMNS)
    return row + ["—", "—", flags]


def _table(board: TaskBoard) -> list[str]:
    cols = _columns(board)
    headers = ["rank", "router", "operators", "config", "seeds"]
    headers += [f"{split} {task_metric(metric).label}" for split, metric in cols]
    headers += [m.metric.label for m in COST_COLUMNS] + ["params"]
    headers += [m.metric.label for m in TRAINING_COLUMNS] + ["hardware", "vs best", "flags"]
    rows = []
    rank = 0
    for g in board.ranked:
        if not g.flagged:
            rank += 1
        rows.append(_group_row(board, g, rank, cols))
    rows += [_reference_row(r, i, cols) for i, r in enumerate(board.references, 1)]
    return [md_table(headers, rows), ""]


# -- notes under the table ----------------------------------------------------------------------


def _column_notes(board: TaskBoard) -> list[str]:
    if not board.ranked:
        return []
    notes = [
        f"**vs best**: Welch's two-sided t-test (unequal variances) over seeds between each "
        f"honest row and the best honest row, on test {task_metric(board.rank_metric).label}. "
        f"*tied* means p > {ALPHA} (not shown to differ; with few seeds the test has little "
        f"power, so this is not evidence of equality); *behind* means p ≤ {ALPHA}; *n/a* "
        f"needs at least 2 seeds on both sides. No correction for multiple comparisons.",
        "**attn FLOP frac**: analytic FLOPs the attention operator executed on the "
        "test set / FLOPs of attention on every token (1.000 = nothing skipped). "
        "**mixing FLOPs/token**: analytic forward FLOPs of all mixing operators per real "
        "test token, the total cost of the mix (a low attention fraction saves nothing if "
        "the other operators cost more). ◆ marks the Pareto front of honest rows on total "
        "mixing FLOPs (no honest row has both fewer mixing FLOPs per token and a better "
        "metric).",
    ]
    if board.rank_metric == "word_perplexity":
        notes.append("Language modelling ranks on word-level perplexity (exp of total NLL / "
                     "words), which compares across tokenizers; token PPL is per token of "
                     "each row's own tokenizer.")
    return notes


def _flagged_notes(board: TaskBoard) -> list[str]:
    flagged = [g for g in board.ranked if g.flagged]
    if not flagged:
        return []
    lines = ["- **⚠ rows** carry a warning flag and are listed after every honest row, "
             "unranked:"]
    for g in flagged:
        lines.append(f"  - `{g.config_hash}` {g.router} {'+'.join(g.operators)}: "
                     + "; ".join(cell(f) for f in g.warning_flags))
    return lines


def _data_notes(board: TaskBoard) -> list[str]:
    lines = []
    if board.metric == "accuracy":
        majority = sorted({fixed(v, 4) for g in board.ranked
                           for v in g.values("test", "majority_accuracy")})
        if majority:
            lines.append(f"- Majority-class baseline (test): {', '.join(majority)}.")
    test_sets = {h for g in board.ranked for r in g.records
                 if (h := r.split_hashes.get("test"))}
    if len(test_sets) > 1:
        lines.append(f"- Records in this table were scored on {len(test_sets)} different test "
                     f"sets (see the test-set hashes below): compare rows with care.")
    return lines


def _reference_notes(board: TaskBoard, refs: Paper) -> list[str]:
    if not board.references:
        return []
    lines = [f"- **Reference rows ({REPORTED})**: {refs.caveat}"]
    for i, r in enumerate(board.references, 1):
        note = f" {r.note[:1].upper()}{r.note[1:]}." if r.note else ""
        lines.append(f"  - [ref {i}] {r.label}: {r.split} {task_metric(r.metric).label} "
                     f"{fixed(r.value, 2)}. Source: {refs.source_text(r.source)}.{note}")
    return lines


def _configuration_notes(board: TaskBoard) -> list[str]:
    if not board.ranked:
        return []
    lines = ["- Configurations:"]
    seen = set()
    for g in board.ranked:
        if g.config_hash in seen:
            continue
        seen.add(g.config_hash)
        lines.append(f"  - `{g.config_hash}` ({g.router} {'+'.join(g.operators)}): "
                     f"{cell(_config_details(g))}")
    return lines


def _notes(board: TaskBoard, refs: Paper) -> list[str]:
    lines = [f"- {n}" for n in _column_notes(board)]
    lines += _flagged_notes(board)
    lines += _data_notes(board)
    lines += _reference_notes(board, refs)
    lines += _configuration_notes(board)
    return lines + [""]


def _plot_links(specs: list[dict[str, Any]], out: Path) -> list[str]:
    if not specs:
        return []
    lines = ["### Plots", ""]
    for s in specs:
        lines += [f"![{s['title']}]({rel_link(Path(s['path']), out)})", ""]
    return lines


def render_task(board: TaskBoard, specs: list[dict[str, Any]], out: Path,
                refs: Paper) -> list[str]:
    lines = _intro(board) + _table(board) + _notes(board, refs)
    if board.chance or board.no_control:
        lines += _render_chance(board)
    return lines + _plot_links(specs, out)


# -- routing against chance ---------------------------------------------------------------------


def _chance_intro(board: TaskBoard) -> list[str]:
    m = board.rank_metric
    return ["### Does routing beat chance?", "",
            f"Each routed configuration against the `random` control with the same "
            f"configuration (same operators, token shares, model, data and budget; only the "
            f"routing decision differs). Δ = router − random on test {task_metric(m).label} "
            f"({'higher' if board.higher else 'lower'} is better) with its 95% Welch "
            f"confidence interval; p from Welch's t-test over seeds. *matched on* is what the "
            f"control holds equal: the share of tokens in the top band (default), or the "
            f"attention FLOPs (`--router-option match=flops --router-option flop_fraction=F` "
            f"with F the row's attn FLOP frac); both are shown, router / random. The "
            f"comparison is at "
            f"equal cost only when the measured attention FLOP fractions agree within "
            f"{EQUAL_COST_TOLERANCE}; pairs that do not are marked and listed last.", ""]


def _chance_verdict(board: TaskBoard, c: ChanceRow, gm: float, rm: float) -> str:
    w = c.comparison
    if w is None:
        verdict = "too few seeds"
    elif w.p > ALPHA:
        verdict = "no significant difference"
    elif board.better(gm, rm):
        verdict = f"{c.group.router} better"
    else:
        verdict = "random better"
    if not c.equal_cost:
        gap = c.cost_gap
        verdict += (" (⚠ not at equal cost: attention fraction unknown)" if gap is None
                    else f" (⚠ not at equal cost: fractions differ by {fixed(gap, 3)})")
    if c.group.flagged or c.control.flagged:
        verdict += " (⚠ flagged row)"
    return verdict


def _chance_row(board: TaskBoard, c: ChanceRow) -> list[str]:
    m = board.rank_metric
    d = task_metric(m).digits
    g, r, w = c.group, c.control, c.comparison
    gv, rv = g.values("test", m), r.values("test", m)
    if w is None:
        delta, p = fmt_signed(mean(gv) - mean(rv), d), "—"
    else:
        delta = f"{fmt_signed(w.diff, d)} [{fmt_signed(w.ci_low, d)}, {fmt_signed(w.ci_high, d)}]"
        p = fmt_p(w.p)
    return [g.router_text, g.operators_text, g.config_hash, r.config_hash,
            f"{len(gv)} / {len(rv)}", r.matched_on,
            _pair(g.top_token_share, r.top_token_share),
            _pair(g.attention_fraction, r.attention_fraction),
            mean_std(gv, d), mean_std(rv, d), delta, p,
            _chance_verdict(board, c, mean(gv), mean(rv))]


def _pair(a: float | None, b: float | None) -> str:
    return f"{'—' if a is None else fixed(a, 3)} / {'—' if b is None else fixed(b, 3)}"


def _render_chance(board: TaskBoard) -> list[str]:
    lines = _chance_intro(board)
    if board.chance:
        m = task_metric(board.rank_metric).label
        headers = ["router", "operators", "config", "random config", "seeds", "matched on",
                   TOP_TOKEN_SHARE.metric.label, ATTENTION_FRACTION.metric.label,
                   f"router {m}", f"random {m}",
                   "Δ [95% CI]", "p", "verdict"]
        lines += [md_table(headers, [_chance_row(board, c) for c in board.chance]), ""]
    for g in board.no_control:
        lines.append(f"- No `random` control with the same configuration for {g.router} "
                     f"{'+'.join(g.operators)} `{g.config_hash}`: run it with `--router random` "
                     f"and otherwise identical options.")
    if board.no_control:
        lines.append("")
    return lines
