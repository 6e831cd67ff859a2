"""The training-step comparison: one optimizer step of the harness against a bare reference.

The bare reference is a pre-norm transformer written here with no harness code (embedding,
blocks of LN -> qkv -> SDPA -> proj and LN -> MLP, head); the harness's step is
``harness.engine.model.Model`` (router ``single``, operator ``attn``) under
``harness.runner.train.Trainer.train_step``. Both have the same shape and run on in-memory
classification and language-modelling tasks, interleaved step by step.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .settings import FULL, Settings
from .timing import paired_ratio, time_call, times_summary


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


def bench_tasks(vocab: int):
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


class HarnessStep:
    """The harness's own optimiser step, ``harness.engine.steps.TrainStep`` (forward, loss,
    finiteness checks, backward, clipping, AdamW, schedule, cost accounting) on a fixed batch:
    the same code the training loop runs. ``cost`` is its cost meter over every call."""

    def __init__(self, model, task, batch, cfg):
        from harness.engine.steps import TrainStep

        self.train_step = TrainStep(model, task, cfg, batch.tokens.device, batch.tokens.shape[1])
        self.batch = batch
        self.calls = 0

    def __call__(self) -> None:
        self.train_step(lambda micro: self.batch, self.calls)
        self.calls += 1

    @property
    def cost(self):
        return self.train_step.cost


def make_harness_step(model, task, batch, cfg) -> HarnessStep:
    return HarnessStep(model, task, batch, cfg)


def _bare_step(model: BareTransformer, batch, causal: bool, cfg, device: torch.device
               ) -> Callable[[], None]:
    """Forward, cross-entropy, backward, clipping, AdamW (the same hyper-parameters), under
    the harness's autocast policy: the same work, no harness code."""
    from harness.engine.device import autocast

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


# -- the comparison ----------------------------------------------------------------------------


def _run_config(s: Settings):
    from harness.core.config import ModelConfig, RoutingConfig, RunConfig

    t = s.train
    return RunConfig(
        device=str(s.device), seed=s.seed,
        model=ModelConfig(layers=t["layers"], d_model=s.d_model, heads=s.heads, mlp_ratio=4.0,
                          dropout=0.0),
        routing=RoutingConfig(router="single", ops=[FULL]),
    )


def _shape(s: Settings) -> dict[str, Any]:
    t = s.train
    return {"layers": t["layers"], "d_model": s.d_model, "heads": s.heads, "mlp_ratio": 4.0,
            "seq_len": t["seq_len"], "batch_size": t["batch_size"], "vocab": t["vocab"],
            "precision": "bf16 autocast" if s.device.type == "cuda" else "fp32"}


def _random_batch(task, s: Settings, gen: torch.Generator):
    from tasks import Batch

    n, bsz, vocab = s.train["seq_len"], s.train["batch_size"], s.train["vocab"]
    tokens = torch.randint(0, vocab, (bsz, n), generator=gen)
    if task.causal:
        targets = torch.randint(0, vocab, (bsz, n), generator=gen)
    else:
        targets = torch.randint(0, task.num_classes, (bsz,), generator=gen)
    return Batch(tokens, torch.ones(bsz, n, dtype=torch.bool), targets).to(s.device)


def _interleaved_times(steps: dict[str, Callable[[], None]], n_steps: int, kind: str,
                       s: Settings, bar) -> dict[str, list[float]]:
    """Step times of "bare" and "harness", alternating who goes first; the last `repeats`."""
    times: dict[str, list[float]] = {"bare": [], "harness": []}
    for i in range(n_steps):
        pair = [("bare", steps["bare"]), ("harness", steps["harness"])]
        if i % 2:
            pair.reverse()  # alternate who goes first: drift hits both alike
        for label, fn in pair:
            bar.set_postfix_str(f"{kind} {label}", refresh=False)
            elapsed = time_call(fn, s.device)
            if i >= n_steps - s.repeats:
                times[label].append(elapsed)
            bar.update(1)
    return times


def _compare_on(kind: str, task_cls, cfg, s: Settings, gen: torch.Generator, n_steps: int,
                bar) -> dict[str, Any]:
    from harness.engine.model import Model

    t = s.train
    n, vocab = t["seq_len"], t["vocab"]
    task = task_cls(n)
    batch = _random_batch(task, s, gen)
    torch.manual_seed(s.seed)
    harness = Model(cfg, task, n).to(s.device).train()
    harness_step = make_harness_step(harness, task, batch, cfg)
    torch.manual_seed(s.seed)
    n_out = vocab if task.causal else task.num_classes
    bare = BareTransformer(vocab, n, s.d_model, s.heads, t["layers"], 4.0, n_out,
                           task.causal).to(s.device).train()
    bare_step = _bare_step(bare, batch, task.causal, cfg, s.device)
    times = _interleaved_times({"bare": bare_step, "harness": harness_step}, n_steps, kind,
                               s, bar)
    return {
        "bare": times_summary(times["bare"]),
        "harness": times_summary(times["harness"]),
        **paired_ratio(times["harness"], times["bare"]),
        "ratio_of_min": min(times["harness"]) / min(times["bare"]),
        "parameters": {"bare": sum(p.numel() for p in bare.parameters()),
                       "harness": sum(p.numel() for p in harness.parameters())},
    }


def train_step_comparison(s: Settings) -> dict[str, Any]:
    """Median per-step time of the bare reference and of the harness, same shape, interleaved."""
    from tqdm.auto import tqdm

    assert s.train is not None
    cfg = _run_config(s)
    if s.device.type == "cuda":  # what Trainer.build does; global, so it holds for both
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # Both steps run under the harness's precision policy (engine.device.autocast), not --dtype.
    results: dict[str, Any] = {"shape": _shape(s), "tasks": {}}
    gen = torch.Generator().manual_seed(s.seed)
    n_steps = max(s.warmup, 2) + s.repeats  # AdamW allocates its state on the first step
    kinds = bench_tasks(s.train["vocab"])
    bar = tqdm(total=2 * n_steps * len(kinds), desc="train step", unit="step", file=sys.stderr,
               dynamic_ncols=True, disable=None)
    for kind, task_cls in kinds.items():
        results["tasks"][kind] = _compare_on(kind, task_cls, cfg, s, gen, n_steps, bar)
    bar.close()
    return results


def run_train_step(s: Settings) -> dict[str, Any] | None:
    return train_step_comparison(s) if s.train is not None else None
