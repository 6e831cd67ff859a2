"""harness analyze: the per-token measures mean what they say, on the real attention kernel."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.probes.analyze.command import attention_probs, spearman_ci, token_measures
from operators import OPERATORS, MixContext


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 12), seed=st.integers(0, 10_000))
def test_distance_of_one_hot_attention_is_the_gap_and_entropy_zero(n, seed):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, n, (1, 1, n), generator=g)
    probs = torch.nn.functional.one_hot(target, n).double()  # (1, 1, N, N)
    distance, entropy = token_measures(probs)
    assert torch.allclose(distance[0], (torch.arange(n) - target[0, 0]).abs().double())
    assert torch.allclose(entropy, torch.zeros_like(entropy))


def test_uniform_causal_attention_has_log_t_entropy():
    n = 6
    probs = torch.tril(torch.ones(n, n)) / torch.arange(1, n + 1)[:, None]
    distance, entropy = token_measures(probs[None, None])
    for i in range(n):
        assert entropy[0, i].item() == pytest.approx(math.log(i + 1), abs=1e-6)
        assert distance[0, i].item() == pytest.approx(i / 2, abs=1e-6)  # mean of 0..i


def test_probs_reproduce_the_operator_output():
    torch.manual_seed(0)
    op = OPERATORS.get("attn")(16, 2, 32, True).eval()
    x = torch.randn(3, 10, 16)
    ctx = MixContext(causal=True)
    probs = attention_probs(op, x, ctx)
    v = op.kv_proj(x).view(3, 10, 2, 2, 8)[:, :, 1].transpose(1, 2)
    y = op.out_proj((probs @ v).transpose(1, 2).reshape(3, 10, 16))
    assert torch.allclose(y, op(x, ctx), atol=1e-5)
    assert torch.triu(probs[0, 0], 1).abs().max() == 0  # causal: nothing from the future


def test_spearman_interval_brackets_a_strong_monotone_relation():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, generator=g)
    y = x ** 3 + 0.05 * torch.rand(400, generator=g)
    out = spearman_ci(x, y, torch.arange(400) // 8)
    assert out["rho"] > 0.9 and out["ci_low"] <= out["rho"] <= out["ci_high"]
    flat = spearman_ci(x, torch.rand(400, generator=g), torch.arange(400) // 8)
    assert flat["ci_low"] < 0.0 < flat["ci_high"]  # independent data: 0 inside the interval


def test_the_figure_carries_rho_and_its_interval():
    """Each layer's panel is titled with Spearman's rho and its bootstrap interval (issue 37):
    the figure says what it shows without the JSON beside it."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from harness.probes.analyze.command import hexbin_figure

    g = torch.Generator().manual_seed(0)
    layers = [{"spectral": torch.rand(200, generator=g), "distance": torch.rand(200, generator=g)}
              for _ in range(2)]
    summary = [{"spearman_entropy_distance": {"rho": 0.5 - i, "ci_low": 0.4 - i,
                                              "ci_high": 0.6 - i}} for i in range(2)]
    fig = hexbin_figure(layers, summary, "t: run")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    plt.close(fig)
    assert titles[0].startswith("layer 0: ρ = +0.500 [+0.400, +0.600]")
    assert titles[1].startswith("layer 1: ρ = -0.500 [-0.600, -0.400]")
