"""`run --dry-run` (harness/runner/plan.py): parameters, FLOPs, memory, GPU-hours, no data."""

from __future__ import annotations

import pytest

from harness.cli.main import main
from harness.core.config import resolve
from harness.engine.model import Model, count_parameters
from harness.runner.plan import H100_BF16_PEAK, MFU, make_plan
from tasks import TASKS


def _cfg(**overrides):
    task = overrides.get("data", {}).get("task", "listops")
    return resolve(overrides, TASKS.get(task).presets)


def test_parameters_match_the_real_model():
    cfg = _cfg(preset="cpu", routing={"router": "entropy", "ops": ["dct", "rbf", "attn"]})
    task = TASKS.get("listops")(128, seed=0, n_train=10, n_valid=10, n_test=10)
    assert make_plan(cfg).parameters == count_parameters(Model(cfg, task, 128))


def test_flops_follow_the_operators_and_the_router():
    from operators import OPERATORS

    single = make_plan(_cfg(preset="cpu", routing={"router": "single", "ops": ["attn"]}))
    attn = OPERATORS.get("attn")(64, 4, 128, False)
    assert single.mixer_flops_per_token == pytest.approx(2 * attn.flops(128, 128) / 128)
    assert single.attention_flop_fraction == 1.0
    routed = make_plan(_cfg(preset="cpu", routing={"router": "entropy", "ops": ["dct", "attn"]}))
    assert routed.attention_flop_fraction == pytest.approx(attn.flops(48, 128)
                                                           / attn.flops(128, 128))
    assert routed.mixer_flops_per_token < single.mixer_flops_per_token
    soft = make_plan(_cfg(preset="cpu", routing={"router": "meta", "ops": ["dct", "attn"]}))
    assert soft.attention_flop_fraction == 1.0  # a soft router runs everything
    assert soft.mixer_flops_per_token > single.mixer_flops_per_token


def test_gpu_hours_and_tokens_are_the_stated_arithmetic():
    plan = make_plan(_cfg(preset="paper", data={"task": "wikitext103"}))
    assert plan.train_tokens == 50000 * 32 * 512
    assert plan.train_flops == pytest.approx(3 * plan.forward_flops_per_token * plan.train_tokens)
    assert plan.gpu_hours == pytest.approx(plan.train_flops / (MFU * H100_BF16_PEAK) / 3600)
    assert plan.vocab_size == 8192 and "assumed" in plan.vocab_source


def test_paper_400m_preset_is_about_400m_parameters():
    plan = make_plan(_cfg(preset="paper-400m", data={"task": "wikitext103"},
                          routing={"router": "single", "ops": ["attn"]}))
    assert 380e6 < plan.parameters < 420e6
    assert plan.seq_len == 1024 and plan.memory_gb > 16 * plan.parameters / 1e9


def test_dry_run_needs_no_data_and_writes_nothing(tmp_path, capsys):
    code = main(["run", "--dry-run", "--preset", "paper-400m", "--task", "wikitext103",
                 "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "expected GPU-hours" in out and "parameters" in out and "MFU" in out
    assert "preset paper-400m: assumed: 24 layers" in out
    assert not any(tmp_path.iterdir())
