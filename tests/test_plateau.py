"""Training to the plateau: patience counts evaluations without a real improvement."""

from __future__ import annotations

from harness.core.config import resolve
from harness.runner.train import improves, train


def test_an_improvement_counts_only_above_min_delta():
    assert improves(9.0, None, higher_is_better=False, min_delta=0.1)  # the first evaluation
    assert improves(8.9, 10.0, higher_is_better=False, min_delta=0.01)
    assert not improves(9.95, 10.0, higher_is_better=False, min_delta=0.01)  # 0.5% < 1%
    assert improves(0.61, 0.6, higher_is_better=True, min_delta=0.0)
    assert not improves(0.6, 0.6, higher_is_better=True, min_delta=0.0)


def _cfg(tmp_path, **budget):
    return resolve({"preset": "smoke", "out": str(tmp_path),
                    "routing": {"router": "single", "ops": ["attn"]},
                    "data": {"task": "tiny-lm-test", "seq_len": 16},
                    "budget": {"max_steps": 40, "eval_every": 2, "eval_batches": 1, **budget}},
                   {})


def test_a_run_stops_at_its_plateau_and_the_record_says_so(causal_task_and_noncausal_op,
                                                           tmp_path):
    # nothing improves by half of the loss in two evaluations: the plateau is reached early
    record, _ = train(_cfg(tmp_path, patience=2, min_delta=0.5), log=lambda msg: None)
    assert record.training.stop_reason == "plateau"
    assert record.training.steps == 6  # evaluations at 2 (the reference), 4, 6
    assert record.training.plateau.model_dump() == {
        "reached": True, "patience": 2, "min_delta": 0.5, "evals_since_improvement": 2}


def test_a_run_capped_before_its_plateau_says_it_was_not_reached(causal_task_and_noncausal_op,
                                                                 tmp_path):
    record, _ = train(_cfg(tmp_path, max_steps=4, patience=5), log=lambda msg: None)
    assert record.training.stop_reason == "max_steps"
    assert record.training.plateau.reached is False


def test_min_delta_at_its_default_leaves_earlier_config_hashes_unchanged(tmp_path):
    # (tests/test_first_hour.py pins the hash of the README's main command's config)
    assert _cfg(tmp_path).digest() == _cfg(tmp_path, min_delta=0.0).digest()
    assert _cfg(tmp_path).digest() != _cfg(tmp_path, min_delta=0.01).digest()
