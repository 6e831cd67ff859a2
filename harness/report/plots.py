"""Leaderboard plots (matplotlib, PNG). Rendering only: what to plot is decided by
``harness.report.leaderboard.board.plot_specs`` from the records, as plain data.

PNG bytes depend on the matplotlib version and fonts, so plots are regenerated with the board but
never compared by ``leaderboard --check``. Metadata that would change between runs (the software
string) is left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

PAPER_GATE_LABEL = "paper: g ≈ {value} (reported, not reproduced)"


def render_all(specs: list[dict[str, Any]]) -> tuple[list[Path], list[str]]:
    """Draw every spec; a failing plot is reported, never fatal."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - plots are optional
        return [], [f"matplotlib unavailable ({type(exc).__name__}: {exc})"]
    written, failures = [], []
    for spec in specs:
        path = Path(spec["path"])
        try:
            fig = _DRAW[spec["kind"]](spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100, metadata={"Software": None})
            import matplotlib.pyplot as plt

            plt.close(fig)
            written.append(path)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{path}: {type(exc).__name__}: {exc}")
    return written, failures


SUFFIXES = ("_pareto.png", "_routing_fractions.png", "_entropy_histograms.png", "_gate.png",
            "_accuracy_vs_fraction.png")


def remove_stale(directory: Path, keep: list[Path]) -> list[Path]:
    """Delete this module's plots (by their name pattern) that the board no longer links, for
    example those of a task whose records were removed. Other files are left alone."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    keep_names = {Path(p).name for p in keep}
    removed = []
    for path in sorted(directory.glob("*.png")):
        if path.name.endswith(SUFFIXES) and path.name not in keep_names:
            path.unlink()
            removed.append(path)
    return removed


def _colors(n: int) -> list[Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


ROUTER_MARKERS = {"single": "s", "entropy": "o", "random": "X", "learned": "^", "meta": "D"}


def pareto(spec: dict[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5), layout="constrained")
    points = spec["points"]
    colors = _colors(len(points))
    for p, color in zip(points, colors):
        marker = ROUTER_MARKERS.get(p["router"], "o")
        ax.errorbar(p["x"], p["y"], yerr=p["yerr"] or None, fmt=marker, color=color,
                    markersize=8, capsize=3, mfc=color if p["honest"] else "none",
                    label=p["label"] + ("" if p["honest"] else " ⚠ flagged"))
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["x"])
    if len(front) > 1:
        ax.plot([p["x"] for p in front], [p["y"] for p in front], "--", color="0.4",
                linewidth=1, label="Pareto front (honest rows)", zorder=0)
    for r in spec.get("references", []):
        ax.scatter([r["x"]], [r["y"]], marker="*", s=140, facecolors="none", edgecolors="k",
                   label=r["label"])
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["metric"] + (" (higher is better)" if spec["higher"]
                                    else " (lower is better)"))
    ax.set_title(spec["title"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def _small_multiples(n: int):
    """A grid of up to 3 panels a row for n groups: (figure, axes array)."""
    import matplotlib.pyplot as plt

    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False,
                             layout="constrained")
    for ax in list(axes.flat)[n:]:  # the last row's spare panels
        ax.axis("off")
    return fig, axes


def routing_fractions(spec: dict[str, Any]):
    groups = spec["groups"]
    fig, axes = _small_multiples(len(groups))
    all_ops = sorted({op for g in groups for op in g["operators"]})
    palette = dict(zip(all_ops, _colors(len(all_ops))))
    for ax, g in zip(axes.flat, groups):
        layers = g["layers"]
        xs = list(range(len(layers)))
        bottom = [0.0] * len(layers)
        for k, op in enumerate(g["operators"]):
            heights = [layer[k] for layer in layers]
            ax.bar(xs, heights, bottom=bottom, color=palette[op], label=op)
            bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_xticks(xs)
        ax.set_xticklabels([f"layer {i}" for i in xs], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(g["label"], fontsize=8)
        ax.set_ylabel("share of tokens")
        ax.legend(fontsize=7)
    fig.suptitle(spec["title"])
    return fig


def entropy_histograms(spec: dict[str, Any]):
    groups = spec["groups"]
    fig, axes = _small_multiples(len(groups))
    all_ops = sorted({op for g in groups for op in g["counts"]})
    palette = dict(zip(all_ops, _colors(len(all_ops))))
    for ax, g in zip(axes.flat, groups):
        edges = g["bin_edges"]
        total = sum(sum(c) for c in g["counts"].values()) or 1.0
        for op, counts in g["counts"].items():
            share = [c / total for c in counts]
            ax.stairs(share, edges, color=palette[op], label=op, fill=True, alpha=0.35)
            ax.stairs(share, edges, color=palette[op])
        ax.set_title(g["label"], fontsize=8)
        ax.set_xlabel("spectral entropy (0 = one frequency, 1 = flat)")
        ax.set_ylabel("share of routed tokens")
        ax.legend(fontsize=7)
    fig.suptitle(spec["title"])
    return fig


def gate(spec: dict[str, Any]):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), layout="constrained")
    groups = spec["groups"]
    colors = _colors(len(groups))
    for g, color in zip(groups, colors):
        for i, s in enumerate(g["seeds"]):
            ax.plot(s["steps"], s["gate"], color=color, alpha=0.8, linewidth=1.2,
                    label=g["label"] if i == 0 else None)
    if spec.get("paper_value") is not None:
        ax.axhline(spec["paper_value"], color="k", linestyle=":", linewidth=1,
                   label=PAPER_GATE_LABEL.format(value=spec["paper_value"]))
    ax.set_xlabel("training step")
    ax.set_ylabel("gate (mean weight of the top-band, last, operator)")
    ax.set_ylim(0, 1)
    ax.set_title(spec["title"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


_DRAW = {
    "pareto": pareto,
    "routing_fractions": routing_fractions,
    "entropy_histograms": entropy_histograms,
    "gate": gate,
    "accuracy_vs_fraction": lambda spec: _groundtruth_draw(spec),
}


def _groundtruth_draw(spec: dict[str, Any]):
    from harness.report.leaderboard.groundtruth import draw

    return draw(spec)
