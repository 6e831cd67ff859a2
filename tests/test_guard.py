"""The pre-training leak guard (harness/runner/guard.py) against plugin-style operators that
pass a naive check: each leaks only under one condition a run really meets."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.cli.main import main
from operators import OPERATORS, TokenMixer
from tests.toy_tasks import ToyClasses, ToyLM, registered_tasks


class _Mixer(TokenMixer):
    """Honest-looking: declares itself causal, not leaky. `leak(x)` is added to the identity."""

    supports_causal = True

    def forward(self, x, ctx):
        return x + self.leak(x)

    def flops(self, n_query, n_key):
        return 0


def _next_token(x):  # reads token t + 1 at position t
    return 0.5 * torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)


class ZeroGated(_Mixer):
    """The leak is scaled by a parameter that starts at zero: invisible at initialisation."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.gate = nn.Parameter(torch.zeros(()))

    def leak(self, x):
        return self.gate * _next_token(x)


class TrainModeOnly(_Mixer):
    def leak(self, x):
        return _next_token(x) if self.training else 0 * x


class AutogradOnly(_Mixer):
    def leak(self, x):
        return _next_token(x) if torch.is_grad_enabled() else 0 * x


class BigBatchOnly(_Mixer):
    def leak(self, x):
        return 0.5 * x.mean(0, keepdim=True) if x.shape[0] >= 5 else 0 * x


class LongOnly(_Mixer):
    def leak(self, x):
        late = (torch.arange(x.shape[1], device=x.device) >= 256).to(x.dtype)[None, :, None]
        return late * _next_token(x)


class BatchRunningMean(_Mixer):
    """Each example sees the ones before it in the batch: the first example is unaffected."""

    def leak(self, x):
        n = torch.arange(1, x.shape[0] + 1, device=x.device, dtype=x.dtype)[:, None, None]
        return 0.5 * x.cumsum(0) / n


class BatchMean(_Mixer):
    supports_causal = False

    def leak(self, x):
        return 0.5 * x.mean(0, keepdim=True)


LEAKS = {"leak-zero-gated": ZeroGated, "leak-train-mode": TrainModeOnly,
         "leak-autograd": AutogradOnly, "leak-big-batch": BigBatchOnly,
         "leak-long": LongOnly, "leak-batch-running-mean": BatchRunningMean,
         "leak-batch-mean": BatchMean}


@pytest.fixture
def leaky_plugins():
    with registered_tasks({"guard-lm": ToyLM, "guard-classes": ToyClasses}):
        for name, cls in LEAKS.items():
            OPERATORS.add(name, cls)
        yield
        for name in LEAKS:
            del OPERATORS._entries[name]


def _run(tmp_path, task, op, *extra):
    return main(["run", "--preset", "smoke", "--task", task, "--router", "single", "--ops", op,
                 "--out", str(tmp_path / "runs"), "--max-steps", "1", *extra])


@pytest.mark.parametrize("op,task,seq_len", [
    ("leak-zero-gated", "guard-lm", 16),
    ("leak-train-mode", "guard-lm", 16),
    ("leak-autograd", "guard-lm", 16),
    ("leak-big-batch", "guard-lm", 16),
    ("leak-long", "guard-lm", 300),
    ("leak-batch-running-mean", "guard-lm", 16),
    ("leak-batch-mean", "guard-classes", 16),
])
def test_run_refuses_a_plugin_operator_that_leaks_only_sometimes(leaky_plugins, op, task,
                                                                 seq_len, tmp_path, capsys):
    code = _run(tmp_path, task, op, "--seq-len", str(seq_len))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "refusing to train a leaking combination" in err and f"operator '{op}'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "runs").glob("*.json"))  # nothing was trained


def test_allow_leaky_runs_and_flags_the_record(leaky_plugins, tmp_path, capsys):
    assert _run(tmp_path, "guard-classes", "leak-batch-mean", "--seq-len", "16",
                "--allow-leaky") == 0
    assert "WARNING: leaky: check 'batch independence' failed" in capsys.readouterr().out
    record = json.loads(next(Path(tmp_path / "runs").glob("*.json")).read_text())
    assert any(f.startswith("leaky: check 'batch independence'") for f in record["flags"])


def _guard(task_name, router, ops, seq_len=16, batch=8, **routing):
    from harness.core.config import resolve
    from harness.runner.guard import guard_leaks
    from harness.runner.train import build_task

    cfg = resolve({"preset": "smoke", "allow_leaky": True,
                   "routing": {"router": router, "ops": ops, **routing},
                   "data": {"task": task_name, "seq_len": seq_len}}, {})
    return guard_leaks(cfg, build_task(cfg), seq_len, batch, batch, lambda msg: None)


@pytest.mark.parametrize("router,ops", [("entropy", ["dct-leaky", "attn"]),
                                        ("meta-batch", ["dct", "attn"])])
def test_the_guard_itself_catches_the_builtin_leaky_variants(leaky_plugins, router, ops):
    """Not only their declarations: the empirical probe sees them too."""
    flags = _guard("guard-lm", router, ops)
    assert flags and all(f.startswith("leaky: check") for f in flags)


@pytest.mark.parametrize("task", ["guard-lm", "guard-classes"])
@pytest.mark.parametrize("router,ops", [("entropy", ["dct", "attn"]),
                                        ("random", ["dct", "rbf", "attn"]),
                                        ("learned", ["dct", "attn"]), ("meta", ["dct", "attn"])])
def test_honest_combinations_pass_the_guard(leaky_plugins, task, router, ops):
    assert _guard(task, router, ops, batch=16) == []


class NaNWhenAlone(_Mixer):
    """Leaks by turning NaN when its batch changes: a NaN must not hide the difference."""

    supports_causal = False

    def leak(self, x):
        return x * float("nan") if x.shape[0] == 1 else 0 * x


def test_a_nan_does_not_hide_a_leak(leaky_plugins):
    OPERATORS.add("leak-nan-alone", NaNWhenAlone)
    try:
        flags = _guard("guard-classes", "single", ["leak-nan-alone"])
    finally:
        del OPERATORS._entries["leak-nan-alone"]
    assert any("batch independence" in f for f in flags)


def test_a_router_declaring_a_training_leak_does_not_cover_an_operator_that_leaks_in_training(
        leaky_plugins, tmp_path, capsys):
    # mod may fail causality in training mode (it declares why); the operator next to it may not
    code = main(["run", "--preset", "smoke", "--task", "guard-lm", "--router", "mod", "--ops",
                 "leak-train-mode,attn", "--out", str(tmp_path / "runs"), "--max-steps", "1",
                 "--seq-len", "16"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "refusing to train a leaking combination" in err
    assert "operator 'leak-train-mode'" in err
    assert not list((tmp_path / "runs").glob("*.json"))


def test_leak_tolerance_scales_with_the_largest_finite_output():
    """The probes compare outputs within ATOL + RTOL x max finite |output|: an inf or NaN
    output neither widens the tolerance nor makes it NaN (a NaN tolerance passes any leak)."""
    from harness.engine.leak_probe import ATOL, LOW_PRECISION_RTOL, RTOL, tolerance

    ref = torch.tensor([[1.0, -300.0], [float("inf"), float("nan")]])
    assert tolerance(ref) == pytest.approx(ATOL + RTOL * 300.0)
    assert tolerance(torch.tensor([float("nan"), float("-inf")])) == ATOL
    assert tolerance(torch.empty(0)) == ATOL
    # autocast's bf16 outputs carry 8 bits of mantissa: a wider relative tolerance
    assert tolerance(ref.bfloat16()) == pytest.approx(ATOL + LOW_PRECISION_RTOL * 300.0)
