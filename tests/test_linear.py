"""Linear attention (operators/linear.py): chunked == recurrent == quadratic, the operator ==
its formula, routed causal queries in chunks == the full output, and the cost it declares.

The contract checks every built-in passes (causality, padding, batch independence, FLOPs
against torch's counter, ...) are in tests/test_operators.py and tests/test_conformance.py."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from operators import OPERATORS, MixContext
from operators.base import executed_flops
from operators.linear import (
    feature_map,
    linear_attention_chunked,
    linear_attention_quadratic,
    linear_attention_recurrent,
)
from tests.parity import (
    D,
    H,
    assert_rel_close,
    assert_routed_equals_full,
    float64_operator,
    padded_batch,
)


def features(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return feature_map(torch.randn(*shape, generator=g, dtype=torch.float64))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 70), chunk=st.integers(1, 80), seed=st.integers(0, 2**16))
def test_chunked_equals_recurrent_equals_quadratic(n, chunk, seed):
    q, k = features((2, 3, n, 5), seed), features((2, 3, n, 5), seed + 1)
    v = torch.randn(2, 3, n, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    recurrent = linear_attention_recurrent(q, k, v)
    assert_rel_close(linear_attention_chunked(q, k, v, chunk), recurrent)
    assert_rel_close(linear_attention_quadratic(q, k, v, causal=True), recurrent)


def build(causal, **options):
    return float64_operator("linear", causal, **options)


def naive(op, x, mask, causal):
    """The operator's formula from its own weights: phi(q) phi(k)^T [v, 1] over allowed keys."""
    b, n, _ = x.shape
    q = feature_map(op.q_proj(x)).view(b, n, H, D // H).transpose(1, 2)
    k, v = op.kv_proj(x).view(b, n, 2, H, D // H).unbind(2)
    k, v = feature_map(k).transpose(1, 2), v.transpose(1, 2)
    weights = q @ k.transpose(-1, -2)
    if causal:
        weights = weights.tril()
    if mask is not None:
        weights = weights * mask[:, None, None, :]
    y = (weights @ v) / weights.sum(-1, keepdim=True)
    return op.out_proj(y.transpose(1, 2).reshape(b, n, D))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_operator_equals_its_formula(causal, chunk):
    op = build(causal, chunk=chunk)
    x, mask = padded_batch()
    for m in (None, mask):
        y = op(x, MixContext(padding_mask=m, causal=causal))
        expected = naive(op, x, m, causal)
        real = torch.ones_like(mask) if m is None else m
        assert_rel_close(y[real], expected[real])


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_routed_causal_queries_in_chunks_equal_the_full_output(data):
    """Any chunk size, ragged subsets with padded slots: outputs and gradients equal the full
    causal output gathered at the routed positions; padded slots give exactly zero."""
    op = build(True, chunk=data.draw(st.integers(1, 9)))
    assert_routed_equals_full(op, data, causal=True, filler=0)


def test_routed_causal_queries_are_charged_the_chunk_rows_they_run():
    """A quarter of the queries in chunks of 16: charged the rows of the chunk layout (at least
    the queries, at most every position), well under the dense call, and torch's counter sees
    exactly the tracked part."""
    n, d = 256, 32
    op = OPERATORS.get("linear")(d, 4, n, True, chunk=16)
    positions = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 4]
    positions = positions.sort().values[None]
    ctx = MixContext(causal=True).with_queries(positions, torch.ones_like(positions).bool())
    rows = op._query_rows(ctx, n, 1)
    assert n // 4 <= rows < n
    total, untracked = executed_flops(op, ctx, n, 1)
    assert total < op.flops(n, n)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        op(torch.randn(1, n, d), ctx)
    assert counter.get_total_flops() == total - untracked


def test_state_size_is_the_per_head_state_and_normaliser():
    op = OPERATORS.get("linear")(256, 4, 128, True)
    assert op.state_size(10) == op.state_size(100_000) == 4 * 64 * 65


def test_bad_chunk_is_refused():
    from registry import ConfigError

    with pytest.raises(ConfigError, match="chunk"):
        OPERATORS.get("linear")(D, H, 32, True, chunk=0)
