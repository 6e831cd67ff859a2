"""What ``run`` prints around training: the resolved config as a short block, and the result
summary with every number labelled by its split, its size and its checkpoint."""

from __future__ import annotations

from typing import Any


def config_block(cfg: Any) -> str:
    """The resolved config, one line per section, in the words of the flags."""
    m, r, d, o, b = cfg.model, cfg.routing, cfg.data, cfg.optim, cfg.budget
    options = "".join(f", {k}={v}" for k, v in sorted(d.task_options.items()))
    opt = lambda x: "none" if x is None else x  # noqa: E731
    lines = [
        f"preset   {cfg.preset or 'none'}; seed {cfg.seed}; device {cfg.device}; "
        f"threads {opt(cfg.threads)}",
        f"task     {d.task}, seq_len {d.seq_len or 'task default'}{options}",
        f"model    {m.layers} layer{'' if m.layers == 1 else 's'}, d_model {m.d_model}, "
        f"{m.heads} heads, mlp_ratio {m.mlp_ratio}, dropout {m.dropout}",
        f"routing  {r.router} over {','.join(r.ops)}, attn_fraction {r.attn_fraction}, "
        f"{r.execution} execution, aux_weight {r.aux_weight}"
        + (f", router options {r.router_options}" if r.router_options else "")
        + (f", operator options {r.op_options}" if r.op_options else ""),
        f"optim    lr {o.lr}, batch {o.batch_size} (x{o.grad_accum} accumulation), warmup "
        f"{o.warmup_steps}, weight_decay {o.weight_decay}, grad_clip {o.grad_clip}",
        f"budget   {b.max_steps} steps, max_time {opt(b.max_time)}, max_tokens "
        f"{opt(b.max_tokens)}, eval every {b.eval_every} on {opt(b.eval_batches)} valid "
        f"batches, patience {opt(b.patience)}",
        f"config   {cfg.digest()} (hash of everything above but seed, device and threads)",
    ]
    return "resolved config:\n" + "\n".join("  " + line for line in lines)


def _size(values: dict[str, float]) -> str:
    if "examples" in values:
        return f"{int(values['examples']):,} examples"
    if "tokens" in values:
        return f"{int(values['tokens']):,} tokens"
    return "size unknown"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metric_rows(record: Any) -> list[list[str]]:
    """[what, metric, value] for the final and best-validation checkpoints, each split
    labelled with its size (the full split, unlike the subset evaluated during training)."""
    rows = []
    best = getattr(record, "best_checkpoint", None) or {}
    steps = record.training.get("steps")
    sources = [(f"final (step {steps})", record.metrics)]
    if best.get("metrics") and not best.get("same_as_final"):
        sources.append((f"best valid (step {best.get('step')})", best["metrics"]))
    for label, metrics in sources:
        for split, values in metrics.items():
            where = f"{split}, full ({_size(values)}), {label}"
            rows += [[where, name, _fmt(v)] for name, v in values.items()
                     if name not in ("examples", "tokens")]
    return rows


def subset_note(record: Any) -> str | None:
    """What the valid numbers printed during training were computed on."""
    history = record.training.get("history") or []
    if not history:
        return None
    size = _size(history[-1].get("valid", {}))
    return (f"valid numbers printed during training were on a subset ({size}, "
            f"--eval-batches); the table above is on the full splits")


def best_note(record: Any) -> str | None:
    """When the best-validation checkpoint is the final one, or has no numbers, and why."""
    best = getattr(record, "best_checkpoint", None) or {}
    if best.get("same_as_final"):
        return (f"the best-validation checkpoint is the final one (step {best.get('step')}): "
                f"same numbers")
    if best.get("missing"):
        return f"best-validation checkpoint (step {best.get('step')}) not evaluated: " \
               f"{best['missing']}"
    return None


def fraction_explanation(record: Any) -> str | None:
    """Requested vs realised attention share, and why the FLOP fraction is higher."""
    cost = (record.cost or {}).get("test") or {}
    layers = cost.get("per_layer") or []
    top = record.operators[-1] if record.operators else None
    if not layers or top is None or len(record.operators) < 2:
        return None
    shares = [layer[top]["token_fraction"] for layer in layers if top in layer]
    if not shares:
        return None
    requested = record.config.get("routing", {}).get("attn_fraction")
    share = sum(shares) / len(shares)
    return (
        f"attention: requested --attn-fraction {requested}; the router sent {share:.1%} of "
        f"real test tokens to '{top}' (mean over layers). Its FLOP fraction "
        f"{cost.get('attention_flop_fraction', float('nan')):.3f} is higher than that share "
        f"because only queries are routed: keys and values are projected and attended for "
        f"every token, and routed queries are padded to the longest count in the batch "
        f"(padded slots are charged). mixer_flop_fraction "
        f"{cost.get('mixer_flop_fraction', float('nan')):.3f} = all mixers' FLOPs / full "
        f"attention's on every token. See README, 'What the numbers mean'.")


def cost_rows(record: Any) -> list[list[str]]:
    cost = (record.cost or {}).get("test") or {}
    t = record.training
    return [
        ["test, cost", "attention_flop_fraction", f"{cost['attention_flop_fraction']:.3f}"],
        ["test, cost", "mixer_flop_fraction", f"{cost['mixer_flop_fraction']:.3f}"],
        ["training", "tokens_per_second", f"{t['tokens_per_second']:.0f}"],
        ["training", "wall_seconds", f"{t.get('wall_seconds') or 0.0:.1f}"],
    ]


def written_lines(record_path: Any, work_dir: Any) -> list[str]:
    """Where the run left its files (the checkpoint files exist once training has run)."""
    from pathlib import Path

    work = Path(work_dir)
    lines = [f"record:       {record_path}"]
    for label, name in (("checkpoint:", "checkpoint.pt"), ("best valid:", "best.pt"),
                        ("metrics log:", "metrics.jsonl")):
        if (work / name).exists():
            lines.append(f"{label:<13} {work / name}")
    return lines
