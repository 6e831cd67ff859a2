"""DCT-II / DCT-III and spectral entropy: the invariants DESIGN.md says must be exact."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.spectral import dct, dct_matrix, idct, spectral_entropy

SIZES = st.integers(1, 128)
FAST = settings(max_examples=40, deadline=None)


@pytest.mark.parametrize("n", [*range(1, 18), 31, 64, 100, 128])
def test_matrix_is_orthonormal(n):
    C = dct_matrix(n, torch.float64)
    torch.testing.assert_close(C @ C.T, torch.eye(n, dtype=torch.float64), atol=1e-12, rtol=0)


@FAST
@given(n=SIZES, batch=st.lists(st.integers(1, 3), max_size=2), data=st.data())
def test_fft_path_equals_dense_matrix(n, batch, data):
    shape = [*batch, n]
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    # Put the transformed axis where `dim` points so the dim argument is exercised too.
    x = torch.randn(shape, dtype=torch.float64).movedim(-1, dim)
    C = dct_matrix(n, torch.float64)
    expected = (x.movedim(dim, -1) @ C.T).movedim(-1, dim)
    torch.testing.assert_close(dct(x, dim=dim), expected, atol=1e-10, rtol=0)
    expected_inv = (x.movedim(dim, -1) @ C).movedim(-1, dim)
    torch.testing.assert_close(idct(x, dim=dim), expected_inv, atol=1e-10, rtol=0)


@FAST
@given(n=SIZES, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_round_trip_and_parseval(n, dtype):
    x = torch.randn(3, n, dtype=dtype)
    c = dct(x)
    assert c.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(idct(c), x, atol=tol, rtol=tol)
    torch.testing.assert_close(dct(idct(x)), x, atol=tol, rtol=tol)
    torch.testing.assert_close(c.square().sum(-1), x.square().sum(-1), atol=tol, rtol=tol)


def test_dct_gradient_is_the_transpose():
    # The DCT is linear and orthonormal, so its gradient is the inverse: d<g, dct(x)>/dx = idct(g).
    x = torch.randn(4, 37, dtype=torch.float64, requires_grad=True)
    g = torch.randn(4, 37, dtype=torch.float64)
    (dct(x) * g).sum().backward()
    torch.testing.assert_close(x.grad, idct(g), atol=1e-10, rtol=0)


@FAST
@given(d=st.integers(1, 96), scale=st.floats(1e-3, 1e3))
def test_entropy_range_and_scale_invariance(d, scale):
    x = torch.randn(16, d, dtype=torch.float64)
    h = spectral_entropy(x)
    assert h.shape == (16,)
    assert ((h >= 0) & (h <= 1)).all()
    torch.testing.assert_close(spectral_entropy(scale * x), h, atol=1e-9, rtol=0)


@FAST
@given(d=st.integers(2, 96), seed=st.integers(0, 10_000))
def test_entropy_equals_its_definition_on_the_dense_dct(d, seed):
    """-sum p log p / log d with p = c^2 / sum c^2, c = x @ C^T (the dense DCT-II matrix)."""
    x = torch.randn(8, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    c = x @ dct_matrix(d).T
    p = c.square() / c.square().sum(-1, keepdim=True)
    expected = -(p * p.clamp_min(1e-300).log()).sum(-1) / math.log(d)
    torch.testing.assert_close(spectral_entropy(x), expected, atol=1e-10, rtol=0)


@pytest.mark.parametrize("d", [2, 3, 8, 17, 64])
def test_entropy_extremes(d):
    basis = idct(torch.eye(d, dtype=torch.float64))  # row k is the k-th DCT basis vector
    torch.testing.assert_close(spectral_entropy(basis), torch.zeros(d, dtype=torch.float64),
                               atol=1e-9, rtol=0)
    flat = idct(torch.ones(d, dtype=torch.float64))
    assert spectral_entropy(flat).item() == pytest.approx(1.0, abs=1e-9)
    # A one-hot token (not a DCT basis vector) spreads over all frequencies: high entropy.
    assert spectral_entropy(torch.eye(d)[1]).item() > 0.5


def test_entropy_single_feature_is_zero():
    assert (spectral_entropy(torch.randn(5, 1)) == 0).all()


def test_entropy_zero_vector_is_finite_with_finite_gradient():
    x = torch.zeros(3, 16, requires_grad=True)
    h = spectral_entropy(x)
    assert torch.isfinite(h).all() and (h == 0).all()
    h.sum().backward()
    assert torch.isfinite(x.grad).all()


@FAST
@given(d=st.integers(2, 64))
def test_entropy_gradient_finite(d):
    x = torch.randn(8, d)
    x[0] = 0.0  # a zero row in the batch must not poison the others
    x[1] = idct(torch.eye(d)[d // 2])  # nearly-zero probabilities
    x.requires_grad_(True)
    spectral_entropy(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[2:].abs().sum() > 0


@pytest.mark.parametrize("d", [2, 3, 8, 17])
def test_entropy_gradient_is_its_derivative(d):
    """The squares are taken in place on the half spectrum's view; autograd still agrees with
    finite differences."""
    x = torch.randn(4, d, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(spectral_entropy, (x,))


def test_entropy_low_precision_is_computed_in_float32():
    x = torch.randn(4, 32)
    h = spectral_entropy(x.to(torch.bfloat16))
    assert h.dtype == torch.float32
    torch.testing.assert_close(h, spectral_entropy(x.to(torch.bfloat16).float()))
    assert math.isfinite(h.sum().item())


@settings(max_examples=60, deadline=None)
@given(d=st.integers(2, 96), exponent=st.integers(-30, 30), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_entropy_is_finite_and_scale_invariant_from_1e_minus30_to_1e30(d, exponent, seed, dtype):
    """Stable at any finite scale (float32 squares overflow above ~1e19 and underflow below
    ~1e-19 unless normalised first): in [0, 1], never NaN, equal to the unit-scale value."""
    x = torch.randn(4, d, generator=torch.Generator().manual_seed(seed))
    h = spectral_entropy(x.to(dtype) * 10.0**exponent)
    ref = spectral_entropy(x)
    assert torch.isfinite(h).all() and (h >= 0).all() and (h <= 1).all()
    torch.testing.assert_close(h.float(), ref, atol=1e-5, rtol=0)


def test_entropy_of_one_huge_or_tiny_token_stays_defined():
    x = torch.randn(3, 32)
    x[1] *= 1e30
    x[2] *= 1e-30
    h = spectral_entropy(x)
    assert torch.isfinite(h).all() and 0 < float(h[1]) < 1 and 0 < float(h[2]) < 1
