"""The model: pre-norm transformer blocks whose token-mixing sub-layer is router + operators.

    x = embed(tokens) + pos
    for each block:  x = x + MixingLayer(LN(x));  x = x + MLP(LN(x))
    logits = task.head(LN(x))

A MixingLayer holds K operators ordered by declared cost (cheapest first) and a router. With a
hard router and ``execution="routed"``, an operator that supports query subsets computes only
the tokens routed to it (gathered per example, keys/values = the whole sequence, scattered
back); this is where compute is really saved. ``execution="dense"`` computes every operator on
every token and selects: the reference that routed execution must equal.

Every forward leaves a ``LayerCost`` on each mixing layer (``layer.last_cost``) with the work the
operators were asked to do, so savings are counted from what ran, not from what was hoped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from harness.engine.config import RunConfig
from operators import OPERATORS, MixContext, TokenMixer
from routers import ROUTERS, Router, Routing
from tasks import Batch, Task


@dataclass
class LayerCost:
    """Work done by one mixing layer in one forward, summed over the batch.

    query_rows[k]:  output rows operator k computed (padded query slots included: they ran).
    routed[k]:      real tokens the router sent to operator k.
    flops[k]:       analytic forward FLOPs operator k executed.
    full_flops[k]:  FLOPs operator k would cost on every token (the dense reference).
    """

    names: list[str]
    query_rows: list[int]
    routed: list[float]
    flops: list[float]
    full_flops: list[float]
    stats: dict[str, Tensor] = field(default_factory=dict)


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
        self.last_cost: LayerCost | None = None
        self.last_routing: Routing | None = None

    def forward(self, x: Tensor, ctx: MixContext) -> tuple[Tensor, Tensor]:
        routing = self.router(x, ctx)
        self.last_routing = routing
        B, N, _ = x.shape
        weights = routing.weights.to(x.dtype)
        skip = routing.assignment is not None and self.execution == "routed"
        rows, routed, flops, full = [], [], [], []
        out = torch.zeros_like(x)
        for k, op in enumerate(self.ops):
            full.append(float(B * op.flops(N, N)))
            if routing.assignment is not None:
                chosen = routing.assignment == k
                if ctx.padding_mask is not None:
                    chosen = chosen & ctx.padding_mask
                routed.append(float(chosen.sum()))
            else:
                chosen = None
                routed.append(float(B * N if ctx.padding_mask is None else ctx.padding_mask.sum()))
            if skip and op.supports_query_subset and len(self.ops) > 1:
                y, n_rows = self._run_on_subset(op, x, ctx, chosen, weights[..., k])
                out = out + y
                rows.append(n_rows)
                flops.append(float(B * op.flops(n_rows // max(B, 1), N)) if n_rows else 0.0)
            else:
                out = out + weights[..., k : k + 1] * op(x, ctx)
                rows.append(B * N)
                flops.append(full[-1])
        self.last_cost = LayerCost(self.op_names, rows, routed, flops, full, routing.stats)
        return out, routing.aux_loss

    @staticmethod
    def _run_on_subset(
        op: TokenMixer, x: Tensor, ctx: MixContext, chosen: Tensor, weight: Tensor
    ) -> tuple[Tensor, int]:
        """Run `op` only on the positions in `chosen` (B, N) and scatter back to (B, N, D).

        Each example's chosen positions are packed to the front (original order kept) and
        padded to the batch maximum Q; the padded slots are computed and discarded."""
        counts = chosen.sum(dim=1)
        q = int(counts.max()) if chosen.numel() else 0
        if q == 0:
            return torch.zeros_like(x), 0
        if q == x.shape[1]:  # some example routed every token here: the full path is cheaper
            return weight.unsqueeze(-1) * op(x, ctx), x.shape[0] * q
        # stable sort puts chosen positions first, in their original order
        order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)
        positions = order[:, :q]
        slot_is_real = torch.arange(q, device=x.device)[None, :] < counts[:, None]
        y = op(x, ctx.with_queries(positions, slot_is_real))  # (B, Q, D)
        w = torch.gather(weight, 1, positions) * slot_is_real.to(weight.dtype)
        y = y * w.unsqueeze(-1)
        index = positions.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        return torch.zeros_like(x).scatter_add(1, index, y), x.shape[0] * q


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

    def forward(self, x: Tensor, ctx: MixContext) -> tuple[Tensor, Tensor]:
        mixed, aux = self.mixing(self.ln_mix(x), ctx)
        x = x + self.drop(mixed)
        x = x + self.mlp(self.ln_mlp(x))
        return x, aux


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

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Returns (logits, auxiliary router loss summed over layers)."""
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
        for block in self.blocks:
            x, layer_aux = block(x, ctx)
            aux = aux + layer_aux
        return self.head(self.ln_f(x), batch), aux


def build_operators(
    names: list[str],
    options: dict[str, dict],
    d_model: int,
    heads: int,
    max_len: int,
    causal: bool,
) -> list[tuple[str, TokenMixer]]:
    """Instantiate the operators in the order given. Routers rely on this order: index 0 gets
    the lowest band (the cheapest operator, by convention), index -1 the top band
    (--attn-fraction, the attention). The order is never changed behind the user's back:
    declared costs flip with causality (causal attention is charged its triangle, rbf its
    rectangle), so a cost sort would silently hand the top band to another operator. The run
    prints and records which operator got which band (``band_map``)."""
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
