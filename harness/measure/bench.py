"""``python -m harness bench``: microbenchmarks of operators and routed attention, and of a
training step of the harness against a bare reference transformer.

What is timed, on the current device (``--device``), for each ``--seq-lens`` N:

- every operator of ``--ops`` on x (B, N, D): ``op(x, ctx)``;
- routed attention: the code path routed training runs, ``MixingLayer._run_on_subset`` (gather
  the routed queries per example, the operator with ``ctx.query_positions``, weight, scatter
  back), on a fixed random subset of ``fraction`` of the tokens of each example, for each of
  ``--fractions``; fraction 1 routes every token (ratio ~1: what gather + scatter cost);

each in two modes: ``fwd`` (under ``torch.no_grad``) and ``fwd+bwd`` (backward into the
parameters and into x, from a fixed random output gradient).

Ratios are measured in the same run: after warm-up, every repeat times every case once (in a
shuffled order), and a case's ratio is the median over repeats of (its time / the time of full
attention at the same N *in the same repeat*), so machine noise hits numerator and denominator
alike. Times are wall-clock (``time.perf_counter``, with ``torch.cuda.synchronize`` around each
call on CUDA); the table shows the median (and the JSON also the minimum and every repeat).

The training-step comparison times one optimizer step (forward, loss, backward, gradient
clipping, AdamW) of a bare pre-norm transformer written here with no harness code (embedding,
blocks of LN -> qkv -> SDPA -> proj and LN -> MLP, head) against the harness's own step
(``harness.engine.model.Model`` with router ``single`` and operator ``attn``, the loop body of
``harness.engine.train.train``) of the same
shape, on a classification and a language-modelling task.

Output: a table (absolute ms and ratios), a "targets" section (PASS/FAIL, for humans; the exit
status stays 0 unless something crashed), and ``<name>.json`` + ``<name>.png`` under ``--out``,
written atomically.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from registry import ConfigError

FULL = "attn"  # the reference every ratio is taken against: full softmax attention
MODES = ("fwd", "fwd+bwd")

# Defaults; --quick swaps in tiny sizes for tests (explicit flags still win).
DEFAULTS: dict[str, Any] = {
    "seq_lens": "256,1024,4096",
    "fractions": "1,0.5,0.25,0.125",
    "d_model": 256,
    "heads": 4,
    "batch_size": 1,
    "repeats": 7,
    "warmup": 2,
    "train_layers": 2,
    "train_seq_len": 256,
    "train_batch_size": 8,
    "train_vocab": 512,
}
QUICK: dict[str, Any] = {
    "seq_lens": "32,64",
    "fractions": "1,0.25",
    "d_model": 32,
    "heads": 2,
    "batch_size": 1,
    "repeats": 2,
    "warmup": 1,
    "train_layers": 1,
    "train_seq_len": 32,
    "train_batch_size": 2,
    "train_vocab": 64,
}

# The targets (on the 2-core CPU). `--targets` adds the measurements they need.
TARGET_ROUTED = (2048, 0.25, 0.40)  # N, fraction, max ratio of routed attn to full attn
TARGET_DCT = (2048, 0.20)  # N, max ratio of dct to full attn
TARGET_DCT_SCALING = (1024, 8192, 12.0)  # time(N2) / time(N1) <= bound (N log N: 10.4)
TARGET_TRAIN = 1.10  # harness step / bare reference step


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to time")
    g.add_argument("--seq-lens", default=None,
                   help=f"comma-separated sequence lengths (default {DEFAULTS['seq_lens']})")
    g.add_argument("--fractions", default=None,
                   help="shares of tokens routed to attention, comma-separated "
                        f"(default {DEFAULTS['fractions']})")
    g.add_argument("--ops", default=None,
                   help="operators to time (default attn,dct,rbf, plus xformers on CUDA); "
                        "full attention is always timed: it is the reference")
    g.add_argument("--routed-op", default=FULL,
                   help="operator timed under routed execution (default attn)")
    g.add_argument("--causal", action="store_true",
                   help="build the operators in their causal form (dct: the causal long "
                        "convolution; attention: causal masking)")
    g.add_argument("--targets", action="store_true",
                   help="also measure what the issue's targets need (N=2048: attn, dct, "
                        "routed attn at 0.25; dct at N=1024 and 8192)")
    g = p.add_argument_group("shape")
    g.add_argument("--d-model", type=int, default=None, help="default 256")
    g.add_argument("--heads", type=int, default=None, help="default 4")
    g.add_argument("--batch-size", type=int, default=None, help="default 1")
    g = p.add_argument_group("timing")
    g.add_argument("--repeats", type=int, default=None, help="timed repeats per case (default 7)")
    g.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 2)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    g.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="fp32, or bf16 autocast (default: bf16 on CUDA, fp32 on CPU)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's choice). On a CPU shared "
                        "with other busy processes, fewer threads than cores avoids stalls")
    g.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("training step: harness vs bare reference")
    g.add_argument("--no-train-step", action="store_true",
                   help="skip the training-step comparison")
    g.add_argument("--train-layers", type=int, default=None, help="default 2")
    g.add_argument("--train-seq-len", type=int, default=None, help="default 256")
    g.add_argument("--train-batch-size", type=int, default=None, help="default 8")
    g.add_argument("--train-vocab", type=int, default=None, help="default 512")
    g = p.add_argument_group("output")
    g.add_argument("--out", default="results/bench",
                   help="directory for the JSON and the PNG (default results/bench)")
    g.add_argument("--name", default=None,
                   help="file stem (default bench-<device type>[-quick])")
    g.add_argument("--quick", action="store_true", help="tiny sizes, for tests")


# -- configuration -----------------------------------------------------------------------------


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated integers, got '{text}'") from None
    if not values or any(v <= 0 for v in values):
        raise ConfigError(f"{flag} expects positive integers, got '{text}'")
    return sorted(set(values))


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag} expects comma-separated numbers, got '{text}'") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise ConfigError(f"{flag} expects numbers in (0, 1], got '{text}'")
    return sorted(set(values), reverse=True)


@dataclass
class Settings:
    seq_lens: list[int]
    fractions: list[float]
    ops: list[str]
    routed_op: str
    causal: bool
    d_model: int
    heads: int
    batch_size: int
    repeats: int
    warmup: int
    device: torch.device
    dtype: str
    seed: int
    train: dict[str, int] | None
    targets: bool


def resolve_settings(args: argparse.Namespace) -> Settings:
    from harness.engine.train import resolve_device
    from operators import OPERATORS

    base = QUICK if args.quick else DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, name, None)
        return base[name] if value is None else value

    device = resolve_device(args.device)
    dtype = args.dtype
    if dtype == "auto":
        dtype = "bf16" if device.type == "cuda" else "fp32"
    if args.ops is None:
        ops = ["attn", "dct", "rbf"] + (["xformers"] if device.type == "cuda" else [])
    else:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    ops = [OPERATORS.entry(o).name for o in ops]  # unknown names: exit 2 with "did you mean"
    routed_op = OPERATORS.entry(args.routed_op).name
    if FULL not in ops:
        ops.insert(0, FULL)
    ops = list(dict.fromkeys(ops))
    for label in ("d_model", "heads", "batch_size", "repeats", "train_layers", "train_seq_len",
                  "train_batch_size", "train_vocab"):
        if pick(label) <= 0:
            raise ConfigError(f"--{label.replace('_', '-')} must be positive, got {pick(label)}")
    if pick("warmup") < 0:
        raise ConfigError(f"--warmup must be >= 0, got {pick('warmup')}")
    train = None
    if not args.no_train_step:
        train = {"layers": pick("train_layers"), "seq_len": pick("train_seq_len"),
                 "batch_size": pick("train_batch_size"), "vocab": pick("train_vocab")}
    return Settings(
        seq_lens=_int_list(pick("seq_lens"), "--seq-lens"),
        fractions=_float_list(pick("fractions"), "--fractions"),
        ops=ops, routed_op=routed_op, causal=args.causal,
        d_model=pick("d_model"), heads=pick("heads"), batch_size=pick("batch_size"),
        repeats=pick("repeats"), warmup=pick("warmup"), device=device, dtype=dtype,
        seed=args.seed, train=train, targets=args.targets,
    )


def _autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _error_note(exc: BaseException) -> str:
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return "out of memory"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:160]


# -- microbenchmark cases ----------------------------------------------------------------------


@dataclass
class Case:
    """One thing timed at one sequence length."""

    seq_len: int
    op: str
    fraction: float | None  # None: the operator on every token; else routed execution
    flop_ratio: float | None = None  # analytic forward FLOPs / full attention's
    skipped: str | None = None
    times: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MODES})
    run: Callable[[], Tensor] | None = None
    params: list[nn.Parameter] = field(default_factory=list)
    grad_out: Tensor | None = None

    @property
    def key(self) -> str:
        return self.op if self.fraction is None else f"{self.op}@{self.fraction:g}"

    @property
    def label(self) -> str:
        return self.op if self.fraction is None else f"{self.op} routed {self.fraction:g}"


def _build_op(name: str, s: Settings, n: int):
    from operators import OPERATORS

    op = OPERATORS.get(name)(s.d_model, s.heads, n, s.causal)
    return op.to(s.device)


def _routed_subset(s: Settings, n: int, fraction: float, gen: torch.Generator) -> Tensor:
    """(B, N) bool: a fixed random `fraction` of each example's positions (at least one)."""
    count = max(1, round(fraction * n))
    chosen = torch.zeros(s.batch_size, n, dtype=torch.bool)
    for b in range(s.batch_size):
        chosen[b, torch.randperm(n, generator=gen)[:count]] = True
    return chosen.to(s.device)


def build_cases(s: Settings) -> tuple[list[Case], dict[int, Tensor]]:
    """Every case to time, with its callable; plus the input x of each sequence length."""
    from harness.engine.model import MixingLayer
    from operators import OPERATORS, MixContext

    wanted: dict[int, set[str]] = {}
    for n in s.seq_lens:
        wanted[n] = set(s.ops) | {f"{s.routed_op}@{f:g}" for f in s.fractions}
    if s.targets:
        n, frac, _ = TARGET_ROUTED
        wanted.setdefault(n, set()).update({FULL, f"{FULL}@{frac:g}"})
        wanted.setdefault(TARGET_DCT[0], set()).update({FULL, "dct"})
        for n in TARGET_DCT_SCALING[:2]:
            wanted.setdefault(n, set()).add("dct")

    gen = torch.Generator().manual_seed(s.seed)
    cases: list[Case] = []
    inputs: dict[int, Tensor] = {}
    ctx = MixContext(padding_mask=None, causal=s.causal)
    for n in sorted(wanted):
        keys = wanted[n]
        x = torch.randn(s.batch_size, n, s.d_model, generator=gen).to(s.device)
        x.requires_grad_(True)
        inputs[n] = x
        full_flops = OPERATORS.get(FULL)(s.d_model, s.heads, n, s.causal).flops(n, n)
        # operators timed at this N: the --ops in order, then any a target needs
        names = [o for o in s.ops if o in keys]
        names += sorted(k for k in keys if "@" not in k and k not in names)
        built: dict[str, Any] = {}
        for name in names + ([s.routed_op] if any("@" in k for k in keys) else []):
            if name in built:
                continue
            torch.manual_seed(s.seed)
            try:
                built[name] = _build_op(name, s, n)
            except Exception as exc:  # an operator that cannot be built here is skipped
                built[name] = exc
        for name in names:
            case = Case(n, name, None)
            op = built[name]
            if isinstance(op, BaseException):
                case.skipped = f"not built: {_error_note(op)}"
            else:
                if full_flops:
                    case.flop_ratio = op.flops(n, n) / full_flops
                case.run = (lambda op=op, x=x: op(x, ctx))
                case.params = list(op.parameters())
            cases.append(case)
        for frac in s.fractions + [TARGET_ROUTED[1]]:
            key = f"{s.routed_op}@{frac:g}"
            if key not in keys or any(c.seq_len == n and c.key == key for c in cases):
                continue
            case = Case(n, s.routed_op, frac)
            op = built[s.routed_op]
            if isinstance(op, BaseException):
                case.skipped = f"not built: {_error_note(op)}"
            elif not op.supports_query_subset:
                case.skipped = f"'{s.routed_op}' does not support query subsets"
            else:
                chosen = _routed_subset(s, n, frac, gen)
                weight = torch.ones(s.batch_size, n, device=s.device)
                q = int(chosen.sum(1).max())
                if full_flops:
                    case.flop_ratio = op.flops(q, n) / full_flops
                case.run = (lambda op=op, x=x, c=chosen, w=weight:
                            MixingLayer._run_on_subset(op, x, ctx, c, w)[0])
                case.params = list(op.parameters())
            cases.append(case)
    return cases, inputs


def _call(case: Case, mode: str, x: Tensor, s: Settings) -> Callable[[], None]:
    """The timed closure of one case in one mode (gradients are cleared outside of it)."""
    assert case.run is not None
    if mode == "fwd":
        def forward() -> None:
            with torch.no_grad(), _autocast(s.device, s.dtype):
                case.run()
        return forward

    def forward_backward() -> None:
        with _autocast(s.device, s.dtype):
            y = case.run()
        if case.grad_out is None or case.grad_out.shape != y.shape:
            case.grad_out = torch.randn(y.shape, generator=torch.Generator().manual_seed(1)
                                        ).to(device=y.device, dtype=y.dtype)
        y.backward(case.grad_out)
    return forward_backward


def _clear_grads(case: Case, x: Tensor) -> None:
    x.grad = None
    for p in case.params:
        p.grad = None


def measure(cases: list[Case], inputs: dict[int, Tensor], s: Settings) -> None:
    """Warm up every case, then `repeats` rounds; each round times every live case once."""
    from tqdm.auto import tqdm

    live = [c for c in cases if c.skipped is None]
    total = len(live) * len(MODES) * (s.warmup + s.repeats)
    bar = tqdm(total=total, desc="bench", unit="call", file=sys.stderr, dynamic_ncols=True,
               disable=None)
    order_rng = random.Random(s.seed)
    for mode in MODES:
        calls = {}
        for case in live:
            x = inputs[case.seq_len]
            bar.set_postfix_str(f"warm-up {mode} N={case.seq_len} {case.label}", refresh=False)
            try:
                fn = _call(case, mode, x, s)
                for _ in range(max(s.warmup, 1)):  # one untimed call at least: it can fail
                    _clear_grads(case, x)
                    fn()
                calls[id(case)] = fn
            except Exception as exc:  # OOM at a large N, a kernel missing on this device...
                case.skipped = f"{mode}: {_error_note(exc)}"
                if s.device.type == "cuda":
                    torch.cuda.empty_cache()
            bar.update(s.warmup)
        active = [c for c in live if c.skipped is None]
        live = active
        for r in range(s.repeats):
            order = list(active)
            order_rng.shuffle(order)
            for case in order:
                bar.set_postfix_str(f"{mode} repeat {r + 1} N={case.seq_len} {case.label}",
                                    refresh=False)
                _clear_grads(case, inputs[case.seq_len])
                case.times[mode].append(_timed(calls[id(case)], s.device))
                bar.update(1)
    bar.close()
    for x in inputs.values():
        x.grad = None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def paired_ratio(num: list[float], den: list[float]) -> float | None:
    """Median over repeats of num[r] / den[r]: both measured in the same round."""
    pairs = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    return _median(pairs)


def summarise(cases: list[Case]) -> list[dict[str, Any]]:
    baselines = {c.seq_len: c for c in cases if c.op == FULL and c.fraction is None}
    rows = []
    for c in cases:
        base = baselines.get(c.seq_len)
        entry: dict[str, Any] = {
            "seq_len": c.seq_len, "op": c.op, "key": c.key,
            "kind": "operator" if c.fraction is None else "routed", "fraction": c.fraction,
            "flop_ratio": c.flop_ratio, "skipped": c.skipped,
        }
        for mode in MODES:
            t = c.times[mode]
            bt = base.times[mode] if base is not None else []
            entry[mode] = {
                "median_ms": _ms(_median(t)),
                "min_ms": _ms(min(t)) if t else None,
                "times_ms": [round(v * 1e3, 4) for v in t],
                "ratio": paired_ratio(t, bt) if t and bt else None,
                "ratio_of_min": min(t) / min(bt) if t and bt else None,
            }
        rows.append(entry)
    return rows


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 4)


# -- training step: bare reference vs harness --------------------------------------------------


class _BareBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp_ratio: float, causal: bool):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, int(d * mlp_ratio))
        self.out = nn.Linear(int(d * mlp_ratio), d)

    def forward(self, x: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, N, 3, self.heads, D // self.heads).permute(
            2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.proj(y.transpose(1, 2).reshape(B, N, D))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class BareTransformer(nn.Module):
    """The reference: a minimal pre-norm transformer, no harness code."""

    def __init__(self, vocab: int, seq_len: int, d: int, heads: int, layers: int,
                 mlp_ratio: float, n_out: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(seq_len, d)
        self.blocks = nn.ModuleList(_BareBlock(d, heads, mlp_ratio, causal)
                                    for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out, bias=not causal)

    def forward(self, tokens: Tensor) -> Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1], device=tokens.device))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return self.head(x if self.causal else x.mean(1))


def _bench_tasks(vocab: int):
    from tasks import ClassificationTask, LanguageModelingTask

    class BenchClassification(ClassificationTask):
        """In-memory classification task of a given shape (no data: batches are built here)."""

        registry_name = "bench-classification"
        vocab_size = vocab
        num_classes = 10

        def load_split(self, split):  # pragma: no cover - never loaded
            return []

    class BenchLanguageModeling(LanguageModelingTask):
        registry_name = "bench-lm"
        vocab_size = vocab

        def load_split(self, split):  # pragma: no cover - never loaded
            return []

    return {"classification": BenchClassification, "lm": BenchLanguageModeling}


class _FixedBatches:
    """Stands in for harness.engine.data.EpochBatches: the same batch at every step."""

    def __init__(self, batch):
        self._batch = batch

    def batch(self, task, step, rank=0, world=1, micro=0, n_micro=1):
        return self._batch


def _harness_step(model, task, batch, cfg) -> Callable[[], None]:
    """The harness's own optimizer step, ``harness.engine.train.Trainer.train_step`` (forward, loss,
    finiteness checks, backward, clipping, AdamW, schedule, cost accounting), on a Trainer
    assembled around the model, its in-memory task and a fixed batch."""
    from harness.engine.train import Trainer, lr_lambda, make_optimizer
    from harness.measure.cost import CostMeter

    trainer = Trainer(cfg, log=lambda msg: None)
    n = batch.tokens.shape[1]
    trainer.task, trainer.seq_len = task, n
    trainer.model = trainer.forward_model = model
    trainer.batches = _FixedBatches(batch)
    trainer.optimizer = make_optimizer(model, cfg)
    trainer.schedule = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lr_lambda(cfg.optim.warmup_steps, cfg.budget.max_steps))
    trainer.train_cost = CostMeter(model, d_model=cfg.model.d_model, heads=cfg.model.heads,
                                   seq_len=n, causal=task.causal)
    steps = iter(range(10**9))
    return lambda: trainer.train_step(next(steps))


def _bare_step(model: BareTransformer, batch, causal: bool, cfg, device: torch.device
               ) -> Callable[[], None]:
    """Forward, cross-entropy, backward, clipping, AdamW (the same hyper-parameters), under
    the harness's autocast policy: the same work, no harness code."""
    from harness.engine.train import autocast

    o = cfg.optim
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": o.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=o.lr, betas=(o.beta1, o.beta2))
    tokens, targets = batch.tokens, batch.targets

    def step() -> None:
        with autocast(device):
            logits = model(tokens)
            if causal:
                loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
            else:
                loss = F.cross_entropy(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()

    return step


def train_step_comparison(s: Settings) -> dict[str, Any]:
    """Median per-step time of the bare reference and of the harness, same shape, interleaved."""
    from tqdm.auto import tqdm

    from harness.engine.config import ModelConfig, RoutingConfig, RunConfig
    from harness.engine.model import Model
    from tasks import Batch

    assert s.train is not None
    t = s.train
    n, bsz, vocab = t["seq_len"], t["batch_size"], t["vocab"]
    cfg = RunConfig(
        device=str(s.device), seed=s.seed,
        model=ModelConfig(layers=t["layers"], d_model=s.d_model, heads=s.heads, mlp_ratio=4.0,
                          dropout=0.0),
        routing=RoutingConfig(router="single", ops=[FULL]),
    )
    if s.device.type == "cuda":  # what Trainer.build does; global, so it holds for both
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # Both steps run under the harness's precision policy (engine.train.autocast), not --dtype.
    shape = {"layers": t["layers"], "d_model": s.d_model, "heads": s.heads, "mlp_ratio": 4.0,
             "seq_len": n, "batch_size": bsz, "vocab": vocab,
             "precision": "bf16 autocast" if s.device.type == "cuda" else "fp32"}
    results: dict[str, Any] = {"shape": shape, "tasks": {}}
    gen = torch.Generator().manual_seed(s.seed)
    steps = max(s.warmup, 2) + s.repeats  # AdamW allocates its state on the first step
    kinds = _bench_tasks(vocab)
    bar = tqdm(total=2 * steps * len(kinds), desc="train step", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)
    for kind, task_cls in kinds.items():
        task = task_cls(n)
        tokens = torch.randint(0, vocab, (bsz, n), generator=gen)
        if task.causal:
            targets = torch.randint(0, vocab, (bsz, n), generator=gen)
        else:
            targets = torch.randint(0, task.num_classes, (bsz,), generator=gen)
        batch = Batch(tokens, torch.ones(bsz, n, dtype=torch.bool), targets).to(s.device)

        torch.manual_seed(s.seed)
        harness = Model(cfg, task, n).to(s.device).train()
        harness_step = _harness_step(harness, task, batch, cfg)
        torch.manual_seed(s.seed)
        n_out = vocab if task.causal else task.num_classes
        bare = BareTransformer(vocab, n, s.d_model, s.heads, t["layers"], 4.0, n_out,
                               task.causal).to(s.device).train()
        bare_step = _bare_step(bare, batch, task.causal, cfg, s.device)

        times: dict[str, list[float]] = {"bare": [], "harness": []}
        for i in range(steps):
            pair = [("bare", bare_step), ("harness", harness_step)]
            if i % 2:
                pair.reverse()  # alternate who goes first: drift hits both alike
            for label, fn in pair:
                bar.set_postfix_str(f"{kind} {label}", refresh=False)
                elapsed = _timed(fn, s.device)
                if i >= steps - s.repeats:
                    times[label].append(elapsed)
                bar.update(1)
        results["tasks"][kind] = {
            "bare": {"median_ms": _ms(_median(times["bare"])), "min_ms": _ms(min(times["bare"])),
                     "times_ms": [round(v * 1e3, 4) for v in times["bare"]]},
            "harness": {"median_ms": _ms(_median(times["harness"])),
                        "min_ms": _ms(min(times["harness"])),
                        "times_ms": [round(v * 1e3, 4) for v in times["harness"]]},
            "ratio": paired_ratio(times["harness"], times["bare"]),
            "ratio_of_min": min(times["harness"]) / min(times["bare"]),
            "parameters": {"bare": sum(p.numel() for p in bare.parameters()),
                           "harness": sum(p.numel() for p in harness.parameters())},
        }
        del harness, bare, harness_step, bare_step
    bar.close()
    return results


# -- targets -----------------------------------------------------------------------------------


def evaluate_targets(rows: list[dict[str, Any]], cases: list[Case], s: Settings,
                     train: dict[str, Any] | None) -> list[dict[str, Any]]:
    def row(n: int, key: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["seq_len"] == n and r["key"] == key), None)

    def ratio(n: int, key: str) -> float | None:
        r = row(n, key)
        return r["fwd+bwd"]["ratio"] if r else None

    out = []
    hint = "not measured: run with --targets"
    n, frac, bound = TARGET_ROUTED
    out.append(_target(f"routed attn at fraction {frac:g}, N={n}: fwd+bwd / full attn",
                       ratio(n, f"{FULL}@{frac:g}"), bound, hint))
    if out[-1]["value"] is not None and s.d_model != 256:
        out[-1]["note"] = f"measured at d_model {s.d_model}; the target is stated for 256"
    n, bound = TARGET_DCT
    out.append(_target(f"dct at N={n}: fwd+bwd / full attn", ratio(n, "dct"), bound, hint))
    n1, n2, bound = TARGET_DCT_SCALING
    c1 = next((c for c in cases if c.seq_len == n1 and c.key == "dct"), None)
    c2 = next((c for c in cases if c.seq_len == n2 and c.key == "dct"), None)
    value = None
    if c1 and c2 and c1.times["fwd+bwd"] and c2.times["fwd+bwd"]:
        value = paired_ratio(c2.times["fwd+bwd"], c1.times["fwd+bwd"])
    nlogn = n2 * math.log2(n2) / (n1 * math.log2(n1))
    out.append(_target(f"dct fwd+bwd time(N={n2}) / time(N={n1}) (N log N: {nlogn:.1f})",
                       value, bound, hint))
    worst = None
    if train is not None:
        ratios = [v["ratio"] for v in train["tasks"].values() if v["ratio"] is not None]
        worst = max(ratios) if ratios else None
    out.append(_target("harness full-attention training step / bare reference step "
                       "(worst task)", worst, TARGET_TRAIN, "not measured: --no-train-step"))
    return out


def _target(name: str, value: float | None, bound: float, missing: str) -> dict[str, Any]:
    return {"target": name, "bound": bound, "value": value,
            "passed": None if value is None else bool(value <= bound),
            "note": None if value is not None else missing}


# -- reporting ---------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(rows: list[dict[str, Any]], train: dict[str, Any] | None,
                 targets: list[dict[str, Any]], s: Settings, env: dict[str, Any]) -> None:
    from tabulate import tabulate

    print(f"device: {env['hardware']} ({s.device}), dtype {s.dtype}, "
          f"{'causal' if s.causal else 'non-causal'} operators, d_model {s.d_model}, "
          f"heads {s.heads}, batch {s.batch_size}; median of {s.repeats} repeats after "
          f"{s.warmup} warm-up; ratios = median over repeats of (case / full attn in the same "
          f"repeat)")
    table = []
    for r in rows:
        table.append([
            r["seq_len"], "attn (full)" if r["key"] == FULL else
            (r["op"] if r["kind"] == "operator" else f"{r['op']} routed {r['fraction']:g}"),
            _fmt(r["fwd"]["median_ms"], 2), _fmt(r["fwd"]["ratio"]),
            _fmt(r["fwd+bwd"]["median_ms"], 2), _fmt(r["fwd+bwd"]["ratio"]),
            _fmt(r["flop_ratio"]), r["skipped"] or "",
        ])
    print(tabulate(table, headers=["N", "case", "fwd ms", "fwd / attn", "fwd+bwd ms",
                                   "fwd+bwd / attn", "FLOPs / attn", "note"]))
    if train is not None:
        sh = train["shape"]
        print(f"\ntraining step (forward, loss, backward, clip, AdamW): {sh['layers']} layers, "
              f"d_model {sh['d_model']}, heads {sh['heads']}, seq_len {sh['seq_len']}, batch "
              f"{sh['batch_size']}, vocab {sh['vocab']}")
        print(tabulate(
            [[k, _fmt(v["bare"]["median_ms"], 2), _fmt(v["harness"]["median_ms"], 2),
              _fmt(v["ratio"])] for k, v in train["tasks"].items()],
            headers=["task", "bare ms", "harness ms", "harness / bare"]))
    print("\ntargets (2-core CPU):")
    for t in targets:
        verdict = "-" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL")
        extra = f"  ({t['note']})" if t["note"] else ""
        print(f"  {verdict:4}  {t['target']}: {_fmt(t['value'])} <= {t['bound']:g}{extra}")


def plot(rows: list[dict[str, Any]], s: Settings, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
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
        left.plot(ns, [p[1] for p in points], "o-", color=color, label=f"{label} fwd+bwd")
        left.plot(ns, [p[2] for p in points], "x--", color=color, alpha=0.5)
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    left.set_xlabel("sequence length N")
    left.set_ylabel("median time (ms); dashed: forward only")
    left.set_title("operators")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    by_n: dict[int, list[tuple[float, float | None, float | None]]] = {}
    for r in rows:
        if r["kind"] == "routed":
            by_n.setdefault(r["seq_len"], []).append(
                (r["fraction"], r["fwd+bwd"]["ratio"], r["flop_ratio"]))
    for i, (n, points) in enumerate(sorted(by_n.items())):
        points.sort()
        good = [p for p in points if p[1] is not None]
        if good:
            right.plot([p[0] for p in good], [p[1] for p in good], "o-", color=f"C{i % 10}",
                       label=f"N={n} measured (fwd+bwd)")
        flops = [p for p in points if p[2] is not None]
        if flops:
            right.plot([p[0] for p in flops], [p[2] for p in flops], ":", color=f"C{i % 10}",
                       alpha=0.7, label=f"N={n} analytic FLOPs")
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.5, label="proportional")
    right.set_xlabel("fraction of tokens routed to attention")
    right.set_ylabel("routed / full attention")
    right.set_title("routed attention")
    right.set_xlim(0, 1.05)
    right.set_ylim(bottom=0)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.86, wspace=0.22)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _load_warning(s: Settings) -> float | None:
    """Warn when other processes keep the CPU busy: multi-threaded kernels then stall on the
    thread that is not scheduled, and small operators suffer most. Returns the 1-min load."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    threads = torch.get_num_threads()
    if s.device.type == "cpu" and threads > 1 and load > cores - threads + 0.5:
        print(f"warning: load average {load:.1f} on {cores} cores: other processes are busy, "
              f"and {threads} intra-op threads will stall behind them (each parallel region "
              f"waits for its slowest thread): times and even ratios are unreliable, small "
              f"operators suffer most. Consider --threads 1.", file=sys.stderr)
    return load


# -- entry point -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from harness.results import records

    if args.threads is not None:
        if args.threads <= 0:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    s = resolve_settings(args)
    torch.manual_seed(s.seed)
    env = records.environment(s.device)
    env["threads"] = torch.get_num_threads()
    env["load_average"] = _load_warning(s)
    t0 = time.perf_counter()
    cases, inputs = build_cases(s)
    measure(cases, inputs, s)
    rows = summarise(cases)
    del inputs
    train = train_step_comparison(s) if s.train is not None else None
    targets = evaluate_targets(rows, cases, s, train)
    print_report(rows, train, targets, s, env)

    stem = args.name or f"bench-{s.device.type}{'-quick' if args.quick else ''}"
    out = Path(args.out)
    settings = {k: (str(v) if isinstance(v, torch.device) else v)
                for k, v in vars(s).items()}
    payload = {
        "kind": "bench",
        "created": records.now(),
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "settings": settings,
        "environment": env,
        "ratio_definition": "median over repeats of (case time / full attention time at the "
                            "same N in the same repeat); ratio_of_min = min / min",
        "results": rows,
        "train_step": train,
        "targets": targets,
        "wall_seconds": time.perf_counter() - t0,
        "plot": f"{stem}.png",
    }
    title = (f"{env['hardware']} | {s.dtype} | d_model {s.d_model}, heads {s.heads}, "
             f"batch {s.batch_size} | {'causal' if s.causal else 'non-causal'}")
    records.atomic_write_bytes(out / f"{stem}.png", plot(rows, s, title))
    records.atomic_write_text(out / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out / f'{stem}.json'} and {out / f'{stem}.png'}")
    return 0
