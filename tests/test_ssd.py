"""Mamba-2's SSD (operators/ssd.py): chunked == recurrent == quadratic, stable segment sums,
the operator == its formula, padding wherever it sits, and its state.

The contract checks every built-in passes are in tests/test_operators.py and
tests/test_conformance.py."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import OPERATORS, MixContext
from operators.ssd import (
    segsum,
    ssd_bidirectional,
    ssd_chunked,
    ssd_quadratic,
    ssd_recurrent,
)
from tests.parity import D, H, assert_rel_close, float64_operator, padded_batch


def inputs(n, seed, decay=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, n, 3, 4, generator=g, dtype=torch.float64)
    a = -decay * torch.rand(2, n, 3, generator=g, dtype=torch.float64)
    b, c = (torch.randn(2, n, 5, generator=g, dtype=torch.float64) for _ in range(2))
    return x, a, b, c


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 70), chunk=st.integers(1, 80), decay=st.sampled_from([0.01, 1.0, 30.0]),
       seed=st.integers(0, 2**16))
def test_chunked_equals_recurrent_equals_quadratic(n, chunk, decay, seed):
    x, a, b, c = inputs(n, seed, decay)
    recurrent = ssd_recurrent(x, a, b, c)
    assert_rel_close(ssd_chunked(x, a, b, c, chunk), recurrent)
    assert_rel_close(ssd_quadratic(x, a, b, c), recurrent)


@pytest.mark.parametrize("n, chunk", [(1, 4), (13, 1), (13, 4), (16, 4), (30, 64)])
def test_chunked_gradients_equal_the_quadratic_forms(n, chunk):
    """The hand-written backward of the state carried across chunks, against autograd through
    the N x N form (every input: x, decays, B, C); and gradcheck."""
    inputs_ = [t.requires_grad_(True) for t in inputs(n, n + chunk)]
    w = torch.randn(2, n, 3, 4, dtype=torch.float64)
    got = torch.autograd.grad((ssd_chunked(*inputs_, chunk) * w).sum(), inputs_)
    expected = torch.autograd.grad((ssd_quadratic(*inputs_) * w).sum(), inputs_)
    for a, b in zip(got, expected, strict=True):
        assert_rel_close(a, b)
    small = [t[:1, :7].detach().requires_grad_(True) for t in inputs_]
    assert torch.autograd.gradcheck(lambda *t: ssd_chunked(*t, 2), small)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 40), chunk=st.integers(1, 16), seed=st.integers(0, 2**16))
def test_bidirectional_is_the_scan_plus_the_reversed_scan(n, chunk, seed):
    x, a, b, c = inputs(n, seed)
    expected = ssd_quadratic(x, a, b, c) + ssd_quadratic(*(t.flip(1) for t in (x, a, b, c))
                                                          ).flip(1)
    assert_rel_close(ssd_bidirectional(x, a, b, c, chunk), expected)


def test_segment_sums_are_summed_not_differenced():
    """After a huge first decay every later segment sum is a sum of tiny terms: summed they are
    exact; as a difference of two cumulative sums they would lose every digit."""
    a = torch.full((12,), 1e-9, dtype=torch.float64)
    a[0] = -1e8
    got = segsum(a)
    cum = a.cumsum(0)
    for t in range(12):
        for s in range(12):
            if s > t:
                assert got[t, s] == float("-inf")
            else:
                exact = float(a[s + 1 : t + 1].sum())
                assert got[t, s] == pytest.approx(exact, rel=1e-12, abs=0.0)
    assert abs(float(cum[11] - cum[1]) - float(a[2:12].sum())) > 1e-9 * 1e-3  # what it avoids


def build(causal, **options):
    return float64_operator("ssd", causal, **options)


def formula(op, x, causal):
    """The operator's output from its own weights, by the quadratic (dual) form."""
    n, d, s, h = x.shape[1], D, op.d_state, H
    z, xs, b, c, dt = op.in_proj(x).split([d, d, s, s, h], dim=-1)
    dt = F.softplus(dt + op.dt_bias)
    a = dt * -torch.exp(op.A_log)
    xh = xs.view(1, n, h, d // h)
    u = xh * dt[..., None]
    y = ssd_quadratic(u, a, b, c)
    if not causal:
        y = y + ssd_quadratic(*(t.flip(1) for t in (u, a, b, c))).flip(1)
    y = (y + xh * op.D[:, None]).reshape(1, n, d) * F.silu(z)
    return op.out_proj(y)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_operator_equals_its_formula_with_padding(causal, chunk):
    op = build(causal, chunk=chunk)
    x, mask = padded_batch()
    y = op(x, MixContext(padding_mask=mask, causal=causal))
    for i, length in enumerate(mask.sum(1).tolist()):
        assert_rel_close(y[i : i + 1, :length], formula(op, x[i : i + 1, :length], causal))


@pytest.mark.parametrize("causal", [False, True])
def test_padding_anywhere_neither_enters_nor_decays_the_state(causal):
    """dt = 0 at padding: holes and left padding change no real output."""
    op = build(causal, chunk=4)
    x = torch.randn(1, 20, D, dtype=torch.float64)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, :3] = False
    mask[0, 9:12] = False
    y = op(x, MixContext(padding_mask=mask, causal=causal))
    alone = op(x[:, mask[0]], MixContext(causal=causal))
    assert_rel_close(y[mask], alone[0])


def test_state_size_is_d_model_by_d_state():
    assert OPERATORS.get("ssd")(256, 4, 128, True).state_size(10**6) == 256 * 64
    assert OPERATORS.get("ssd")(256, 4, 128, True, state=16).state_size(1) == 256 * 16


def test_cost_is_linear_in_the_sequence():
    op = OPERATORS.get("ssd")(256, 4, 8192, True)
    assert op.flops(8192, 8192) == 2 * op.flops(4096, 4096)
