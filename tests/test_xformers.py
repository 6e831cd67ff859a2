"""The xformers operator: refuses clearly where it cannot run, equals `attn` where it can."""

import importlib.util

import pytest
import torch

from operators import OPERATORS, MixContext
from registry import ConfigError

USABLE = torch.cuda.is_available() and importlib.util.find_spec("xformers") is not None


def test_registered_everywhere():
    assert "xformers" in OPERATORS
    cls = OPERATORS.get("xformers")
    assert cls.supports_causal and cls.supports_query_subset


@pytest.mark.skipif(USABLE, reason="xformers and CUDA are available here")
def test_refuses_at_construction_and_suggests_attn():
    with pytest.raises(ConfigError, match="attn") as err:
        OPERATORS.get("xformers")(32, 4, 64, True)
    assert "CUDA" in str(err.value) or "xformers" in str(err.value)


@pytest.mark.gpu
@pytest.mark.skipif(not USABLE, reason="needs CUDA and xformers")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("subset", [False, True])
def test_equals_attn_in_bf16(causal, padded, subset):
    torch.manual_seed(0)
    d, heads, n = 64, 4, 37  # n not a multiple of 8: exercises the aligned bias slice
    attn = OPERATORS.get("attn")(d, heads, 128, causal).cuda()
    xf = OPERATORS.get("xformers")(d, heads, 128, causal).cuda()
    xf.load_state_dict(attn.state_dict())
    x = torch.randn(3, n, d, device="cuda")
    mask = None
    if padded:
        lengths = torch.tensor([n, 20, 5], device="cuda")
        mask = torch.arange(n, device="cuda")[None] < lengths[:, None]
    ctx = MixContext(padding_mask=mask, causal=causal)
    if subset:
        positions = torch.tensor([[0, 4, 36], [1, 2, 19], [0, 3, 4]], device="cuda")
        ctx = ctx.with_queries(positions, torch.ones_like(positions, dtype=torch.bool))
    with torch.autocast("cuda", dtype=torch.bfloat16):
        expected, got = attn(x, ctx), xf(x, ctx)
    torch.testing.assert_close(got.float(), expected.float(), atol=2e-2, rtol=2e-2)
