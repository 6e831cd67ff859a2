"""The board's difficulty sweeps: where a cheap mixer stands in for attention, and where it
breaks (Zoology's figure 2: accuracy against width, recurrent state and time, per difficulty).

A *difficulty sweep* of a task: its honest single-operator rows of one preset at two widths
(``model.d_model``) or more at one *setting*, a setting being every other parameter that
differs between the rows (sequence length, the task's options, the batch that goes with them).
A setting run at one width only is not part of it. sweeps/mqar_difficulty.toml makes Zoology's.

Per setting, each mixer's row at each width (mean over seeds) has:

- its accuracy (the task's metric, higher is better), with the 95% t interval over seeds;
- its recurrent state: the floats one sequence carries per layer when decoded token by token,
  as the operator declares it (``state_size(N)`` at the row's sequence length): attention its
  KV cache, 2 x N x d; dct and hyena their filter's input history, min(N, max_len) x d (hyena
  plus its short convolution's); linear attention d x (d / heads + 1); ssd d x d_state; swa
  2 x min(N, window) x d;
- its time: microseconds of training per token (1e6 / the record's tokens/s), from the records
  of the sweep's most common hardware only (never compared across machines).

The rule (*stands in*): attention's accuracy at a setting is its best row over the widths; a
cheap mixer's row stands in for attention when its mean accuracy is at most ``WITHIN`` (2
points) below it. Per setting the table names, per mixer, its smallest-state row that stands in
(else "none" and its best), and the cheapest row of any mixer by state and by time.

The routed pairs (``<mixer>,attn`` under a router) at the sweep's settings and widths follow:
accuracy beside the attention FLOP fraction and the routing's recall and precision against
the task's ground truth (``telemetry.ground_truth``, as in the ground-truth section).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from harness.core.metrics import fixed, task_metric
from harness.core.stats import mean, mean_interval, sample_std
from harness.report.leaderboard.format import options_text, slug
from harness.report.leaderboard.groundtruth import layer_means
from harness.report.leaderboard.groups import ROUTED_ONLY, TOKENS_PER_SECOND, Group
from harness.report.leaderboard.render import parameter_label
from harness.report.leaderboard.rows import TaskBoard
from harness.report.markdown import escape, md_table, mean_std, rel_link
from registry import ChiaroscuroError

WIDTH = "model.d_model"
WITHIN = 0.02  # a row stands in for attention at most this far below attention's accuracy
TITLE = "## Where a cheap mixer stands in for attention (difficulty sweeps)"
SWEEP_COMMAND = ("python -m harness sweep --file sweeps/mqar_difficulty.toml --jobs 2 "
                 "--out results/runs")
# what each built-in operator's state_size declares (pinned by tests/test_difficulty_board.py
# and tests/test_{linear,hyena,ssd,swa}.py; the operators' docstrings say why)
STATE_TEXT = ("attn: its KV cache, 2 x N x d, growing with the length; dct: the causal "
              "kernel's input history, min(N, max_len) x d; hyena: the same plus its short "
              "convolution's 3 x 2 x d; linear: d x (d / heads + 1) whatever the length; ssd: "
              "d x d_state; swa: 2 x min(N, window) x d")
AXES = (("width", "d_model"), ("state", "recurrent state per layer (floats)"),
        ("time", "training time per token (µs, measured)"))


@dataclass
class Point:
    """One mixer at one width of one setting: a single-operator row."""

    group: Group
    width: int
    accuracy: list[float]  # per seed
    state: int | None  # floats per sequence per layer (module docstring)
    time: float | None  # µs of training per token on the sweep's hardware

    @property
    def mixer(self) -> str:
        """The operator with its options, escaped for markdown (``Group.operators_text``)."""
        return self.group.operators_text

    @property
    def name(self) -> str:
        """The operator with its options as plain text, for the figure."""
        options = self.group.first.operator_options.get(self.operator)
        return self.operator + (f"({options_text(options)})" if options else "")

    @property
    def operator(self) -> str:
        return self.group.operators[0]

    @property
    def mean(self) -> float:
        return mean(self.accuracy)

    @property
    def attention(self) -> bool:
        return self.group.roles.attention[0]


@dataclass
class Setting:
    values: dict[str, Any]  # {dotted path: value}: what sets it apart (module docstring)
    label: str = ""
    points: list[Point] = field(default_factory=list)
    routed: list[Group] = field(default_factory=list)

    @property
    def widths(self) -> list[int]:
        return sorted({p.width for p in self.points})

    @property
    def reference(self) -> Point | None:
        """Attention's best row over the widths (the smaller width on a tie)."""
        rows = [p for p in self.points if p.attention]
        return max(rows, key=lambda p: (p.mean, -p.width)) if rows else None

    @property
    def cheap(self) -> list[Point]:
        return [p for p in self.points if not p.attention]

    @property
    def mixers(self) -> list[str]:
        return sorted({p.mixer for p in self.cheap})


@dataclass
class Sweep:
    task: str
    preset: str
    metric: str
    hardware: str | None
    settings: list[Setting]

    @property
    def name(self) -> str:
        return f"{self.task} (preset {self.preset})" if self.preset else self.task

    @property
    def mixers(self) -> list[str]:
        return sorted({m for s in self.settings for m in s.mixers})


def stands_in(point: Point, reference: Point | None) -> bool:
    """The rule: within ``WITHIN`` of attention's accuracy (module docstring)."""
    return reference is not None and point.mean >= reference.mean - WITHIN - 1e-12


def cheapest(points: list[Point], reference: Point | None, by: str) -> Point | None:
    """The row that stands in at the least state (``by="state"``) or time (``"time"``); the
    other cost, then the width and the name, break ties. None when no row stands in."""
    other = "time" if by == "state" else "state"
    inf = float("inf")
    rows = [p for p in points if stands_in(p, reference) and getattr(p, by) is not None]
    if not rows:
        return None
    return min(rows, key=lambda p: (getattr(p, by), getattr(p, other) or inf, p.width,
                                    p.mixer))


# -- finding the sweeps in a task's rows --------------------------------------------------------


def _setting_values(g: Group) -> dict[str, Any]:
    return {p: v for p, v in g.setting.items() if p != WIDTH and p not in ROUTED_ONLY}


def _width(g: Group) -> int | None:
    width = g.first.config.get("model", {}).get("d_model")
    return width if isinstance(width, int) else None


def _hardware(r: Any) -> str:
    return str(r.environment.get("hardware", "unknown hardware"))


def _time(g: Group, hardware: str | None) -> float | None:
    times = [1e6 / x for r in g.records if _hardware(r) == hardware
             and (x := TOKENS_PER_SECOND(r)) is not None and x > 0]
    return mean(times) if times else None


def state_floats(g: Group) -> int | None:
    """The floats of recurrent state per sequence per layer of a single-operator row, as its
    operator declares it at the row's sequence length; None when the operator is not
    installed here, declares none, or the record lacks the shape."""
    r = g.first
    model = r.config.get("model", {})
    n = r.data.get("seq_len") or r.config.get("data", {}).get("seq_len")
    causal = r.data.get("causal")
    if not (isinstance(n, int) and isinstance(causal, bool)):
        return None
    options = json.dumps(r.operator_options.get(g.operators[0], {}), sort_keys=True)
    return _declared_state(g.operators[0], model.get("d_model"), model.get("heads"), n, causal,
                           options)


@cache
def _declared_state(op: str, d_model: Any, heads: Any, n: int, causal: bool,
                    options: str) -> int | None:
    from operators import OPERATORS

    try:
        module = OPERATORS.get(op)(d_model, heads, n, causal, **json.loads(options))
    except (ChiaroscuroError, TypeError):
        return None
    declared = getattr(module, "state_size", None)
    return int(declared(n)) if callable(declared) else None


def find_sweeps(board: TaskBoard) -> list[Sweep]:
    """The difficulty sweeps of one task's rows (module docstring), one per preset."""
    if not board.higher:
        return []
    # a privileged router's flag says what it reads (the oracle): its pair is still shown
    honest = [g for g in board.ranked if (g.roles.privileged or not g.flagged)
              and _width(g) is not None]
    sweeps = []
    for preset in sorted({g.preset for g in honest}):
        groups = [g for g in honest if g.preset == preset]
        singles = [g for g in groups if g.roles.unrouted and len(g.operators) == 1
                   and not g.flagged]
        by_setting: dict[str, list[Group]] = {}
        for g in singles:
            by_setting.setdefault(json.dumps(_setting_values(g), sort_keys=True,
                                             default=str), []).append(g)
        swept = {k: gs for k, gs in by_setting.items() if len({_width(g) for g in gs}) > 1}
        if not swept:
            continue
        records = [r for gs in swept.values() for g in gs for r in g.records]
        hardware = Counter(_hardware(r) for r in records).most_common(1)[0][0]
        settings = []
        for key, gs in swept.items():
            setting = Setting(json.loads(key))
            setting.points = [Point(g, _width(g), g.values("test", board.rank_metric),
                                    state_floats(g), _time(g, hardware))
                              for g in gs if g.values("test", board.rank_metric)]
            widths = set(setting.widths)
            setting.routed = [g for g in groups if len(g.operators) > 1
                              and _width(g) in widths and json.dumps(
                                  _setting_values(g), sort_keys=True, default=str) == key]
            settings.append(setting)
        _label(settings)
        sweeps.append(Sweep(board.task, preset, board.rank_metric, hardware, settings))
    return sweeps


def _label(settings: list[Setting]) -> None:
    """Each setting's label: the parameters that differ between the sweep's settings (all of
    them while there is one setting), in order of their paths (the sequence length first); the
    settings sorted by it."""
    paths = sorted({p for s in settings for p in s.values},
                   key=lambda p: (p != "data.seq_len", p))
    differ = [p for p in paths if len({repr(s.values.get(p)) for s in settings}) > 1]
    for s in settings:
        s.label = ", ".join(f"{parameter_label(p, differ)}={s.values[p]}" for p in differ
                            if p in s.values)
        if not s.label:  # one setting so far: its length, not a bare "all runs"
            length = s.values.get("data.seq_len")
            s.label = f"seq_len={length} (the only setting so far)" if length else "all runs"
    settings.sort(key=lambda s: tuple(_order(s.values.get(p)) for p in differ))


def _order(value: Any) -> tuple[int, float, str]:
    """Numbers by value, then anything else by its text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, json.dumps(value, sort_keys=True, default=str)


# -- markdown -----------------------------------------------------------------------------------


def _accuracy(p: Point) -> str:
    interval = mean_interval(p.accuracy)
    ci = (f" [{fixed(interval[0], 3)}, {fixed(interval[1], 3)}]" if interval
          else " (1 seed, no interval)")
    return f"{fixed(p.mean, 3)}{ci}"


def _state_text(p: Point) -> str:
    return "—" if p.state is None else f"{p.state:,}"


def _time_text(p: Point) -> str:
    return "—" if p.time is None else f"{p.time:.1f}"


def _mixer_cell(setting: Setting, mixer: str) -> str:
    rows = [p for p in setting.cheap if p.mixer == mixer]
    if not rows:
        return "not run"
    best = cheapest(rows, setting.reference, "state")
    if best is not None:
        return f"d_model {best.width}: {_accuracy(best)}, state {_state_text(best)}"
    top = max(rows, key=lambda p: (p.mean, -p.width))
    return f"none (best {_accuracy(top)} at d_model {top.width})"


def _cheapest_cell(setting: Setting, by: str) -> str:
    p = cheapest(setting.cheap, setting.reference, by)
    if p is None:
        return "none"
    cost = (f"state {_state_text(p)}" if by == "state" else f"{_time_text(p)} µs/token")
    return f"{p.mixer} d_model {p.width}: {cost}, {_accuracy(p)}"


def _stands_in_table(sweep: Sweep) -> list[str]:
    headers = ["setting", "attention (best width)", *sweep.mixers,
               "cheapest by state", "cheapest by time"]
    rows = []
    for s in sweep.settings:
        ref = s.reference
        attention = "not run" if ref is None else f"{_accuracy(ref)} at d_model {ref.width}"
        rows.append([escape(s.label), attention,
                     *[_mixer_cell(s, m) for m in sweep.mixers],
                     _cheapest_cell(s, "state"), _cheapest_cell(s, "time")])
    return [md_table(headers, rows), ""]


def _points_table(sweep: Sweep) -> list[str]:
    label = task_metric(sweep.metric).label
    headers = ["setting", "mixer", "d_model", "seeds", f"test {label}", "95% interval",
               "state / layer (floats)", "µs / training token", "stands in", "config"]
    rows = []
    for s in sweep.settings:
        ref = s.reference
        for p in sorted(s.points, key=lambda p: (not p.attention, p.mixer, p.width)):
            interval = mean_interval(p.accuracy)
            rows.append([escape(s.label), p.mixer, str(p.width), str(len(p.accuracy)),
                         mean_std(p.accuracy, 3),
                         "—" if interval is None else
                         f"[{fixed(interval[0], 3)}, {fixed(interval[1], 3)}]",
                         _state_text(p), _time_text(p),
                         "attention" if p.attention else ("yes" if stands_in(p, ref) else "no"),
                         p.group.config_hash])
    return [md_table(headers, rows), ""]


def _routed_lines(sweep: Sweep) -> list[str]:
    rows = []
    for s in sweep.settings:
        for g in sorted(s.routed, key=lambda g: (_width(g), g.roles.order, g.router,
                                                 g.operators)):
            name = escape(g.router) + (" (upper bound)" if g.roles.privileged else "")
            fraction = g.attention_fraction
            truth = [mean_std(layer_means(g, k), 3) for k in ("routed_fraction", "recall",
                                                              "precision")]
            alone = "; ".join(f"{p.mixer} {fixed(p.mean, 3)}" for p in s.points
                              if p.width == _width(g) and p.operator in g.operators)
            rows.append([escape(s.label), str(_width(g)), name, g.operators_text,
                         str(len(g.records)), mean_std(g.values("test", sweep.metric), 3),
                         "—" if fraction is None else fixed(fraction, 3), *truth,
                         alone or "—", g.config_hash])
    if not rows:
        return []
    headers = ["setting", "d_model", "router", "operators", "seeds",
               f"test {task_metric(sweep.metric).label}", "attn FLOP frac",
               "routed to attention", "recall", "precision", "each alone (same width)",
               "config"]
    return ["Routed pairs at the sweep's settings: accuracy beside the attention FLOP "
            "fraction, and the routing against the task's ground truth (the share of test "
            "tokens routed to attention, and recall / precision of those tokens against the "
            "ones that need attention; mean over layers, mean ± std over seeds). The oracle "
            "reads the ground truth: an upper bound, never a real router.", "",
            md_table(headers, rows), ""]


def _intro(sweep: Sweep) -> list[str]:
    n_runs = sum(len(p.group.records) for s in sweep.settings for p in s.points)
    widths = sorted({w for s in sweep.settings for w in s.widths})
    where = f"on {escape(sweep.hardware)}" if sweep.hardware else "where measured"
    return [f"### {escape(sweep.name)}: difficulty sweep", "",
            f"{len(sweep.settings)} setting{'s' if len(sweep.settings) != 1 else ''}, widths "
            f"(d_model) {', '.join(map(str, widths))}; {n_runs} single-operator runs. A row "
            f"*stands in* "
            f"for attention when its mean test {task_metric(sweep.metric).label} is at most "
            f"{WITHIN * 100:.0f} points below attention's best over the widths; per mixer "
            f"its smallest-state such row, else *none* and its best. Intervals: 95% t "
            f"intervals over seeds. State: floats per sequence per layer, as each operator "
            f"declares it at the row's length N ({STATE_TEXT}). Time: µs of training per "
            f"token, {where} only.", ""]


def _spec(sweep: Sweep, plots_dir: Path, colors: dict[str, Any]) -> dict[str, Any]:
    file = f"{slug(sweep.task)}_{slug(sweep.preset or 'none')}_difficulty.png"
    panels = []
    for s in sweep.settings:
        series: dict[str, dict[str, Any]] = {}
        for p in sorted(s.points, key=lambda p: p.width):
            entry = series.setdefault(p.name, {
                "name": p.name, "color": colors["operators"].get(p.operator, "0.5"),
                "attention": p.attention, "points": []})
            entry["points"].append({"width": p.width, "state": p.state, "time": p.time,
                                    "y": p.mean, "yerr": sample_std(p.accuracy) or 0.0})
        ref = s.reference
        panels.append({"label": s.label, "threshold": None if ref is None
                       else ref.mean - WITHIN, "series": [series[k] for k in sorted(series)]})
    return {"kind": "difficulty", "task": sweep.task, "file": file,
            "path": str(Path(plots_dir) / file),
            "title": f"{sweep.name}: test {task_metric(sweep.metric).label} against width, "
                     f"recurrent state and training time, per setting",
            "metric": f"test {task_metric(sweep.metric).label}",
            "axes": [{"key": k, "label": label} for k, label in AXES], "panels": panels}


def section(boards: list[TaskBoard], plots_dir: Path, out: Path, colors: dict[str, Any]
            ) -> tuple[list[str], list[dict[str, Any]]]:
    """The board's difficulty-sweep section and its plots; one line when no record holds a
    sweep."""
    sweeps = [s for b in boards for s in find_sweeps(b)]
    if not sweeps:
        return [TITLE, "", f"No difficulty sweep in the records (one task's single-operator "
                           f"runs at several widths, `{WIDTH}`, per setting): "
                           f"`{SWEEP_COMMAND}` runs Zoology's (results/README.md).", ""], []
    lines = [TITLE, "", "Per task and difficulty setting, how accurate each mixer is at each "
             "width, and the cheapest configuration within "
             f"{WITHIN * 100:.0f} points of attention (sweeps/mqar_difficulty.toml).", ""]
    specs = []
    for sweep in sweeps:
        spec = _spec(sweep, plots_dir, colors)
        specs.append(spec)
        lines += _intro(sweep) + _stands_in_table(sweep)
        lines += [f"![{escape(spec['title'])}]({rel_link(Path(spec['path']), out)})", ""]
        lines += ["Every row of the sweep:", ""] + _points_table(sweep)
        lines += _routed_lines(sweep)
    return lines, specs
