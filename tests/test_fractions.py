"""--attn-fraction at its ends: 1.0 is attention everywhere (equal to single attention), 0.0
sends no token to the top operator; a router that cannot honour them refuses them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from operators import MixContext
from registry import ConfigError
from routers import ROUTERS

D = 16


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["entropy", "random"]), fraction=st.sampled_from([0.0, 1.0]),
       n_ops=st.integers(2, 4), seed=st.integers(0, 10_000), steps=st.integers(0, 4))
def test_the_ends_are_exact_at_every_step(name, fraction, n_ops, seed, steps):
    router = ROUTERS.get(name)(D, n_ops, causal=True, attn_fraction=fraction).train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps + 1):  # training batches, then an unseen one in eval mode
        out = router(torch.randn(4, 24, D, generator=g) * 3, MixContext())
    out = router.eval()(torch.randn(4, 24, D, generator=g) * 5, MixContext())
    top = out.assignment == n_ops - 1
    assert bool(top.all()) if fraction == 1.0 else not bool(top.any())


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_fraction_one_equals_single_attention_exactly(causal_task_and_noncausal_op, padded,
                                                       mode):
    from harness.core.config import resolve
    from harness.engine.model import Model
    from harness.probes.checks import random_batch
    from harness.runner.train import build_task

    task_name = "listops" if padded else "tiny-lm-test"
    base = {"preset": "smoke", "model": {"layers": 2},
            "data": {"task": task_name, "seq_len": 32}}
    routed_cfg = resolve({**base, "routing": {"router": "entropy", "ops": ["dct", "attn"],
                                              "attn_fraction": 1.0}}, {})
    single_cfg = resolve({**base, "routing": {"router": "single", "ops": ["attn"]}}, {})
    task = build_task(routed_cfg)
    routed, single = Model(routed_cfg, task, 32), Model(single_cfg, task, 32)
    state = {k.replace("mixing.ops.1.", "mixing.ops.0."): v
             for k, v in routed.state_dict().items()
             if "mixing.ops.0." not in k and "mixing.router." not in k}
    single.load_state_dict(state)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a few training steps move the thresholds first
        for _ in range(3):
            routed.train()(random_batch(task, 4, 32, g, padded=padded))
    routed.train(mode == "train")
    single.train(mode == "train")
    for _ in range(3):
        batch = random_batch(task, 4, 32, g, padded=padded)
        with torch.no_grad():
            assert torch.equal(routed(batch)[0], single(batch)[0])


@pytest.mark.parametrize("router", ["learned", "meta"])
@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_a_router_that_only_aims_at_the_fraction_refuses_the_ends(router, fraction):
    with pytest.raises(ConfigError, match="cannot honour"):
        ROUTERS.get(router)(D, 2, causal=True, attn_fraction=fraction)
