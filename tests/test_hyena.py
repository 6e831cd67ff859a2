"""Hyena (operators/hyena.py): FFT long convolution == recurrent == Toeplitz, the hand-written
short convolution == conv1d (outputs and gradients), the operator == its formula, and its
filter and state.

The contract checks every built-in passes are in tests/test_operators.py and
tests/test_conformance.py."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import OPERATORS, MixContext
from operators.hyena import (
    long_conv,
    long_conv_recurrent,
    long_conv_reference,
    short_conv,
)
from tests.parity import D, assert_rel_close, float64_operator, padded_batch


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), taps=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_fft_long_conv_equals_recurrent_equals_toeplitz(n, taps, seed):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(2, n, 3, generator=g, dtype=torch.float64)
    causal_taps = torch.randn(3, taps, generator=g, dtype=torch.float64)
    recurrent = long_conv_recurrent(u, causal_taps)
    assert_rel_close(long_conv(u, causal_taps, causal=True), recurrent)
    assert_rel_close(long_conv_reference(u, causal_taps, causal=True), recurrent)
    two_sided = torch.randn(3, 2 * taps - 1, generator=g, dtype=torch.float64)
    assert_rel_close(long_conv(u, two_sided, causal=False),
                     long_conv_reference(u, two_sided, causal=False))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3, 17])
def test_short_conv_equals_conv1d_outputs_and_gradients(causal, n):
    """The hand-written forward and backward against torch's depthwise conv1d (and gradcheck)."""
    g = torch.Generator().manual_seed(n)
    u = torch.randn(2, n, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, generator=g, dtype=torch.float64, requires_grad=True)
    y = short_conv(u, w, b, causal)
    # conv1d correlates: out[t] = sum_j kernel[j] u[t + j - 2]; tap i reads u[t - shift_i]
    shifts = (0, 1, 2) if causal else (-1, 0, 1)
    zero = torch.zeros_like(w[:, 0])
    kernel = torch.stack([w[:, shifts.index(2 - j)] if 2 - j in shifts else zero
                          for j in range(5)], -1)[:, None]
    expected = F.conv1d(u.transpose(1, 2), kernel, b, padding=2, groups=5).transpose(1, 2)
    assert_rel_close(y, expected)
    weights = torch.randn_like(y)
    for a, e in zip(torch.autograd.grad((y * weights).sum(), (u, w, b)),
                    torch.autograd.grad((expected * weights).sum(), (u, w, b)), strict=True):
        assert_rel_close(a, e)
    assert torch.autograd.gradcheck(lambda *t: short_conv(*t, causal), (u, w, b))


def build(causal, max_len=64):
    op = float64_operator("hyena", causal, max_len)
    with torch.no_grad():
        op.short_bias.normal_()  # starts at zero: make padding leaks through it visible
    return op


@pytest.mark.parametrize("causal", [False, True])
def test_operator_equals_its_formula_with_padding(causal):
    op = build(causal)
    x, mask = padded_batch()
    y = op(x, MixContext(padding_mask=mask, causal=causal))
    for i, length in enumerate(mask.sum(1).tolist()):  # each example alone, by the formula
        xi = x[i : i + 1, :length]
        u = short_conv(op.in_proj(xi), op.short_weight, op.short_bias, causal)
        q, k, v = u.chunk(3, -1)
        z = k * v
        z = long_conv_reference(z, op.taps(length), causal) + z * op.skip
        assert_rel_close(y[i : i + 1, :length], op.out_proj(q * z))


@pytest.mark.parametrize("causal", [False, True])
def test_filter_is_the_same_at_every_length_and_truncated_past_max_len(causal):
    op = build(causal, max_len=32)
    long, short = op.taps(32), op.taps(9)
    if causal:
        torch.testing.assert_close(long[:, :9], short)
    else:  # centred: offsets -8 .. 8 sit in the middle of -31 .. 31
        torch.testing.assert_close(long[:, 31 - 8 : 31 + 9], short)
    assert op.taps(100).shape == long.shape
    y = op(torch.randn(2, 100, D, dtype=torch.float64), MixContext(causal=causal))
    assert torch.isfinite(y).all()


def test_causal_past_max_len_never_leaks():
    op = build(True, max_len=16)
    x = torch.randn(2, 50, D, dtype=torch.float64)
    y = op(x, MixContext(causal=True))
    x2 = x.clone()
    x2[:, 30:] = torch.randn(2, 20, D, dtype=torch.float64)
    assert (op(x2, MixContext(causal=True))[:, :30] - y[:, :30]).abs().max() < 1e-12


def test_state_size_is_the_input_history_of_the_filter():
    op = OPERATORS.get("hyena")(256, 4, 1024, True)
    assert op.state_size(100) == 256 * 100 + 3 * 256 * 2
    assert op.state_size(5000) == op.state_size(1024) == 256 * 1024 + 3 * 256 * 2
