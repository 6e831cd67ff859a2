"""Plot specifications (rendered by harness/report/plots.py), as plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.core.metrics import task_metric
from harness.core.stats import mean, sample_std
from harness.report.leaderboard.format import slug
from harness.report.leaderboard.groups import Group
from harness.report.leaderboard.rows import TaskBoard


def _pareto_spec(board: TaskBoard) -> dict[str, Any] | None:
    points = []
    for g in board.ranked:
        x = g.mixing_flops
        ys = g.values("test", board.rank_metric)
        if x is None or not ys:
            continue
        points.append({"label": g.label, "router": g.router, "x": x, "y": mean(ys),
                       "yerr": sample_std(ys) or 0.0, "honest": not g.flagged,
                       "pareto": g.key in board.pareto})
    if not points:
        return None
    # the paper's rows report an attention fraction, not mixing FLOPs per token: not placed
    return {"kind": "pareto", "task": board.task, "file": f"{slug(board.task)}_pareto.png",
            "title": f"{board.task}: quality vs total mixing FLOPs per token",
            "xlabel": "mixing FLOPs per token (test, all operators)",
            "metric": f"test {task_metric(board.rank_metric).label}", "higher": board.higher,
            "points": points, "references": []}


def _fractions_spec(board: TaskBoard) -> dict[str, Any] | None:
    fractions = []
    for g in board.ranked:
        layers = layer_fractions(g)
        if layers is not None:
            fractions.append({"label": g.label, "operators": list(g.operators),
                              "layers": layers})
    if not fractions:
        return None
    return {"kind": "routing_fractions", "task": board.task,
            "file": f"{slug(board.task)}_routing_fractions.png",
            "title": f"{board.task}: share of tokens per operator, per layer (test)",
            "groups": fractions}


def _entropy_totals(g: Group) -> dict[str, Any] | None:
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
    return {"label": g.label, "bin_edges": edges, "counts": {op: total[op] for op in ops}}


def _entropy_spec(board: TaskBoard) -> dict[str, Any] | None:
    hists = [h for g in board.ranked if (h := _entropy_totals(g)) is not None]
    if not hists:
        return None
    return {"kind": "entropy_histograms", "task": board.task,
            "file": f"{slug(board.task)}_entropy_histograms.png",
            "title": f"{board.task}: spectral entropy of routed tokens (test)",
            "groups": hists}


def _gate_spec(board: TaskBoard, paper_gate: float | None) -> dict[str, Any] | None:
    gates = []
    for g in board.ranked:
        seeds = []
        for r in g.records:
            hist = r.telemetry.gate_history if r.telemetry else []
            if hist:
                seeds.append({"seed": r.seed, "steps": [p.step for p in hist],
                              "gate": [mean(p.gate) if p.gate else float("nan") for p in hist]})
        if seeds:
            gates.append({"label": g.label, "seeds": seeds})
    if not gates:
        return None
    return {"kind": "gate", "task": board.task, "file": f"{slug(board.task)}_gate.png",
            "title": f"{board.task}: MetaRouter gate over training",
            "groups": gates, "paper_value": paper_gate}


def plot_specs(board: TaskBoard, plots_dir: Path,
               paper_gate: float | None = None) -> list[dict[str, Any]]:
    """What to plot for a task, as plain data. Which plots exist depends only on the records,
    so the markdown links are the same whether or not the PNGs are written."""
    if not board.ranked:
        return []
    candidates = [_pareto_spec(board), _fractions_spec(board), _entropy_spec(board),
                  _gate_spec(board, paper_gate)]
    specs = [s for s in candidates if s is not None]
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
