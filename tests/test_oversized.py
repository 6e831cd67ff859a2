"""Sizes that cannot fit are refused with one line before any data is read or any model is
built (harness/runner/plan.py ``refuse_oversized``), on a run and on a dry run."""

from __future__ import annotations

import pytest

from harness.cli.main import main
from harness.core.config import resolve, seq_len_of
from harness.engine import model as model_module
from harness.engine.model import Model, count_parameters
from harness.runner import train as train_module
from harness.runner.plan import make_plan, memory_bytes, parameters_at_least
from harness.runner.train import Trainer
from tasks import TASKS


@pytest.mark.parametrize("task,routing,model", [
    ("listops", {"router": "entropy", "ops": ["dct", "rbf", "attn"]}, {}),
    ("mqar", {"router": "single", "ops": ["attn"]}, {"mlp_ratio": 2.5, "layers": 3}),
])
def test_the_arithmetic_parameters_are_a_lower_bound_of_the_real_model(task, routing, model):
    cfg = resolve({"preset": "smoke", "data": {"task": task}, "routing": routing,
                   "model": model}, TASKS.get(task).presets)
    task_cls = TASKS.get(task)
    instance = task_cls(seq_len_of(cfg), seed=0, **cfg.data.task_options)
    built = Model(cfg, instance, seq_len_of(cfg))
    at_least = parameters_at_least(cfg, instance.vocab_size, seq_len_of(cfg), task_cls.causal)
    # everything but the operators' and routers' own parameters (and a classifier's head)
    mixers = sum(count_parameters(b.mixing) for b in built.blocks)
    head = 0 if task_cls.causal else count_parameters(built.head)
    assert at_least == count_parameters(built) - mixers - head


def test_the_plan_reports_the_same_memory_arithmetic():
    cfg = resolve({"preset": "paper", "data": {"task": "wikitext103"}},
                  TASKS.get("wikitext103").presets)
    plan = make_plan(cfg)
    assert plan.memory_gb * 1e9 == pytest.approx(memory_bytes(
        cfg, plan.parameters, plan.vocab_size, True, cfg.optim.batch_size, plan.seq_len))


@pytest.fixture
def nothing_built(monkeypatch):
    """A refusal must come before the data is read and before a model is built (even on the
    meta device): either fails the test."""
    def built(*args, **kwargs):
        raise AssertionError("a model was built before the refusal")

    def read(*args, **kwargs):
        raise AssertionError("the data was read before the refusal")

    monkeypatch.setattr(model_module.Model, "__init__", built)
    monkeypatch.setattr(train_module, "build_task", read)


@pytest.mark.parametrize("flags", [
    ["--seq-len", "10000000"],
    ["--layers", "100000"],
    ["--batch-size", "1000000"],
    ["--d-model", "100000", "--heads", "1"],
    ["--mlp-ratio", "1000000"],
    ["--layers", "100000", "--dry-run"],
])
def test_an_impossible_size_is_one_line_before_anything_is_built(tmp_path, capsys, flags,
                                                                  nothing_built):
    code = main(["run", "--preset", "cpu", "--task", "listops", "--router", "single", "--ops",
                 "attn", "--out", str(tmp_path / "runs"), *flags])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: this configuration needs at least") and "\n" not in err, err
    assert ("the H100 this plan is for" in err) == ("--dry-run" in flags)
    assert not (tmp_path / "runs").exists()


def test_running_out_of_memory_anyway_is_one_line(tmp_path, capsys, monkeypatch):
    def fit(self):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 1099511627776 bytes.")

    monkeypatch.setattr(Trainer, "fit", fit)
    code = main(["run", "--preset", "smoke", "--task", "listops", "--router", "single",
                 "--ops", "attn", "--out", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: out of memory on cpu") and "\n" not in err, err
    assert "--batch-size" in err
