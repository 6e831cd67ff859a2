"""The best-validation checkpoint is evaluated, and the final weights come back exactly."""

from __future__ import annotations

import copy

import torch

from harness.core.config import resolve
from harness.engine.model import Model
from harness.runner import train as train_module
from harness.runner.best import weights_swapped
from harness.runner.train import build_task


def _cfg(tmp_path, **budget):
    return resolve({"preset": "smoke", "seed": 0, "out": str(tmp_path),
                    "model": {"d_model": 32, "heads": 2},
                    "routing": {"router": "single", "ops": ["dct"]},
                    "data": {"task": "tiny-lm-test", "seq_len": 16},
                    "budget": {"max_steps": 4, "eval_every": 2, "eval_batches": 1, **budget}},
                   {})


def test_swapping_weights_restores_a_causal_dct_exactly(causal_task_and_noncausal_op, tmp_path):
    cfg = _cfg(tmp_path)
    model = Model(cfg, build_task(cfg), 16)  # d_model 32 != seq_len 16: the spectrum is not square
    before = {k: v.clone() for k, v in model.state_dict().items()}
    other = copy.deepcopy(model.state_dict())  # a checkpoint as torch.save keeps it
    for value in other.values():
        if value.is_floating_point():
            value.normal_()
    with weights_swapped(model, other):
        assert not torch.equal(model.state_dict()["blocks.0.mixing.ops.0.spectrum"],
                               before["blocks.0.mixing.ops.0.spectrum"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_a_causal_dct_run_whose_best_step_is_not_its_last_writes_its_record(
        causal_task_and_noncausal_op, tmp_path, monkeypatch):
    # the first evaluation is the best one, whatever the numbers: best (step 2) != last (4)
    monkeypatch.setattr(train_module, "better", lambda task, new, old: False)
    record, path = train_module.train(_cfg(tmp_path), log=lambda msg: None)
    assert path.exists()
    best = record.best_checkpoint
    assert best.step == 2 and best.same_as_final is False
    assert best.selected_by == "valid perplexity at training time, on its first 1 batches " \
                               "(--eval-batches)"  # what chose it: not the full split
    assert set(best.metrics) == {"valid", "test"}
    # two different sets of weights were evaluated
    assert record.metrics["test"]["loss"] != best.metrics["test"]["loss"]


def test_a_best_chosen_on_the_full_split_says_so(tmp_path):
    from harness.runner.best import best_checkpoint_metrics

    final = {"valid": {"loss": 1.0}, "test": {"loss": 1.1}}
    best = best_checkpoint_metrics(None, dict, tmp_path, {"step": 4}, 4, final, "perplexity",
                                   None)  # best == last: nothing loaded or evaluated again
    assert best == {"step": 4, "selected_by": "valid perplexity at training time, on the full "
                                              "split", "same_as_final": True, "metrics": final}
