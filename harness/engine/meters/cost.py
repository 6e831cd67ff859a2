"""Honest cost accounting, accumulated from what the mixing layers report they executed.

``CostMeter.summary()`` is the record's ``SplitCost`` (harness/core/record_cost.py), where each
quantity is defined once (all analytic forward FLOPs, multiply-add = 2):

- ``attention_flop_fraction``: FLOPs executed by each layer's top-band (last) operator, by
  convention the attention, / FLOPs it would execute on every token (``flop_fraction``). 1.0 for
  dense execution, soft routers and single-operator runs: nothing was skipped, so nothing is
  claimed.
- ``mixer_flop_fraction``: FLOPs of all mixing operators executed / FLOPs of full softmax
  attention (the ``attn`` operator) on every token of the same shape. Below 1 only when the mix
  really did less work than attention would have.
- ``model_flops_per_token``: forward FLOPs per real token of the whole model (mixers + MLPs +
  head); training costs about three times that.
- the top band's token share and the gate are ``SplitCost`` methods, read from the summary.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch

from harness.core.record_cost import flop_fraction
from harness.engine.model import LayerCost, Model, ModelOutput
from operators import OPERATORS
from tasks import Batch


def attention_flop_fraction(costs: Iterable[LayerCost]) -> float:
    """FLOPs the top operator executed / FLOPs it would execute on every token, over the given
    layer costs (``flop_fraction``, the record's definition)."""
    pairs = [(cost.flops[-1], cost.full_flops[-1]) for cost in costs]
    return flop_fraction([e for e, _ in pairs], [f for _, f in pairs])


class CostMeter:
    def __init__(self, model: Model, d_model: int, heads: int, seq_len: int, causal: bool):
        self.model = model
        self.layers = len(model.mixing_layers)
        self.names = model.op_names
        attn = OPERATORS.get("attn")(d_model, heads, seq_len, causal)
        self._attn_flops = attn.flops  # reference: full softmax attention of the same shape
        self._other_per_position = self._other_flops_per_position()  # shapes are fixed
        self.reset()

    def reset(self) -> None:
        self.flops = [[0.0] * len(self.names) for _ in range(self.layers)]
        self.full = [[0.0] * len(self.names) for _ in range(self.layers)]
        self.routed = [[0.0] * len(self.names) for _ in range(self.layers)]
        self.attn_reference = 0.0
        self.tokens = 0.0
        self.other_flops = 0.0  # MLPs and head
        self.fraction_sums: list[torch.Tensor | None] = [None] * self.layers
        self.gate_sums: dict[int, float] = defaultdict(float)
        self.steps = 0

    _STATE = ("flops", "full", "routed", "attn_reference", "tokens", "other_flops", "steps")

    def state_dict(self) -> dict[str, Any]:
        """Accumulators as plain values and tensors (checkpoint-safe)."""
        state = {name: getattr(self, name) for name in self._STATE}
        state["fraction_sums"] = [t if t is not None else torch.empty(0)
                                  for t in self.fraction_sums]
        state["gate_sums"] = {str(k): v for k, v in self.gate_sums.items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._STATE:
            setattr(self, name, state[name])
        self.fraction_sums = [t if t.numel() else None for t in state["fraction_sums"]]
        self.gate_sums = defaultdict(float, {int(k): v for k, v in state["gate_sums"].items()})

    @torch.no_grad()
    def update(self, out: ModelOutput, batch: Batch) -> None:
        """Add the work of one forward (its output's layer reports) on `batch`."""
        batch_size, seq_len = batch.tokens.shape
        self.steps += 1
        self.tokens += int(batch.padding_mask.sum())
        self.attn_reference += self.layers * batch_size * self._attn_flops(seq_len, seq_len)
        for i, report in enumerate(out.layers):
            cost = report.cost
            routed = cost.routed  # the layer's routed counts, read from the device once
            for k in range(len(self.names)):
                self.flops[i][k] += cost.flops[k]
                self.full[i][k] += cost.full_flops[k]
                self.routed[i][k] += routed[k]
            fr = cost.stats.get("fractions")
            if fr is not None:
                fr = fr.detach().float().cpu()
                prev = self.fraction_sums[i]
                self.fraction_sums[i] = fr if prev is None else prev + fr
            if "gate" in cost.stats:
                self.gate_sums[i] += float(cost.stats["gate"].float().mean())
        self.other_flops += batch_size * seq_len * self._other_per_position

    def _other_flops_per_position(self) -> float:
        per_block = 0.0
        for block in self.model.blocks:
            per_block += 2 * (block.mlp.fc.weight.numel() + block.mlp.proj.weight.numel())
        head = sum(p.numel() for n, p in self.model.head.named_parameters() if n.endswith("weight"))
        return per_block + 2 * head

    def summary(self) -> dict[str, Any]:
        total_mixer = sum(map(sum, self.flops))
        per_layer = []
        for i in range(self.layers):
            entry = {
                name: {
                    # share of real tokens this operator computed: sums to 1 over operators
                    # for hard routers; 1 for each operator under a soft router
                    "token_fraction": self.routed[i][k] / max(self.tokens, 1.0),
                    "flops": self.flops[i][k],
                    "flop_fraction_of_full": self.flops[i][k] / self.full[i][k]
                    if self.full[i][k] else 0.0,
                }
                for k, name in enumerate(self.names)
            }
            if self.fraction_sums[i] is not None and self.steps:
                # the router's own share per operator: soft weights for soft routers
                for k, name in enumerate(self.names):
                    entry[name]["weight_fraction"] = float(self.fraction_sums[i][k]) / self.steps
            if i in self.gate_sums and self.steps:
                entry["gate_mean"] = self.gate_sums[i] / self.steps
            per_layer.append(entry)
        tokens = max(self.tokens, 1.0)
        return {
            "operators": self.names,
            "attention_flop_fraction": flop_fraction([layer[-1] for layer in self.flops],
                                                     [layer[-1] for layer in self.full]),
            "mixer_flop_fraction": total_mixer / self.attn_reference
            if self.attn_reference else 0.0,
            "mixer_flops_per_token": total_mixer / tokens,
            "model_flops_per_token": (total_mixer + self.other_flops) / tokens,
            "per_layer": per_layer,
        }
