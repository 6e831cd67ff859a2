"""The flatness router's own behaviour, beyond the contract: calibration and freezing."""

import torch
from chiaroscuro_example_plugin.router import FlatnessRouter

from operators import MixContext


def test_threshold_calibrates_to_the_attention_share_then_freezes():
    router = FlatnessRouter(32, 2, causal=True, attn_fraction=0.25)
    x = torch.randn(8, 64, 32) * torch.rand(8, 64, 1)  # scale must not matter
    ctx = MixContext(causal=True)
    router.train()
    router(x, ctx)  # decided with the prior, then sets the threshold from this batch
    share = router(x, ctx).stats["fractions"][1]
    assert abs(float(share) - 0.25) < 0.02
    router.eval()
    frozen = router.threshold.clone()
    router(torch.randn(8, 64, 32), ctx)
    assert torch.equal(router.threshold, frozen)
    assert "threshold" in router.state_dict() and "calibrated" in router.state_dict()


def test_padding_goes_to_the_cheap_operator():
    router = FlatnessRouter(16, 2, causal=False).eval()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    routing = router(torch.randn(2, 10, 16), MixContext(padding_mask=mask))
    assert (routing.assignment[~mask] == 0).all()
