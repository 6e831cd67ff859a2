"""What ``run`` prints around training: the resolved config as a short block, and the result
summary with every number labelled by its split, its size and its checkpoint. The record is the
typed ``RunRecord`` (harness/core/records.py); the measured rows are the quantities its sections
declare for the run summary, in their own formats."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser imports this module: no pydantic at import time
    from harness.core.records import RunRecord


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
        f"batches, patience {opt(b.patience)}"
        + ("" if b.final_eval_batches is None else
           f"; final evaluation on the first {b.final_eval_batches} batches of each split"),
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


def final_eval_batches(record: RunRecord) -> int | None:
    """The cap on each split's batches in the final evaluation; None: the full splits."""
    return record.config.get("budget", {}).get("final_eval_batches")


def metric_rows(record: RunRecord) -> list[list[str]]:
    """[what, metric, value] for the final and best-validation checkpoints, each split
    labelled with its size (the full split, unlike the subset evaluated during training, or
    its first --final-eval-batches batches)."""
    cap = final_eval_batches(record)
    extent = "full" if cap is None else f"first {cap} batches"
    rows = []
    best = record.best_checkpoint
    sources = [(f"final (step {record.training.steps})", record.metrics)]
    if best is not None and best.metrics and not best.same_as_final:
        sources.append((f"best valid (step {best.step})", best.metrics))
    for label, metrics in sources:
        for split, values in metrics.items():
            where = f"{split}, {extent} ({_size(values)}), {label}"
            rows += [[where, name, _fmt(v)] for name, v in values.items()
                     if name not in ("examples", "tokens")]
    return rows


def subset_note(record: RunRecord) -> str | None:
    """What the valid numbers printed during training, and the table, were computed on."""
    history = record.training.history
    cap = final_eval_batches(record)
    if cap is not None:
        return (f"every number above is on the first {cap} batches of each split only "
                f"(--final-eval-batches {cap}; the smoke preset caps the evaluation so that "
                f"it takes seconds): not comparable with full-split numbers")
    if not history:
        return None
    return (f"valid numbers printed during training were on a subset "
            f"({_size(history[-1].valid)}, --eval-batches); the table above is on the full "
            f"splits")


def best_note(record: RunRecord) -> str | None:
    """When the best-validation checkpoint is the final one, or has no numbers, and why."""
    best = record.best_checkpoint
    if best is None:
        return None
    if best.same_as_final:
        return (f"the best-validation checkpoint is the final one (step {best.step}): "
                f"same numbers")
    if best.missing:
        return f"best-validation checkpoint (step {best.step}) not evaluated: {best.missing}"
    return None


def fraction_explanation(record: RunRecord) -> str | None:
    """Requested vs realised attention share, and why the FLOP fraction is higher."""
    cost = record.test_cost
    share = cost.top_token_share()
    if len(record.operators) < 2 or share is None:
        return None
    requested = record.config.get("routing", {}).get("attn_fraction")
    attention, mixers = (float("nan") if x is None else x
                         for x in (cost.attention_flop_fraction, cost.mixer_flop_fraction))
    return (
        f"attention: requested --attn-fraction {requested}; the router sent {share:.1%} of "
        f"real test tokens to '{record.operators[-1]}' (mean over layers). Its FLOP fraction "
        f"{attention:.3f} is higher than that share "
        f"because only queries are routed: keys and values are projected and attended for "
        f"every token, and routed queries are padded to the longest count in the batch "
        f"(padded slots are charged). mixer_flop_fraction "
        f"{mixers:.3f} = all mixers' FLOPs / full "
        f"attention's on every token. See README, 'What the numbers mean'.")


def baseline_line(record: RunRecord) -> str | None:
    """Test accuracy against the majority-class baseline: "beats" only when the 95% binomial
    interval of the accuracy (over the test examples) lies above the baseline, "is below"
    only when it lies under it; otherwise the difference is inside the noise of the test
    set's size. None for a task without accuracy and baseline."""
    test = record.metrics.get("test", {})
    acc, base, n = test.get("accuracy"), test.get("majority_accuracy"), test.get("examples")
    if acc is None or base is None:
        return None
    head = (f"test accuracy {acc:.4f} (final checkpoint) against the majority-class baseline "
            f"{base:.4f}")
    if not n or n < 1:
        return f"{head}: the number of test examples is not recorded, so no interval says " \
               f"whether it beats it"
    from harness.core.stats import binomial_interval

    low, high = binomial_interval(round(acc * n), int(n))
    interval = f"95% interval [{low:.4f}, {high:.4f}] over {int(n):,} test examples"
    if low > base:
        return f"{head}: beats it ({interval})"
    if high < base:
        return f"{head}: does NOT beat it, it is below ({interval})"
    return (f"{head}: inside the noise, no evidence that it beats it ({interval} contains "
            f"the baseline)")


def measured_rows(record: RunRecord) -> list[list[str]]:
    """The measured quantities the record's sections declare for the run summary."""
    from harness.core.metrics import RUN_SUMMARY
    from harness.core.records import measures

    where = {"test_cost": "test, cost", "training": "training"}
    return [[where[m.section], m.name, m.metric.format(value)]
            for m in measures(RUN_SUMMARY) if (value := m(record)) is not None]


def ground_truth_lines(record: RunRecord) -> list[str]:
    """Tasks with ground truth: per layer, how many of the tokens that needed attention got
    it; routers with a predictor: its agreement; the oracle's and informational flags."""
    tel = record.telemetry
    lines = []
    for i, layer in enumerate((tel.ground_truth or []) if tel else []):
        lines.append(
            f"ground truth, layer {i}: {layer.recall:.1%} of the tokens that needed attention "
            f"got it (recall); {layer.precision:.1%} of the tokens routed there needed it "
            f"(precision); F1 {layer.f1:.3f}; routed share {layer.routed_fraction:.3f}, "
            f"needed share {layer.needed_fraction:.3f}")
    for i, acc in enumerate((tel.predictor_accuracy or []) if tel else []):
        lines.append(f"predictor, layer {i}: agrees with the training-time top-k on {acc:.1%} "
                     f"of test tokens")
    lines += [f"flag: {flag}" for flag in record.flags if flag.startswith(("oracle", "note:"))]
    return lines


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
