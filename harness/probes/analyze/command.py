"""``python -m harness analyze RECORD_OR_CHECKPOINT``: is spectral entropy a sign of long range?

The method's premise is that a token's spectral entropy tells whether it needs attention. On a
trained model whose mixing layers run full softmax attention on every token (a `single attn`
run), this measures, for every real test token i and layer:

- attention distance  sum_j a_ij |i - j|  (mean over heads): how far back the token looks;
- attention entropy   -sum_j a_ij log a_ij (mean over heads): how spread its attention is;
- spectral entropy of the layer input (what the entropy router would score the token by);

then Spearman's rank correlation of spectral entropy with each, per layer, with a bootstrap
95% confidence interval that resamples whole examples (tokens of one example are not
independent). On a task with ground truth it also reports each measure on the tokens that need
attention vs the others. Output: ``<runs>/analysis/<run id>.json`` (a summary the leaderboard
shows) and a hexbin plot ``<run id>.png`` of distance vs spectral entropy, per layer.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from registry import ConfigError

BOOTSTRAP = 200


def attention_probs(op: Any, x: Tensor, ctx: Any) -> Tensor:
    """(B, H, N, N) softmax weights of an `attn` operator on input x, as its kernel computes
    them (same projections, same mask)."""
    from operators.base import attention_mask

    B, N, D = x.shape
    H = op.n_heads
    q = op.q_proj(x).view(B, N, H, D // H).transpose(1, 2)
    k = op.kv_proj(x).view(B, N, 2, H, D // H)[:, :, 0].transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
    mask = attention_mask(ctx, n_key=N, n_query=N, device=x.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


def token_measures(probs: Tensor) -> tuple[Tensor, Tensor]:
    """(distance, entropy), each (B, N): mean over heads of sum_j a_ij |i-j| and of the
    attention entropy -sum_j a_ij log a_ij."""
    n = probs.shape[-1]
    pos = torch.arange(n, device=probs.device, dtype=probs.dtype)
    gap = (pos[:, None] - pos[None, :]).abs()
    distance = (probs * gap).sum(-1).mean(1)
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean(1)
    return distance, entropy


class Collector:
    """From each forward's layer reports: per layer, the spectral entropy of the mixing input
    and the measures of its attention operator, for the real tokens of each batch."""

    def __init__(self, model: Any):
        from operators.spectral import spectral_entropy

        self.entropy_fn = spectral_entropy
        self.layers = model.mixing_layers
        for i, layer in enumerate(self.layers):
            if "attn" not in layer.op_names or len(layer.op_names) != 1:
                raise ConfigError(
                    f"analyze needs a model whose every mixing layer is full attention (a "
                    f"`--router single --ops attn` run); layer {i} has {layer.op_names}")
        self.rows: list[list[dict[str, Tensor]]] = [[] for _ in self.layers]
        self.example = 0

    def update(self, out: Any) -> None:
        """Add one forward's layer reports (``ModelOutput.layers``)."""
        for index, (layer, report) in enumerate(zip(self.layers, out.layers, strict=True)):
            x, ctx = report.x, report.ctx
            probs = attention_probs(layer.ops[0], x.float(), ctx)
            distance, attn_entropy = token_measures(probs)
            real = ctx.padding_mask if ctx.padding_mask is not None else \
                torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
            needs = ctx.needs_attention
            example = torch.arange(x.shape[0], device=x.device)[:, None].expand_as(real)
            self.rows[index].append({
                "spectral": self.entropy_fn(x.float())[real].cpu(),
                "distance": distance[real].cpu(), "attn_entropy": attn_entropy[real].cpu(),
                "example": (example[real] + self.example).cpu(),
                "needs": needs[real].cpu() if needs is not None else None,
            })
        self.example += out.layers[0].x.shape[0] if out.layers else 0

    def close(self) -> list[dict[str, Tensor]]:
        out = []
        for rows in self.rows:
            layer = {k: torch.cat([r[k] for r in rows]) for k in rows[0] if rows[0][k] is not None}
            out.append(layer)
        return out


def spearman_ci(x: Tensor, y: Tensor, example: Tensor, seed: int = 0) -> dict[str, float]:
    """Spearman's rho of x and y, and its 95% bootstrap interval over examples (whole examples
    resampled: the tokens of one example are not independent; harness/core/stats.py)."""
    import numpy as np
    from scipy.stats import spearmanr

    from harness.core.stats import cluster_bootstrap

    x, y, ex = x.double().numpy(), y.double().numpy(), example.numpy()
    rho = float(spearmanr(x, y).statistic)
    members = [np.flatnonzero(ex == i) for i in np.unique(ex)]

    def resampled_rho(groups: list[int]) -> float:
        pick = np.concatenate([members[j] for j in groups])
        return float(spearmanr(x[pick], y[pick]).statistic)

    low, high = cluster_bootstrap(resampled_rho, len(members), resamples=BOOTSTRAP, seed=seed)
    return {"rho": rho, "ci_low": low, "ci_high": high}


def summarise(layers: list[dict[str, Tensor]]) -> list[dict[str, Any]]:
    out = []
    for i, layer in enumerate(layers):
        entry: dict[str, Any] = {
            "layer": i, "tokens": int(layer["spectral"].numel()),
            "spearman_entropy_distance": spearman_ci(layer["spectral"], layer["distance"],
                                                     layer["example"], seed=i),
            "spearman_entropy_attn_entropy": spearman_ci(layer["spectral"],
                                                         layer["attn_entropy"],
                                                         layer["example"], seed=100 + i),
            "mean_distance": float(layer["distance"].mean()),
        }
        if "needs" in layer and layer["needs"].any():
            needs = layer["needs"]
            entry["needs_attention"] = {
                group: {key: float(layer[key][sel].mean())
                        for key in ("spectral", "distance", "attn_entropy")}
                for group, sel in (("needed", needs), ("others", ~needs))}
        out.append(entry)
    return out


def config_of_record(path: Path) -> Any:
    """The RunConfig of the run record at `path`, or one ConfigError line naming the file and
    what is wrong with it (unreadable, not JSON, not a record, a config of another harness)."""
    from harness.core.config import RunConfig, describe
    from harness.core.records import describe_error

    def refuse(what: str) -> ConfigError:
        return ConfigError(f"analyze: cannot read the record {path} ({what}); pass a run record "
                           f"written by `harness run`, or its checkpoint.pt")

    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    except RecursionError:
        raise refuse("nested too deeply") from None
    except ValueError as exc:  # not JSON, not UTF-8
        raise refuse(describe_error(exc)) from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise refuse("it has no 'config' table: not a run record")
    try:
        return RunConfig.model_validate(record["config"])
    except ValueError as exc:  # pydantic's ValidationError
        raise refuse(f"its config is invalid: {describe(exc)}") from None


def load_model(path: Path) -> tuple[Any, Any, Any, Path | None]:
    """(cfg, task, model with trained weights, record path or None) from a record or a
    checkpoint."""
    from harness.core.config import RunConfig, seq_len_of
    from harness.core.paths import run_paths
    from harness.engine import checkpoint
    from harness.engine.data import build_task
    from harness.engine.model import Model

    if path.suffix == ".json":
        cfg = config_of_record(path)
        ckpt = run_paths(cfg)[1] / "checkpoint.pt"
        if not ckpt.is_file():
            raise ConfigError(f"analyze: no checkpoint for {path.name} at {ckpt}; pass the "
                              f"checkpoint.pt path instead (it lives in the run's --work-dir)")
        record_path: Path | None = path
    else:
        ckpt, record_path = path, None
    if not ckpt.is_file():
        raise ConfigError(f"analyze: {ckpt} does not exist; pass a run record (.json) or a "
                          f"checkpoint.pt")
    state = checkpoint.load(ckpt)
    with checkpoint.restoring(ckpt):  # a malformed config: one line naming the checkpoint
        cfg = RunConfig.model_validate_json(state["config"])
    task = build_task(cfg)
    model = Model(cfg, task, seq_len_of(cfg))
    with checkpoint.restoring(ckpt):  # a tensor of the wrong shape: the same
        model.load_state_dict(state["model"])
    if record_path is None:
        candidate = run_paths(cfg)[0]
        record_path = candidate if candidate.is_file() else None
    return cfg, task, model.eval(), record_path


def analyze(path: Path, max_batches: int, batch_size: int) -> tuple[dict[str, Any], Any]:
    from harness.core.paths import run_id

    cfg, task, model, record_path = load_model(path)
    collector = Collector(model)
    examples = task.dataset("test")
    n = min(len(examples), max_batches * batch_size)
    with torch.no_grad():
        for start in range(0, n, batch_size):
            batch = task.collate([examples[i] for i in range(start, min(start + batch_size, n))])
            collector.update(model(batch))
    layers = collector.close()
    summary = {"run_id": run_id(cfg), "task": cfg.data.task, "split": "test",
               "examples": n, "record": record_path.name if record_path else None,
               "bootstrap": BOOTSTRAP, "layers": summarise(layers)}
    return summary, layers


def rho_text(r: dict[str, float]) -> str:
    """'ρ = +0.015 [+0.007, +0.022]': Spearman's rho with its 95% bootstrap interval."""
    return f"ρ = {r['rho']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"


def hexbin(layers: list[dict[str, Tensor]], summary: list[dict[str, Any]], title: str,
           path: Path) -> None:
    """Draw ``hexbin_figure`` to a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig = hexbin_figure(layers, summary, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def hexbin_figure(layers: list[dict[str, Tensor]], summary: list[dict[str, Any]], title: str):
    """Attention distance against spectral entropy, a panel per layer, each titled with the
    layer's Spearman rho and its interval (``summarise``): the figure carries its answer."""
    import textwrap

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 4.2),
                             layout="constrained", squeeze=False)
    for i, (ax, layer) in enumerate(zip(axes[0], layers)):
        hb = ax.hexbin(layer["spectral"].numpy(), layer["distance"].numpy(), gridsize=30,
                       bins="log", mincnt=1)
        ax.set_xlabel("spectral entropy of the layer input")
        ax.set_ylabel("attention distance Σ_j a_ij |i − j|")
        ax.set_title(f"layer {i}: {rho_text(summary[i]['spearman_entropy_distance'])}\n"
                     f"(95% bootstrap interval over examples)", fontsize=9)
        fig.colorbar(hb, ax=ax, label="tokens (log)")
    width = 4.5 * len(layers)
    fig.suptitle("\n".join(textwrap.wrap(title, max(30, int(width * 11)))), fontsize=10)
    return fig


def run(args: argparse.Namespace) -> int:
    from harness.core.paths import record_filename
    from registry.files import atomic_write_text

    torch.set_num_threads(args.threads)
    path = Path(args.target)
    summary, layers = analyze(path, args.max_batches, args.batch_size)
    base = Path(args.out) if args.out else (path.parent if path.suffix == ".json"
                                            else Path("results/runs")) / "analysis"
    out_json = base / record_filename(summary["run_id"])  # a run id is not always a safe name
    atomic_write_text(out_json, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    hexbin(layers, summary["layers"], f"{summary['task']}: {summary['run_id']}",
           out_json.with_suffix(".png"))
    for layer in summary["layers"]:
        d, e = layer["spearman_entropy_distance"], layer["spearman_entropy_attn_entropy"]
        print(f"layer {layer['layer']}: spearman(spectral entropy, attention distance) "
              f"{rho_text(d)}; "
              f"(spectral entropy, attention entropy) = {e['rho']:+.3f} "
              f"[{e['ci_low']:+.3f}, {e['ci_high']:+.3f}]  ({layer['tokens']} tokens)")
        if "needs_attention" in layer:
            na = layer["needs_attention"]
            print(f"  tokens needing attention: spectral entropy {na['needed']['spectral']:.3f} "
                  f"vs {na['others']['spectral']:.3f}, distance {na['needed']['distance']:.2f} "
                  f"vs {na['others']['distance']:.2f}")
    print(f"wrote {out_json} and {out_json.with_suffix('.png')}")
    return 0
