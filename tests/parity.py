"""What the zoo's parity tests share (tests/test_linear.py, test_swa.py, test_ssd.py,
test_hyena.py): the comparison, the float64 operator and padded batch they compare on, and the
routed-queries-equal-the-full-output check of the mixers that take query subsets."""

import torch
from hypothesis import strategies as st
from torch import Tensor

from operators import OPERATORS, MixContext

REL = 1e-10  # float64: chunked, recurrent and quadratic forms agree to this, relative
D, H = 16, 4  # the width and heads every parity test builds its operator with


def assert_rel_close(a: Tensor, b: Tensor, rel: float = REL) -> None:
    """max |a - b| <= rel * max |b| (nothing to compare: passes)."""
    assert a.shape == b.shape
    if b.numel():
        a, b = a.detach(), b.detach()
        assert float((a - b).abs().max()) <= rel * float(b.abs().max())


def float64_operator(name: str, causal: bool, max_len: int = 64, seed: int = 0, **options):
    """The operator `name` (D wide, H heads) from a fixed seed, in float64 and eval mode: a
    formula computed from its own weights then agrees with it to REL."""
    torch.manual_seed(seed)
    return OPERATORS.get(name)(D, H, max_len, causal, **options).double().eval()


def padded_batch() -> tuple[Tensor, Tensor]:
    """x (3, 23, D) in float64 and its padding mask: 23, 9 and 16 real tokens at the front."""
    x = torch.randn(3, 23, D, dtype=torch.float64)
    mask = torch.arange(23)[None] < torch.tensor([23, 9, 16])[:, None]
    return x, mask


def assert_routed_equals_full(op, data: st.DataObject, causal: bool, filler: int) -> None:
    """Ragged routed subsets drawn per example (empty ones too), packed at the front, their
    padded slots at position `filler` (negative: from the end): outputs and gradients (input
    and weights) equal the full output gathered at the routed positions; padded slots give
    exactly zero."""
    n, batch = 19, 3
    x = torch.randn(batch, n, D, dtype=torch.float64, requires_grad=True)
    chosen = [sorted(data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True)))
              for _ in range(batch)]
    q = max(1, max(map(len, chosen)))
    positions = torch.tensor([c + [filler % n] * (q - len(c)) for c in chosen])
    slots = torch.arange(q)[None] < torch.tensor([len(c) for c in chosen])[:, None]
    ctx = MixContext(causal=causal)
    sub = op(x, ctx.with_queries(positions, slots))
    full = torch.gather(op(x, ctx), 1, positions[..., None].expand(-1, -1, D))
    assert (sub[~slots] == 0).all()
    assert_rel_close(sub[slots], full[slots], 1e-12)
    w = torch.randn_like(sub) * slots[..., None]
    params = [x, *op.parameters()]
    for a, b in zip(torch.autograd.grad((sub * w).sum(), params),
                    torch.autograd.grad((full * w).sum(), params), strict=True):
        torch.testing.assert_close(a, b)
