"""The zoo section (``--zoo``): each cheap mixer, and its routed pair with attention, against full
attention over sequence lengths (issue 34).

At each N of ``--zoo-seq-lens``, on x (B, N, d_model) in the mode of ``--causal``, three kinds of
case are timed, forward and forward+backward, interleaved in shuffled rounds with the
microbenchmark's own machinery (``microbench.measure``: every round times every case once, and a
ratio is the median over rounds of case / full attention in the same round):

- ``attn``: full attention, the reference;
- each mixer of ``--zoo-ops`` on every token;
- each mixer's routed pair ``MIXER+attn``: a fixed random ``--zoo-fraction`` of each example's
  tokens through attention and the rest through the mixer, run as routed execution runs them
  (``MixingLayer.run`` on each operator's work: query subsets where the operator takes them, so
  attention computes only its routed queries; a mixer without subsets runs on every token).

Each case carries its analytic FLOP ratio to full attention (forward FLOPs as cost accounting
charges them, projections included), printed beside the measured one. A case's crossover is
the smallest measured N from which on its forward+backward ratio stays below 1
(``end_to_end.crossover``). Each mixer's declared recurrent state size (``state_size``, floats
per sequence) is recorded in its row at each N, for the state-size axis.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from .end_to_end import crossover
from .microbench import Case, measure, summarise
from .settings import FULL, Settings, ZooSettings


def pair_key(mixer: str) -> str:
    return f"{mixer}+{FULL}"


def _routed_to_attention(batch: int, n: int, fraction: float, gen: torch.Generator,
                         device: torch.device) -> Tensor:
    """(B, N) bool: a fixed random `fraction` of each example's positions (at least one, never
    all: both operators of the pair get work)."""
    count = min(n - 1, max(1, round(fraction * n))) if n > 1 else 1
    chosen = torch.zeros(batch, n, dtype=torch.bool)
    for b in range(batch):
        chosen[b, torch.randperm(n, generator=gen)[:count]] = True
    return chosen.to(device)


def _work(op: Any, x: Tensor, ctx: Any, chosen: Tensor):
    """The operator's work in a routed layer where it gets the `chosen` tokens (weight 1)."""
    from harness.engine.model import OpWork, subset_work

    weight = chosen.to(x.dtype)
    if op.supports_query_subset:
        return subset_work(x, ctx, chosen, weight)
    return OpWork(weight, rows=x.shape[0] * x.shape[1])  # every token, the rest weighted 0


def _pair_case(n: int, name: str, mixer: Any, attn: Any, x: Tensor, ctx: Any,
               to_attn: Tensor, full_flops: float, fraction: float) -> Case:
    from harness.engine.model import MixingLayer, work_flops
    from operators.base import executed_flops

    b = x.shape[0]
    works = [(mixer, _work(mixer, x, ctx, ~to_attn)), (attn, _work(attn, x, ctx, to_attn))]
    flops = sum(work_flops(op, w, ctx, n, b, float(executed_flops(op, ctx, n, b)[0]))
                for op, w in works)
    case = Case(n, pair_key(name), fraction, flop_ratio=flops / (b * full_flops))
    case.run = lambda: sum(MixingLayer.run(op, w, x, ctx) for op, w in works)
    case.params = list(mixer.parameters()) + list(attn.parameters())
    return case


def _op_case(n: int, name: str, op: Any, x: Tensor, ctx: Any, full_flops: float) -> Case:
    case = Case(n, name, None, flop_ratio=op.flops(n, n) / full_flops)
    case.run = lambda: op(x, ctx)
    case.params = list(op.parameters())
    return case


def build_zoo_cases(s: Settings, z: ZooSettings) -> tuple[list[Case], dict[int, Tensor],
                                                          dict[str, dict[int, int]]]:
    """The cases, the input of each N, and each mixer's state size (floats) per N."""
    from operators import OPERATORS, MixContext

    gen = torch.Generator().manual_seed(s.seed)
    ctx = MixContext(padding_mask=None, causal=s.causal)
    cases: list[Case] = []
    inputs: dict[int, Tensor] = {}
    states: dict[str, dict[int, int]] = {name: {} for name in z.ops}
    for n in z.seq_lens:
        x = torch.randn(s.batch_size, n, s.d_model, generator=gen).to(s.device)
        inputs[n] = x.requires_grad_(True)
        built = {}
        for name in [FULL, *z.ops]:
            torch.manual_seed(s.seed)
            built[name] = OPERATORS.get(name)(s.d_model, s.heads, n, s.causal).to(s.device)
        attn = built[FULL]
        full_flops = attn.flops(n, n)
        cases.append(_op_case(n, FULL, attn, x, ctx, full_flops))
        to_attn = _routed_to_attention(s.batch_size, n, z.fraction, gen, s.device)
        for name in z.ops:
            cases.append(_op_case(n, name, built[name], x, ctx, full_flops))
            cases.append(_pair_case(n, name, built[name], attn, x, ctx, to_attn, full_flops,
                                    z.fraction))
            if hasattr(built[name], "state_size"):
                states[name][n] = int(built[name].state_size(n))
    return cases, inputs, states


def run_zoo(s: Settings) -> dict[str, Any] | None:
    z = s.zoo
    if z is None:
        return None
    cases, inputs, states = build_zoo_cases(s, z)
    measure(cases, inputs, dataclasses.replace(s, repeats=z.repeats, warmup=z.warmup))
    rows = summarise(cases)
    for r in rows:  # a mixer's own row carries its state size at that N
        own = r["kind"] == "operator"
        r["state_floats"] = states.get(r["op"], {}).get(r["seq_len"]) if own else None
    keys = [*z.ops, *(pair_key(name) for name in z.ops)]
    return {
        "shape": {"d_model": s.d_model, "heads": s.heads, "batch_size": s.batch_size,
                  "causal": s.causal, "fraction": z.fraction, "repeats": z.repeats},
        "ops": z.ops,
        "rows": rows,
        "crossover": {key: crossover([(r["seq_len"], r["fwd+bwd"]["ratio"]) for r in rows
                                      if r["key"] == _row_key(key, z.fraction)])
                      for key in keys},
    }


def _row_key(key: str, fraction: float) -> str:
    """The microbenchmark row key of a zoo case: an operator, or a pair at its fraction."""
    return f"{key}@{fraction:g}" if "+" in key else key
