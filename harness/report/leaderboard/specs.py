"""Plot specifications (rendered by harness/report/plots.py), as plain data.

What each figure shows is decided here, so that every figure reads the same way: one colour per
operator and per router across the whole board (``palette``), at most ``MAX_PANELS`` panels a
figure (more rows are split over several files), a row labelled by the parameters that set it
apart, the requested attention share and the leaky mark on routing panels, and a Pareto line
only through three points or more."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.metrics import task_metric
from harness.core.stats import mean, sample_std
from harness.report.leaderboard.groups import Group, row_parameters
from harness.report.leaderboard.rows import Section, TaskBoard

MAX_PANELS = 12
MIN_FRONT = 3  # a Pareto "front" through fewer points is not drawn as a line

# Qualitative colours (matplotlib's tab10 and Dark2): operators take the first list, routers
# the second, each name in sorted order, so a name has one colour in every figure of a board.
OPERATOR_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
ROUTER_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
                 "#a6761d", "#666666"]


def palette(groups: list[Group]) -> dict[str, dict[str, str]]:
    """{"operators": {name: colour}, "routers": {name: colour}} for every name on the board."""
    ops = sorted({op for g in groups for op in g.operators})
    routers = sorted({g.router for g in groups})
    return {"operators": {op: OPERATOR_COLORS[i % len(OPERATOR_COLORS)]
                          for i, op in enumerate(ops)},
            "routers": {r: ROUTER_COLORS[i % len(ROUTER_COLORS)]
                        for i, r in enumerate(routers)}}


def _setting(section: Section, g: Group) -> list[tuple[str, Any]]:
    """(parameter name, value) that set the row apart from the budget's other rows, the
    learning rate last where it differs."""
    values = row_parameters(g, section.parameters)
    parts = [(p.rpartition(".")[2], values[p]) for p in section.parameters if p in values]
    if section.lr_differs and g.lr is not None:
        parts.append(("lr", g.lr))
    return parts


def _value_text(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def row_label(section: Section, g: Group) -> str:
    """A row in a figure: router and operators, then what sets it apart (what a hash cannot
    say)."""
    parts = ", ".join(f"{k}={_value_text(v)}" for k, v in _setting(section, g))
    return f"{g.router} {'+'.join(g.operators)}" + (f" ({parts})" if parts else "")


def _order(section: Section, g: Group) -> tuple[Any, ...]:
    """Figures list rows by router and operators, then by the values that set them apart."""
    values = tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
                   for _, v in _setting(section, g))
    return (g.roles.order, g.router, g.operators, values, g.config_hash)


def _file(section: Section, kind: str, part: int = 0) -> str:
    return f"{section.file_stem}_{kind}{f'_{part + 1}' if part else ''}.png"


def _chunks(items: list[Any]) -> list[list[Any]]:
    """Panels split into figures of at most MAX_PANELS, as evenly as possible."""
    if not items:
        return []
    n = -(-len(items) // MAX_PANELS)
    size = -(-len(items) // n)
    return [items[i:i + size] for i in range(0, len(items), size)]


def _pareto_spec(board: TaskBoard, section: Section, colors: dict[str, Any]
                 ) -> dict[str, Any] | None:
    points = []
    for g in section.ranked:
        x = g.mixing_flops
        ys = g.values("test", board.rank_metric)
        if x is None or not ys:
            continue
        points.append({"label": row_label(section, g), "router": g.router,
                       "operators": "+".join(g.operators), "x": x, "y": mean(ys),
                       "yerr": sample_std(ys) or 0.0, "honest": not g.flagged,
                       "pareto": g.key in section.pareto})
    if not points:
        return None
    checkpoint = "best-validation checkpoint" if section.budget.plateau else "final weights"
    return {"kind": "pareto", "task": board.task, "file": _file(section, "pareto"),
            "title": f"{section.name}: quality vs mixing FLOPs per token",
            "xlabel": "mixing FLOPs per token (test, all operators)",
            "metric": f"test {task_metric(board.rank_metric).label} ({checkpoint})",
            "higher": board.higher, "points": points, "min_front": MIN_FRONT,
            "colors": colors}


def _fractions_specs(board: TaskBoard, section: Section, colors: dict[str, Any]
                     ) -> list[dict[str, Any]]:
    """One panel per router and operator set; in it one cluster of bars (a bar per layer) per
    row, in the order of what sets the rows apart, with the requested share marked."""
    panels: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for g in sorted(section.ranked, key=lambda g: _order(section, g)):
        layers = layer_fractions(g)
        if layers is None:
            continue
        setting = _setting(section, g)
        panel = panels.setdefault((g.router, g.operators), {
            "title": f"{g.router} {'+'.join(g.operators)}", "operators": list(g.operators),
            "xlabel": ", ".join(k for k, _ in setting), "rows": []})
        label = ", ".join(_value_text(v) for _, v in setting)
        panel["rows"].append({"label": label, "layers": layers,
                              "requested": g.requested_fraction, "leaky": g.leaky,
                              "flagged": g.flagged and not g.leaky})
    return [{"kind": "routing_fractions", "task": board.task,
             "file": _file(section, "routing_fractions", part),
             "title": f"{section.name}: share of tokens per operator and layer (test)",
             "panels": chunk, "colors": colors}
            for part, chunk in enumerate(_chunks(list(panels.values())))]


def _entropy_totals(section: Section, g: Group) -> dict[str, Any] | None:
    """The group's entropy histograms summed over seeds (seeds with other bin edges skipped)."""
    total: dict[str, list[float]] | None = None
    edges: list[float] | None = None
    for r in g.records:
        h = r.telemetry.entropy_histogram if r.telemetry else None
        if h is None or (edges is not None and h.bin_edges != edges):
            continue
        edges = h.bin_edges
        total = total or {}
        for op, counts in h.totals().items():
            acc = total.setdefault(op, [0.0] * len(counts))
            for j, c in enumerate(counts):
                acc[j] += c
    if not (total and edges):
        return None
    ops = [op for op in g.operators if op in total] + sorted(
        op for op in total if op not in g.operators)
    return {"label": row_label(section, g), "bin_edges": edges, "leaky": g.leaky,
            "counts": {op: total[op] for op in ops}}


def _entropy_specs(board: TaskBoard, section: Section, colors: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    hists = [h for g in sorted(section.ranked, key=lambda g: _order(section, g))
             if (h := _entropy_totals(section, g)) is not None]
    return [{"kind": "entropy_histograms", "task": board.task,
             "file": _file(section, "entropy_histograms", part),
             "title": f"{section.name}: spectral entropy of the tokens each operator got (test)",
             "groups": chunk, "colors": colors}
            for part, chunk in enumerate(_chunks(hists))]


def _gate_spec(board: TaskBoard, section: Section, paper_gate: float | None,
               colors: dict[str, Any]) -> dict[str, Any] | None:
    gates = []
    for g in sorted(section.ranked, key=lambda g: _order(section, g)):
        seeds = []
        for r in g.records:
            hist = r.telemetry.gate_history if r.telemetry else []
            if hist:
                seeds.append({"seed": r.seed, "steps": [p.step for p in hist],
                              "gate": [mean(p.gate) if p.gate else float("nan") for p in hist]})
        if seeds:
            gates.append({"label": row_label(section, g), "router": g.router,
                          "leaky": g.leaky, "seeds": seeds})
    if not gates:
        return None
    return {"kind": "gate", "task": board.task, "file": _file(section, "gate"),
            "title": f"{section.name}: MetaRouter gate over training",
            "groups": gates, "paper_value": paper_gate, "colors": colors}


def plot_specs(board: TaskBoard, section: Section, plots_dir: Path,
               paper_gate: float | None = None,
               colors: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What to plot for one budget of a task, as plain data. Which plots exist depends only on
    the records, so the markdown links are the same whether or not the PNGs are written."""
    if not section.ranked:
        return []
    colors = colors or palette(section.ranked)
    specs = [s for s in (_pareto_spec(board, section, colors),) if s is not None]
    specs += _fractions_specs(board, section, colors)
    specs += _entropy_specs(board, section, colors)
    gate = _gate_spec(board, section, paper_gate, colors)
    specs += [gate] if gate is not None else []
    for s in specs:
        s["path"] = str(Path(plots_dir) / s["file"])
    return specs


def layer_fractions(g: Group) -> list[list[float]] | None:
    """Mean over seeds of each layer's share per operator, as the router decided it
    (``SplitCost.router_shares``); None for single-operator rows and soft routers without a
    weight share (their token shares are 1/K by construction)."""
    if len(g.operators) < 2:
        return None
    per_seed = []
    for r in g.records:
        if not r.test_cost.per_layer:
            continue  # no test cost recorded
        rows = r.test_cost.router_shares(g.operators)
        if rows is None:
            return None
        per_seed.append(rows)
    if not per_seed or len({len(rows) for rows in per_seed}) != 1:
        return None
    return [[mean([rows[i][k] for rows in per_seed]) for k in range(len(g.operators))]
            for i in range(len(per_seed[0]))]
