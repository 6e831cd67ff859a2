"""The markdown of one task's board: per budget, the ranked table with the parameters that
differ as columns, its notes, the chance comparison and the plot links; the paper's rows.

Every name from a record (task, router, operators, options, flags) is written through
``escape`` (harness/report/markdown.py): nothing a record holds renders as HTML, a link or a
heading."""

from __future__ import annotations

import json
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
    row_parameters,
)
from harness.report.leaderboard.rows import EQUAL_COST_TOLERANCE, ChanceRow, Section, TaskBoard
from harness.report.markdown import escape, fmt_p, md_table, mean_std, rel_link

COST_COLUMNS = [m for m in measures(BOARD_COLUMN) if m.section == "test_cost"]
OVER_SHARE = "▲"  # at the rank: the row spends more attention than it asked for
SPEED_LABEL = "tokens/s (hardware, threads)"


# -- the cells of a row: shared by the markdown and the CSV/JSON (harness/.../export.py) --------


def parameter_label(path: str, paths: list[str]) -> str:
    """A parameter's column name: its last part, or more of its path where that is ambiguous."""
    parts = path.split(".")
    for n in range(1, len(parts) + 1):
        short = ".".join(parts[-n:])
        if sum(1 for p in paths if p == short or p.endswith("." + short)) == 1:
            return short
    return path


def parameter_value(g: Group, path: str) -> str:
    value = row_parameters(g, [path]).get(path)
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def lr_text(g: Group) -> str:
    """The learning rate; for a tuned row the chosen value and its grid, else "untuned"."""
    t = g.tuning
    lr = "—" if g.lr is None else f"{g.lr:g}"
    if t is None or not t.tuned:
        return f"{lr}, untuned"
    return f"{lr} of {', '.join(f'{x:g}' for x in t.grid)}"


def speed_text(g: Group) -> str:
    """Tokens/s per hardware and threads: never averaged across machines."""
    return "; ".join(f"{v:,.0f} on {hw}" for hw, v in g.speed_by_hardware()) or "—"


def code_text(g: Group) -> str:
    commits = g.commits
    text = commits[0] if len(commits) == 1 else f"{len(commits)} commits"
    if g.dirty:
        text += " (dirty)" if g.dirty == len(g.records) else f" ({g.dirty} dirty)"
    return text


def _measured_cell(section: Section, g: Group, m: Measure) -> str:
    x = g.mean_of(m)
    if x is None:
        return "—"
    return m.metric.format(x) + (" ◆" if m == MIXING_FLOPS and g.key in section.pareto else "")


def _columns(board: TaskBoard) -> list[tuple[str, str]]:
    cols = [("test", board.rank_metric)]
    if board.rank_metric != board.metric:
        cols.append(("test", board.metric))
    cols.append(("valid", board.metric))
    return cols


def rank_text(section: Section, g: Group) -> str:
    rank = section.ranks.get(g.key)
    if rank is None:
        return "—"
    return f"{rank} {OVER_SHARE}" if section.over_share(g) else str(rank)


def _headers(board: TaskBoard) -> list[str]:
    headers = ["rank", "router", "operators"]
    headers += [parameter_label(p, board.parameters) for p in board.parameters]
    headers += ["lr", "seeds"]
    headers += [f"{split} {task_metric(metric).label}" for split, metric in _columns(board)]
    headers += [m.metric.label for m in COST_COLUMNS] + ["params", SPEED_LABEL]
    return headers + ["code", "vs best", "vs no mixing", "marks", "config"]


def _row(board: TaskBoard, section: Section, g: Group) -> list[str]:
    params = sorted({r.parameters for r in g.records})
    row = [rank_text(section, g), g.router_text, g.operators_text]
    row += [escape(parameter_value(g, p)) for p in board.parameters]
    row += [lr_text(g), str(len(g.records))]
    row += [mean_std(g.values(split, metric), task_metric(metric).digits)
            for split, metric in _columns(board)]
    row += [_measured_cell(section, g, m) for m in COST_COLUMNS]
    row.append(f"{params[0]:,}" if len(params) == 1 else f"{params[0]:,}–{params[-1]:,}")
    row += [escape(speed_text(g)), escape(code_text(g)),
            section.vs_best.get(g.key, ("—", None))[0],
            _vs_floor_cell(section, g),
            escape("; ".join(section.marks(g))), g.config_hash]
    return row


def _vs_floor_cell(section: Section, g: Group) -> str:
    """The row against the no-mixing floor, naming which floor when the section has several."""
    text = section.vs_floor.get(g.key, ("—", None))[0]
    floor = section.floor_of.get(g.key)
    if len(section.floors) > 1 and floor is not None and floor is not g:
        text += f" (vs `{floor.config_hash}`)"
    return text


def _floor_setting(section: Section, floor: Group) -> str:
    """A floor row's name and its values of the columns that tell the floors apart."""
    paths = [p for p in section.parameters
             if len({parameter_value(f, p) for f in section.floors}) > 1]
    values = [f"{parameter_label(p, section.parameters)} {parameter_value(floor, p)}"
              for p in paths]
    return ", ".join([floor.name, *values])


# -- a budget's section -------------------------------------------------------------------------


def _section_intro(board: TaskBoard, section: Section) -> list[str]:
    b = section.budget
    metric = task_metric(board.rank_metric).label
    direction = "higher is better" if board.higher else "lower is better"
    n_runs = sum(len(g.records) for g in section.ranked)
    if b.plateau:
        how = (f"Trained to a plateau (stopped when the validation metric stopped improving, "
               f"capped at the budget): ranked on the test {metric} of each run's "
               f"**best-validation checkpoint** (`best_checkpoint` in the record)")
    else:
        how = f"Ranked on the test {metric} of the final checkpoint"
    lines = [f"### Budget: {escape(b.label)}", "",
             f"{_count(len(section.ranked), 'configuration')}, {_count(n_runs, 'run')}. "
             f"{how} ({direction}), mean ± "
             f"sample standard deviation over seeds; rows with several seeds first, then "
             f"one-seed rows, then flagged rows (unranked)."]
    ref = section.reference
    if ref is not None:
        lines[-1] += (f" *vs best* compares each row with `{ref.config_hash}` ({ref.name}, "
                      f"{_seeds(len(ref.records))}), the best row among those with the most "
                      f"seeds.")
    floor = section.floor
    if len(section.floors) > 1:
        named = ", ".join(f"`{f.config_hash}` ({_floor_setting(section, f)}, "
                          f"{_seeds(len(f.records))})" for f in section.floors)
        lines[-1] += (f" The no-mixing floors are {named}: each row is compared with the one "
                      f"that ran at its values of the columns that differ between rows (like "
                      f"with like; else with `{floor.config_hash}`), named in *vs no mixing*, "
                      f"and is *better* only when the 95% interval of its difference from that "
                      f"floor excludes 0.")
    elif floor is not None:
        lines[-1] += (f" The no-mixing floor is `{floor.config_hash}` ({floor.name}, "
                      f"{_seeds(len(floor.records))}): a row is *better* only when the 95% "
                      f"interval of its difference from the floor excludes 0.")
    else:
        lines[-1] += (" **No `single identity` row at this budget**: nothing here shows that "
                      "mixing tokens helps at all. Run `--router single --ops identity` with "
                      "the same options to give this budget its no-mixing floor.")
    lines += _code_notes(section)
    return lines + [""]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _seeds(n: int) -> str:
    return _count(n, "seed")


def _code_notes(section: Section) -> list[str]:
    commits = sorted({c for g in section.ranked for c in g.commits})
    dirty = sum(g.dirty for g in section.ranked)
    if len(commits) <= 1 and not dirty:
        return []
    parts = []
    if len(commits) > 1:
        parts.append(f"the rows ran on {len(commits)} commits ({', '.join(commits)})")
    if dirty:
        parts.append(f"{dirty} run{'' if dirty == 1 else 's'} from a working tree with "
                     f"uncommitted changes")
    return ["", f"Like with like: {' and '.join(parts)} (column *code*); a difference between "
                "rows may come from the code as well as from the configuration."]


def _flagged_notes(section: Section) -> list[str]:
    flagged = [g for g in section.ranked if g.flagged]
    if not flagged:
        return []
    lines = ["- **⚠ rows** carry a warning flag and are listed after every honest row, "
             "unranked:"]
    for g in flagged:
        lines.append(f"  - `{g.config_hash}` {g.name}: "
                     + "; ".join(escape(f) for f in g.warning_flags))
    return lines


def _record_notes(section: Section) -> list[str]:
    """The records' informational notes (a declared training-mode exemption, a leak check that
    passed only as float32 rounding): not flags, but said where the row is shown."""
    noted = [g for g in section.ranked if g.notes]
    if not noted:
        return []
    lines = ["- **Notes** from the records (informational, not warning flags):"]
    for g in noted:
        lines.append(f"  - `{g.config_hash}` {g.name}: " + "; ".join(escape(n) for n in g.notes))
    return lines


def _tuning_notes(section: Section) -> list[str]:
    tuned = [g for g in section.ranked if g.tuning is not None and g.tuning.tuned]
    if not tuned:
        return []
    lines = ["- **Tuned rows** (learning rate chosen on validation at the lowest seed, the best "
             "validation metric of the best-validation checkpoint; the row's statistics are "
             "every seed at the chosen value):"]
    for g in tuned:
        t = g.tuning
        scores = ", ".join(f"{lr:g}: " + ("—" if s is None else fixed(abs(s), 4))
                           for lr, s in sorted(t.scores.items()))
        lines.append(f"  - `{g.config_hash}` {g.name}: chose lr {g.lr:g} at seed {t.seed} "
                     f"(valid {task_metric(g.first.task_metric or section.rank_metric).label} "
                     f"by lr: {scores})")
    return lines


def _data_notes(section: Section) -> list[str]:
    lines = []
    majority = sorted({fixed(v, 4) for g in section.ranked
                       for v in g.values("test", "majority_accuracy")})
    if majority:
        lines.append(f"- Majority-class baseline (test): {', '.join(majority)}.")
    test_sets = {h for g in section.ranked for r in g.records
                 if (h := r.split_hashes.get("test"))}
    if len(test_sets) > 1:
        lines.append(f"- Records in this table were scored on {len(test_sets)} different test "
                     f"sets (see the test-set hashes below): compare rows with care.")
    return lines


def _steps_text(g: Group) -> str:
    budget = g.first.budget
    max_steps = budget.get("max_steps")
    done = sorted({r.training.steps for r in g.records if r.training.steps is not None})
    if not done:
        return f"{max_steps} steps" if max_steps else "—"
    if max_steps and done == [int(max_steps)]:
        return f"{max_steps} steps"
    span = str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}"
    why = (f"patience {budget.get('patience')}" if budget.get("patience")
           else f"time budget {budget.get('max_time')} s")
    return f"{span} of {max_steps} steps ({why})"


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


def _configuration_notes(section: Section) -> list[str]:
    if not section.ranked:
        return []
    lines = ["- Configurations:"]
    for g in section.ranked:
        lines.append(f"  - `{g.config_hash}` ({g.name}): {escape(_config_details(g))}")
    return lines


def _plot_links(specs: list[dict[str, Any]], out: Path) -> list[str]:
    if not specs:
        return []
    lines = ["#### Plots", ""]
    for s in specs:
        lines += [f"![{escape(s['title'])}]({rel_link(Path(s['path']), out)})", ""]
    return lines


def render_section(board: TaskBoard, section: Section, specs: list[dict[str, Any]],
                   out: Path) -> list[str]:
    lines = _section_intro(board, section)
    lines += [md_table(_headers(board), [_row(board, section, g) for g in section.ranked]), ""]
    notes = (_flagged_notes(section) + _record_notes(section) + _tuning_notes(section)
             + _data_notes(section) + _configuration_notes(section))
    lines += notes + ([""] if notes else [])
    if section.chance or section.no_control:
        lines += _render_chance(section)
    return lines + _plot_links(specs, out)


# -- the task -----------------------------------------------------------------------------------


def task_intro(board: TaskBoard) -> list[str]:
    direction = "higher is better" if board.higher else "lower is better"
    rows = board.ranked
    if not rows:
        text = f"No runs recorded for this task; only the paper's numbers ({REPORTED})."
    else:
        n_runs = sum(len(g.records) for g in rows)
        budgets = len(board.sections)
        text = (f"{_count(len(rows), 'configuration')}, {_count(n_runs, 'run')}, at "
                f"{_count(budgets, 'budget')}. Test "
                f"{task_metric(board.rank_metric).label} ({direction}); rows are ranked only "
                f"against rows of the same budget (training tokens, or to a plateau, and "
                f"preset).")
        if board.rank_metric == "word_perplexity":
            text += (" Language modelling ranks on word-level perplexity (exp of total NLL / "
                     "words), which compares across tokenizers; token PPL is per token of each "
                     "row's own tokenizer.")
    return [f"## {escape(board.task)}", "", text, ""]


def _reference_row(r: Reference, i: int) -> list[str]:
    fraction = "—" if r.attention_flop_fraction is None else ATTENTION_FRACTION.metric.format(
        r.attention_flop_fraction)
    if r.flops_text:
        fraction += f" ({r.flops_text})"
    return ["ref", escape(r.router), escape(r.operators),
            f"{r.split} {task_metric(r.metric).label}",
            fixed(r.value, task_metric(r.metric).digits),
            fraction, escape(r.parameters or "—"), f"{REPORTED} [ref {i}]"]


def render_references(board: TaskBoard, refs: Paper) -> list[str]:
    if not board.references:
        return []
    headers = ["rank", "router", "operators", "metric", "value",
               ATTENTION_FRACTION.metric.label, "params", "flags"]
    lines = [f"### Reported by the paper ({REPORTED})", "",
             md_table(headers, [_reference_row(r, i) for i, r in enumerate(board.references, 1)]),
             "", f"- {refs.caveat}"]
    for i, r in enumerate(board.references, 1):
        note = f" {r.note[:1].upper()}{r.note[1:]}." if r.note else ""
        lines.append(f"  - [ref {i}] {escape(r.label)}: {r.split} {task_metric(r.metric).label} "
                     f"{fixed(r.value, 2)}. Source: {refs.source_text(r.source)}.{note}")
    return lines + [""]


# -- routing against chance ---------------------------------------------------------------------


def _chance_intro(section: Section) -> list[str]:
    m = section.rank_metric
    return ["#### Does routing beat chance?", "",
            f"Each routed configuration against the `random` control with the same "
            f"configuration (same operators, token shares, model, data and budget; only the "
            f"routing decision differs): for each kind of matching, the control with the most "
            f"seeds. Δ = router − random on test {task_metric(m).label} "
            f"({'higher' if section.higher else 'lower'} is better) with its 95% Welch "
            f"confidence interval; p from Welch's t-test over seeds. *matched on* is what the "
            f"control holds equal: the share of tokens in the top band (default), or the "
            f"attention FLOPs (`--router-option match=flops --router-option flop_fraction=F` "
            f"with F the row's attn FLOP frac); both are shown, router / random. The "
            f"comparison is at equal cost only when the measured attention FLOP fractions "
            f"agree within {EQUAL_COST_TOLERANCE}; pairs that do not are marked and listed "
            f"last.", ""]


def _chance_verdict(section: Section, c: ChanceRow, gm: float, rm: float) -> str:
    w = c.comparison
    if w is None:
        verdict = "too few seeds"
    elif w.p > ALPHA:
        verdict = "no significant difference"
    elif section.better(gm, rm):
        verdict = f"{escape(c.group.router)} better"
    else:
        verdict = "random better"
    if not c.equal_cost:
        gap = c.cost_gap
        verdict += (" (⚠ not at equal cost: attention fraction unknown)" if gap is None
                    else f" (⚠ not at equal cost: fractions differ by {fixed(gap, 3)})")
    if c.group.flagged or c.control.flagged:
        verdict += " (⚠ flagged row)"
    return verdict


def _pair(a: float | None, b: float | None) -> str:
    return f"{'—' if a is None else fixed(a, 3)} / {'—' if b is None else fixed(b, 3)}"


def _chance_row(section: Section, c: ChanceRow) -> list[str]:
    m = section.rank_metric
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
            _chance_verdict(section, c, mean(gv), mean(rv))]


def _render_chance(section: Section) -> list[str]:
    lines = _chance_intro(section)
    if section.chance:
        m = task_metric(section.rank_metric).label
        headers = ["router", "operators", "config", "random config", "seeds", "matched on",
                   TOP_TOKEN_SHARE.metric.label, ATTENTION_FRACTION.metric.label,
                   f"router {m}", f"random {m}", "Δ [95% CI]", "p", "verdict"]
        lines += [md_table(headers, [_chance_row(section, c) for c in section.chance]), ""]
    for g in section.no_control:
        lines.append(f"- No `random` control with the same configuration for {g.name} "
                     f"`{g.config_hash}`: run it with `--router random` and otherwise identical "
                     f"options.")
    if section.no_control:
        lines.append("")
    return lines
