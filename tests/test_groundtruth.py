"""Routing against ground truth: the scores, the oracle, Mixture-of-Depths, and the record."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.config import resolve
from harness.engine.meters.groundtruth import GroundTruthMeter, confusion, scores
from harness.runner.guard import refuse_leaks
from operators import MixContext
from registry import ConfigError
from routers import ROUTERS
from routers.mod import topk_membership
from tasks import TASKS


@settings(max_examples=60, deadline=None)
@given(bits=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans()), min_size=1,
                     max_size=40))
def test_precision_recall_f1_match_their_definitions(bits):
    routed = torch.tensor([[r for r, _, _ in bits]])
    needed = torch.tensor([[n for _, n, _ in bits]])
    real = torch.tensor([[m for _, _, m in bits]])
    got = scores(*confusion(routed, needed, real))
    r = {i for i, (a, _, m) in enumerate(bits) if a and m}
    n = {i for i, (_, b, m) in enumerate(bits) if b and m}
    p = len(r & n) / len(r) if r else 0.0
    c = len(r & n) / len(n) if n else 0.0
    assert got["precision"] == pytest.approx(p)
    assert got["recall"] == pytest.approx(c)
    assert got["f1"] == pytest.approx(2 * p * c / (p + c) if p + c else 0.0)
    assert 0.0 <= got["f1"] <= max(got["precision"], got["recall"]) + 1e-12


def _calibrated(name, d=16, fraction=0.375, batches=30, labels_share=0.125, seed=0, **opts):
    router = ROUTERS.get(name)(d, 2, causal=True, attn_fraction=fraction, **opts)
    g = torch.Generator().manual_seed(seed)
    router.train()
    for _ in range(batches):
        x = torch.randn(8, 32, d, generator=g)
        labels = torch.rand(8, 32, generator=g) < labels_share
        router(x, MixContext(causal=True, needs_attention=labels))
    return router.eval(), g


@settings(max_examples=10, deadline=None)
@given(fraction=st.sampled_from([0.25, 0.375, 0.5]), seed=st.integers(0, 1000))
def test_oracle_routes_every_labelled_token_and_fills_its_share(fraction, seed):
    router, g = _calibrated("oracle", fraction=fraction, seed=seed)
    x = torch.randn(16, 32, 16, generator=g)
    labels = torch.rand(16, 32, generator=g) < 0.125
    routing = router(x, MixContext(causal=True, needs_attention=labels))
    to_attn = routing.assignment == 1
    assert to_attn[labels].all()  # recall 1 while the labels fit in the budget
    assert abs(float(to_attn.float().mean()) - fraction) < 0.1  # 512 tokens, running quantiles
    # without ground truth it is the random control, token for token
    rand = ROUTERS.get("random")(16, 2, causal=True, attn_fraction=fraction)
    rand.load_state_dict(router.state_dict())
    plain = router(x, MixContext(causal=True))
    assert torch.equal(plain.assignment, rand.eval()(x, MixContext(causal=True)).assignment)


def test_oracle_is_flagged_and_mod_is_noted():
    assert any(f.startswith("oracle:") for f in ROUTERS.get("oracle").record_flags)
    assert any(f.startswith("note:") for f in ROUTERS.get("mod").record_flags)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 24), fraction=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_topk_membership_takes_ceil_fraction_of_real_tokens(n, fraction, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, n, generator=g)
    mask = torch.rand(3, n, generator=g) < 0.8
    chosen = topk_membership(s, mask, fraction)
    assert not (chosen & ~mask).any()
    for b in range(3):
        k = math.ceil(int(mask[b].sum()) * fraction - 1e-9)
        assert int(chosen[b].sum()) == k
        if 0 < k < int(mask[b].sum()):
            assert s[b][chosen[b]].min() >= s[b][mask[b] & ~chosen[b]].max()


def test_mod_trains_by_topk_and_evaluates_causally_by_its_predictor():
    torch.manual_seed(0)
    router = ROUTERS.get("mod")(16, 2, causal=True, attn_fraction=0.25)
    opt = torch.optim.Adam(router.parameters(), lr=2e-2)
    x = torch.randn(8, 32, 16)
    first = None
    for _ in range(60):
        routing = router(x, MixContext(causal=True))
        # top-k in training: exactly ceil(0.25 * 32) = 8 tokens per sequence
        assert routing.assignment.sum(1).eq(8).all()
        opt.zero_grad()
        routing.aux_loss.backward()
        opt.step()
        first = routing.aux_loss.item() if first is None else first
    assert routing.aux_loss.item() < 0.5 * first  # the predictor learns top-k membership
    router.eval()
    out = router(x, MixContext(causal=True))
    assert float(out.stats["predictor_accuracy"]) > 0.85
    # evaluation decisions depend on each token only: changing the future changes nothing
    y = x.clone()
    y[:, 16:] = torch.randn(8, 16, 16)
    assert torch.equal(router(y, MixContext(causal=True)).assignment[:, :16],
                       out.assignment[:, :16])
    assert torch.equal(router(x[:1], MixContext(causal=True)).assignment, out.assignment[:1])


def test_mod_topk_is_leaky_and_refused_without_the_flag():
    cfg = resolve({"routing": {"router": "mod-topk", "ops": ["dct", "attn"]},
                   "data": {"task": "mqar"}}, {})
    with pytest.raises(ConfigError, match="allow-leaky"):
        refuse_leaks(cfg, causal_task=True)
    assert refuse_leaks(cfg.model_copy(update={"allow_leaky": True}), causal_task=True)


def test_meter_scores_each_layer_of_a_model(tmp_path):
    from harness.engine.model import Model

    task = TASKS.get("mqar")(32, cache_dir=tmp_path, n_pairs=4, n_train=64, n_valid=16,
                             n_test=16)
    cfg = resolve({"model": {"layers": 2, "d_model": 16, "heads": 1},
                   "routing": {"router": "oracle", "ops": ["dct", "attn"]},
                   "data": {"task": "mqar"}}, {})
    model = Model(cfg, task, 32)
    batch = task.collate(list(task.dataset("train")))
    model.train()
    for _ in range(5):
        model(batch)
    model.eval()
    meter = GroundTruthMeter(len(model.mixing_layers))
    with torch.no_grad():
        meter.update(model(batch))
    truth, predictor = meter.summary()
    assert predictor is None and len(truth) == 2
    for layer in truth:
        assert layer["recall"] == 1.0  # 4 of 32 needed, 37.5% budget: the oracle covers all
        assert layer["needed_fraction"] == pytest.approx(4 / 32)
        assert layer["precision"] == pytest.approx(layer["needed_fraction"]
                                                   / layer["routed_fraction"])


@pytest.mark.slow
def test_mod_trains_with_a_note_because_only_its_training_routing_sees_the_future(tmp_path):
    from harness.core.records import load_record
    from harness.runner.train import train

    over = {"preset": "smoke", "out": str(tmp_path), "seed": 0,
            "data": {"task": "mqar", "cache_dir": str(tmp_path / "cache")},
            "routing": {"router": "mod", "ops": ["dct", "attn"]}}
    # the guard measures MoD's training-time top-k leak, blames the router alone, and checks
    # that evaluation mode is causal: the run trains, unflagged, with a note saying so
    record, path = train(resolve(over, TASKS.get("mqar").presets), log=lambda _: None)
    loaded = load_record(path)
    assert len(loaded.telemetry.ground_truth) == 1
    assert 0.0 <= loaded.telemetry.ground_truth[0].recall <= 1.0
    assert len(loaded.telemetry.predictor_accuracy) == 1
    assert not loaded.leaky
    assert any(f.startswith("note: causality fails in training mode only, through router 'mod'")
               for f in loaded.flags)
    # evaluating with the top-k is the leak the exception does not cover
    with pytest.raises(ConfigError, match="router 'mod-topk'"):
        train(resolve({**over, "routing": {"router": "mod-topk", "ops": ["dct", "attn"]}},
                      TASKS.get("mqar").presets), log=lambda _: None)
