"""The bench's output: the targets (PASS/FAIL), the printed tables, the PNG and the JSON."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from .microbench import Microbench
from .settings import FULL, TARGET_DCT_SCALING, TARGET_TRAIN, Settings, dct_target, routed_targets
from .timing import MAX_SPREAD, fmt_spread, paired_ratio, repeats_disagree, spread_warning

RATIO_DEFINITION = ("median over repeats of (case time / full attention time at the same N in "
                    "the same repeat); ratio_spread = IQR / median of those per-repeat ratios, "
                    "ratio_range their [min, max]; ratio_of_min = min / min")

# -- targets -----------------------------------------------------------------------------------


def target_entry(name: str, value: float | None, bound: float, missing: str,
                 repeats: dict[str, Any] | None = None) -> dict[str, Any]:
    """``value <= bound``, judged unless nothing was measured (``missing`` says why) or the
    repeats that gave ``value`` (``repeats``: a paired ratio's fields) disagree too much."""
    repeats = repeats or {}
    entry = {"target": name, "bound": bound, "value": value,
             "passed": None if value is None else bool(value <= bound),
             "spread": repeats.get("ratio_spread"), "range": repeats.get("ratio_range"),
             "repeats_disagree": False, "note": None if value is not None else missing}
    if value is not None and repeats_disagree(repeats, bound):
        low, high = entry["range"]
        entry.update(passed=None, repeats_disagree=True, note=(
            f"not judged: the repeats disagree (spread {entry['spread']:.0%} > "
            f"{MAX_SPREAD:.0%}; per-repeat values {low:.3f}-{high:.3f}, on both sides of the "
            f"bound); rerun on a quiet machine, with --threads 1 or more --repeats"))
    return entry


def _dct_scaling_target(micro: Microbench, hint: str) -> dict[str, Any]:
    n1, n2, bound = TARGET_DCT_SCALING
    c1 = next((c for c in micro.cases if c.seq_len == n1 and c.key == "dct"), None)
    c2 = next((c for c in micro.cases if c.seq_len == n2 and c.key == "dct"), None)
    scaling = None
    if c1 and c2 and c1.times["fwd+bwd"] and c2.times["fwd+bwd"]:
        scaling = paired_ratio(c2.times["fwd+bwd"], c1.times["fwd+bwd"])
    nlogn = n2 * math.log2(n2) / (n1 * math.log2(n1))
    return target_entry(f"dct fwd+bwd time(N={n2}) / time(N={n1}) (N log N: {nlogn:.1f})",
                        scaling and scaling["ratio"], bound, hint, scaling)


def microbench_targets(micro: Microbench, s: Settings) -> list[dict[str, Any]]:
    def measured(n: int, key: str) -> dict[str, Any]:
        r = next((r for r in micro.rows if r["seq_len"] == n and r["key"] == key), None)
        return r["fwd+bwd"] if r else {"ratio": None}

    hint = "not measured: run with --targets"
    mode = "causal " if s.causal else ""
    targets = []
    for n, frac, bound in routed_targets(s.causal):
        m = measured(n, f"{FULL}@{frac:g}")
        routed = target_entry(
            f"{mode}routed attn at fraction {frac:g}, N={n}: fwd+bwd / full attn",
            m["ratio"], bound, hint, m)
        if routed["passed"] is not None and s.d_model != 256:
            routed["note"] = f"measured at d_model {s.d_model}; the target is stated for 256"
        targets.append(routed)
    n, bound = dct_target(s.causal)
    m = measured(n, "dct")
    targets.append(target_entry(f"{mode}dct at N={n}: fwd+bwd / full attn", m["ratio"],
                                bound, hint, m))
    return [*targets, _dct_scaling_target(micro, hint)]


def train_step_targets(train: dict[str, Any] | None, s: Settings) -> list[dict[str, Any]]:
    measured = [v for v in (train or {"tasks": {}})["tasks"].values() if v["ratio"] is not None]
    worst = max(measured, key=lambda v: v["ratio"]) if measured else None
    return [target_entry("harness full-attention training step / bare reference step "
                         "(worst task)", worst and worst["ratio"], TARGET_TRAIN,
                         "not measured: --no-train-step", worst)]


# -- tables ------------------------------------------------------------------------------------


def fmt_value(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_microbench(micro: Microbench, s: Settings, env: dict[str, Any]) -> None:
    from tabulate import tabulate

    print(f"device: {env['hardware']} ({s.device}), dtype {s.dtype}, "
          f"{'causal' if s.causal else 'non-causal'} operators, d_model {s.d_model}, "
          f"heads {s.heads}, batch {s.batch_size}; median of {s.repeats} repeats after "
          f"{s.warmup} warm-up; ratios = median over repeats of (case / full attn in the same "
          f"repeat), spread = IQR / median of the fwd+bwd per-repeat ratios")
    table = []
    for r in micro.rows:
        table.append([
            r["seq_len"], "attn (full)" if r["key"] == FULL else
            (r["op"] if r["kind"] == "operator" else f"{r['op']} routed {r['fraction']:g}"),
            fmt_value(r["fwd"]["median_ms"], 2), fmt_value(r["fwd"]["ratio"]),
            fmt_value(r["fwd+bwd"]["median_ms"], 2), fmt_value(r["fwd+bwd"]["ratio"]),
            fmt_spread(_ratio_spread(r)), fmt_value(r["flop_ratio"]), r["skipped"] or "",
        ])
    print(tabulate(table, headers=["N", "case", "fwd ms", "fwd / attn", "fwd+bwd ms",
                                   "fwd+bwd / attn", "spread", "FLOPs / attn", "note"]))
    noisy = sum(1 for r in micro.rows if (_ratio_spread(r) or 0) > MAX_SPREAD)
    if line := spread_warning(noisy, "rows"):
        print(line)


def _ratio_spread(row: dict[str, Any]) -> float | None:
    """The spread of a microbenchmark row: its fwd+bwd ratio's, or (full attention, whose
    ratio is 1 by construction) its times'."""
    entry = row["fwd+bwd"]
    return entry["spread"] if row["key"] == FULL else entry["ratio_spread"]


def print_train_step(train: dict[str, Any] | None, s: Settings, env: dict[str, Any]) -> None:
    from tabulate import tabulate

    if train is None:
        return
    sh = train["shape"]
    print(f"\ntraining step (forward, loss, backward, clip, AdamW): {sh['layers']} layers, "
          f"d_model {sh['d_model']}, heads {sh['heads']}, seq_len {sh['seq_len']}, batch "
          f"{sh['batch_size']}, vocab {sh['vocab']}")
    print(tabulate(
        [[k, fmt_value(v["bare"]["median_ms"], 2), fmt_value(v["harness"]["median_ms"], 2),
          fmt_value(v["ratio"]), fmt_spread(v["ratio_spread"])]
         for k, v in train["tasks"].items()],
        headers=["task", "bare ms", "harness ms", "harness / bare", "spread"]))
    noisy = sum(1 for v in train["tasks"].values() if (v["ratio_spread"] or 0) > MAX_SPREAD)
    if line := spread_warning(noisy, "tasks"):
        print(line)


def print_targets(targets: list[dict[str, Any]]) -> None:
    print("\ntargets (2-core CPU):")
    for t in targets:
        if t.get("repeats_disagree"):
            verdict = "UNSURE"
        else:
            verdict = "-" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL")
        spread = f", spread {fmt_spread(t['spread'])}" if t.get("spread") is not None else ""
        extra = f"  ({t['note']})" if t["note"] else ""
        print(f"  {verdict:6}  {t['target']}: {fmt_value(t['value'])} <= {t['bound']:g}"
              f"{spread}{extra}")


# -- plot --------------------------------------------------------------------------------------


def _plot_operators(ax, rows: list[dict[str, Any]]) -> None:
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for r in rows:
        if r["kind"] == "operator" or (r["fraction"] or 1) < 1:
            label = r["op"] if r["kind"] == "operator" else f"{r['op']} routed {r['fraction']:g}"
            fb, fw = r["fwd+bwd"]["median_ms"], r["fwd"]["median_ms"]
            if fb is not None:
                series.setdefault(label, []).append((r["seq_len"], fb, fw))
    for i, (label, points) in enumerate(series.items()):
        points.sort()
        color = f"C{i % 10}"
        ns = [p[0] for p in points]
        ax.plot(ns, [p[1] for p in points], "o-", color=color, label=f"{label} fwd+bwd")
        ax.plot(ns, [p[2] for p in points], "x--", color=color, alpha=0.5)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N")
    ax.set_ylabel("median time (ms); dashed: forward only")
    ax.set_title("operators")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def _plot_routed(ax, rows: list[dict[str, Any]]) -> None:
    by_n: dict[int, list[tuple[float, float | None, float | None]]] = {}
    for r in rows:
        if r["kind"] == "routed":
            by_n.setdefault(r["seq_len"], []).append(
                (r["fraction"], r["fwd+bwd"]["ratio"], r["flop_ratio"]))
    for i, (n, points) in enumerate(sorted(by_n.items())):
        points.sort()
        good = [p for p in points if p[1] is not None]
        if good:
            ax.plot([p[0] for p in good], [p[1] for p in good], "o-", color=f"C{i % 10}",
                    label=f"N={n} measured (fwd+bwd)")
        flops = [p for p in points if p[2] is not None]
        if flops:
            ax.plot([p[0] for p in flops], [p[2] for p in flops], ":", color=f"C{i % 10}",
                    alpha=0.7, label=f"N={n} analytic FLOPs")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.5, label="proportional")
    ax.set_xlabel("fraction of tokens routed to attention")
    ax.set_ylabel("routed / full attention")
    ax.set_title("routed attention")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)


def plot(rows: list[dict[str, Any]], s: Settings, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    _plot_operators(left, rows)
    _plot_routed(right, rows)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.86, wspace=0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


# -- files -------------------------------------------------------------------------------------


def machine_label(s: Settings, env: dict[str, Any]) -> str:
    """Where the numbers were measured: hardware and dtype, the start of every plot title."""
    return f"{env['hardware']} | {s.dtype}"


def plot_title(s: Settings, env: dict[str, Any]) -> str:
    return (f"{machine_label(s, env)} | d_model {s.d_model}, heads {s.heads}, "
            f"batch {s.batch_size} | {'causal' if s.causal else 'non-causal'}")


def write_outputs(out: Path, stem: str, payload: dict[str, Any], png: bytes) -> None:
    """``<stem>.png`` and ``<stem>.json`` under `out`, each written atomically."""
    from registry import files

    files.atomic_write_bytes(out / f"{stem}.png", png)
    files.atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
