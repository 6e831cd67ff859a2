"""Every built-in operator against the TokenMixer contract (operators/base.py).

Operators are taken from the registry, so a new built-in is covered without editing this file.
xformers needs CUDA and has its own tests (tests/test_xformers.py).
"""

import math
from unittest.mock import patch

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from operators import OPERATORS, MixContext, TokenMixer, causal_blocks
from operators.base import attention_mask, executed_flops
from registry import ConfigError

D, H, MAX_LEN = 16, 4, 32
NAMES = [e.name for e in OPERATORS if e.builtin and e.name != "xformers"]
CAUSAL = [n for n in NAMES if OPERATORS.get(n).supports_causal]
NON_LEAKY_CAUSAL = [n for n in CAUSAL if not OPERATORS.get(n).leaky]
SUBSET = [n for n in NAMES if OPERATORS.get(n).supports_query_subset]
MODES = [(n, False) for n in NAMES] + [(n, True) for n in CAUSAL]
FAST = settings(max_examples=12, deadline=None)


def build(name, causal=False, seed=0, **options):
    """An operator in float64 eval mode, with its parameters moved off their initialisation:
    dct starts as the identity, which would let every check below pass trivially."""
    torch.manual_seed(seed)
    op = OPERATORS.get(name)(D, H, MAX_LEN, causal, **options)
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return op.double().eval()


def right_padding(lengths, n):
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def future_change(op, x, t, mask=None):
    """Largest change in outputs <= t when every token > t is replaced by noise."""
    ctx = MixContext(padding_mask=mask, causal=op.causal)
    y = op(x, ctx)
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn_like(x2[:, t + 1 :])
    y2 = op(x2, ctx)
    return (y2[:, : t + 1] - y[:, : t + 1]).abs().max().item()


# -- shapes and construction ---------------------------------------------------------------------


@pytest.mark.parametrize("name,causal", MODES)
def test_output_shape_and_dtype(name, causal):
    op = build(name, causal).float()
    for n in (1, 7, MAX_LEN):
        x = torch.randn(2, n, D)
        y = op(x, MixContext(causal=causal))
        assert y.shape == (2, n, D) and y.dtype == torch.float32
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_unknown_option_raises_config_error(name):
    with pytest.raises(ConfigError, match="bogus"):
        OPERATORS.get(name)(D, H, MAX_LEN, False, bogus=1)


def test_operator_without_causal_form_refuses_causal():
    class Bidirectional(TokenMixer):
        supports_causal = False

        def forward(self, x, ctx):
            return x.mean(1, keepdim=True).expand_as(x)

        def flops(self, n_query, n_key):
            return n_key * self.d_model

    Bidirectional(D, H, MAX_LEN, causal=False)
    with pytest.raises(ConfigError, match="causal"):
        Bidirectional(D, H, MAX_LEN, causal=True)


@pytest.mark.parametrize("name", ["attn", "rbf", "linear", "swa", "ssd"])
def test_heads_must_divide_width(name):
    with pytest.raises(ConfigError, match="divisible"):
        OPERATORS.get(name)(18, 4, MAX_LEN, False)


@pytest.mark.parametrize("name", ["attn", "linear", "swa"])
def test_attention_shaped_mixers_hold_attentions_projections(name):
    """Checkpoints name these parameters and a seed's initial weights follow their creation
    order: each mixer with attention's projections (operators/projections.py) holds exactly
    them, created in attention's order, so the same seed gives attention's own weights."""
    torch.manual_seed(0)
    op = OPERATORS.get(name)(D, H, MAX_LEN, True)
    torch.manual_seed(0)
    expected = {"q_proj.weight": torch.nn.Linear(D, D, bias=False).weight,
                "kv_proj.weight": torch.nn.Linear(D, 2 * D, bias=False).weight,
                "out_proj.weight": torch.nn.Linear(D, D, bias=False).weight}
    state = op.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[key], weight) for key, weight in expected.items())


# -- causality -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NON_LEAKY_CAUSAL)
@FAST
@given(n=st.integers(2, MAX_LEN), data=st.data())
def test_causal_mode_is_causal(name, n, data):
    t = data.draw(st.integers(0, n - 2))
    op = build(name, causal=True)
    x = torch.randn(2, n, D, dtype=torch.float64)
    assert future_change(op, x, t) < 1e-10


@FAST
@given(n=st.integers(2, MAX_LEN), data=st.data())
def test_leaky_dct_fails_the_causality_check(n, data):
    # The same check must be able to fail, or its passing proves nothing.
    t = data.draw(st.integers(0, n - 2))
    cls = OPERATORS.get("dct-leaky")
    assert cls.leaky and "leak" in cls.__doc__
    op = build("dct-leaky", causal=True)
    x = torch.randn(2, n, D, dtype=torch.float64)
    assert future_change(op, x, t) > 1e-6


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 3 * MAX_LEN), data=st.data())
def test_causal_dct_never_leaks(n, data):
    # float32 as in training, sequences past max_len (truncated kernel), with right padding.
    t = data.draw(st.integers(0, n - 2))
    lengths = data.draw(st.lists(st.integers(1, n), min_size=2, max_size=2))
    op = build("dct", causal=True).float()
    x = torch.randn(2, n, D)
    assert future_change(op, x, t, right_padding(lengths, n)) < 1e-5
    assert future_change(op, x, t) < 1e-5


def test_causal_dct_kernel_does_not_depend_on_length():
    op = build("dct", causal=True)
    torch.testing.assert_close(op.kernel(7), op.kernel(MAX_LEN)[:7])
    assert op.kernel(5 * MAX_LEN).shape == (MAX_LEN, D)
    # Starts as the identity (a unit impulse), before training moves it.
    fresh = OPERATORS.get("dct")(D, H, MAX_LEN, True).double()
    x = torch.randn(2, 9, D, dtype=torch.float64)
    torch.testing.assert_close(fresh(x, MixContext(causal=True)), x)


def test_causal_dct_loads_checkpoints_that_stored_the_spectrum_tokens_first():
    # Version 1 of the module held the spectrum as (max_len, D); version 2 channels first.
    op = build("dct", causal=True)
    with torch.no_grad():
        op.spectrum.normal_()
    state = op.state_dict()
    old = {k: v.t().contiguous() if k == "spectrum" else v for k, v in state.items()}
    old = type(state)(old)
    old._metadata = {"": {"version": 1}}  # what torch stored for a module without _version
    restored = build("dct", causal=True)
    restored.load_state_dict(old)
    torch.testing.assert_close(restored.spectrum, op.spectrum)
    torch.testing.assert_close(restored.kernel(MAX_LEN), op.kernel(MAX_LEN))
    again = build("dct", causal=True)
    again.load_state_dict(state)  # a version 2 state dict loads unchanged
    torch.testing.assert_close(again.spectrum, op.spectrum)


# -- padding and batch independence --------------------------------------------------------------


@pytest.mark.parametrize("name,causal", MODES)
@FAST
@given(lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4), extra=st.integers(0, 6))
def test_padding_never_changes_real_outputs(name, causal, lengths, extra):
    # Each example alone, unpadded, vs in a batch right-padded with random padding tokens.
    op = build(name, causal)
    n = max(lengths) + extra
    x = torch.randn(len(lengths), n, D, dtype=torch.float64)
    y = op(x, MixContext(padding_mask=right_padding(lengths, n), causal=causal))
    assert torch.isfinite(y).all()
    for b, length in enumerate(lengths):
        alone = op(x[b : b + 1, :length], MixContext(causal=causal))
        torch.testing.assert_close(y[b : b + 1, :length], alone, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("name,causal", MODES)
@FAST
@given(batch=st.integers(2, 4), n=st.integers(1, 12), data=st.data())
def test_batch_independence(name, causal, batch, n, data):
    b = data.draw(st.integers(0, batch - 1))
    op = build(name, causal)
    x = torch.randn(batch, n, D, dtype=torch.float64)
    y = op(x, MixContext(causal=causal))
    others = torch.randn_like(x)
    others[b] = x[b]  # same example, different batch mates
    torch.testing.assert_close(op(others, MixContext(causal=causal))[b], y[b])
    torch.testing.assert_close(op(x[b : b + 1], MixContext(causal=causal))[0], y[b])


def test_dct_padding_positions_are_zero_and_any_layout_works():
    op = build("dct")
    x = torch.randn(2, 10, D, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1, 1, 0, 1, 0, 0, 1, 1], [1] * 6 + [0] * 4], dtype=torch.bool)
    y = op(x, MixContext(padding_mask=mask))
    assert (y[~mask] == 0).all()
    # Holes in the mask: the real tokens are mixed as if they were the whole sequence.
    alone = op(x[0:1, mask[0]], MixContext())
    torch.testing.assert_close(y[0:1, mask[0]], alone)


def test_dct_filter_lives_on_normalised_frequency():
    op = build("dct", n_freq=8)
    assert op.filter.shape == (8, D)
    torch.testing.assert_close(op.frequency_response(8), op.filter)  # exact at N = n_freq
    # N = 16 samples halfway between grid points: the average of neighbours.
    h = op.frequency_response(16)
    torch.testing.assert_close(h[3], (op.filter[1] + op.filter[2]) / 2)  # k/N = 3/16
    y = op(torch.randn(1, 3 * MAX_LEN, D, dtype=torch.float64), MixContext())  # any length
    assert torch.isfinite(y).all()


# -- query subsets -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SUBSET)
@pytest.mark.parametrize("causal", [False, True])
@FAST
@given(data=st.data())
def test_query_subset_equals_full_outputs_gathered(name, causal, data):
    op = build(name, causal)
    batch, n = 3, 12
    padded = data.draw(st.booleans())
    lengths = data.draw(st.lists(st.integers(1, n), min_size=batch, max_size=batch))
    lengths = lengths if padded else [n] * batch
    mask = right_padding(lengths, n) if padded else None
    x = torch.randn(batch, n, D, dtype=torch.float64)
    ctx = MixContext(padding_mask=mask, causal=causal)
    full = op(x, ctx)

    q = data.draw(st.integers(1, n))
    positions = torch.zeros(batch, q, dtype=torch.long)
    query_mask = torch.zeros(batch, q, dtype=torch.bool)
    for b, length in enumerate(lengths):
        k = data.draw(st.integers(0, min(q, length)))
        real = sorted(data.draw(st.lists(st.integers(0, length - 1), min_size=k, max_size=k,
                                         unique=True)))
        # Padding slots point anywhere, padding tokens included: outputs ignored, but finite.
        junk = data.draw(st.lists(st.integers(0, n - 1), min_size=q - k, max_size=q - k))
        positions[b] = torch.tensor(real + junk, dtype=torch.long)
        query_mask[b, :k] = True

    sub = op(x, ctx.with_queries(positions, query_mask))
    assert sub.shape == (batch, q, D)
    assert torch.isfinite(sub).all()
    expected = torch.gather(full, 1, positions[..., None].expand(-1, -1, D))
    torch.testing.assert_close(sub[query_mask], expected[query_mask])


def ragged_queries(data, lengths, n):
    """Per example a random subset of its real positions, increasing, packed at the front and
    padded to the widest with junk positions; returns (positions, query_mask)."""
    chosen = [sorted(data.draw(st.lists(st.integers(0, length - 1), min_size=0,
                                        max_size=length, unique=True))) for length in lengths]
    q = max(1, max(len(c) for c in chosen))
    positions = torch.tensor([c + [n - 1] * (q - len(c)) for c in chosen], dtype=torch.long)
    query_mask = torch.arange(q)[None, :] < torch.tensor([len(c) for c in chosen])[:, None]
    return positions, query_mask


@pytest.mark.parametrize("name", [n for n in SUBSET if n in CAUSAL and n != "identity"])
@FAST
@given(data=st.data())
def test_routed_causal_blocks_equal_full_causal_outputs_and_gradients(name, data):
    """Routed causal queries run in blocks whose keys end at the block's last position; with
    any block size, ragged subsets and padding, keeping the probabilities for backward or not,
    they equal full causal attention gathered at the query positions, outputs and gradients
    (into x and every parameter)."""
    op = build(name, causal=True)
    batch, n = 3, 14
    lengths = data.draw(st.lists(st.integers(1, n), min_size=batch, max_size=batch))
    mask = right_padding(lengths, n) if data.draw(st.booleans()) else None
    lengths = lengths if mask is not None else [n] * batch
    positions, query_mask = ragged_queries(data, lengths, n)
    x = torch.randn(batch, n, D, dtype=torch.float64, requires_grad=True)
    ctx = MixContext(padding_mask=mask, causal=True)
    w = torch.randn(batch, positions.shape[1], D, dtype=torch.float64) * query_mask[..., None]

    def grads(y):
        params = [x, *op.parameters()]
        got = torch.autograd.grad((y * w).sum(), params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, got, strict=True)]

    full = torch.gather(op(x, ctx), 1, positions[..., None].expand(-1, -1, D))
    # a budget of 0 bytes: backward recomputes the probabilities instead of keeping them
    budget = data.draw(st.sampled_from([0, causal_blocks.SAVED_SCORES_BYTES]))
    with patch.object(causal_blocks, "QUERY_BLOCK", data.draw(st.integers(1, 5))), \
            patch.object(causal_blocks, "SAVED_SCORES_BYTES", budget):
        sub = op(x, ctx.with_queries(positions, query_mask))
    assert torch.isfinite(sub).all() and (sub[~query_mask] == 0).all()
    torch.testing.assert_close(sub[query_mask], full[query_mask])
    for a, b in zip(grads(sub), grads(full), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["attn", "rbf"])
@FAST
@given(data=st.data())
def test_routed_causal_gradients_never_reach_the_future(name, data):
    """d output(query at t) / d x[s] == 0 for every s > t, through the blocked path."""
    op = build(name, causal=True)
    n = 16
    positions, query_mask = ragged_queries(data, [n], n)
    x = torch.randn(1, n, D, dtype=torch.float64, requires_grad=True)
    with patch.object(causal_blocks, "QUERY_BLOCK", data.draw(st.integers(1, 4))):
        y = op(x, MixContext(causal=True).with_queries(positions, query_mask))
    for slot in range(int(query_mask.sum())):
        (g,) = torch.autograd.grad(y[0, slot].sum(), x, retain_graph=True)
        t = int(positions[0, slot])
        assert (g[0, t + 1 :] == 0).all(), f"query at {t} has gradient from later tokens"


@pytest.mark.parametrize("name", ["attn", "rbf"])
def test_routed_causal_queries_are_charged_about_their_own_prefix(name):
    """At a quarter of the tokens, routed causal attention computes about sum_t (t + 1) score
    pairs (the triangle's share), not Q x N (the rectangle), and is charged exactly that."""
    n, d = 256, 32
    op = OPERATORS.get(name)(d, 4, n, True)
    positions = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 4]
    positions = positions.sort().values[None, :]
    ctx = MixContext(causal=True).with_queries(positions, torch.ones_like(positions).bool())
    with patch.object(causal_blocks, "QUERY_BLOCK", 8):
        pairs = op.call_score_pairs(ctx, n, 1)
        total, _ = executed_flops(op, ctx, n, 1)
    needed = int((positions + 1).sum())
    assert needed <= pairs <= needed + (n // 4 // 8) * 8 * (n // (n // 4 // 8))
    assert pairs < 0.6 * positions.shape[1] * n  # well under the rectangle
    assert total < op.flops(positions.shape[1], n)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["attn", "rbf"])
def test_flex_attention_path_equals_cpu_blocks(name):
    """On CUDA routed causal queries run FlexAttention block masks: same outputs and gradients
    as the CPU blocks (float32, loose tolerance for the kernels' reduction order)."""
    from operators import flex

    torch.manual_seed(0)
    n = 300
    op = OPERATORS.get(name)(64, 4, n, True)
    x = torch.randn(2, n, 64)
    chosen = torch.rand(2, n) < 0.3
    q = int(chosen.sum(1).max())
    order = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :q]
    slots = torch.arange(q)[None, :] < chosen.sum(1)[:, None]
    outs = []
    for device in ("cpu", "cuda"):
        o = op.to(device)
        xd = x.to(device).requires_grad_(True)
        ctx = MixContext(causal=True).with_queries(order.to(device), slots.to(device))
        assert flex.available(xd) == (device == "cuda")
        y = o(xd, ctx)
        (y * slots.to(device)[..., None]).square().sum().backward()
        outs.append((y.detach().cpu(), xd.grad.cpu()))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)


# -- exact math against naive formulas -----------------------------------------------------------


def naive_mixing(op, x, mask, causal, kernel):
    """Project with op's weights, weight keys by `kernel(q, k)` explicitly, normalise."""
    B, N, _ = x.shape
    q = op.q_proj(x).view(B, N, H, D // H).transpose(1, 2)
    k, v = (t.transpose(1, 2) for t in op.kv_proj(x).view(B, N, 2, H, D // H).unbind(2))
    weights = kernel(q, k)  # (B, H, N, N)
    allowed = attention_mask(MixContext(mask, causal), n_key=N, n_query=N, device=x.device)
    if allowed is not None:
        weights = weights * allowed
    y = (weights @ v) / weights.sum(-1, keepdim=True)
    return op.out_proj(y.transpose(1, 2).reshape(B, N, D))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_rbf_equals_naive_gaussian_kernel(causal, padded):
    op = build("rbf", causal)
    x = torch.randn(3, 10, D, dtype=torch.float64)
    mask = right_padding([10, 4, 7], 10) if padded else None
    s2 = torch.exp(2 * op.log_s)[:, None, None]

    def gaussian(q, k):
        sq_dist = (q[..., :, None, :] - k[..., None, :, :]).square().sum(-1)
        return torch.exp(-sq_dist / (2 * s2))

    x.requires_grad_(True)
    expected = naive_mixing(op, x, mask, causal, gaussian)
    # blocks of 3 queries: full causal calls run as several blocks (Attention.dense_causal)
    with patch.object(causal_blocks, "QUERY_BLOCK", 3):
        y = op(x, MixContext(padding_mask=mask, causal=causal))
    torch.testing.assert_close(y, expected, atol=1e-10, rtol=1e-10)
    w = torch.randn_like(y) if mask is None else torch.randn_like(y) * mask[..., None]
    params = [x, *op.parameters()]
    for a, b in zip(torch.autograd.grad((y * w).sum(), params),
                    torch.autograd.grad((expected * w).sum(), params), strict=True):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_attn_equals_naive_softmax(causal, padded):
    op = build("attn", causal)
    x = torch.randn(3, 10, D, dtype=torch.float64)
    mask = right_padding([10, 4, 7], 10) if padded else None

    def softmax_kernel(q, k):
        scores = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        return torch.exp(scores - scores.amax(-1, keepdim=True))

    expected = naive_mixing(op, x, mask, causal, softmax_kernel)
    y = op(x, MixContext(padding_mask=mask, causal=causal))
    torch.testing.assert_close(y, expected, atol=1e-10, rtol=1e-10)


# -- cost accounting -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_flops_declared(name):
    op = OPERATORS.get(name)(D, H, MAX_LEN, False)
    for n_query, n_key in [(1, 1), (5, 32), (32, 32), (64, 64)]:
        total, untracked = op.flops(n_query, n_key), op.untracked_flops(n_query, n_key)
        assert isinstance(total, int) and isinstance(untracked, int)
        assert 0 <= untracked <= total
        assert total == 0 if name == "identity" else total > 0
    if name != "identity":
        assert op.flops(64, 64) > op.flops(32, 32)
        if op.supports_query_subset:  # fewer queries must cost less, or routing saves nothing
            assert op.flops(8, 64) < op.flops(64, 64)


@pytest.mark.parametrize("name,causal", MODES)
def test_flops_match_torch_flop_counter(name, causal):
    """flops() minus the part FlopCounterMode cannot see (FFTs, elementwise) == what it counts.

    On CPU, SDPA dispatches to a flash kernel for which FlopCounterMode has no formula (it counts
    0), so the count is taken under the math backend, which decomposes into counted matmuls.
    """
    op = build(name, causal).float()
    n = 24
    shapes = [None]
    if op.supports_query_subset:
        shapes.append(torch.tensor([[0, 3, 4, 11, 23]]))
    for positions in shapes:
        ctx = MixContext(causal=causal)
        if positions is not None:
            ctx = ctx.with_queries(positions, torch.ones_like(positions, dtype=torch.bool))
        # blocks of 2 queries: routed causal queries then skip keys past each block
        with patch.object(causal_blocks, "QUERY_BLOCK", 2):
            with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
                op(torch.randn(1, n, D), ctx)
            total, untracked = executed_flops(op, ctx, n, 1)
            dense = op.flops(n, n)  # under the same block size (rbf's causal calls: blocks)
        assert abs(counter.get_total_flops() - (total - untracked)) <= 0.01 * max(total, 1)
        if positions is None:
            assert total == dense


@pytest.mark.parametrize("name", ["attn", "rbf"])
def test_padded_full_causal_calls_run_and_are_charged_the_blocks(name):
    """With padding, fused attention would take an explicit mask over the whole rectangle; a
    padded full causal call runs in blocks instead: torch's counter sees exactly what is
    charged (untracked work aside), well under the rectangle, and the reference is the same
    call's dense cost (so a padded batch reports no fake saving)."""
    n, d, b = 64, 32, 3
    op = OPERATORS.get(name)(d, 4, n, True)
    ctx = MixContext(padding_mask=right_padding([64, 40, 9], n), causal=True)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        op(torch.randn(b, n, d), ctx)
    total, untracked = executed_flops(op, ctx, n, b)
    assert counter.get_total_flops() == total - untracked
    scores = counter.get_total_flops() - b * op.projection_flops(n, n)
    assert scores < 0.7 * b * 4 * n * n * d  # the rectangle's score products: 4 n^2 d each
    pairs = op.call_score_pairs(ctx, n, b)
    assert b * n * (n + 1) // 2 <= pairs < 0.7 * b * n * n


# -- training --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,causal", MODES)
def test_gradients_finite(name, causal):
    op = build(name, causal).float().train()
    x = torch.randn(3, 10, D, requires_grad=True)
    ctx = MixContext(padding_mask=right_padding([10, 3, 1], 10), causal=causal)
    y = op(x, ctx)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in op.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("causal", [True, False])
def test_dct_trains_after_its_cached_plans_were_built_in_inference_mode(causal):
    # The transform plans are cached per length; a first call under inference_mode (an
    # evaluation hook, a plugin) must not leave tensors that training cannot use or save.
    import operators.dct as dct_module

    dct_module._makhoul_plan.cache_clear()
    dct_module._kernel_plan.cache_clear()
    op = build("dct", causal=causal)
    x = torch.randn(2, MAX_LEN, D)
    with torch.inference_mode():
        expected = op(x, MixContext(causal=causal))
    x.requires_grad_(True)
    out = op(x, MixContext(causal=causal))
    out.sum().backward()
    torch.testing.assert_close(out.detach(), expected)
    for p in op.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
