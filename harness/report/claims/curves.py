"""The budget curves as figures: per language-modelling family, the validation metric of the
full split at each evaluation against training tokens, one line per configuration (mean over
seeds, the band from the lowest to the highest seed), the smaller budgets the claims are judged
at marked. Written to results/plots/claims_<family>.png by ``reproduce``.
"""

from __future__ import annotations

from pathlib import Path

from harness.report.claims.budgets import budget_tokens
from harness.report.claims.evidence import Evidence, Runs, evaluations
from harness.report.claims.runs import SPECS

# the validation metric each family's claims read
CURVE_METRIC = {"lm": "perplexity", "mix": "wikitext2/word_perplexity",
                "small": "word_perplexity", "lm400m": "perplexity"}

# one colour per router and operator set, the same in every claims figure
_LABELS = list(dict.fromkeys(f"{s.router} {'+'.join(s.ops)}" for s in SPECS))


def plot_name(family: str) -> str:
    return f"claims_{family}.png"


def _arms(ev: Evidence, family: str) -> list[Runs]:
    return [runs for s in SPECS if s.family == family
            and (runs := ev.runs(s.key)).runnable
            and any(evaluations(r) for r in runs.finished)]


def plotted_families(ev: Evidence) -> list[str]:
    """The families with a budget curve to draw: some finished run with evaluations."""
    return [f for f in CURVE_METRIC if _arms(ev, f)]


def series(runs: Runs, metric: str) -> list[tuple[float, float, float, float]]:
    """(tokens, mean, lowest, highest) over the seeds evaluated at each point."""
    points: dict[float, list[float]] = {}
    for r in runs.finished:
        for tokens, valid in evaluations(r):
            if metric in valid:
                points.setdefault(round(tokens), []).append(valid[metric])
    return [(t, sum(v) / len(v), min(v), max(v)) for t, v in sorted(points.items())]


def draw(ev: Evidence, directory: Path) -> list[Path]:
    """One figure per family with a curve; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    colours = dict(zip(_LABELS, plt.get_cmap("tab10").colors, strict=False))
    written = []
    for family in plotted_families(ev):
        metric, arms = CURVE_METRIC[family], _arms(ev, family)
        fig, ax = plt.subplots(figsize=(8, 4))
        for runs in arms:
            points = series(runs, metric)
            if not points:
                continue
            tokens, means, lows, highs = (list(x) for x in zip(*points, strict=True))
            tokens = [t / 1e6 for t in tokens]
            colour = colours.get(f"{runs.spec.router} {'+'.join(runs.spec.ops)}", "0.3")
            style = "--" if runs.spec.leaky else "-"
            n = len(runs.finished)
            ax.plot(tokens, means, style, color=colour, marker=".",
                    label=f"{runs.label} ({n} seed{'s' if n != 1 else ''})")
            ax.fill_between(tokens, lows, highs, color=colour, alpha=0.15, linewidth=0)
        keys = tuple(runs.spec.key for runs in arms)
        for i, (_, budget) in enumerate(budget_tokens(ev, keys)):
            ax.axvline(budget / 1e6, color="0.5", linestyle=":", linewidth=1,
                       label="smaller budgets judged" if i == 0 else None)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel(f"validation {metric} (full split)")
        ax.set_title(f"{family} ({ev.setting}): validation {metric} vs training tokens",
                     fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        fig.tight_layout()
        path = Path(directory) / plot_name(family)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
