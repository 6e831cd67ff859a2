"""Sliding-window attention (operators/swa.py): blocked == recurrent == quadratic, the operator
== its formula, routed queries in blocks == the full output, and the cost it declares.

The contract checks every built-in passes are in tests/test_operators.py and
tests/test_conformance.py."""

from unittest.mock import patch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import OPERATORS, MixContext, swa
from operators.base import executed_flops
from operators.swa import (
    sliding_window_blocked,
    sliding_window_quadratic,
    sliding_window_recurrent,
)
from tests.parity import (
    D,
    H,
    assert_rel_close,
    assert_routed_equals_full,
    float64_operator,
    padded_batch,
)


def qkv(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, n, 5, generator=g, dtype=torch.float64) for _ in range(3)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), window=st.integers(1, 80), block=st.integers(1, 20),
       seed=st.integers(0, 2**16))
def test_blocked_equals_recurrent_equals_quadratic(n, window, block, seed):
    q, k, v = qkv(n, seed)
    with patch.object(swa, "QUERY_BLOCK", block):
        causal = sliding_window_blocked(q, k, v, window, causal=True)
        both_sides = sliding_window_blocked(q, k, v, window, causal=False)
    recurrent = sliding_window_recurrent(q, k, v, window)
    assert_rel_close(causal, recurrent)
    assert_rel_close(sliding_window_quadratic(q, k, v, window, causal=True), recurrent)
    assert_rel_close(both_sides, sliding_window_quadratic(q, k, v, window, causal=False))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("block", [1, 3, 8])
def test_blocked_gradients_equal_the_quadratic_forms(causal, block):
    """The hand-written backward (overlapping spans added back block by block) against
    autograd through the N x N form; and gradcheck."""
    q, k, v = (t.requires_grad_(True) for t in qkv(21, block))
    w = torch.randn(2, 3, 21, 5, dtype=torch.float64)
    with patch.object(swa, "QUERY_BLOCK", block):
        got = torch.autograd.grad((sliding_window_blocked(q, k, v, 6, causal) * w).sum(),
                                  (q, k, v))
        expected = torch.autograd.grad(
            (sliding_window_quadratic(q, k, v, 6, causal) * w).sum(), (q, k, v))
        for a, b in zip(got, expected, strict=True):
            assert_rel_close(a, b)
        small = [t[:1, :1, :9].detach().requires_grad_(True) for t in (q, k, v)]
        assert torch.autograd.gradcheck(
            lambda *t: sliding_window_blocked(*t, 4, causal), small)


def test_a_window_as_long_as_the_sequence_is_full_attention():
    op = OPERATORS.get("swa")(D, H, 32, True, window=32).double()
    full = OPERATORS.get("attn")(D, H, 32, True).double()
    full.load_state_dict(op.state_dict())
    x = torch.randn(2, 32, D, dtype=torch.float64)
    ctx = MixContext(causal=True)
    assert_rel_close(op(x, ctx), full(x, ctx))


def build(causal, window):
    return float64_operator("swa", causal, window=window)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [1, 4, 9, 300])
def test_operator_equals_its_formula_with_padding(causal, window):
    """Projections and padding included, with blocks of 4 queries."""
    op = build(causal, window)
    x, mask = padded_batch()
    b, n = x.shape[:2]
    with patch.object(swa, "QUERY_BLOCK", 4):
        y = op(x, MixContext(padding_mask=mask, causal=causal))
    q = (op.q_proj(x) * (D // H) ** -0.5).view(b, n, H, -1).transpose(1, 2)
    k, v = (t.transpose(1, 2) for t in op.kv_proj(x).view(b, n, 2, H, -1).unbind(2))
    for i, length in enumerate(mask.sum(1).tolist()):  # each example alone, unpadded
        core = sliding_window_quadratic(q[i : i + 1, :, :length], k[i : i + 1, :, :length],
                                        v[i : i + 1, :, :length], window, causal)
        expected = op.out_proj(core.transpose(1, 2).reshape(1, length, D))
        assert_rel_close(y[i : i + 1, :length], expected)


@pytest.mark.parametrize("causal", [False, True])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_routed_queries_in_blocks_equal_the_full_output(causal, data):
    """Any block size and window, ragged subsets with padded slots: outputs and gradients equal
    the full output gathered at the routed positions; padded slots give exactly zero."""
    op = build(causal, data.draw(st.integers(1, 12)))
    with patch.object(swa, "QUERY_BLOCK", data.draw(st.integers(1, 8))):
        assert_routed_equals_full(op, data, causal, filler=-1)


def test_cost_grows_with_the_window_not_the_sequence():
    """At a fixed window, doubling N doubles the charged work (no N^2 term); a routed quarter
    is charged the rows of its blocks, at least the queries and less than the dense call."""
    op = OPERATORS.get("swa")(64, 4, 8192, True, window=256)
    assert op.flops(4096, 4096) * 2 == op.flops(8192, 8192)
    attn = OPERATORS.get("attn")(64, 4, 8192, True)
    assert op.flops(8192, 8192) < 0.15 * attn.flops(8192, 8192)  # 320 keys a query, not 4096
    n = 1024
    positions = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 4]
    positions = positions.sort().values[None]
    ctx = MixContext(causal=True).with_queries(positions, torch.ones_like(positions).bool())
    total, _ = executed_flops(op, ctx, n, 1)
    assert op.flops(n // 4, n) <= total < op.flops(n, n)


def test_state_size_is_a_kv_cache_that_stops_growing():
    op = OPERATORS.get("swa")(256, 4, 8192, True, window=256)
    assert op.state_size(100) == 2 * 100 * 256
    assert op.state_size(256) == op.state_size(8192) == 2 * 256 * 256


def test_bad_window_is_refused():
    from registry import ConfigError

    with pytest.raises(ConfigError, match="window"):
        OPERATORS.get("swa")(D, H, 32, True, window=0)
