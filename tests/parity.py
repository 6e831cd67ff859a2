"""The comparison the zoo's parity tests use (tests/test_linear.py, test_swa.py, ...)."""

from torch import Tensor

REL = 1e-10  # float64: chunked, recurrent and quadratic forms agree to this, relative


def assert_rel_close(a: Tensor, b: Tensor, rel: float = REL) -> None:
    """max |a - b| <= rel * max |b| (nothing to compare: passes)."""
    assert a.shape == b.shape
    if b.numel():
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= rel * float(b.abs().max())
