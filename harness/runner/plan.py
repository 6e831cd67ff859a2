"""``run --dry-run``: what a configuration would cost, without data and without training.

The model is built on PyTorch's ``meta`` device (shapes only, no memory), so parameters are
exact for the operators and routers as registered. FLOPs are the operators' own analytic counts
(the same ``flops(n_query, n_key)`` the cost accounting charges), at the router's target shares.

Assumptions (printed with every plan, because the GPU-hours are only as good as they are):
- The vocabulary is the task option ``vocab_size``, else the task class's own, else the
  byte-level BPE default of 8192 (the trained tokenizer may end up slightly smaller).
- Every training window is full (seq_len tokens); an epoch boundary does not shorten one.
- Hard routers (entropy, random, learned) run the operators at their target shares
  (``--attn-fraction`` to the most expensive one, the rest split equally); soft routers and
  ``--execution dense`` run every operator on every token.
- Training costs 3x the forward FLOPs (forward + backward); evaluation is not counted.
- Throughput: MFU (model FLOPs utilisation) 40% of an H100 SXM's dense bf16 peak, 989 TFLOP/s
  per GPU. FFT-based mixers (dct) and routing gathers usually reach less than matmuls do.
- Memory per GPU: fp32 weights and gradients and two AdamW moments (16 bytes per parameter),
  plus activations of 34 bytes x d_model per token per layer (bf16, fused attention that does
  not store the score matrix: Korthikanti et al. 2022 without the 5as/d term), plus fp32
  logits and their gradient (8 bytes x vocabulary per token), for one micro-batch.

The same memory arithmetic, on the parameters every model of the shape has whatever its
operators (``parameters_at_least``), refuses a configuration that cannot fit before anything is
allocated or built (``refuse_oversized``): a run, against its device's memory; a dry run,
against the H100 it plans for. ``--seq-len 10000000`` or ``--layers 100000`` would otherwise
allocate (or build on the meta device) for minutes before failing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.core.config import RunConfig, seq_len_of
from harness.core.presets import PAPER_ASSUMPTIONS
from registry import ConfigError

H100_BF16_PEAK = 989e12  # FLOP/s, dense, SXM
H100_MEMORY = 80e9  # bytes, SXM
MFU = 0.40
BPE_DEFAULT_VOCAB = 8192


@dataclass
class Plan:
    parameters: int
    vocab_size: int
    vocab_source: str
    seq_len: int
    forward_flops_per_token: float
    mixer_flops_per_token: float
    attention_flop_fraction: float
    train_tokens: int
    train_flops: float
    gpu_hours: float
    memory_gb: float
    notes: list[str] = field(default_factory=list)

    def lines(self, cfg: RunConfig) -> list[str]:
        return [
            f"plan for {cfg.data.task} {cfg.routing.router} {'+'.join(cfg.routing.ops)} "
            f"(preset {cfg.preset}): {cfg.model.layers} layers, d_model {cfg.model.d_model}, "
            f"{cfg.model.heads} heads, seq_len {self.seq_len}",
            f"parameters             {self.parameters:,} (vocabulary {self.vocab_size:,}: "
            f"{self.vocab_source})",
            f"forward FLOPs / token  {self.forward_flops_per_token:.4g} (mixers "
            f"{self.mixer_flops_per_token:.4g}; attention FLOP fraction "
            f"{self.attention_flop_fraction:.3f})",
            f"training tokens        {self.train_tokens:,} ({cfg.budget.max_steps:,} steps x "
            f"batch {cfg.optim.batch_size} x {self.seq_len})",
            f"training FLOPs         {self.train_flops:.4g} (3 x forward)",
            f"memory per GPU         {self.memory_gb:.1f} GB (micro-batch "
            f"{cfg.optim.batch_size // cfg.optim.grad_accum})",
            f"expected GPU-hours     {self.gpu_hours:.2f} on H100 at {MFU:.0%} MFU of "
            f"{H100_BF16_PEAK / 1e12:.0f} TFLOP/s bf16",
            *self.notes,
            *(f"preset {cfg.preset}: {text}" for text in PAPER_ASSUMPTIONS.get(cfg.preset, [])),
            "assumptions: harness/runner/plan.py (full windows, target routing shares, "
            "training = 3 x forward, no evaluation)",
        ]


def vocab_of(cfg: RunConfig, task_cls: Any) -> tuple[int, str]:
    given = cfg.data.task_options.get("vocab_size")
    if isinstance(given, int):
        return given, "task option vocab_size"
    declared = getattr(task_cls, "vocab_size", None)
    if isinstance(declared, int):
        return declared, f"declared by {cfg.data.task}"
    if cfg.data.task_options.get("tokenizer") == "bytes":
        return 258, "bytes tokenizer"
    return BPE_DEFAULT_VOCAB, ASSUMED_VOCAB


ASSUMED_VOCAB = "assumed: the BPE default"


class _TaskShape:
    """What Model reads from a task, without its data: causality, vocabulary and head."""

    def __init__(self, task_cls: Any, vocab_size: int):
        self.causal = bool(task_cls.causal)
        self.vocab_size = vocab_size
        self.num_classes = getattr(task_cls, "num_classes", 2)

    def head(self, d_model: int) -> torch.nn.Module:
        from tasks.base import LMHead, MeanPoolClassifier

        if self.causal:
            return LMHead(d_model, self.vocab_size)
        return MeanPoolClassifier(d_model, self.num_classes)


def mixer_flops(model: Any, cfg: RunConfig, seq_len: int, hard: bool) -> tuple[float, float]:
    """(mixer FLOPs per sequence, attention FLOP fraction) at the router's target shares."""
    from harness.core.record_cost import flop_fraction
    from routers.base import band_fractions

    total, top_run, top_full = 0.0, [], []
    for layer in model.mixing_layers:
        ops = list(layer.ops)  # --ops order: the last takes the top band
        n_ops = len(ops)
        shares = band_fractions(n_ops, cfg.routing.attn_fraction) \
            if hard and n_ops > 1 and cfg.routing.execution == "routed" else [1.0] * n_ops
        for k, (op, share) in enumerate(zip(ops, shares, strict=True)):
            full = float(op.flops(seq_len, seq_len))
            run = full if not getattr(op, "supports_query_subset", False) \
                else float(op.flops(max(1, round(share * seq_len)), seq_len))
            total += run
            if k == n_ops - 1:
                top_run.append(run)
                top_full.append(full)
    return total, flop_fraction(top_run, top_full)


def parameters_at_least(cfg: RunConfig, vocab: int, seq_len: int, causal: bool) -> int:
    """The parameters every model of this shape has, whatever its operators and router:
    token and position embeddings, each block's MLP and layer norms, the final norm and, on a
    causal task, the LM head (see harness/engine/model.py). Arithmetic only: it must answer
    before a model is built, even on the meta device."""
    d, layers = cfg.model.d_model, cfg.model.layers
    hidden = int(d * cfg.model.mlp_ratio)
    block = (d * hidden + hidden) + (hidden * d + d) + 2 * (2 * d)  # fc, proj, two norms
    return vocab * d + seq_len * d + layers * block + 2 * d + (vocab * d if causal else 0)


def memory_bytes(cfg: RunConfig, parameters: int, vocab: int, causal: bool, micro: int,
                 seq_len: int) -> int:
    """Training memory per process (the module docstring's arithmetic): 16 bytes per parameter
    and the activations and logits of one micro-batch."""
    d, layers = cfg.model.d_model, cfg.model.layers
    activations = micro * seq_len * (34 * d * layers + 8 * (vocab if causal else 0))
    return 16 * parameters + activations


def refuse_oversized(cfg: RunConfig, micro: int, available: float, where: str) -> None:
    """One ConfigError line when even the parameters every model of the shape has, with one
    micro-batch's activations, need more memory than `available` bytes (`where` names it)."""
    from tasks import TASKS

    task_cls = TASKS.get(cfg.data.task)
    vocab, source = vocab_of(cfg, task_cls)
    if source == ASSUMED_VOCAB:  # the task's own may be smaller: no refusal on a guess
        vocab = 0
    seq_len = seq_len_of(cfg)
    causal = bool(task_cls.causal)
    params = parameters_at_least(cfg, vocab, seq_len, causal)
    need = memory_bytes(cfg, params, vocab, causal, micro, seq_len)
    if need <= available:
        return
    m = cfg.model
    raise ConfigError(
        f"this configuration needs at least {need / 1e9:,.1f} GB of memory ({params:,} "
        f"parameters x 16 bytes for weights, gradients and AdamW moments: "
        f"{16 * params / 1e9:,.1f} GB; activations of a micro-batch of {micro} x seq_len "
        f"{seq_len} over {m.layers} layers of d_model {m.d_model}: "
        f"{(need - 16 * params) / 1e9:,.1f} GB), more than the {available / 1e9:,.1f} GB of "
        f"{where}; lower --seq-len, --batch-size (or raise --grad-accum), --layers, --d-model "
        f"or --mlp-ratio")


def device_memory(device: torch.device) -> tuple[float, str]:
    """(bytes, a name for messages) of the memory a run on `device` trains in."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return float(props.total_memory), f"the GPU {device} ({props.name})"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no refusal on a guess
        return math.inf, "this machine"
    return float(total), "this machine's RAM"


def make_plan(cfg: RunConfig) -> Plan:
    from harness.engine.model import Model, count_parameters
    from routers import ROUTERS
    from tasks import TASKS

    task_cls = TASKS.get(cfg.data.task)
    vocab, vocab_source = vocab_of(cfg, task_cls)
    seq_len = seq_len_of(cfg)
    with torch.device("meta"):
        model = Model(cfg, _TaskShape(task_cls, vocab), seq_len)
    params = count_parameters(model)
    hard = bool(ROUTERS.entry(cfg.routing.router).metadata.get("hard", True))
    mixers, attn_fraction = mixer_flops(model, cfg, seq_len, hard)
    other = sum(2 * (b.mlp.fc.weight.numel() + b.mlp.proj.weight.numel())
                for b in model.blocks) + 2 * sum(
        p.numel() for n, p in model.head.named_parameters() if n.endswith("weight"))
    per_token = mixers / seq_len + other
    tokens = cfg.budget.max_steps * cfg.optim.batch_size * seq_len
    train_flops = 3 * per_token * tokens
    micro = cfg.optim.batch_size // cfg.optim.grad_accum
    memory = memory_bytes(cfg, params, vocab, task_cls.causal, micro, seq_len)
    notes = []
    if cfg.budget.max_time is not None:
        notes.append(f"note: --max-time {cfg.budget.max_time:g} s may stop training earlier")
    return Plan(
        parameters=params, vocab_size=vocab, vocab_source=vocab_source, seq_len=seq_len,
        forward_flops_per_token=per_token, mixer_flops_per_token=mixers / seq_len,
        attention_flop_fraction=attn_fraction, train_tokens=tokens, train_flops=train_flops,
        gpu_hours=train_flops / (MFU * H100_BF16_PEAK) / 3600,
        memory_gb=memory / 1e9, notes=notes)


def print_plan(cfg: RunConfig) -> int:
    refuse_oversized(cfg, cfg.optim.batch_size // cfg.optim.grad_accum, H100_MEMORY,
                     "the H100 this plan is for")
    for line in make_plan(cfg).lines(cfg):
        print(line)
    return 0
