"""The model: pre-norm transformer blocks whose token-mixing sub-layer is router + operators.

    x = embed(tokens) + pos
    for each block:  x = x + MixingLayer(LN(x));  x = x + MLP(LN(x))
    logits = task.head(LN(x))

A MixingLayer holds K operators in the ``--ops`` order (band 0 first, the top band last) and a
router. With a hard router and ``execution="routed"``, an operator that supports query subsets
computes only the tokens routed to it (gathered per example, keys/values = the whole sequence,
scattered back); this is where compute is really saved. ``execution="dense"`` computes every
operator on every token and selects: the reference that routed execution must equal.

The forward returns what it measured, as nanoGPT's returns its loss: ``ModelOutput`` holds the
logits, the routers' auxiliary loss and one ``LayerReport`` per mixing layer (its routing, and a
``LayerCost`` with the work the operators were asked to do), so savings are counted from what
ran, not from what was hoped. The meters (harness/engine/meters) read these reports; nothing is
left on the modules for others to read later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from harness.core.config import RunConfig
from operators import OPERATORS, MixContext, TokenMixer
from operators.base import executed_flops
from routers import ROUTERS, Router, Routing
from tasks import Batch, Task


@dataclass
class LayerCost:
    """Work done by one mixing layer in one forward, summed over the batch.

    query_rows[k]:  output rows operator k computed (padded query slots included: they ran).
    routed[k]:      real tokens the router sent to operator k.
    flops[k]:       analytic forward FLOPs operator k executed.
    full_flops[k]:  FLOPs operator k would cost on every token (the dense reference).

    ``routed`` and ``flops`` are read lazily: the routed counts stay on the device and the
    FLOPs of routed causal queries depend on their positions, so reading either is a host
    transfer, made by the accounting after the step, not by the forward.
    """

    names: list[str]
    query_rows: list[int]
    routed_counts: Tensor  # (K,)
    executed: Callable[[], list[float]]
    full_flops: list[float]
    stats: dict[str, Tensor] = field(default_factory=dict)
    _flops: list[float] | None = field(default=None, repr=False)

    @property
    def routed(self) -> list[float]:
        return [float(v) for v in self.routed_counts.tolist()]

    @property
    def flops(self) -> list[float]:
        if self._flops is None:
            self._flops = self.executed()
        return self._flops


@dataclass
class LayerReport:
    """What one mixing layer did in one forward: the router's decision, the work each operator
    ran, and the input it decided on (the tokens the router scored) with its context."""

    routing: Routing
    cost: LayerCost
    x: Tensor  # (B, N, D): the mixing layer's input
    ctx: MixContext


class ModelOutput(NamedTuple):
    logits: Tensor
    aux_loss: Tensor  # the routers' auxiliary losses, summed over layers
    layers: list[LayerReport]


@dataclass
class OpWork:
    """What one operator of a mixing layer computes in one forward."""

    weight: Tensor  # (B, N): the router's weight of this operator per token
    subset: MixContext | None = None  # routed execution: the context with its query slots
    rows: int = 0  # output rows it computes, over the batch


class MixingLayer(nn.Module):
    def __init__(
        self,
        ops: list[tuple[str, TokenMixer]],
        router: Router,
        execution: str = "routed",
    ):
        super().__init__()
        self.op_names = [name for name, _ in ops]
        self.ops = nn.ModuleList([op for _, op in ops])
        self.router = router
        self.execution = execution

    def forward(self, x: Tensor, ctx: MixContext) -> tuple[Tensor, LayerReport]:
        routing = self.router(x, ctx)
        work = self.plan(routing, x, ctx)
        out = sum(self.run(op, w, x, ctx) for op, w in zip(self.ops, work, strict=True))
        return out, LayerReport(routing, self.account(routing, work, x, ctx), x, ctx)

    def plan(self, routing: Routing, x: Tensor, ctx: MixContext) -> list[OpWork]:
        """Per operator: its weights, and under routed execution of a hard routing the query
        slots it computes (its real tokens, packed per example; padded to the batch maximum).
        The slot counts of every operator come to the host in one transfer per layer."""
        B, N, _ = x.shape
        weights = routing.weights.to(x.dtype)
        work = [OpWork(weights[..., k], rows=B * N) for k in range(len(self.ops))]
        subset = [k for k, op in enumerate(self.ops) if op.supports_query_subset]
        if routing.assignment is None or self.execution != "routed" or len(self.ops) == 1 \
                or not subset:
            return work
        chosen = [_chosen(routing.assignment, k, ctx.padding_mask) for k in subset]
        counts = torch.stack([c.sum(1) for c in chosen])  # (S, B)
        widest = counts.max(1).values.tolist() if B else [0] * len(subset)  # the one sync
        for k, c, n_c, q in zip(subset, chosen, counts, widest, strict=True):
            work[k] = _work_on(work[k].weight, c, n_c, q, ctx)
        return work

    @staticmethod
    def run(op: TokenMixer, work: OpWork, x: Tensor, ctx: MixContext) -> Tensor:
        """The operator's weighted output (B, N, D): on every token, or only on its query
        slots, scattered back (padded slots carry weight 0)."""
        if work.rows == 0:
            return torch.zeros_like(x)
        if work.subset is None:
            return work.weight.unsqueeze(-1) * op(x, ctx)
        positions, slots = work.subset.query_positions, work.subset.query_mask
        y = op(x, work.subset)  # (B, Q, D)
        w = torch.gather(work.weight, 1, positions) * slots.to(work.weight.dtype)
        index = positions.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        return torch.zeros_like(x).scatter_add(1, index, y * w.unsqueeze(-1))

    def account(self, routing: Routing, work: list[OpWork], x: Tensor,
                ctx: MixContext) -> LayerCost:
        """Analytic FLOPs of what each operator ran (``executed_flops``) and the dense
        reference; real tokens routed per operator stay on the device until read."""
        B, N, _ = x.shape
        # every token through each operator, as this call's context would run it (a padded
        # causal call may run differently from an unpadded one)
        full = [float(executed_flops(op, ctx, N, B)[0]) for op in self.ops]

        def executed() -> list[float]:
            return [work_flops(op, w, ctx, N, B, dense) for op, w, dense in
                    zip(self.ops, work, full, strict=True)]

        return LayerCost(self.op_names, [w.rows for w in work],
                         _routed_counts(routing, len(self.ops), ctx, x), executed, full,
                         routing.stats)

    @staticmethod
    def _run_on_subset(
        op: TokenMixer, x: Tensor, ctx: MixContext, chosen: Tensor, weight: Tensor
    ) -> tuple[Tensor, int]:
        """Run `op` only on the positions in `chosen` (B, N) and scatter back to (B, N, D),
        as routed execution does (the bench times this). Returns (output, query rows)."""
        work = subset_work(x, ctx, chosen, weight)
        return MixingLayer.run(op, work, x, ctx), work.rows


def subset_work(x: Tensor, ctx: MixContext, chosen: Tensor, weight: Tensor) -> OpWork:
    """The work of an operator that computes only the positions in `chosen` (B, N)."""
    counts = chosen.sum(1)
    return _work_on(weight, chosen, counts, int(counts.max()) if chosen.numel() else 0, ctx)


def _work_on(weight: Tensor, chosen: Tensor, counts: Tensor, q: int, ctx: MixContext) -> OpWork:
    """`chosen` (B, N) with `counts` per example, at most q: query slots of width q."""
    B, N = chosen.shape
    if q == N:  # some example routed every token here: the full path is cheaper
        return OpWork(weight, rows=B * N)
    return OpWork(weight, _query_slots(chosen, counts, q, ctx) if q else None, rows=B * q)


def work_flops(op: TokenMixer, work: OpWork, ctx: MixContext, n: int, batch: int,
               dense: float) -> float:
    """Analytic FLOPs of one operator's work; `dense` is its cost on every token."""
    if work.rows == 0:
        return 0.0
    if work.subset is None:
        return dense
    return float(executed_flops(op, work.subset, n, batch)[0])


def _chosen(assignment: Tensor, k: int, real: Tensor | None) -> Tensor:
    chosen = assignment == k
    return chosen if real is None else chosen & real


def _query_slots(chosen: Tensor, counts: Tensor, q: int, ctx: MixContext) -> MixContext:
    """The context whose query slots are each example's chosen positions, in order, packed at
    the front and padded to q slots (query_mask marks the real ones)."""
    order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)  # chosen first, in order
    slots = torch.arange(q, device=chosen.device)[None, :] < counts[:, None]
    return ctx.with_queries(order[:, :q], slots)


def _routed_counts(routing: Routing, n_ops: int, ctx: MixContext, x: Tensor) -> Tensor:
    """(K,) real tokens per operator: the assignment's counts, or every real token for each
    operator of a soft router (they all ran everywhere)."""
    real = ctx.padding_mask
    if routing.assignment is None:
        total = real.sum() if real is not None else torch.tensor(x.shape[0] * x.shape[1])
        return total.float().expand(n_ops)
    a = routing.assignment if real is None else routing.assignment.masked_fill(~real, n_ops)
    ones = torch.ones(a.numel(), device=a.device)
    # scatter_add, not bincount: bincount reads the maximum on the host (a sync on CUDA)
    return torch.zeros(n_ops + 1, device=a.device).scatter_add_(0, a.flatten(), ones)[:n_ops]


class MLP(nn.Module):
    def __init__(self, d_model: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(d_model * ratio)
        self.fc = nn.Linear(d_model, hidden)
        self.proj = nn.Linear(hidden, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(nn.functional.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, mixing: MixingLayer, d_model: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.ln_mix = nn.LayerNorm(d_model)
        self.mixing = mixing
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model, mlp_ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, ctx: MixContext) -> tuple[Tensor, LayerReport]:
        mixed, report = self.mixing(self.ln_mix(x), ctx)
        x = x + self.drop(mixed)
        x = x + self.mlp(self.ln_mlp(x))
        return x, report


class Model(nn.Module):
    def __init__(self, cfg: RunConfig, task: Task, seq_len: int):
        super().__init__()
        m, r = cfg.model, cfg.routing
        if m.d_model % m.heads:
            from registry import ConfigError

            raise ConfigError(
                f"--d-model {m.d_model} is not divisible by --heads {m.heads}; "
                f"choose sizes with d_model % heads == 0"
            )
        self.causal = task.causal
        self.seq_len = seq_len
        self.embed = nn.Embedding(task.vocab_size, m.d_model)
        self.pos = nn.Embedding(seq_len, m.d_model)
        self.drop = nn.Dropout(m.dropout)
        router_cls = ROUTERS.get(r.router)
        blocks = []
        for _ in range(m.layers):
            ops = build_operators(r.ops, r.op_options, m.d_model, m.heads, seq_len, task.causal)
            router = router_cls(
                m.d_model, len(ops), causal=task.causal, attn_fraction=r.attn_fraction,
                **r.router_options,
            )
            blocks.append(Block(MixingLayer(ops, router, r.execution), m.d_model, m.mlp_ratio,
                                m.dropout))
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(m.d_model)
        self.head = task.head(m.d_model)
        # Only the harness's own modules: operators and routers initialise themselves (a router's
        # gate bias, for example, starts at the target attention share).
        for module in (self.embed, self.pos, self.head, *(b.mlp for b in self.blocks)):
            module.apply(_init_weights)

    @property
    def op_names(self) -> list[str]:
        return self.blocks[0].mixing.op_names

    @property
    def mixing_layers(self) -> list[MixingLayer]:
        return [b.mixing for b in self.blocks]

    def forward(self, batch: Batch) -> ModelOutput:
        """Logits, the routers' auxiliary loss summed over layers, and each layer's report."""
        tokens = batch.tokens
        n = tokens.shape[1]
        if n > self.seq_len:
            from registry import ConfigError

            raise ConfigError(
                f"sequence of length {n} exceeds the model's --seq-len {self.seq_len}")
        positions = torch.arange(n, device=tokens.device)
        x = self.drop(self.embed(tokens) + self.pos(positions))
        has_padding = not bool(batch.padding_mask.all())
        ctx = MixContext(padding_mask=batch.padding_mask if has_padding else None,
                         causal=self.causal, needs_attention=batch.needs_attention)
        aux = x.new_zeros(())
        reports = []
        for block in self.blocks:
            x, report = block(x, ctx)
            aux = aux + report.routing.aux_loss
            reports.append(report)
        return ModelOutput(self.head(self.ln_f(x), batch), aux, reports)


def build_operators(
    names: list[str],
    options: dict[str, dict],
    d_model: int,
    heads: int,
    max_len: int,
    causal: bool,
) -> list[tuple[str, TokenMixer]]:
    """Instantiate the operators in the order given. Routers rely on this order: index 0 gets
    the lowest band, index -1 the top band (--attn-fraction; by convention the attention).
    The order is never changed behind the user's back: declared costs flip with causality
    (causal attention is charged its triangle, rbf its rectangle), so a cost sort would
    silently hand the top band to another operator. The run prints and records which operator
    got which band (``band_map``)."""
    built = []
    for name in names:
        entry = OPERATORS.entry(name)
        built.append((entry.name, entry.obj(d_model, heads, max_len, causal,
                                            **options.get(name, {}))))
    return built


def band_map(names: list[str], attn_fraction: float) -> list[tuple[str, float]]:
    """(operator, target share of tokens) in band order: lowest scores first, top band last."""
    from routers.base import band_fractions

    return list(zip(names, band_fractions(len(names), attn_fraction), strict=True))


def _init_weights(module: nn.Module) -> None:
    # GPT-2 style: small normal init keeps the residual stream well scaled at any depth
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=0.02)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
