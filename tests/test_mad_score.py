"""MAD's score from records: the cell of each difficulty setting is chosen on validation, its
test accuracy is the setting's, tasks average their settings and the score its tasks."""

from __future__ import annotations

import pytest

from harness.core.config import RunConfig
from harness.core.records import RunRecord
from harness.report.mad_score import mad_scores, render
from tasks.mad_common import MAD_TASKS


def record(task, lr, wd, valid, test, *, seed=0, seq_len=64, ops=("attn",), flags=(),
           best=None, max_steps=1000, **task_options):
    cfg = RunConfig.model_validate({
        "preset": "cpu", "seed": seed,
        "model": {"layers": 2, "d_model": 64, "heads": 4},
        "routing": {"router": "single", "ops": list(ops)},
        "data": {"task": task, "seq_len": seq_len, "task_options": task_options},
        "optim": {"lr": lr, "weight_decay": wd},
        "budget": {"max_steps": max_steps},
    })
    metrics = {"valid": {"accuracy": 0.5, "macro_accuracy": valid},
               "test": {"accuracy": 0.5, "macro_accuracy": test}}
    return RunRecord.model_validate({
        "run_id": f"{task}-{lr}-{wd}-{seed}", "created": "2026-01-01T00:00:00+00:00",
        "task": task, "router": "single", "operators": list(ops), "seed": seed,
        "preset": "cpu", "config": cfg.model_dump(), "config_hash": cfg.digest(),
        "flags": ["preset:cpu", *flags], "metrics": metrics, "cost": {}, "training": {},
        "parameters": 1, "data": {}, "environment": {},
        "best_checkpoint": None if best is None else {"step": 1, "metrics": best},
    })


def test_each_setting_takes_the_test_score_of_its_best_validation_cell():
    recs = [
        # setting 1: the best validation cell (5e-4, 0.1) is not the best test cell
        record("compression", 1e-4, 0.0, valid=0.2, test=0.9),
        record("compression", 5e-4, 0.1, valid=0.6, test=0.5),
        record("compression", 1e-3, 0.0, valid=0.4, test=0.4),
        # setting 2 (another length, fewer steps: MAD's budget follows its data)
        record("compression", 1e-4, 0.0, valid=0.3, test=0.3, seq_len=128, max_steps=400),
        record("compression", 1e-3, 0.0, valid=0.7, test=0.7, seq_len=128, max_steps=400),
        # another task; seeds of a cell are averaged before choosing
        record("memorization", 1e-4, 0.0, valid=0.5, test=0.5, seed=0),
        record("memorization", 1e-4, 0.0, valid=0.9, test=0.8, seed=1),
        record("memorization", 1e-3, 0.0, valid=0.65, test=1.0),
    ]
    (score,), problems = mad_scores(recs)
    assert not problems
    chosen = {(s.task, s.setting["seq_len"]): s for s in score.settings}
    assert (chosen["compression", 64].lr, chosen["compression", 64].weight_decay) == (5e-4, 0.1)
    assert chosen["compression", 64].test == 0.5 and chosen["compression", 64].cells == 3
    assert chosen["compression", 128].test == 0.7
    assert chosen["memorization", 64].lr == 1e-4  # mean valid 0.7 beats 0.65
    assert chosen["memorization", 64].test == pytest.approx(0.65)
    assert chosen["memorization", 64].seeds == 2
    assert score.per_task == pytest.approx({"compression": 0.6, "memorization": 0.65})
    assert score.overall == pytest.approx(0.625)
    assert not score.complete
    assert "0.600 (2)" in render([score]) and "(incomplete)" in render([score])


def test_configurations_are_scored_apart_and_flagged_or_partial_records_left_out():
    recs = [record(t, 1e-3, 0.0, valid=0.5, test=0.5) for t in MAD_TASKS]
    recs += [record(t, 1e-3, 0.0, valid=0.9, test=0.2, ops=("dct",)) for t in MAD_TASKS]
    recs.append(record("compression", 1e-4, 0.0, valid=1.0, test=1.0,
                       flags=("leaky: test",)))
    recs.append(record("mqar", 1e-4, 0.0, valid=1.0, test=1.0))  # not a MAD task
    scores, _ = mad_scores(recs)
    assert [s.label for s in scores] == ["single attn (cpu)", "single dct (cpu)"]
    assert [s.overall for s in scores] == pytest.approx([0.5, 0.2])
    assert all(s.complete for s in scores)
    legacy = record("compression", 1e-4, 0.0, valid=0.1, test=0.1)
    legacy.metrics = {"valid": {"accuracy": 1.0}, "test": {"accuracy": 1.0}}
    _, problems = mad_scores([legacy])
    assert problems and "no valid and test macro_accuracy" in problems[0]
    (by_accuracy,), _ = mad_scores([legacy], metric="accuracy")
    assert by_accuracy.overall == 1.0


def test_the_best_validation_checkpoint_is_read_when_a_record_has_one():
    best = {"valid": {"macro_accuracy": 0.8}, "test": {"macro_accuracy": 0.75}}
    recs = [record("compression", 1e-4, 0.0, valid=0.2, test=0.1, best=best),
            record("compression", 1e-3, 0.0, valid=0.7, test=0.9)]
    (score,), _ = mad_scores(recs)
    assert score.settings[0].lr == 1e-4 and score.settings[0].test == 0.75
