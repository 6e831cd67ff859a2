"""The zoo section's output: its table, its closing summary, its targets and its plot."""

from __future__ import annotations

import io
from typing import Any

from .report import fmt_value, target_entry
from .settings import (
    FULL,
    ZOO_TARGET_N,
    ZOO_TARGET_OF_ANALYTIC,
    ZOO_TARGET_RATIO,
    ZOO_TARGET_SCALING,
    Settings,
)
from .timing import paired_ratio
from .zoo import pair_key

SUMMARY_NS = (2048, 8192)  # the closing summary's sequence lengths


def _row(zoo: dict[str, Any], key: str, n: int) -> dict[str, Any] | None:
    return next((r for r in zoo["rows"] if r["seq_len"] == n and r["key"] == key), None)


def _pair_row_key(zoo: dict[str, Any], mixer: str) -> str:
    return f"{pair_key(mixer)}@{zoo['shape']['fraction']:g}"


def _measured(row: dict[str, Any] | None) -> float | None:
    return None if row is None else row["fwd+bwd"]["ratio"]


def zoo_targets(zoo: dict[str, Any] | None, s: Settings) -> list[dict[str, Any]]:
    if zoo is None:
        return []
    mode = "causal" if zoo["shape"]["causal"] else "non-causal"
    hint = f"not measured: needs N={ZOO_TARGET_N} in --zoo-seq-lens"
    n1, n2, growth = ZOO_TARGET_SCALING
    cheap, bound = ZOO_TARGET_RATIO
    out = []
    for mixer in zoo["ops"]:
        row = _row(zoo, mixer, ZOO_TARGET_N)
        measured = _measured(row)
        analytic = None if row is None else row["flop_ratio"]
        value = None if measured is None or not analytic else measured / analytic
        out.append(target_entry(
            f"zoo, {mode}, {mixer} at N={ZOO_TARGET_N}: fwd+bwd time ratio / analytic FLOP "
            f"ratio ({fmt_value(analytic)}) to full attn", value, ZOO_TARGET_OF_ANALYTIC, hint))
        if mixer in cheap:
            out.append(target_entry(
                f"zoo, {mode}, {mixer} at N={ZOO_TARGET_N}: fwd+bwd / full attn", measured,
                bound, hint))
        a, b = _row(zoo, mixer, n1), _row(zoo, mixer, n2)
        growth_value = None
        if a and b and a["fwd+bwd"]["times_ms"] and b["fwd+bwd"]["times_ms"]:
            growth_value = paired_ratio(b["fwd+bwd"]["times_ms"], a["fwd+bwd"]["times_ms"])
        out.append(target_entry(f"zoo, {mode}, {mixer}: fwd+bwd time(N={n2}) / time(N={n1})",
                                growth_value, growth, f"not measured: needs N={n1} and {n2}"))
    return out


def _case_label(zoo: dict[str, Any], row: dict[str, Any]) -> str:
    if row["key"] == FULL:
        return "attn (full)"
    if row["kind"] == "routed":
        return f"{row['op']} routed {row['fraction']:g}"
    return row["op"]


def _of_analytic(row: dict[str, Any]) -> float | None:
    measured = row["fwd+bwd"]["ratio"]
    return None if measured is None or not row["flop_ratio"] else measured / row["flop_ratio"]


def print_zoo(zoo: dict[str, Any] | None, s: Settings, env: dict[str, Any]) -> None:
    from tabulate import tabulate

    if zoo is None:
        return
    sh = zoo["shape"]
    print(f"\nzoo: cheap mixers and their routed pairs (attention fraction {sh['fraction']:g}) "
          f"vs full attention, {'causal' if sh['causal'] else 'non-causal'}, d_model "
          f"{sh['d_model']}, heads {sh['heads']}, batch {sh['batch_size']}; ratio = median "
          f"over {sh['repeats']} rounds of (case / full attn in the same round); FLOPs / attn = "
          f"analytic forward FLOPs, projections included")
    table = []
    for r in zoo["rows"]:
        table.append([r["seq_len"], _case_label(zoo, r), fmt_value(r["fwd"]["median_ms"], 2),
                      fmt_value(r["fwd+bwd"]["median_ms"], 2), fmt_value(r["fwd+bwd"]["ratio"]),
                      fmt_value(r["flop_ratio"]), fmt_value(_of_analytic(r), 2),
                      "-" if r.get("state_floats") is None else r["state_floats"]])
    print(tabulate(table, headers=["N", "case", "fwd ms", "fwd+bwd ms", "fwd+bwd / attn",
                                   "FLOPs / attn", "measured / analytic", "state floats"]))
    cross = ", ".join(f"{k}: {'-' if v is None else v}" for k, v in zoo["crossover"].items())
    print(f"crossover N (fwd+bwd below full attention from there on): {cross}")
    summary = []
    for mixer in zoo["ops"]:
        for key in (mixer, _pair_row_key(zoo, mixer)):
            line = [key.split("@")[0]]
            for n in SUMMARY_NS:
                row = _row(zoo, key, n)
                line += [fmt_value(row and row["flop_ratio"]), fmt_value(_measured(row))]
            summary.append(line)
    headers = ["case"] + [f"{what} N={n}" for n in SUMMARY_NS for what in ("analytic", "measured")]
    print("\nzoo summary (fwd+bwd / full attention):")
    print(tabulate(summary, headers=headers))


def plot_zoo(zoo: dict[str, Any], machine: str) -> bytes:
    """Left: fwd+bwd time vs N (mixers solid, routed pairs dashed, crossovers marked); right:
    measured (solid) and analytic (dotted) ratio to full attention vs N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    keys = [FULL] + [k for m in zoo["ops"] for k in (m, _pair_row_key(zoo, m))]
    for key in keys:
        points = sorted((r["seq_len"], r["fwd+bwd"]["median_ms"], r["fwd+bwd"]["ratio"],
                         r["flop_ratio"]) for r in zoo["rows"]
                        if r["key"] == key and r["fwd+bwd"]["median_ms"] is not None)
        if not points:
            continue
        name = key.split("@")[0]
        pair = "+" in name
        color = "k" if key == FULL else f"C{zoo['ops'].index(name.split('+')[0]) % 10}"
        cross = zoo["crossover"].get(name)
        label = name if key == FULL else f"{name} (crossover {cross or '-'})"
        ns = [p[0] for p in points]
        left.plot(ns, [p[1] for p in points], "--" if pair else "-", marker="o", color=color,
                  label=label)
        if cross is not None:
            left.plot([cross], [next(p[1] for p in points if p[0] == cross)], marker="*",
                      markersize=14, color=color)
        if key != FULL:
            right.plot(ns, [p[2] for p in points], "--" if pair else "-", marker="o",
                       color=color, label=f"{name} measured")
            right.plot(ns, [p[3] for p in points], ":", color=color, alpha=0.7)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length N")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    left.set_yscale("log")
    left.set_ylabel("median fwd+bwd time (ms); star: crossover")
    left.set_title("time")
    right.axhline(1.0, color="k", lw=0.8)
    right.set_yscale("log")
    right.set_ylabel("/ full attention (dotted: analytic FLOP ratio)")
    right.set_title("ratio to full attention")
    sh = zoo["shape"]
    fig.suptitle(f"{machine} | zoo, {'causal' if sh['causal'] else 'non-causal'}, d_model "
                 f"{sh['d_model']}, heads {sh['heads']}, batch {sh['batch_size']}, routed pairs "
                 f"at attention fraction {sh['fraction']:g}", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
