"""Training to the plateau: patience counts evaluations without a real improvement."""

from __future__ import annotations

import pytest

from harness.core.config import resolve
from harness.core.record_sections import at_plateau, plateau_gain
from harness.runner.train import train


def test_the_gain_is_the_best_metrics_relative_improvement_over_the_window():
    ppl = [21.13, 20.75, 20.42, 19.85, 19.73, 19.70, 19.65, 19.64]
    # the best of the last 3 (19.64) against the best before them (19.73)
    assert plateau_gain(ppl, higher_is_better=False, patience=3) == pytest.approx(
        (19.73 - 19.64) / 19.73)
    assert plateau_gain(ppl, higher_is_better=False, patience=8) is None  # too few
    # a worse evaluation inside the window does not count as progress, nor as a loss
    assert plateau_gain([10.0, 9.0, 9.5, 9.6], False, 2) == 0.0
    assert plateau_gain([0.50, 0.60, 0.66], True, 1) == pytest.approx(0.1)


def test_the_plateau_is_reached_only_below_min_delta_and_never_with_too_few_evaluations():
    ppl = [21.13, 20.75, 20.42, 19.85, 19.73, 19.70, 19.65, 19.64]
    gain = plateau_gain(ppl, False, 3)
    assert at_plateau(ppl, False, 3, min_delta=0.01) == (True, gain)  # 0.46% < 1%
    assert at_plateau(ppl, False, 3, min_delta=0.001) == (False, gain)  # 0.46% >= 0.1%
    assert at_plateau(ppl, False, 8, min_delta=1.0) == (False, None)


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
    assert record.training.steps == 6  # evaluations at 2 (before the window), 4 and 6
    values = [e.valid["perplexity"] for e in record.training.history]
    plateau = record.training.plateau
    assert plateau.reached and (plateau.patience, plateau.min_delta) == (2, 0.5)
    assert plateau.gain == plateau_gain(values, False, 2) < 0.5


def test_a_run_capped_before_its_plateau_says_it_was_not_reached(causal_task_and_noncausal_op,
                                                                 tmp_path):
    record, _ = train(_cfg(tmp_path, max_steps=4, patience=5), log=lambda msg: None)
    assert record.training.stop_reason == "max_steps"
    assert record.training.plateau.reached is False


def test_min_delta_at_its_default_leaves_earlier_config_hashes_unchanged(tmp_path):
    # (tests/test_first_hour.py pins the hash of the README's main command's config)
    assert _cfg(tmp_path).digest() == _cfg(tmp_path, min_delta=0.0).digest()
    assert _cfg(tmp_path).digest() != _cfg(tmp_path, min_delta=0.01).digest()
