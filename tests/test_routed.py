"""Routed execution really skips work and changes nothing: routed == dense, and honest costs."""

from __future__ import annotations

from unittest.mock import patch

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness.cli.main import main
from harness.core.config import resolve
from harness.engine.model import Model
from harness.probes.checks import check_causality, check_routed_equals_dense, random_batch
from routers import ROUTERS
from tasks import TASKS
from tests.toy_tasks import ToyLM

OPERATOR_SETS = [["dct", "attn"], ["identity", "attn"], ["rbf", "attn"], ["dct", "rbf", "attn"]]
ROUTER_NAMES = [name for name in ROUTERS.names() if name != "single"]


def tiny_config(router: str, ops: list[str], task: str = "listops", seq_len: int = 24):
    return resolve({"preset": "smoke", "routing": {"router": router, "ops": ops},
                    "data": {"task": task, "seq_len": seq_len}},
                   getattr(TASKS.get(task), "presets", {}))


def build(router: str, ops: list[str], seq_len: int, seed: int, task=None):
    task = task or TASKS.get("listops")(seq_len, cache_dir="/nonexistent-never-loaded")
    cfg = tiny_config(router, ops, seq_len=seq_len)
    torch.manual_seed(seed)
    model = Model(cfg, task, seq_len)
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():  # calibrate thresholds so routing is non-trivial
        for _ in range(2):
            model(random_batch(task, 4, seq_len, g, padded=True))
    return model.eval(), task, g


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(router=st.sampled_from(ROUTER_NAMES), ops=st.sampled_from(OPERATOR_SETS),
       seq_len=st.integers(8, 40), seed=st.integers(0, 2**16))
# rbf gets no routed token here: it does not run, and its gradient is the dense path's zero
@example(router="entropy", ops=["dct", "rbf", "attn"], seq_len=8, seed=3)
def test_routed_equals_dense_outputs_and_gradients(router, ops, seq_len, seed):
    """Tolerance 1e-4 absolute and relative (float32): routed execution reorders sums (gathered
    queries, scatter back), nothing else."""
    router_cls = ROUTERS.get(router)
    if not router_cls.min_ops <= len(ops) <= router_cls.max_ops:
        return
    model, task, g = build(router, ops, seq_len, seed)
    result = check_routed_equals_dense(model, task, seq_len, g)
    assert result.passed, result.detail


CAUSAL_SETS = [["dct", "attn"], ["rbf", "attn"], ["dct", "rbf", "attn"]]


def build_causal(router: str, ops: list[str], seq_len: int, seed: int):
    return build(router, ops, seq_len, seed, task=ToyLM(seq_len))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(router=st.sampled_from(["entropy", "random", "learned"]),
       ops=st.sampled_from(CAUSAL_SETS), seq_len=st.integers(8, 40),
       block=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_routed_causal_blocks_equal_dense_outputs_and_gradients(router, ops, seq_len, block,
                                                               seed):
    """Language modelling: routed causal queries run in position-sorted blocks that stop at
    each block's last position; the model still equals dense execution, and stays causal."""
    from operators import causal_blocks

    router_cls = ROUTERS.get(router)
    if not router_cls.min_ops <= len(ops) <= router_cls.max_ops:
        return
    model, task, g = build_causal(router, ops, seq_len, seed)
    with patch.object(causal_blocks, "QUERY_BLOCK", block):
        result = check_routed_equals_dense(model, task, seq_len, g)
        assert result.passed, result.detail
        causal = check_causality(model, task, seq_len, g)
        assert causal.passed, causal.detail


def test_causal_attention_flop_fraction_follows_the_routed_share():
    """At attention fraction 0.375 on a causal task the attention-FLOP fraction is near 0.375
    plus the share of the K/V projection (computed for every token), not the ~0.75 that a
    masked rectangle per routed query would be charged."""
    from harness.engine.meters.cost import CostMeter

    n = 256
    model, task, g = build_causal("random", ["dct", "attn"], n, 0)
    attn = model.mixing_layers[0].ops[-1]
    d = attn.d_model
    meter = CostMeter(model, d, attn.n_heads, n, causal=True)
    with torch.no_grad():
        for _ in range(3):
            batch = random_batch(task, 4, n, g)
            meter.update(model(batch), batch)
    fraction = meter.summary()["attention_flop_fraction"]
    share = 0.375 * attn.flops(n, n) + 4 * n * d * d * (1 - 0.375)  # routed + K/V of the rest
    assert fraction < 1.15 * share / attn.flops(n, n)
    assert fraction > 0.3


def test_routed_execution_skips_attention_work_and_says_so():
    model, task, g = build("entropy", ["dct", "attn"], 32, 0)
    batch = random_batch(task, 4, 32, g)
    with torch.no_grad():
        out = model(batch)
    for report in out.layers:
        cost = report.cost
        attn = cost.names.index("attn")
        routed = cost.routed[attn]
        assert 0 < routed < 4 * 32
        # attention ran on fewer query rows than the batch has tokens, and counted only that
        assert cost.query_rows[attn] < 4 * 32
        assert cost.flops[attn] < cost.full_flops[attn]
        # DCT cannot take a subset: it ran everywhere and is charged for everywhere
        dct = cost.names.index("dct")
        assert cost.flops[dct] == cost.full_flops[dct]


def test_dense_execution_and_soft_routers_claim_no_saving():
    for router, execution in (("entropy", "dense"), ("meta", "routed")):
        model, task, g = build(router, ["dct", "attn"], 32, 0)
        for layer in model.mixing_layers:
            layer.execution = execution
        with torch.no_grad():
            out = model(random_batch(task, 4, 32, g))
        for report in out.layers:
            assert report.cost.flops == report.cost.full_flops


def test_check_command_fails_a_leaky_combination(causal_task_and_noncausal_op, capsys):
    code = main(["check", "--preset", "smoke", "--task", "tiny-lm-test", "--seq-len", "16",
                 "--router", "entropy", "--ops", "dct-leaky,attn"])  # check needs no permission
    out = capsys.readouterr().out
    assert code == 1
    assert "causality" in out and "FAIL" in out and "operator 'dct-leaky'" in out


def test_check_command_passes_an_honest_combination(causal_task_and_noncausal_op, capsys):
    code = main(["check", "--preset", "smoke", "--task", "tiny-lm-test", "--seq-len", "16",
                 "--router", "entropy", "--ops", "dct,attn"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out
    # dct is all FFTs, which torch's counter cannot see: said, not passed as 0 == 0
    flop_row = next(line for line in out.splitlines() if line.startswith("flop counter"))
    assert "pass" in flop_row and "attn" in flop_row
    assert "dct not countable by FlopCounterMode" in flop_row and "dct 0" not in flop_row


def test_a_flop_counter_row_with_nothing_countable_is_not_a_pass(capsys):
    from harness.probes.checks import check_flop_counts

    task = TASKS.get("listops")(24, cache_dir="/nonexistent-never-loaded")
    result = check_flop_counts(tiny_config("single", ["dct"]), task, 24)
    assert result.passed and result.verdict == "n/a" and result.row()[1] == "n/a"
    assert result.detail.startswith("dct not countable by FlopCounterMode")
    counted = check_flop_counts(tiny_config("single", ["attn"]), task, 24)
    assert counted.verdict == "pass" and counted.detail.startswith("agree within 5%: attn")


@pytest.mark.parametrize("router", ["meta-batch", "entropy-topk"])
def test_paper_variants_need_allow_leaky_on_causal_tasks(router, causal_task_and_noncausal_op,
                                                        capsys, tmp_path):
    args = ["run", "--preset", "smoke", "--task", "tiny-lm-test", "--seq-len", "16",
            "--router", router, "--ops", "dct,attn", "--out", str(tmp_path), "--max-steps", "2"]
    assert main(args) == 2
    assert "--allow-leaky" in capsys.readouterr().err


def test_causal_attention_is_charged_what_its_kernel_computes():
    """Full causal attention runs the fused kernel with is_causal (the triangle); routed
    queries run with an explicit mask (the whole rectangle). Charging both the rectangle would
    overstate routed savings on causal tasks by about 2x."""
    from operators import OPERATORS

    n, d = 64, 32
    causal = OPERATORS.get("attn")(d, 2, n, causal=True)
    plain = OPERATORS.get("attn")(d, 2, n, causal=False)
    projections = 8 * n * d * d
    assert causal.flops(n, n) == projections + 4 * d * n * (n + 1) // 2
    assert plain.flops(n, n) == projections + 4 * d * n * n
    assert causal.flops(n // 2, n) == plain.flops(n // 2, n)  # a subset: the rectangle
    rbf = OPERATORS.get("rbf")(d, 2, n, causal=True)  # its bias is a mask: the rectangle
    assert rbf.flops(n, n) > causal.flops(n, n)


def test_bands_go_to_operators_in_the_order_given_on_every_task():
    """Causality flips declared costs (causal attention is charged its triangle, rbf its
    rectangle): the top band must still go to the operator the user listed last."""
    from harness.engine.model import band_map, build_operators

    def order(ops, causal=False):
        return [name for name, _ in build_operators(ops, {}, 64, 4, 128, causal)]

    for causal in (False, True):
        assert order(["dct", "rbf", "attn"], causal) == ["dct", "rbf", "attn"]
        assert order(["dct", "attn", "rbf"], causal) == ["dct", "attn", "rbf"]
        assert order(["attn", "dct"], causal) == ["attn", "dct"]
    assert band_map(["dct", "rbf", "attn"], 0.25) == [("dct", 0.375), ("rbf", 0.375),
                                                      ("attn", 0.25)]


def test_the_record_says_which_operator_got_which_band(causal_task_and_noncausal_op, tmp_path,
                                                       capsys):
    import json

    from harness.cli.main import main

    code = main(["run", "--preset", "smoke", "--task", "tiny-lm-test", "--router", "entropy",
                 "--ops", "dct,rbf,attn", "--attn-fraction", "0.25", "--seq-len", "16",
                 "--max-steps", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "bands in --ops order (lowest first): dct 37.5%, rbf 37.5%, attn 25.0%" in out
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["operators"] == ["dct", "rbf", "attn"]
    assert record["cost"]["bands"][-1] == {"operator": "attn", "target_share": 0.25}
