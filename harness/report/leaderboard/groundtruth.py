"""The board's ground-truth section: did the router send the tokens that need attention there?

For a task whose records carry ``telemetry.ground_truth`` (mqar, the MAD-style tasks), one row
per routed configuration: its test accuracy, the share of tokens it really routed to attention,
and precision / recall / F1 of "routed to attention" against the task's ``needs_attention``
(mean over layers, then mean ± std over seeds). Rows at the same attention share are comparable;
a privileged router (``oracle``) reads the ground truth and is marked as an upper bound,
never as a real router; leaky or otherwise flagged rows say so. Single-operator rows frame the
section (all tokens get attention / none do). A closing note compares the method (entropy) with
the control (random) and the privileged router in numbers, and a plot shows accuracy against
attention fraction per router. Which router is which: harness/report/roles.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.core.metrics import fixed, metric_of
from harness.core.record_sections import GroundTruthLayer
from harness.core.stats import mean, sample_std, welch
from harness.report.leaderboard.format import fmt_signed
from harness.report.leaderboard.groups import Group
from harness.report.leaderboard.rows import Section
from harness.report.markdown import escape, fmt_p, md_table, mean_std, rel_link

UPPER_BOUND = "upper bound (reads the ground truth)"
SCORES = ("routed_fraction", "precision", "recall", "f1")  # the table's columns, in order


def layer_means(g: Group, key: str) -> list[float]:
    """Per seed, the mean over layers of a ground-truth score."""
    out = []
    for r in g.records:
        layers = r.telemetry.ground_truth if r.telemetry else None
        if layers:
            out.append(mean([getattr(layer, key) for layer in layers]))
    return out


def per_layer(g: Group, key: str) -> list[float]:
    """Per layer, the mean over seeds of a ground-truth score."""
    runs = [r.telemetry.ground_truth for r in g.records if r.telemetry and r.telemetry.ground_truth]
    if not runs or len({len(x) for x in runs}) != 1:
        return []
    return [mean([getattr(run[i], key) for run in runs]) for i in range(len(runs[0]))]


def _routed(board: Section) -> list[Group]:
    groups = [g for g in board.ranked if len(g.operators) > 1 and layer_means(g, "f1")]
    return sorted(groups, key=lambda g: (g.roles.order, g.router,
                                         mean(layer_means(g, "routed_fraction")), g.config_hash))


def computes_attention_everywhere(g: Group) -> bool:
    """A soft router (``meta``): it weights attention per token but runs it on every token,
    so its 'attn share' (tokens whose weight leans to attention) saves nothing."""
    fraction = g.attention_fraction
    return fraction is not None and fraction >= 0.999


SOFT = "soft: attention runs on every token (attn FLOP frac 1.000), not at equal cost"


def _mark(g: Group) -> str:
    privileged = g.roles.privileged
    marks = [f"{escape(g.router)}: {UPPER_BOUND}"] if privileged else []
    if computes_attention_everywhere(g):
        marks.append(SOFT)
    if g.leaky:
        marks.append("⚠ leaky")
    elif g.flagged and not privileged:  # a privileged router's flag says what it reads
        marks.append("⚠ flagged")
    return "; ".join(marks)


def _score(g: Group, key: str) -> str:
    return mean_std(layer_means(g, key), metric_of(GroundTruthLayer, key).digits)


def _row(board: Section, g: Group) -> list[str]:
    name = escape(g.router) + (" (upper bound)" if g.roles.privileged else "")
    scores = [_score(g, key) for key in SCORES]
    return [name, escape("+".join(g.operators)), g.config_hash, str(len(g.records)), scores[0],
            mean_std(g.values("test", board.rank_metric), 3), *scores[1:],
            " / ".join(fixed(x, 2) for x in per_layer(g, "f1")) or "—", _mark(g)]


def _frame(board: Section) -> list[str]:
    singles = [g for g in board.ranked if g.roles.unrouted and not g.flagged]
    parts = [f"{g.name} {mean_std(g.values('test', board.rank_metric), 3)} "
             f"(n={len(g.records)})" for g in singles]
    return [f"Frame: {'; '.join(parts)}.", ""] if parts else []


def _most_seeds(groups: list[Group]) -> Group | None:
    """The group with the most seeds, honest ones only unless privileged (a privileged
    router's flag says what it reads, it does not disqualify it)."""
    honest = [g for g in groups if g.roles.privileged or not g.flagged]
    return max(honest, key=lambda g: len(g.records)) if honest else None


def _verdict(board: Section, groups: list[Group]) -> list[str]:
    """The closing note: what the method (entropy) vs the control (random) vs the privileged
    router (oracle) says about the premise."""
    ent, rnd, orc = (_most_seeds([g for g in groups if role(g.roles)]) for role in
                     (lambda r: r.method, lambda r: r.control, lambda r: r.privileged))
    if ent is None or rnd is None:
        return []
    metric = board.rank_metric
    routed = mean(layer_means(ent, "routed_fraction"))
    share = mean([layer.needed_fraction for r in ent.records if r.telemetry
                  for layer in (r.telemetry.ground_truth or [])])
    text = (f"**What it says about the premise.** At an attention share of {fixed(routed, 3)} "
            f"(the tokens needing attention are {fixed(share, 3)} of all), "
            f"{escape(ent.router)} routing "
            f"reaches recall {fixed(mean(layer_means(ent, 'recall')), 3)} / precision "
            f"{fixed(mean(layer_means(ent, 'precision')), 3)} against {escape(rnd.router)}'s "
            f"{fixed(mean(layer_means(rnd, 'recall')), 3)} / "
            f"{fixed(mean(layer_means(rnd, 'precision')), 3)}")
    recall = welch(layer_means(ent, "recall"), layer_means(rnd, "recall"))
    acc = welch(ent.values("test", metric), rnd.values("test", metric))
    text += f" (Welch p = {fmt_p(recall.p)})" if recall else ""
    text += (f"; test accuracy {mean_std(ent.values('test', metric), 3)} vs "
             f"{mean_std(rnd.values('test', metric), 3)}")
    text += f" (p = {fmt_p(acc.p)})" if acc else ""
    if orc is not None:
        text += (f". The {escape(orc.router)}, which reads the ground truth, reaches recall "
                 f"{fixed(mean(layer_means(orc, 'recall')), 3)} and accuracy "
                 f"{mean_std(orc.values('test', metric), 3)} at the same share: the upper "
                 f"bound of routing this share of tokens")
    learned = sorted({g.router for g in groups if g.roles.learned})
    others = [g for g in (_most_seeds([h for h in groups if h.router == router])
                          for router in learned) if g is not None]
    if others:
        text += ". Learned routers: " + "; ".join(
            f"{escape(g.router)} accuracy {mean_std(g.values('test', metric), 3)} "
            f"(n={len(g.records)}, "
            f"recall {fixed(mean(layer_means(g, 'recall')), 3)}"
            + (", soft: attention on every token" if computes_attention_everywhere(g) else "")
            + ")" for g in others)
    text += (". Precision cannot exceed (needed share / routed share) = "
             f"{fixed(share / routed if routed else 0.0, 3)} at this share.")
    singles = {g.operators[0]: g for g in board.ranked if g.roles.unrouted and not g.flagged}
    attention = next((g for g in singles.values() if g.roles.attention[0]), None)
    if attention is not None:
        text += (f" For scale: attention on every token reaches "
                 f"{mean_std(attention.values('test', metric), 3)}")
        cheap = singles.get(ent.operators[0])
        if cheap is not None:
            text += (f", {escape(cheap.operators[0])} alone "
                     f"{mean_std(cheap.values('test', metric), 3)}")
        text += "."
    return [text, ""]


def curve_spec(board: Section, groups: list[Group], plots_dir: Path,
               colors: dict[str, Any]) -> dict[str, Any] | None:
    """Accuracy vs attention share, one line per router (points from every fraction run) in
    the router's colour; single attn sits at 1 and single cheap operators at 0, in their
    operator's colour."""
    series: dict[str, dict[str, Any]] = {}
    for g in groups + [g for g in board.ranked if g.roles.unrouted and not g.flagged]:
        ys = g.values("test", board.rank_metric)
        xs = layer_means(g, "routed_fraction") if len(g.operators) > 1 else \
            [1.0 if g.roles.attention[0] else 0.0]
        if not ys or not xs:
            continue
        unrouted = g.roles.unrouted
        name = f"{g.router} {g.operators[0]}" if unrouted else g.router
        if g.roles.privileged:
            name += " (upper bound)"
        if computes_attention_everywhere(g) and len(g.operators) > 1:
            name += " (soft: full attention cost)"
        entry = series.setdefault(name, {
            "name": name, "upper_bound": g.roles.privileged, "single": unrouted,
            "color": (colors["operators"][g.operators[0]] if unrouted
                      else colors["routers"][g.router]), "points": []})
        entry["points"].append({"x": mean(xs), "y": mean(ys), "yerr": sample_std(ys) or 0.0})
    if not series:
        return None
    for entry in series.values():
        entry["points"].sort(key=lambda p: p["x"])
    file = f"{board.file_stem}_accuracy_vs_fraction.png"
    return {"kind": "accuracy_vs_fraction", "task": board.task, "file": file,
            "path": str(Path(plots_dir) / file),
            "title": f"{board.name}: test accuracy vs share of tokens routed to attention",
            "series": [series[k] for k in sorted(series)]}


def section(board: Section, plots_dir: Path, out: Path, colors: dict[str, Any]
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """The markdown lines and plot specs of a task's ground-truth section (empty if none)."""
    groups = _routed(board)
    if not groups:
        return [], []
    labels = [metric_of(GroundTruthLayer, key).label for key in SCORES]
    headers = ["router", "operators", "config", "seeds", labels[0], "test accuracy",
               *labels[1:], "F1 per layer", "marks"]
    lines = [f"#### {escape(board.name)}: routing against ground truth", "",
             "Per configuration: the share of tokens routed to attention on the test split, "
             "and precision / recall / F1 of \"routed to attention\" against the task's "
             "`needs_attention` tokens (mean over layers; mean ± std over seeds). The oracle "
             "reads the ground truth: an upper bound, never a real router.", ""]
    lines += _frame(board)
    lines += [md_table(headers, [_row(board, g) for g in groups]), ""]
    lines += _verdict(board, groups)
    spec = curve_spec(board, groups, plots_dir, colors)
    if spec is None:
        return lines, []
    return lines + [f"![{escape(spec['title'])}]({rel_link(Path(spec['path']), out)})", ""], [spec]


# -- harness analyze summaries --------------------------------------------------------------------


def analysis_lines(task: str, runs: Path | Sequence[Path], out: Path) -> list[str]:
    """A table of the `harness analyze` summaries in ``<runs>/analysis/`` for this task (each
    records folder the board reads). A summary that is not one (unreadable, another shape) is
    left out."""
    import json
    from urllib.parse import quote

    folders = [Path(runs)] if isinstance(runs, (str, Path)) else [Path(r) for r in runs]
    paths = [p for f in folders if (f / "analysis").is_dir()
             for p in sorted((f / "analysis").glob("*.json"))]
    rows = []
    for path in paths:
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
            if s.get("task") != task:
                continue
            link = f"[{escape(s['run_id'])}]({quote(rel_link(path, out), safe='/+-_.~')})"
            rows += [[link, *_layer_cells(layer)] for layer in s["layers"]]
        except (OSError, ValueError, RecursionError, LookupError, TypeError, AttributeError):
            continue
    if not rows:
        return []
    headers = ["run", "layer", "tokens", "ρ(spectral H, attn distance) [95% CI]",
               "ρ(spectral H, attn entropy) [95% CI]", "mean distance",
               "spectral H: needed / others"]
    return [f"### {escape(task)}: spectral entropy vs attention distance (`harness analyze`)",
            "", "Per token of the test split, in a trained full-attention model: Spearman's ρ "
            "of the spectral entropy of the layer input with the attention distance "
            "Σ_j a_ij |i − j| and with the attention entropy; intervals from a bootstrap over "
            "examples. The premise predicts a clearly positive ρ with distance.", "",
            md_table(headers, rows), ""]


def _layer_cells(layer: dict[str, Any]) -> list[str]:
    """One layer of a summary as table cells; TypeError/KeyError for another shape."""
    d, e = layer["spearman_entropy_distance"], layer["spearman_entropy_attn_entropy"]
    na = layer.get("needs_attention")
    split = (f"{fixed(na['needed']['spectral'], 3)} / {fixed(na['others']['spectral'], 3)}"
             if na else "—")
    return [str(int(layer["layer"])), str(int(layer["tokens"])), _rho(d), _rho(e),
            fixed(float(layer["mean_distance"]), 2), split]


def _rho(r: dict[str, float]) -> str:
    low, high = fmt_signed(float(r["ci_low"]), 3), fmt_signed(float(r["ci_high"]), 3)
    return f"{fmt_signed(float(r['rho']), 3)} [{low}, {high}]"
