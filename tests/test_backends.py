"""The kernel table of attention: backend=auto|sdpa|flex|xformers, chosen per device, one line
per refusal, and a new kernel as one class plus one table entry."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch

from operators import OPERATORS, MixContext
from operators.attention import ATTENTION_KERNELS, SDPAKernel
from operators.base import executed_flops
from registry import ConfigError

CUDA = torch.cuda.is_available()


def attn(causal=True, name="attn", **options):
    torch.manual_seed(0)
    return OPERATORS.get(name)(32, 4, 64, causal, **options)


def test_auto_is_the_pure_pytorch_path_on_a_cpu():
    op = attn()
    assert op.options.backend == "auto" and op.backend == "sdpa"
    assert type(op.kernel()) is SDPAKernel
    assert ATTENTION_KERNELS.names() == ["auto", "sdpa", "flex", "xformers"]


def test_sdpa_chosen_by_name_computes_what_auto_does():
    x = torch.randn(2, 16, 32)
    mask = torch.arange(16)[None] < torch.tensor([[16], [9]])
    ctx = MixContext(padding_mask=mask, causal=True)
    auto, sdpa = attn(), attn(backend="sdpa")
    sdpa.load_state_dict(auto.state_dict())
    assert torch.equal(auto(x, ctx), sdpa(x, ctx)) and sdpa.backend == "sdpa"


def test_an_unknown_backend_is_one_line_listing_the_table():
    with pytest.raises(ConfigError) as err:
        attn(backend="cuda")
    message = str(err.value)
    assert "operator 'attn' option backend='cuda' is invalid" in message
    assert "(backends: auto, sdpa, flex, xformers)" in message
    assert "--op-option attn.backend=VALUE" in message and len(message.splitlines()) == 1


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
@pytest.mark.parametrize("backend", ["flex", "xformers"])
def test_a_gpu_backend_is_refused_at_construction_without_cuda(backend):
    with pytest.raises(ConfigError, match=rf"operator 'attn' backend '{backend}' cannot run: "
                                          rf".*CUDA.*; pass --op-option attn.backend=auto"):
        attn(backend=backend)


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_the_xformers_operator_is_attn_with_backend_xformers():
    cls = OPERATORS.get("xformers")
    assert issubclass(cls, OPERATORS.get("attn")) and OPERATORS.has_role("xformers", "attention")
    assert cls.Options().backend == "xformers"
    with pytest.raises(ConfigError, match="use --ops attn"):
        cls(32, 4, 64, True)
    with pytest.raises(ConfigError, match="option backend='sdpa' is invalid"):
        cls(32, 4, 64, True, backend="sdpa")


def test_a_gpu_kernel_on_a_cpu_device_is_refused_when_the_model_runs_there():
    flex = ATTENTION_KERNELS.kernel("flex")
    assert "CUDA" in flex.unavailable(torch.device("cpu"))
    assert ATTENTION_KERNELS.choose("auto", torch.device("cpu"), "attn", "").name == "sdpa"
    with pytest.raises(ConfigError, match="backend 'flex' cannot run on cpu: FlexAttention runs "
                                          "on CUDA"):
        ATTENTION_KERNELS.choose("flex", torch.device("cpu"), "attn", "do something else")


class RectangleKernel(SDPAKernel):
    """A stand-in library kernel: SDPA for every call, routed causal queries included (as one
    masked rectangle), never blocks."""

    name = "rectangle"
    in_blocks = False
    calls = 0

    def subset(self, q, k, v, ctx, key_bias, scale):
        return self.full(q, k, v, ctx, key_bias, scale)

    def subset_pairs(self, ctx, n_key, batch):
        return batch * ctx.query_positions.shape[1] * n_key

    def full(self, q, k, v, ctx, key_bias, scale):
        type(self).calls += 1
        return super().full(q, k, v, ctx, key_bias, scale)


@pytest.fixture
def rectangle(monkeypatch):
    """A new kernel: its module, plus one entry in the table."""
    module = types.ModuleType("fake_rectangle_kernel")
    module.RectangleKernel = RectangleKernel
    monkeypatch.setitem(sys.modules, "fake_rectangle_kernel", module)
    monkeypatch.setitem(ATTENTION_KERNELS.kernels, "rectangle",
                        "fake_rectangle_kernel:RectangleKernel")
    RectangleKernel.calls = 0
    yield RectangleKernel


def test_a_new_kernel_is_one_class_plus_one_table_entry(rectangle):
    op, ref = attn(backend="rectangle"), attn()
    op.load_state_dict(ref.state_dict())
    assert op.backend == "rectangle"
    x = torch.randn(2, 12, 32)
    positions = torch.tensor([[1, 5, 11], [0, 2, 3]])
    ctx = MixContext(causal=True).with_queries(positions, torch.ones_like(positions).bool())
    for c in (MixContext(causal=True), ctx):
        torch.testing.assert_close(op(x, c), ref(x, c), atol=1e-5, rtol=1e-5)
    assert rectangle.calls == 2  # both calls ran the new kernel
    # and its cost is what it runs: the rectangle for routed causal queries
    assert op.call_score_pairs(ctx, 12, 2) == 2 * 3 * 12 > ref.call_score_pairs(ctx, 12, 2)
    assert executed_flops(op, ctx, 12, 2)[0] > executed_flops(ref, ctx, 12, 2)[0]


def test_auto_takes_the_first_usable_kernel_of_its_order(rectangle, monkeypatch):
    monkeypatch.setattr(ATTENTION_KERNELS, "auto", ("flex", "rectangle", "sdpa"))
    assert attn().backend == "rectangle"  # flex is not usable on a CPU
    assert OPERATORS.get("rbf")(32, 4, 64, True).backend == "rectangle"  # rbf shares the table


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_auto_takes_flex_on_cuda_where_it_imports():
    from operators import flex

    op = attn().cuda()
    assert op.backend == ("flex" if flex._kernels() is not None else "sdpa")
    assert attn(backend="sdpa").cuda().backend == "sdpa"


@pytest.mark.gpu
@pytest.mark.skipif(not (CUDA and importlib.util.find_spec("xformers")),
                    reason="needs CUDA and xformers")
def test_xformers_backend_equals_attn_on_rbf_scores():
    """The xformers kernel serves a subclass's per-key bias too (rbf with backend=xformers)."""
    torch.manual_seed(0)
    ref = OPERATORS.get("rbf")(64, 4, 128, True).cuda()
    xf = OPERATORS.get("rbf")(64, 4, 128, True, backend="xformers").cuda()
    xf.load_state_dict(ref.state_dict())
    x = torch.randn(2, 37, 64, device="cuda")
    for causal_ctx in (MixContext(causal=True), MixContext(causal=True).with_queries(
            torch.tensor([[0, 4, 36], [1, 2, 19]], device="cuda"),
            torch.ones(2, 3, dtype=torch.bool, device="cuda"))):
        torch.testing.assert_close(xf(x, causal_ctx), ref(x, causal_ctx), atol=2e-3, rtol=2e-3)
