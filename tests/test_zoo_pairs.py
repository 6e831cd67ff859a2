"""Each zoo mixer as the cheap half of a routed pair (``--ops MIXER,attn``) under the entropy,
random and oracle routers, on a causal task with ground truth (mqar): the model trains a step,
routed execution equals dense execution (outputs and gradients), stays causal, skips the
attention work it says it skips, and scores its routing against the ground truth."""

import pytest
import torch

from harness.core.config import resolve
from harness.engine.meters.groundtruth import GroundTruthMeter
from harness.engine.model import Model
from harness.probes.checks import check_causality, check_routed_equals_dense
from tasks import TASKS

MIXERS = ["linear", "swa", "hyena", "ssd"]
ROUTERS = ["entropy", "random", "oracle"]
N = 32


@pytest.fixture(scope="module")
def mqar(tmp_path_factory):
    return TASKS.get("mqar")(N, cache_dir=tmp_path_factory.mktemp("mqar"), n_pairs=4,
                             n_train=32, n_valid=8, n_test=8)


def pair(mixer: str, router: str, task) -> Model:
    options = {"swa": {"window": 8}}.get(mixer, {})  # a window shorter than the sequence
    cfg = resolve({"model": {"layers": 2, "d_model": 16, "heads": 2},
                   "routing": {"router": router, "ops": [mixer, "attn"],
                               "op_options": {mixer: options} if options else {}},
                   "data": {"task": "mqar"}}, {})
    torch.manual_seed(0)
    return Model(cfg, task, N)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("mixer", MIXERS)
def test_routed_pair_trains_and_routed_equals_dense(mixer, router, mqar):
    model = pair(mixer, router, mqar)
    batch = mqar.collate(list(mqar.dataset("train"))[:8])
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):  # the first steps also calibrate the routers' thresholds
        out = model(batch)
        loss = mqar.loss(out.logits, batch) + out.aux_loss
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))

    model.eval()
    g = torch.Generator().manual_seed(1)
    routed = check_routed_equals_dense(model, mqar, N, g)
    assert routed.passed, routed.detail
    causal = check_causality(model, mqar, N, g)
    assert causal.passed, causal.detail

    meter = GroundTruthMeter(len(model.mixing_layers))
    with torch.no_grad():
        out = model(batch)
    meter.update(out)
    truth, _ = meter.summary()
    for layer, report in zip(truth, out.layers, strict=True):
        assert 0.0 <= layer["precision"] <= 1.0 and 0.0 <= layer["recall"] <= 1.0
        if router == "oracle":  # 4 of 32 tokens need attention, 37.5% budget: all get it
            assert layer["recall"] == 1.0
        cost, tokens = report.cost, batch.tokens.numel()
        attn, cheap = cost.names.index("attn"), cost.names.index(mixer)
        assert 0 < cost.query_rows[attn] < tokens  # attention ran on its own tokens only
        if mixer in ("linear", "swa"):  # query subsets: the mixer's own tokens only
            assert 0 < cost.query_rows[cheap] < tokens
        else:  # every token through the mixer, charged in full
            assert cost.query_rows[cheap] == tokens
            assert cost.flops[cheap] == cost.full_flops[cheap]
