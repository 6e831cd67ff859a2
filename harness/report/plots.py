"""Leaderboard plots (matplotlib, PNG). Rendering only: what to plot, and in which colour, is
decided by ``harness.report.leaderboard.specs`` (and the ground-truth section) from the
records, as plain data.

Every figure follows the same rules: the colour of an operator or a router comes from the spec
(one colour per name across the board); legends sit outside the axes, never over the data;
titles are wrapped to the figure's width; axes are fitted to the data.

PNG bytes depend on the matplotlib version and fonts, so plots are regenerated with the board but
never compared by ``leaderboard --check``. Metadata that would change between runs (the software
string) is left out.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any

PAPER_GATE_LABEL = "paper: g ≈ {value} (reported, not reproduced)"
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p"]
ONE_AXES_WIDTH = 7.5  # inches: a figure of one axes, its legend to the right of it


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
            import matplotlib.pyplot as plt

            fig = _DRAW[spec["kind"]](spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=100, metadata={"Software": None}, bbox_inches="tight")
            plt.close(fig)
            written.append(path)
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{path}: {type(exc).__name__}: {exc}")
    return written, failures


# This module's files: <stem>_<kind>.png, or <stem>_<kind>_<n>.png for a figure split in parts
_OURS = re.compile(r"_(pareto|routing_fractions|entropy_histograms|gate|accuracy_vs_fraction"
                   r"|difficulty)(_\d+)?\.png$")


def remove_stale(directory: Path, keep: list[Path]) -> list[Path]:
    """Delete this module's plots (by their name pattern) that the board no longer links, for
    example those of a task whose records were removed. Other files are left alone."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    keep_names = {Path(p).name for p in keep}
    removed = []
    for path in sorted(directory.glob("*.png")):
        if _OURS.search(path.name) and path.name not in keep_names:
            path.unlink()
            removed.append(path)
    return removed


# -- shared pieces ------------------------------------------------------------------------------


def text(s: str) -> str:
    """A name as matplotlib text: '$' would start mathtext."""
    return str(s).replace("$", r"\$")


def _title(fig: Any, title: str, width_inches: float) -> None:
    """The figure's title, wrapped to its width (about 11 characters per inch at 11 pt)."""
    fig.suptitle("\n".join(textwrap.wrap(text(title), max(30, int(width_inches * 11)))),
                 fontsize=11)


def _legend_outside(ax: Any, handles: list[Any] | None = None, **kw: Any) -> None:
    """The legend to the right of the axes: it never covers the data."""
    if handles is not None:
        kw["handles"] = handles
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8,
              frameon=False, **kw)


def _figure_legend(fig: Any, handles: list[Any]) -> None:
    """A figure's legend under its panels, in a row: it never covers a panel or the title."""
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
               fontsize=8, frameon=False)


def _panels(n: int, width: float = 4.2, height: float = 3.2, columns: int = 3):
    """A grid of up to ``columns`` panels a row for n panels: (figure, list of used axes)."""
    import matplotlib.pyplot as plt

    cols = min(n, columns)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(width * cols, 6.5), height * rows + 0.6),
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[n:]:  # the last row's spare panels
        ax.axis("off")
    return fig, flat[:n]


def _one_axes(height: float = 4.5):
    """A figure of one axes, ONE_AXES_WIDTH inches wide: (figure, axes)."""
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(ONE_AXES_WIDTH, height), layout="constrained")


def _finish_one_axes(fig: Any, ax: Any, title: str, xlabel: str, ylabel: str,
                     handles: list[Any] | None = None):
    """A one-axes figure's labels, light grid, legend to the right and title: the figure."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    _legend_outside(ax, handles)
    _title(fig, title, ONE_AXES_WIDTH)
    return fig


def _padded(low: float, high: float, pad: float = 0.08) -> tuple[float, float]:
    span = high - low
    margin = span * pad if span > 0 else max(abs(high) * pad, 1e-3)
    return low - margin, high + margin


# -- the figures --------------------------------------------------------------------------------


def pareto(spec: dict[str, Any]):
    """Quality against mixing FLOPs: colour = router, marker = operator set, hollow = flagged;
    the front as a line only through MIN_FRONT points or more, else ringed points."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import EngFormatter

    routers = spec["colors"]["routers"]
    points = spec["points"]
    op_sets = sorted({p["operators"] for p in points})
    marker = {ops: MARKERS[i % len(MARKERS)] for i, ops in enumerate(op_sets)}
    fig, ax = _one_axes(height=4.8)
    for p in points:
        color = routers[p["router"]]
        ax.errorbar(p["x"], p["y"], yerr=p["yerr"] or None, fmt=marker[p["operators"]],
                    color=color, markersize=8, capsize=3, alpha=0.9,
                    mfc=color if p["honest"] else "none")
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["x"])
    if len(front) >= spec["min_front"]:
        ax.plot([p["x"] for p in front], [p["y"] for p in front], "--", color="0.4",
                linewidth=1, zorder=0)
    else:
        ax.scatter([p["x"] for p in front], [p["y"] for p in front], s=260, facecolors="none",
                   edgecolors="0.4", linewidths=1)
    handles = [Line2D([], [], color=routers[r], marker="o", linestyle="", label=text(r))
               for r in sorted({p["router"] for p in points})]
    handles += [Line2D([], [], color="0.2", marker=marker[o], linestyle="", mfc="none",
                       label=text(o)) for o in op_sets]
    handles.append(Line2D([], [], color="0.4", linestyle="--" if len(front) >= spec["min_front"]
                          else "", marker="" if len(front) >= spec["min_front"] else "o",
                          mfc="none", markersize=12, label="Pareto front (honest rows)"))
    if not all(p["honest"] for p in points):
        handles.append(Line2D([], [], color="0.2", marker="o", mfc="none", linestyle="",
                              label="hollow: flagged, unranked"))
    xs = [p["x"] for p in points]
    ys = [v for p in points for v in (p["y"] - p["yerr"], p["y"] + p["yerr"])]
    ax.set_xlim(*_padded(min(xs), max(xs)))
    ax.set_ylim(*_padded(min(ys), max(ys)))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 120k, not 120000: labels that fit
    better = "\n(higher is better)" if spec["higher"] else "\n(lower is better)"
    return _finish_one_axes(fig, ax, spec["title"], spec["xlabel"],
                            text(spec["metric"]) + better, handles)


def routing_fractions(spec: dict[str, Any]):
    """Per router and operator set, stacked shares per layer for each row; a black tick marks
    the requested share of the top band; leaky and flagged rows say so under their bars."""
    from matplotlib.patches import Patch

    colors = spec["colors"]["operators"]
    panels = spec["panels"]
    widest = max(sum(len(r["layers"]) for r in p["rows"]) + len(p["rows"]) for p in panels)
    width = max(4.2, 0.3 * widest + 1.2)
    fig, axes = _panels(len(panels), width=width, columns=2 if width > 5.5 else 3)
    for ax, panel in zip(axes, panels):
        ticks, labels, x = [], [], 0.0
        for row in panel["rows"]:
            start = x
            for layer in row["layers"]:
                bottom = 0.0
                for op, share in zip(panel["operators"], layer):
                    ax.bar(x, share, bottom=bottom, width=0.8, color=colors[op],
                           hatch="//" if row["leaky"] else None, edgecolor="white",
                           linewidth=0.3)
                    bottom += share
                x += 1
            if row["requested"] is not None:  # the top band sits on top of the stack
                ax.hlines(1 - row["requested"], start - 0.45, x - 0.55, color="black",
                          linewidth=1.6)
            ticks.append((start + x - 1) / 2)
            labels.append(text(row["label"]) + ("\n⚠ leaky" if row["leaky"] else "")
                          + ("\n⚠ flagged" if row["flagged"] else ""))
            x += 1  # a gap between rows
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_xlim(-0.7, x - 1.3)
        ax.set_title(text(panel["title"]) + " (a bar per layer)", fontsize=9)
        ax.set_xlabel(text(panel["xlabel"]), fontsize=8)
        ax.set_ylabel("share (soft routers: weight)", fontsize=8)
    ops = sorted({op for p in panels for op in p["operators"]})
    handles = [Patch(color=colors[op], label=text(op)) for op in ops]
    handles.append(Patch(facecolor="black", label="requested share of the top band "
                                                  "(that far below 1)"))
    if any(r["leaky"] for p in panels for r in p["rows"]):
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//",
                             label="⚠ leaky (sees the future)"))
    _figure_legend(fig, handles)
    _title(fig, spec["title"], fig.get_figwidth())
    return fig


def entropy_histograms(spec: dict[str, Any]):
    """Per row, the entropy histogram of the tokens each operator got, the x-axis fitted to
    the bins that hold tokens."""
    from matplotlib.patches import Patch

    colors = spec["colors"]["operators"]
    groups = spec["groups"]
    fig, axes = _panels(len(groups))
    for ax, g in zip(axes, groups):
        edges = g["bin_edges"]
        total = sum(sum(c) for c in g["counts"].values()) or 1.0
        used = [j for j in range(len(edges) - 1)
                if any(c[j] > 0 for c in g["counts"].values())]
        for op, counts in g["counts"].items():
            share = [c / total for c in counts]
            ax.stairs(share, edges, color=colors.get(op, "0.5"), fill=True, alpha=0.35)
            ax.stairs(share, edges, color=colors.get(op, "0.5"))
        if used:
            ax.set_xlim(edges[max(used[0] - 1, 0)], edges[min(used[-1] + 2, len(edges) - 1)])
        ax.set_title(text(g["label"]) + (" ⚠ leaky" if g["leaky"] else ""), fontsize=8)
        ax.set_xlabel("spectral entropy (0 = one frequency, 1 = flat)", fontsize=8)
        ax.set_ylabel("share of tokens", fontsize=8)
    ops = sorted({op for g in groups for op in g["counts"]})
    _figure_legend(fig, [Patch(color=colors.get(op, "0.5"), alpha=0.6, label=text(op))
                         for op in ops])
    _title(fig, spec["title"], fig.get_figwidth())
    return fig


def gate(spec: dict[str, Any]):
    """The MetaRouter gate over training: colour = router, one line style per row."""
    routers = spec["colors"]["routers"]
    fig, ax = _one_axes()
    styles = [(ls, m) for m in ("", "o", "s") for ls in ("-", "--", ":", "-.")]
    values = []
    for i, g in enumerate(spec["groups"]):
        style, mark = styles[i % len(styles)]
        for j, s in enumerate(g["seeds"]):
            ax.plot(s["steps"], s["gate"], color=routers[g["router"]], linestyle=style,
                    marker=mark or None, markevery=max(len(s["steps"]) // 8, 1), markersize=4,
                    alpha=0.85, linewidth=1.2,
                    label=text(g["label"]) + (" ⚠ leaky" if g["leaky"] else "")
                    if j == 0 else None)
            values += [v for v in s["gate"] if not math.isnan(v)]
    if spec.get("paper_value") is not None:
        ax.axhline(spec["paper_value"], color="k", linestyle=":", linewidth=1,
                   label=PAPER_GATE_LABEL.format(value=spec["paper_value"]))
        values.append(spec["paper_value"])
    if values:
        ax.set_ylim(*_padded(min(values), max(values)))
    return _finish_one_axes(fig, ax, spec["title"], "training step",
                            "gate (mean weight of the top-band operator)")


def accuracy_vs_fraction(spec: dict[str, Any]):
    """Test accuracy against the share routed to attention: one line per router (dashed: the
    privileged upper bound), single operators as squares at 0 and 1."""
    fig, ax = _one_axes()
    xs, ys = [], []
    for s in spec["series"]:
        points = s["points"]
        ax.errorbar([p["x"] for p in points], [p["y"] for p in points],
                    yerr=[p["yerr"] for p in points], marker="s" if s["single"] else "o",
                    capsize=3, color=s["color"], label=text(s["name"]),
                    linestyle="--" if s["upper_bound"] else ("" if s["single"] else "-"))
        xs += [p["x"] for p in points]
        ys += [v for p in points for v in (p["y"] - p["yerr"], p["y"] + p["yerr"])]
    ax.set_xlim(*_padded(min(xs), max(xs), 0.04))
    ax.set_ylim(*_padded(min(ys), max(ys)))
    return _finish_one_axes(fig, ax, spec["title"], "share of tokens routed to attention (test)",
                            "test accuracy")


def difficulty(spec: dict[str, Any]):
    """Zoology's figure: a column per difficulty setting, a row per cost axis (width, recurrent
    state, training time), a line per mixer (attention dashed) through its widths; the dotted
    line is 2 points below attention's best, the bar a cheap mixer must clear to stand in."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    panels, axes_spec = spec["panels"], spec["axes"]
    cols = len(panels)
    fig, grid = plt.subplots(len(axes_spec), cols, figsize=(max(4.2 * cols, 6.5),
                                                            3.0 * len(axes_spec) + 0.8),
                             squeeze=False, layout="constrained")
    names: dict[str, tuple[str, bool]] = {}
    for j, panel in enumerate(panels):
        for i, axis in enumerate(axes_spec):
            ax = grid[i][j]
            drawn = False
            for s in panel["series"]:
                pts = sorted((p for p in s["points"] if p[axis["key"]] is not None),
                             key=lambda p: p[axis["key"]])
                if not pts:
                    continue
                ax.errorbar([p[axis["key"]] for p in pts], [p["y"] for p in pts],
                            yerr=[p["yerr"] for p in pts], marker="o", markersize=4, capsize=2,
                            color=s["color"], linestyle="--" if s["attention"] else "-")
                names[s["name"]] = (s["color"], s["attention"])
                drawn = True
            if panel["threshold"] is not None:
                ax.axhline(panel["threshold"], color="0.3", linestyle=":", linewidth=1)
            if drawn and axis["key"] in ("width", "state"):
                ax.set_xscale("log", base=2)  # widths double: evenly spaced
                ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            if drawn and axis["key"] == "width":
                widths = sorted({p["width"] for s in panel["series"] for p in s["points"]})
                ax.set_xticks(widths, [str(w) for w in widths])
            ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title("\n".join(textwrap.wrap(text(panel["label"]), 40)), fontsize=9)
            ax.set_xlabel(text(axis["label"]), fontsize=8)
            if j == 0:
                ax.set_ylabel(text(spec["metric"]), fontsize=8)
    handles = [Line2D([], [], color=c, marker="o", linestyle="--" if attn else "-",
                      label=text(n)) for n, (c, attn) in sorted(names.items())]
    handles.append(Line2D([], [], color="0.3", linestyle=":", label="attention's best - 2 "
                                                                     "points (stands in above)"))
    _figure_legend(fig, handles)
    _title(fig, spec["title"], fig.get_figwidth())
    return fig


_DRAW = {
    "pareto": pareto,
    "routing_fractions": routing_fractions,
    "entropy_histograms": entropy_histograms,
    "gate": gate,
    "accuracy_vs_fraction": accuracy_vs_fraction,
    "difficulty": difficulty,
}
