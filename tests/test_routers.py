"""Routers: the Routing contract for every built-in, calibrated entropy bands and their random
control, capacity (top-k) routing, the learned gate, the MetaRouter, and the empirical
causality / batch-independence checks (including proof that they catch the leaky variants)."""

from __future__ import annotations

import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from operators.base import MixContext
from operators.spectral import idct, spectral_entropy
from registry import ConfigError
from routers import ROUTERS
from routers.base import band_fractions

D = 16
FAST = settings(deadline=None, max_examples=8)
CHECKS = settings(deadline=None, max_examples=5)
BUILTINS = [e.name for e in ROUTERS if e.builtin]


def valid_op_counts(name: str) -> list[int]:
    cls = ROUTERS.get(name)
    return sorted({cls.min_ops, min(cls.min_ops + 1, cls.max_ops)})


CASES = [(name, k) for name in BUILTINS for k in valid_op_counts(name)]


def tokens(seed: int, b: int, n: int, d: int = D) -> torch.Tensor:
    """Tokens with a wide range of spectral entropies: Gaussian noise blended with smooth
    cosines (low entropy), in random proportions."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(b, n, d, generator=g)
    freq = torch.rand(b, n, 1, generator=g) * 4
    smooth = torch.cos(math.pi * freq * (torch.arange(d) + 0.5) / d)
    mix = torch.rand(b, n, 1, generator=g)
    return mix * 2 * smooth + (1 - mix) * noise


def padding(lengths: list[int], n: int) -> torch.Tensor:
    return torch.arange(n)[None, :] < torch.tensor(lengths)[:, None]


def make(name: str, n_ops: int, *, causal: bool = True, seed: int = 0, **options) -> nn.Module:
    """A router with non-trivial state: calibrated thresholds, random gate weights."""
    torch.manual_seed(seed)
    router = ROUTERS.get(name)(D, n_ops, causal=causal, **options)
    for p in router.parameters():  # the MetaRouter's gate starts flat; make it input-dependent
        if p.dim() == 2:
            nn.init.normal_(p, std=1.0)
    if hasattr(router, "thresholds"):
        router.train()
        router(tokens(1000 + seed, 8, 16), MixContext())
    return router.eval()


def route(router, x, mask=None, causal=False):
    return router(x, MixContext(padding_mask=mask, causal=causal))


# -- the Routing contract, for every built-in ----------------------------------------------------


def test_mod_weights_its_cheap_band_above_zero_even_for_large_scores():
    """1 - sigmoid(r) is exactly 0 in float32 for r above ~17 (Hypothesis found such a case,
    seed 701): a cheap-band token would get no output. MoD weighs it sigmoid(-r) instead."""
    out = route(make("mod", 2, seed=701), tokens(701, 3, 4))
    assert (out.stats["scores"].abs() > 17).any()  # the case really has such scores
    chosen = torch.nn.functional.one_hot(out.assignment, 2).bool()
    assert (out.weights[chosen] > 0).all()


@pytest.mark.parametrize(("name", "n_ops"), CASES)
@FAST
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 3),
    n=st.integers(1, 12),
    data=st.data(),
)
def test_routing_contract(name, n_ops, seed, b, n, data):
    lengths = data.draw(st.lists(st.integers(1, n), min_size=b, max_size=b))
    use_mask = data.draw(st.booleans())
    mask = padding(lengths, n) if use_mask else None
    router = make(name, n_ops, seed=seed)
    x = tokens(seed, b, n)
    out = route(router, x, mask)

    assert out.weights.shape == (b, n, n_ops)
    assert torch.isfinite(out.weights).all()
    assert (out.weights >= 0).all()
    assert out.aux_loss.dim() == 0 and torch.isfinite(out.aux_loss)
    if router.hard:
        a = out.assignment
        assert a.shape == (b, n) and a.dtype == torch.long
        assert ((a >= 0) & (a < n_ops)).all()
        one_hot = torch.nn.functional.one_hot(a, n_ops).bool()
        assert (out.weights[~one_hot] == 0).all(), "a hard router weights only its assignment"
        assert (out.weights[one_hot] > 0).all()
    else:
        assert out.assignment is None
        torch.testing.assert_close(out.weights.sum(-1), torch.ones(b, n))

    fractions = out.stats["fractions"]
    assert fractions.shape == (n_ops,) and not fractions.requires_grad
    assert (fractions >= 0).all()
    assert fractions.sum().item() == pytest.approx(1.0, abs=1e-5)

    # Padding is ignored: garbage in the padded slots changes neither the real tokens'
    # decisions nor the fractions.
    if mask is not None and not mask.all():
        garbage = torch.where(mask[..., None], x, 1e3 * tokens(seed + 1, b, n))
        again = route(router, garbage, mask)
        torch.testing.assert_close(again.weights[mask], out.weights[mask])
        torch.testing.assert_close(again.stats["fractions"], fractions)
        if router.hard:
            real = mask.float()
            expected = torch.stack(
                [((out.assignment == k).float() * real).sum() / real.sum() for k in range(n_ops)]
            )
            torch.testing.assert_close(fractions, expected)


def test_flags_of_the_builtins():
    assert {"single", "entropy", "random", "entropy-topk", "learned", "meta", "meta-batch"} <= set(
        BUILTINS
    )
    for name in ("single", "entropy", "random", "learned", "meta"):
        cls = ROUTERS.get(name)
        assert cls.causal and cls.batch_independent and not cls.leaky, name
    topk, batch = ROUTERS.get("entropy-topk"), ROUTERS.get("meta-batch")
    assert topk.leaky and not topk.causal and topk.batch_independent and topk.hard
    assert batch.leaky and not batch.causal and not batch.batch_independent and not batch.hard
    assert not ROUTERS.get("meta").hard


def test_single_routes_everything_to_its_operator():
    out = route(make("single", 1), tokens(0, 2, 5))
    assert (out.assignment == 0).all()
    assert torch.equal(out.weights, torch.ones(2, 5, 1))
    assert out.aux_loss.item() == 0.0


# -- configuration errors ----------------------------------------------------------------------


def test_wrong_number_of_ops_is_a_config_error():
    with pytest.raises(ConfigError, match=r"router 'single' routes between exactly 1 .*got 2"):
        ROUTERS.get("single")(D, 2, causal=True)
    with pytest.raises(ConfigError, match=r"router 'learned' routes between 2 to 16 .*got 1"):
        ROUTERS.get("learned")(D, 1, causal=True)
    with pytest.raises(ConfigError, match="--ops"):
        ROUTERS.get("entropy")(D, 1, causal=True)


@pytest.mark.parametrize("name", BUILTINS)
def test_unknown_option_is_a_config_error(name):
    cls = ROUTERS.get(name)
    with pytest.raises(ConfigError, match=rf"router '{name}' got unknown option 'bogus'"):
        cls(D, cls.min_ops, causal=True, bogus=1)


def test_bad_option_values_are_config_errors():
    with pytest.raises(ConfigError, match="momentum"):
        ROUTERS.get("entropy")(D, 2, causal=True, momentum=0.0)
    with pytest.raises(ConfigError, match="momentum"):
        ROUTERS.get("random")(D, 2, causal=True, momentum="fast")
    with pytest.raises(ConfigError, match="seed"):
        ROUTERS.get("random")(D, 2, causal=True, seed="x")
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="attn-fraction"):
            ROUTERS.get("entropy")(D, 2, causal=True, attn_fraction=bad)


# -- calibrated bands: entropy and its random control --------------------------------------------


def calibrated(name: str, n_ops: int, steps: int = 6, **options):
    router = ROUTERS.get(name)(D, n_ops, causal=True, **options).train()
    for step in range(steps):
        router(tokens(step, 16, 64), MixContext())
    return router.eval()


@pytest.mark.parametrize("name", ["entropy", "random"])
@pytest.mark.parametrize("n_ops", [2, 3])
def test_calibrated_bands_hit_the_target_shares(name, n_ops):
    router = calibrated(name, n_ops)
    assert bool(router.calibrated)
    x = tokens(99, 64, 64)  # 4096 unseen tokens
    before = router.thresholds.clone()
    out = route(router, x)
    targets = torch.tensor(band_fractions(n_ops, 0.375))
    torch.testing.assert_close(out.stats["fractions"], targets, atol=0.05, rtol=0)
    assert abs(out.stats["fractions"][-1].item() - 0.375) < 0.05
    assert torch.equal(router.thresholds, before), "eval must not move the thresholds"
    torch.testing.assert_close(out.stats["thresholds"], before)


@pytest.mark.parametrize("name", ["entropy", "random"])
def test_first_batch_is_decided_before_it_initialises_then_ema(name):
    router = ROUTERS.get(name)(D, 3, causal=True, momentum=0.5).train()
    assert not bool(router.calibrated)
    x1, x2 = tokens(1, 8, 32), tokens(2, 8, 32)
    levels = torch.tensor([0.3125, 0.625])
    out1 = route(router, x1)
    # decided with the prior (never with its own quantiles), then initialised from them
    torch.testing.assert_close(out1.stats["thresholds"], levels)
    q1 = torch.quantile(out1.stats["scores"].flatten(), levels)
    torch.testing.assert_close(router.thresholds, q1)
    out2 = route(router, x2)
    # decided with the thresholds in force before the update...
    torch.testing.assert_close(out2.stats["thresholds"], q1)
    assert torch.equal(out2.assignment, torch.bucketize(out2.stats["scores"], q1))
    # ...then moved halfway toward this batch's quantiles
    q2 = torch.quantile(out2.stats["scores"].flatten(), levels)
    torch.testing.assert_close(router.thresholds, 0.5 * q1 + 0.5 * q2)


def test_calibration_uses_real_tokens_only():
    x, mask = tokens(3, 4, 16), padding([16, 9, 4, 12], 16)
    garbage = torch.where(mask[..., None], x, torch.zeros(()).new_full((4, 16, D), 0.0))
    garbage[..., 0] += (~mask).float() * 100.0  # padded slots: a single DC spike, entropy ~0
    a = ROUTERS.get("entropy")(D, 2, causal=True).train()
    b = ROUTERS.get("entropy")(D, 2, causal=True).train()
    route(a, x, mask)
    route(b, garbage, mask)
    torch.testing.assert_close(a.thresholds, b.thresholds)


@pytest.mark.parametrize("name", ["entropy", "random"])
def test_thresholds_are_checkpointed(name):
    router = calibrated(name, 3, steps=3)
    state = router.state_dict()
    assert {"thresholds", "calibrated"} <= set(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    fresh = ROUTERS.get(name)(D, 3, causal=True).eval()
    x = tokens(7, 8, 40)
    assert not torch.equal(fresh.thresholds, router.thresholds)
    fresh.load_state_dict(torch.load(buffer))
    assert bool(fresh.calibrated)
    assert torch.equal(route(fresh, x).assignment, route(router, x).assignment)


@pytest.mark.parametrize("name", ["entropy", "random"])
@pytest.mark.parametrize("n_ops", [2, 4])
def test_assignment_is_monotone_in_the_score(name, n_ops):
    router = calibrated(name, n_ops, steps=3)
    out = route(router, tokens(5, 8, 32))
    scores, assignment = out.stats["scores"].flatten(), out.assignment.flatten()
    ordered = assignment[torch.argsort(scores)]
    assert (ordered[1:] >= ordered[:-1]).all()
    assert assignment[scores.argmax()] == n_ops - 1
    assert assignment[scores.argmin()] == 0


def test_entropy_scores_are_spectral_entropy():
    x = tokens(4, 3, 10)
    out = route(calibrated("entropy", 2, steps=1), x)
    torch.testing.assert_close(out.stats["scores"], spectral_entropy(x).float())
    # the highest-entropy token (flat spectrum) goes to attention, a pure cosine to the cheapest
    flat, spike = torch.ones(D), torch.zeros(D)
    spike[3] = 1.0
    probe = torch.stack([idct(flat), idct(spike)])[None]
    assert route(calibrated("entropy", 2, steps=1), probe).assignment.tolist() == [[1, 0]]


def test_random_routes_the_same_shares_but_not_the_same_tokens():
    ent, rnd = calibrated("entropy", 2), calibrated("random", 2)
    x = tokens(123, 64, 64)
    e, r = route(ent, x), route(rnd, x)
    share_e, share_r = e.stats["fractions"][1].item(), r.stats["fractions"][1].item()
    assert abs(share_e - 0.375) < 0.05 and abs(share_r - 0.375) < 0.05
    a_e, a_r = e.assignment.flatten().float(), r.assignment.flatten().float()
    # Independent choices agree on attention for about share_e * share_r of the tokens
    # (~0.14); identical ones would for ~0.375.
    both = (a_e * a_r).mean().item()
    assert abs(both - share_e * share_r) < 0.04
    assert abs(torch.corrcoef(torch.stack([a_e, a_r]))[0, 1].item()) < 0.1
    score_corr = torch.corrcoef(torch.stack([e.stats["scores"].flatten(),
                                             r.stats["scores"].flatten()]))[0, 1]
    assert abs(score_corr.item()) < 0.1
    # and the hash looks uniform on [0, 1)
    s = r.stats["scores"]
    assert s.min() >= 0 and s.max() < 1
    hist = torch.histc(s, bins=4, min=0, max=1) / s.numel()
    torch.testing.assert_close(hist, torch.full((4,), 0.25), atol=0.04, rtol=0)


def test_random_hash_is_fixed_by_its_seed():
    x = tokens(8, 2, 20)
    a = ROUTERS.get("random")(D, 2, causal=True).score(x)
    b = ROUTERS.get("random")(D, 2, causal=True).score(x)
    c = ROUTERS.get("random")(D, 2, causal=True, seed=1).score(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[1:], ROUTERS.get("random")(D, 2, causal=True).score(x[1:]))


# -- capacity routing (top-k per sequence) -----------------------------------------------------


@pytest.mark.parametrize("n_ops", [2, 3])
@FAST
@given(seed=st.integers(0, 10_000), data=st.data())
def test_topk_takes_the_highest_entropy_share_of_each_sequence(n_ops, seed, data):
    n = data.draw(st.integers(1, 20))
    lengths = data.draw(st.lists(st.integers(1, n), min_size=3, max_size=3))
    mask = padding(lengths, n)
    x = tokens(seed, 3, n)
    out = route(ROUTERS.get("entropy-topk")(D, n_ops, causal=False), x, mask)
    scores = spectral_entropy(x).float()
    for i, length in enumerate(lengths):
        a, s = out.assignment[i, :length], scores[i, :length]
        n_top = math.ceil(0.375 * length - 1e-9)
        assert (a == n_ops - 1).sum().item() == n_top
        ordered = a[torch.argsort(s, stable=True)]
        assert (ordered[1:] >= ordered[:-1]).all()
        if n_ops == 3:  # the rest split evenly between the two cheaper operators
            low = (a == 0).sum().item()
            assert low == (length - n_top) // 2
        assert (out.assignment[i, length:] == 0).all()


# -- causality and batch independence checks ---------------------------------------------------


def changes_past(router, x, mask, t, future, causal=True):
    """The harness's causality check: replace tokens > t; did anything at <= t change?"""
    y = x.clone()
    y[:, t + 1 :] = future
    a, b = route(router, x, mask, causal), route(router, y, mask, causal)
    same = torch.allclose(a.weights[:, : t + 1], b.weights[:, : t + 1], atol=1e-6, rtol=0)
    if a.assignment is not None:
        same = same and torch.equal(a.assignment[:, : t + 1], b.assignment[:, : t + 1])
    return not same


def depends_on_batch(router, x, mask):
    """The harness's batch-independence check: each example alone vs in its batch."""
    full = route(router, x, mask)
    for i in range(x.shape[0]):
        alone = route(router, x[i : i + 1], None if mask is None else mask[i : i + 1])
        if not torch.allclose(alone.weights, full.weights[i : i + 1], atol=1e-6, rtol=0):
            return True
        if full.assignment is not None and not torch.equal(
            alone.assignment, full.assignment[i : i + 1]
        ):
            return True
    return False


CAUSAL = [(n, k) for n, k in CASES if ROUTERS.get(n).causal]
INDEPENDENT = [(n, k) for n, k in CASES if ROUTERS.get(n).batch_independent]


@pytest.mark.parametrize(("name", "n_ops"), CAUSAL)
@CHECKS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 16), data=st.data())
def test_causal_routers_never_look_ahead(name, n_ops, seed, n, data):
    t = data.draw(st.integers(0, n - 2))
    lengths = data.draw(st.lists(st.integers(1, n), min_size=2, max_size=2))
    router = make(name, n_ops, seed=seed)
    x = tokens(seed, 2, n)
    future = 5 * tokens(seed + 1, 2, n)[:, t + 1 :]
    assert not changes_past(router, x, padding(lengths, n), t, future)


@pytest.mark.parametrize(("name", "n_ops"), INDEPENDENT)
@CHECKS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12), data=st.data())
def test_batch_independent_routers(name, n_ops, seed, n, data):
    lengths = data.draw(st.lists(st.integers(1, n), min_size=3, max_size=3))
    router = make(name, n_ops, seed=seed)
    assert not depends_on_batch(router, tokens(seed, 3, n), padding(lengths, n))


def test_the_checks_catch_topk_looking_ahead():
    # Past tokens: noise (high entropy). Future tokens: pure cosines (entropy 0), then flat
    # spectra (entropy 1), which take every attention slot from the past.
    router = ROUTERS.get("entropy-topk")(D, 2, causal=False)
    n, t = 8, 3
    x = tokens(0, 1, n)
    cosine = torch.zeros(D)
    cosine[2] = 1.0
    x[:, t + 1 :] = idct(cosine)
    before = route(router, x).assignment
    assert before[0, : t + 1].sum() == 3  # ceil(0.375 * 8) slots, all in the past
    assert changes_past(router, x, None, t, idct(torch.ones(D)))
    assert not depends_on_batch(router, tokens(1, 3, n), None)  # per sequence: independent


def test_the_checks_catch_the_batch_metarouter():
    router = make("meta-batch", 2)
    x = tokens(0, 3, 10)
    assert changes_past(router, x, None, 4, 3 * tokens(1, 3, 10)[:, 5:])
    assert depends_on_batch(router, x, None)
    # the per-example MetaRouter is independent, but on a classification task (whole-example
    # mean) it does look ahead: the same check says so
    assert not depends_on_batch(make("meta", 2), x, None)
    assert changes_past(make("meta", 2, causal=False), x, None, 4, 3 * tokens(1, 3, 10)[:, 5:],
                        causal=False)


# -- learned gate ------------------------------------------------------------------------------


def test_learned_aux_loss_is_one_at_the_targets_and_grows_off_them():
    router = ROUTERS.get("learned")(D, 2, causal=True)
    with torch.no_grad():  # logits = the first two features
        router.gate.weight.zero_()
        router.gate.weight[0, 0] = router.gate.weight[1, 1] = 1.0
        router.gate.bias.zero_()
    # 5 tokens prefer op 0 with p = 0.9 and 3 prefer op 1 with p = r, chosen so that
    # f = P = t = (0.625, 0.375).
    q = 0.9
    r = (0.375 - 0.625 * (1 - q)) / 0.375
    x = torch.zeros(1, 8, D)
    x[0, :5, 0] = math.log(q / (1 - q))
    x[0, 5:, 1] = math.log(r / (1 - r))
    out = route(router, x)
    torch.testing.assert_close(out.stats["fractions"], torch.tensor([0.625, 0.375]))
    torch.testing.assert_close(out.stats["mean_probs"], torch.tensor([0.625, 0.375]))
    assert out.aux_loss.item() == pytest.approx(1.0, abs=1e-5)
    # everything on op 0: f = (1, 0), P = (0.9, 0.1) -> 0.9 / 0.625
    out = route(router, x[:, :5])
    assert out.aux_loss.item() == pytest.approx(0.9 / 0.625, abs=1e-5)


def test_learned_aux_loss_formula_with_padding():
    router = make("learned", 3, seed=4)
    x, mask = tokens(2, 3, 10), padding([10, 6, 2], 10)
    out = route(router, x, mask)
    probs = torch.softmax(router.gate(x), -1)[mask]
    f = torch.stack([(out.assignment[mask] == k).float().mean() for k in range(3)])
    t = torch.tensor(band_fractions(3, 0.375))
    assert out.aux_loss.item() == pytest.approx((f * probs.mean(0) / t).sum().item(), rel=1e-5)
    assert torch.equal(out.assignment[mask], probs.argmax(-1))


def test_learned_gate_gets_gradients_through_weights_and_aux():
    router = ROUTERS.get("learned")(D, 2, causal=True)
    out = route(router, tokens(0, 2, 8))
    (out.weights * torch.randn_like(out.weights)).sum().backward()
    assert router.gate.weight.grad is not None and router.gate.weight.grad.abs().sum() > 0
    router.zero_grad()
    route(router, tokens(0, 2, 8)).aux_loss.backward()
    assert router.gate.weight.grad.abs().sum() > 0


# -- MetaRouter --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["meta", "meta-batch"])
@pytest.mark.parametrize("n_ops", [2, 3])
@pytest.mark.parametrize("fraction", [0.375, 0.22])
def test_meta_gate_starts_at_attn_fraction(name, n_ops, fraction):
    router = ROUTERS.get(name)(D, n_ops, causal=True, attn_fraction=fraction)
    out = route(router, tokens(0, 3, 7), padding([7, 3, 5], 7))
    torch.testing.assert_close(out.weights[..., -1], torch.full((3, 7), fraction))
    torch.testing.assert_close(out.stats["gate"], torch.full((3,), fraction))
    torch.testing.assert_close(out.stats["fractions"],
                               torch.tensor(band_fractions(n_ops, fraction)))


def test_meta_uses_the_prefix_mean_on_causal_tasks():
    x, mask = tokens(1, 2, 9), padding([9, 5], 9)
    causal = make("meta", 2, causal=True)
    w, b = causal.gate.weight[0], causal.gate.bias[0]
    g = route(causal, x, mask).weights[..., 1]
    for i, length in enumerate([9, 5]):
        for t in range(length):
            prefix = x[i, : t + 1].mean(0)
            assert g[i, t].item() == pytest.approx(torch.sigmoid(prefix @ w + b).item(), abs=1e-5)
    # classification task: the whole example's mean, the same gate at every position
    plain = make("meta", 2, causal=False)
    g = route(plain, x, mask).weights[..., 1]
    whole = x[1, :5].mean(0)
    assert g[1, 0].item() == pytest.approx(
        torch.sigmoid(whole @ plain.gate.weight[0] + plain.gate.bias[0]).item(), abs=1e-5
    )
    assert torch.allclose(g[1], g[1, :1].expand(9))
    # a causal context turns the prefix mean on even for a router built non-causal
    torch.testing.assert_close(route(plain, x, mask, causal=True).weights,
                               route(make("meta", 2, causal=True), x, mask).weights)


def test_meta_batch_uses_one_gate_for_the_whole_batch():
    router = make("meta-batch", 2)
    x, mask = tokens(2, 3, 6), padding([6, 2, 4], 6)
    out = route(router, x, mask)
    assert torch.allclose(out.weights, out.weights[:1, :1].expand(3, 6, 2))
    mean = x[mask].mean(0)
    expected = torch.sigmoid(mean @ router.gate.weight[0] + router.gate.bias[0])
    assert out.weights[0, 0, 1].item() == pytest.approx(expected.item(), abs=1e-5)


def test_meta_gate_gets_gradients():
    router = ROUTERS.get("meta")(D, 2, causal=True)
    out = route(router, tokens(0, 2, 8))
    (out.weights * torch.randn_like(out.weights)).sum().backward()
    assert router.gate.weight.grad.abs().sum() > 0
