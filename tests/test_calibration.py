"""Router calibration and state: no training step is decided by its own batch, non-finite
values never enter router state, and a NaN in training stops the run with a clear message
(routers/entropy.py, harness/engine/calibrate.py)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import MixContext
from routers import ROUTERS
from routers.base import NonFiniteRouting

D = 16


def _tokens(seed, b, n):
    g = torch.Generator().manual_seed(seed)
    mix = torch.rand(b, n, 1, generator=g)
    freq = torch.rand(b, n, 1, generator=g) * 4
    smooth = torch.cos(math.pi * freq * (torch.arange(D) + 0.5) / D)
    return mix * 2 * smooth + (1 - mix) * torch.randn(b, n, D, generator=g)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(["entropy", "random"]), seed=st.integers(0, 10_000),
       warm=st.integers(0, 3), t=st.integers(0, 30), n_ops=st.integers(2, 4))
def test_a_training_step_is_not_decided_by_its_own_batch(name, seed, warm, t, n_ops):
    """Step `warm` + 1 (the first when warm == 0): the routes of example 0 up to t are the
    same whatever its later tokens and whatever the other examples are."""
    router = ROUTERS.get(name)(D, n_ops, causal=True).train()
    for i in range(warm):
        router(_tokens(seed + 1 + i, 4, 32), MixContext())
    state = {k: v.clone() for k, v in router.state_dict().items()}
    x = _tokens(seed, 4, 32)
    y = _tokens(seed + 99, 4, 32)
    y[0, : t + 1] = x[0, : t + 1]  # same prefix of example 0; future and other examples differ
    a = router(x, MixContext()).assignment
    router.load_state_dict(state)
    b = router(y, MixContext()).assignment
    assert torch.equal(a[0, : t + 1], b[0, : t + 1])


def test_calibration_sets_the_thresholds_from_held_out_batches_only():
    router = ROUTERS.get("entropy")(D, 2, causal=True)
    held_out = [_tokens(s, 4, 32) for s in range(3)]
    router.calibrate(True)
    with torch.no_grad():
        for x in held_out:
            router(x, MixContext())
    router.calibrate(False)
    level = torch.tensor([0.625])
    expected = torch.stack([torch.quantile(router.score(x).flatten(), level)
                            for x in held_out]).mean(0)
    torch.testing.assert_close(router.thresholds, expected)
    router.train()
    out = router(_tokens(7, 4, 32), MixContext())  # step 1: decided with the held-out ones
    torch.testing.assert_close(out.stats["thresholds"], expected)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_token_never_enters_router_state(bad):
    router = ROUTERS.get("entropy")(D, 2, causal=True).train()
    router(_tokens(0, 4, 32), MixContext())
    before = router.thresholds.clone()
    x = _tokens(1, 4, 32)
    x[2, 5, 3] = bad
    with pytest.raises(NonFiniteRouting, match="non-finite score"):
        router(x, MixContext())
    assert torch.equal(router.thresholds, before) and bool(torch.isfinite(before).all())
    # a non-finite value in a padding slot is not a token: ignored
    mask = torch.ones(4, 32, dtype=torch.bool)
    mask[2, 5:] = False
    router(x, MixContext(padding_mask=mask))
    assert bool(torch.isfinite(router.thresholds).all())


def test_a_nan_in_training_stops_the_run_with_a_clear_message(causal_task_and_noncausal_op):
    from harness.core.config import resolve
    from harness.engine.steps import TrainingDiverged, TrainStep
    from harness.runner.train import Trainer

    cfg = resolve({"preset": "smoke", "routing": {"router": "entropy", "ops": ["dct", "attn"]},
                   "data": {"task": "tiny-lm-test", "seq_len": 16}}, {})
    trainer = Trainer(cfg, log=lambda m: None)
    trainer.build()
    with torch.no_grad():
        trainer.model.embed.weight[3] = math.nan
    step = TrainStep(trainer.model, trainer.task, cfg, torch.device("cpu"), 16)
    with pytest.raises(TrainingDiverged, match="non-finite score.*at step 1"):
        step(lambda i: trainer.batches.batch(trainer.task, 0, 0, 1, i, 1), 0)


def test_the_trainer_calibrates_before_step_1(causal_task_and_noncausal_op):
    from harness.core.config import resolve
    from harness.engine.calibrate import calibrate_routers
    from harness.runner.train import Trainer

    cfg = resolve({"preset": "smoke", "routing": {"router": "entropy", "ops": ["dct", "attn"]},
                   "data": {"task": "tiny-lm-test", "seq_len": 16}}, {})
    logs = []
    trainer = Trainer(cfg, log=logs.append)
    trainer.build()
    routers = [layer.router for layer in trainer.model.mixing_layers]
    assert not any(bool(r.calibrated) for r in routers)
    assert "validation batches" in calibrate_routers(trainer.model, trainer.task,
                                                     trainer.device, 8)
    assert all(bool(r.calibrated) for r in routers)
    trainer.fit()
    assert any("router calibrated before step 1" in line for line in logs)
