"""Routing collapse: an operator that a router stops using for the rest of training.

The Trainer logs, every ``--log-every`` steps, each layer's share of tokens per operator (hard
routers: the share of real tokens assigned; soft routers such as ``meta``: the mean weight).
That history is kept in the record (``telemetry.routing_history``). An operator has *collapsed*
in a layer when its share stays below ``THRESHOLD`` at every logged point from some step to the
end of training, and that tail covers at least ``MIN_TAIL`` of the logged points: a dip at the
very last step is noise, a share that never comes back is a router rejecting the operator.

An operator the run itself gives no share, such as ``dct`` at ``--attn-fraction 1``,
is not a collapse: nothing rejected it.

A run with a collapsed operator is flagged ``collapsed: <op> (...)`` in its record: its label
says it mixes with <op>, but it does not, so the board lists it with the flagged rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

THRESHOLD = 0.02  # the stated share: below 2% of tokens an operator is not being used
MIN_TAIL = 0.25  # the tail below THRESHOLD must cover at least this share of logged points


@dataclass(frozen=True)
class Collapse:
    layer: int
    op: str
    since_step: int  # first logged step of the tail that stays below the threshold
    final_share: float


def share_series(history: list[dict[str, Any]], n_layers: int, n_ops: int
                 ) -> tuple[list[int], list[list[list[float]]]]:
    """(steps, shares[layer][op] over steps) from the record's routing history."""
    steps = [int(point["step"]) for point in history]
    shares = [[[float(point["fractions"][layer][k]) for point in history]
               for k in range(n_ops)] for layer in range(n_layers)]
    return steps, shares


def find_collapses(history: list[dict[str, Any]], op_names: list[str],
                   threshold: float = THRESHOLD, min_tail: float = MIN_TAIL,
                   targets: list[float] | None = None) -> list[Collapse]:
    """Every (layer, operator) whose share stays below ``threshold`` to the end of training.
    An operator whose configured share (``targets``, per operator) is zero is not collapsed
    but switched off by the run (``--attn-fraction 1``)."""
    if not history or len(op_names) < 2:
        return []
    n_layers = len(history[0]["fractions"])
    steps, shares = share_series(history, n_layers, len(op_names))
    need = max(1, round(min_tail * len(steps)))
    found = []
    for layer in range(n_layers):
        for k, op in enumerate(op_names):
            if targets is not None and targets[k] <= 0:
                continue
            series = shares[layer][k]
            tail = 0  # logged points at the end that are all below the threshold
            while tail < len(series) and series[-1 - tail] < threshold:
                tail += 1
            if tail >= need:
                found.append(Collapse(layer, op, steps[-tail], series[-1]))
    return found


def collapse_flags(collapses: list[Collapse]) -> list[str]:
    """One ``collapsed: <op> (layer L from step S, ...)`` flag per collapsed operator."""
    by_op: dict[str, list[Collapse]] = {}
    for c in collapses:
        by_op.setdefault(c.op, []).append(c)
    return [f"collapsed: {op} (" + ", ".join(f"layer {c.layer} from step {c.since_step}"
                                             for c in cs) + f", share < {THRESHOLD:.0%})"
            for op, cs in by_op.items()]


def collapsed_ops(flags: list[str]) -> list[str]:
    """The operators a record's flags name as collapsed."""
    return [f.split(":", 1)[1].split()[0] for f in flags if f.startswith("collapsed:")]


def final_shares(history: list[dict[str, Any]], op_names: list[str]) -> dict[str, float]:
    """Each operator's share at the last logged step, averaged over layers."""
    if not history:
        return {}
    last = history[-1]["fractions"]
    return {op: sum(layer[k] for layer in last) / len(last) for k, op in enumerate(op_names)}


def plot_collapse(history: list[dict[str, Any]], op_names: list[str], path: Any,
                  title: str = "") -> None:
    """Share of tokens per operator over training, one panel per layer, threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_layers = len(history[0]["fractions"])
    steps, shares = share_series(history, n_layers, len(op_names))
    fig, axes = plt.subplots(1, n_layers, figsize=(4 * n_layers, 3), squeeze=False,
                             sharey=True)
    for layer, ax in enumerate(axes[0]):
        for k, op in enumerate(op_names):
            ax.plot(steps, shares[layer][k], label=op)
        ax.axhline(THRESHOLD, color="grey", linestyle=":", label=f"{THRESHOLD:.0%}")
        ax.set_title(f"layer {layer}")
        ax.set_xlabel("step")
        ax.set_yscale("symlog", linthresh=0.01)
    axes[0][0].set_ylabel("share of tokens")
    axes[0][-1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
