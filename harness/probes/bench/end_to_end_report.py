"""The end-to-end section's output: its table, its targets and its plot (time vs N)."""

from __future__ import annotations

import io
from typing import Any

from .end_to_end import QUIET_FAULTS
from .report import fmt_value, target_entry
from .settings import REFERENCE, TARGET_E2E, TARGET_E2E_CONTROL, TARGET_E2E_CROSSOVER, Settings
from .timing import MAX_SPREAD, fmt_spread, paired_ratio, spread_warning


def _row(e2e: dict[str, Any], kind: str, combo: str, n: int) -> dict[str, Any] | None:
    points = e2e["tasks"].get(kind, {}).get("combos", {}).get(combo, [])
    return next((r for r in points if r["seq_len"] == n), None)


def end_to_end_targets(e2e: dict[str, Any] | None, s: Settings) -> list[dict[str, Any]]:
    if e2e is None:
        return []
    hint = "not measured: needs the lm task, that combination and that N"
    out = []
    for combo, n, bound in TARGET_E2E:
        row = _row(e2e, "lm", combo, n)
        out.append(target_entry(
            f"end to end, causal, {combo} at {e2e['shape']['attn_fraction']:g}, N={n}: step / "
            "single attn", row and row["ratio"], bound, hint, row))
    combo, bound = TARGET_E2E_CROSSOVER
    cross = e2e["tasks"].get("lm", {}).get("crossover", {})
    value = cross.get(combo) if combo in cross else None
    target = target_entry(f"end to end, causal, {combo}: crossover N", value, bound,
                          "never below single attention" if combo in cross else hint)
    if combo in cross and value is None:
        target["passed"] = False
    out.append(target)
    routed, control, n, bound = TARGET_E2E_CONTROL
    a, b = _row(e2e, "lm", routed, n), _row(e2e, "lm", control, n)
    pair = paired_ratio(a["times_ms"], b["times_ms"]) if a and b else None
    out.append(target_entry(f"end to end, causal, N={n}: {routed} step / {control} step",
                            pair and pair["ratio"], bound, hint, pair))
    return out


def print_end_to_end(e2e: dict[str, Any] | None, s: Settings, env: dict[str, Any]) -> None:
    from tabulate import tabulate

    if e2e is None:
        return
    sh = e2e["shape"]
    print(f"\nend to end: harness training step, {sh['layers']} layers, d_model "
          f"{sh['d_model']}, heads {sh['heads']}, batch {sh['batch_size']}, attention fraction "
          f"{sh['attn_fraction']:g}; ratio = median over rounds of (step / {REFERENCE} step), "
          f"spread = IQR / median of the per-round ratios")
    for kind, entry in e2e["tasks"].items():
        table = []
        for combo, points in entry["combos"].items():
            for r in points:
                table.append([kind, combo, r["seq_len"], fmt_value(r["median_ms"], 1),
                              fmt_value(r["ratio"]), fmt_spread(_ratio_spread(combo, r)),
                              fmt_value(r["attention_token_share"]),
                              fmt_value(r["attention_flop_fraction"]),
                              fmt_value(r.get("page_faults"), 0), r.get("warmup_rounds", "-")])
        print(tabulate(table, headers=["task", "combination", "N", "step ms", "/ single attn",
                                       "spread", "attn tokens", "attn FLOPs",
                                       "page faults/step", "warm-up rounds"]))
        noisy = sum(1 for combo, points in entry["combos"].items() for r in points
                    if (_ratio_spread(combo, r) or 0) > MAX_SPREAD)
        if line := spread_warning(noisy, f"{kind} rows"):
            print(line)
        cross = ", ".join(f"{k}: {'-' if v is None else v}" for k, v in entry["crossover"].items())
        print(f"crossover N ({kind}): {cross}")
        faulting = [f"{combo} at N={r['seq_len']}" for combo, points in entry["combos"].items()
                    for r in points if (r.get("page_faults") or 0) > QUIET_FAULTS]
        if faulting:
            print(f"warning ({kind}): still page-faulting after the last warm-up round, so "
                  f"its times include first touches of memory: {', '.join(faulting)}")


def _ratio_spread(combo: str, row: dict[str, Any]) -> float | None:
    """A row's spread: its ratio's, or (the reference, whose ratio is 1 by construction) its
    step times'."""
    return row.get("spread") if combo == REFERENCE else row.get("ratio_spread")


def end_to_end_title(e2e: dict[str, Any], machine: str) -> str:
    """The plot's title: the machine, then the step's own shape (not the microbenchmark's)."""
    sh = e2e["shape"]
    return (f"{machine} | training step: {sh['layers']} layers, d_model {sh['d_model']}, heads "
            f"{sh['heads']}, batch {sh['batch_size']}, vocab {sh['vocab']}, attention fraction "
            f"{sh['attn_fraction']:g}")


def plot_end_to_end(e2e: dict[str, Any], machine: str) -> bytes:
    """Step time vs N per task; ``machine`` is the hardware and dtype part of the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(e2e["tasks"])
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.8), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=True):
        entry = e2e["tasks"][kind]
        for i, (combo, points) in enumerate(entry["combos"].items()):
            pts = sorted((r["seq_len"], r["median_ms"]) for r in points if r["median_ms"])
            style = "k-" if combo == REFERENCE else f"C{i % 10}o-"
            cross = entry["crossover"].get(combo)
            label = combo if combo == REFERENCE else f"{combo} (crossover {cross or '-'})"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length N")
        ax.set_ylabel("median training step (ms)")
        ax.set_title(f"{kind} ({'causal' if entry['causal'] else 'non-causal'})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(end_to_end_title(e2e, machine), fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.86, wspace=0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # keeps the y label whole
    plt.close(fig)
    return buf.getvalue()
