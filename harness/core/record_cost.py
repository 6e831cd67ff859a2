"""The record's cost section, typed, and the one definition of each cost quantity.

``CostMeter.summary()`` (harness/engine/meters/cost.py) fills a ``SplitCost`` per split from the
work the mixing layers report; the board, the run summary, the claims and the bench read these
models and their methods, never the JSON by hand. All analytic forward FLOPs, multiply-add = 2.
The top band is the last operator of ``--ops`` (by convention the attention).

JSON shape (unchanged since schema 1): ``per_layer`` is a list of {operator: {...}, "gate_mean":
g}; ``LayerCost`` reads it into ``operators`` and ``gate_mean`` and writes it back the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from pydantic import Field, model_serializer, model_validator

from harness.core.metrics import BOARD_COLUMN, BOARD_NOTE, RUN_SUMMARY, Metric, derived
from harness.core.record_sections import Section
from harness.core.stats import mean


def flop_fraction(executed: Iterable[float], full: Iterable[float]) -> float:
    """sum(executed) / sum(full): the one definition of ``attention_flop_fraction`` (the top
    operator's executed FLOPs over its FLOPs on every token). 1.0 when nothing ran: nothing
    was skipped, so nothing is claimed."""
    total_full = sum(full)
    return sum(executed) / total_full if total_full else 1.0


class OperatorCost(Section):
    # share of real tokens this operator computed: sums to 1 over operators for hard routers;
    # 1 for each operator under a soft router (it runs them all)
    token_fraction: float = 0.0
    flops: float = 0.0
    flop_fraction_of_full: float = 0.0  # executed / on every token
    weight_fraction: float | None = None  # the router's own share (soft routers: mean weight)


class LayerCost(Section):
    """One mixing layer on one split. Validated from the record's shape only."""

    operators: dict[str, OperatorCost] = Field(default_factory=dict)
    gate_mean: float | None = None  # MetaRouter gate: mean over the split's batches

    @model_validator(mode="before")
    @classmethod
    def _from_record_shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {"operators": {k: v for k, v in data.items() if isinstance(v, dict)},
                **{k: v for k, v in data.items() if not isinstance(v, dict)}}

    @model_serializer(mode="wrap")
    def _serialize(self, handler: Any) -> Any:
        data = handler(self)
        given = self.model_fields_set | set(self.model_extra or {})
        flat = dict(data.get("operators", {}))
        flat.update({k: v for k, v in data.items() if k != "operators" and k in given})
        return flat

    def router_share(self, op: str) -> float | None:
        """The operator's share as its router decided: the weight share where recorded, else
        the token share; None when the layer does not name it, or for a soft router without
        weight shares (its token shares are 1 per operator by construction)."""
        entry = self.operators.get(op)
        if entry is None:
            return None
        if entry.weight_fraction is not None:
            return entry.weight_fraction
        return None if self.gate_mean is not None else entry.token_fraction


ATTENTION_FRACTION = Metric("attn FLOP frac", 3, False, shown=(BOARD_COLUMN, RUN_SUMMARY))


class SplitCost(Section):
    """The cost of one split (``CostMeter.summary()``)."""

    operators: list[str] = Field(default_factory=list)  # --ops order: the top band last
    # FLOPs the top operator executed / FLOPs it would execute on every token (flop_fraction);
    # 1.0 for dense execution, soft routers and single-operator runs: nothing was skipped
    attention_flop_fraction: Annotated[float | None, ATTENTION_FRACTION] = None
    # FLOPs of all mixing operators / FLOPs of full softmax attention on every token of the
    # same shape: below 1 only when the mix really did less work than attention would have
    mixer_flop_fraction: Annotated[float | None, Metric(
        "mixer FLOP frac", 3, False, shown=(RUN_SUMMARY,))] = None
    # all mixing operators' FLOPs per real token: the total cost of the mix (the Pareto axis)
    mixer_flops_per_token: Annotated[float | None, Metric(
        "mixing FLOPs/token", 0, False, style="grouped", shown=(BOARD_COLUMN,))] = None
    # the whole model's forward FLOPs per real token (mixers, MLPs, head); training ~3x that
    model_flops_per_token: Annotated[float | None, Metric(
        "model FLOPs/token", 3, False, style="significant",
        phrase="{} model FLOPs/token (forward)", shown=(BOARD_NOTE,))] = None
    per_layer: list[LayerCost] = Field(default_factory=list)

    @derived(Metric("top-band token share", 3))
    def top_token_share(self) -> float | None:
        """Share of real tokens the top-band (last) operator computed, mean over layers: the
        routed share of attention, and what the ``random`` control matches by default."""
        if not self.operators:
            return None
        top = self.operators[-1]
        shares = [layer.operators[top].token_fraction for layer in self.per_layer
                  if top in layer.operators]
        return mean(shares) if shares else None

    @derived(Metric("gate", 3))
    def gate(self) -> float | None:
        """The MetaRouter gate of the trained model on this split: mean over layers of each
        layer's mean gate (the weight of the top-band operator); None without a gate. The one
        definition of "the gate" the board and the claims read (its history over training is
        ``telemetry.gate_history``)."""
        gates = [layer.gate_mean for layer in self.per_layer if layer.gate_mean is not None]
        return mean(gates) if gates else None

    def router_shares(self, operators: Sequence[str]) -> list[list[float]] | None:
        """Per layer, each operator's share as its router decided (``LayerCost.router_share``);
        None if a layer has no such share for one of them."""
        rows = []
        for layer in self.per_layer:
            row = [layer.router_share(op) for op in operators]
            if any(share is None for share in row):
                return None
            rows.append([float(share) for share in row if share is not None])
        return rows or None

    def operator_share(self, op: str) -> float | None:
        """An operator's share as its router decided, mean over layers."""
        rows = self.router_shares([op])
        return mean([row[0] for row in rows]) if rows else None


class Band(Section):
    operator: str
    target_share: float  # the share of tokens --attn-fraction gives it


class Cost(Section):
    test: SplitCost | None = None  # the final weights on the full test split
    train: SplitCost | None = None  # every training step
    execution: str | None = None  # "routed" or "dense"
    bands: list[Band] | None = None  # which operator got which band, lowest scores first
    # the kernel each operator ran on, for operators with a kernel table (attn.backend)
    backends: dict[str, str] | None = None
