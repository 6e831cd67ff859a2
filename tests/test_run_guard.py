"""The guard watches the whole run (issue 33): components honest while the pre-training guard
looks at fresh copies, leaky afterwards, end with their record flagged leaky and unranked, the
message naming the component and the check; honest built-ins are never flagged; the probes
change none of an honest run's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import cheaters
import pytest
import torch

from harness.cli.main import main
from harness.core.records import load_record
from tasks import TASKS, ClassificationTask, LanguageModelingTask

ROOT = Path(__file__).resolve().parents[1]


class _LM(LanguageModelingTask):
    vocab_size = 11

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (self.seq_len + 1,), generator=g), 0) for _ in range(16)]


class _Classes(ClassificationTask):
    vocab_size = 11
    num_classes = 3

    def load_split(self, split):
        g = torch.Generator().manual_seed(len(split))
        return [(torch.randint(1, 11, (int(torch.randint(4, self.seq_len + 1, (1,),
                                                            generator=g)),), generator=g),
                 int(torch.randint(0, 3, (1,), generator=g))) for _ in range(32)]


@pytest.fixture
def plugins():
    TASKS.add("watch-lm", _LM)
    TASKS.add("watch-classes", _Classes)
    cheaters.register()
    yield
    cheaters.unregister()
    for name in ("watch-lm", "watch-classes"):
        del TASKS._entries[name]


def _run(tmp_path: Path, task: str, router: str, ops: str, *extra: str) -> int:
    return main(["run", "--preset", "smoke", "--task", task, "--router", router, "--ops", ops,
                 "--seq-len", "16", "--max-steps", "12", "--out", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache"), *extra])


def _record(tmp_path: Path):
    (path,) = (tmp_path / "runs").glob("*.json")
    return load_record(path)


CASES = [("single", "cheat-calls", "cheat-calls"),
         ("single", "cheat-steps", "cheat-steps"),
         ("single", "cheat-backwards", "cheat-backwards"),
         ("single", "cheat-caller", "cheat-caller"),
         ("single", "cheat-batch-mean", "cheat-batch-mean"),
         ("cheat-gate", "identity,attn", "cheat-gate")]


@pytest.mark.parametrize("task,check", [("watch-lm", "causality"),
                                        ("watch-classes", "batch independence")])
@pytest.mark.parametrize("router,ops,culprit", CASES)
def test_a_component_that_leaks_once_unwatched_ends_flagged_leaky(plugins, tmp_path, capsys,
                                                                  task, check, router, ops,
                                                                  culprit):
    kind = "router" if culprit == router else "operator"
    if culprit == "cheat-batch-mean":
        check = "batch independence"  # its leak on every task
    assert _run(tmp_path, task, router, ops) == 0  # the pre-training guard saw nothing
    record = _record(tmp_path)
    assert record.leaky and record.warning_flags
    flags = [f for f in record.flags if f.startswith(f"leaky: check '{check}' failed")]
    assert flags, record.flags
    assert all(f"at fault: {kind} '{culprit}'" in f for f in flags), flags
    assert f"WARNING: leaky: check '{check}'" in capsys.readouterr().out


# -- honest built-ins ---------------------------------------------------------------------------


def _honest(registry) -> list[str]:
    names = [n for n in registry.names() if registry.entry(n).builtin
             and not getattr(registry.get(n), "leaky", False)]
    return [n for n in names if n != "xformers" or torch.cuda.is_available()]


def _combinations() -> list[tuple[str, str]]:
    """Every honest built-in router over every honest built-in operator (attention last: the
    top band), each operator at least once per router."""
    from operators import OPERATORS
    from routers import ROUTERS

    ops = _honest(OPERATORS)
    cheap = [op for op in ops if op != "attn"]
    combos = []
    for router in _honest(ROUTERS):
        cls = ROUTERS.get(router)
        if cls.max_ops == 1:
            combos += [(router, op) for op in ops]
        elif cls.max_ops >= len(ops):
            combos.append((router, ",".join([*cheap, "attn"])))
        else:
            combos += [(router, f"{op},attn") for op in cheap]
    return combos


TINY = {"mqar": ["--seq-len", "16", "--task-option", "n_pairs=2", "--task-option",
                 "n_train=64", "--task-option", "n_valid=24", "--task-option", "n_test=24"],
        "listops": ["--seq-len", "24", "--task-option", "min_length=8", "--task-option",
                    "max_length=24", "--task-option", "n_train=64", "--task-option",
                    "n_valid=24", "--task-option", "n_test=24"]}


@pytest.fixture
def every_probe(monkeypatch):
    """Every training step and every evaluation batch probed."""
    from harness.engine import watch

    monkeypatch.setattr(watch, "RANDOM_STEP_SHARE", 1.0)
    monkeypatch.setattr(watch, "EVAL_SHARE", 1.0)


@pytest.mark.parametrize("task", ["mqar", "listops"])  # causal with ground truth; not causal
@pytest.mark.parametrize("router,ops", _combinations())
def test_no_honest_builtin_combination_is_flagged(every_probe, tmp_path, capsys, task, router,
                                                  ops):
    """The oracle reads mqar's ground truth; mod's training routing fails causality as it
    declares, and only that is let through."""
    code = main(["run", "--preset", "smoke", "--task", task, "--router", router, "--ops", ops,
                 "--max-steps", "3", "--eval-every", "3", "--dropout", "0.1",
                 "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
                 *TINY[task]])
    out = capsys.readouterr().out
    assert code == 0, out
    record = _record(tmp_path)
    assert not record.leaky, record.flags
    assert "leak probes along the run: pass" in out and "checks of the trained model" in out


# -- the probes change nothing -----------------------------------------------------------------


def _honest_run(tmp_path: Path, name: str, task: str) -> tuple[dict, list[float], dict]:
    out = tmp_path / name
    # entropy's thresholds move in every training forward, dropout draws from the RNG
    assert main(["run", "--preset", "smoke", "--task", task, "--router", "entropy", "--ops",
                 "dct,attn", "--max-steps", "8", "--eval-every", "4", "--log-every", "1",
                 "--dropout", "0.1", "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 *TINY[task]]) == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    losses = [json.loads(line)["loss"] for line in
              next(out.glob("*/metrics.jsonl")).read_text().splitlines()]
    weights = torch.load(next(out.glob("*/checkpoint.pt")), weights_only=True)["model"]
    return record, losses, weights


@pytest.mark.parametrize("task", ["mqar", "listops"])
def test_the_probes_change_none_of_an_honest_runs_numbers(tmp_path, monkeypatch, task):
    from harness.engine import watch

    monkeypatch.setattr(watch, "RANDOM_STEP_SHARE", 1.0)  # every step and batch probed
    monkeypatch.setattr(watch, "EVAL_SHARE", 1.0)
    probed, probed_losses, probed_weights = _honest_run(tmp_path, "probed", task)
    with monkeypatch.context() as m:
        from harness.runner import train

        m.setattr(train.LeakWatch, "for_run", classmethod(lambda cls, *a: None))
        m.setattr(train, "guard_trained", lambda *a: None)
        m.setattr(train, "run_flags", lambda *a: [])
        bare, bare_losses, bare_weights = _honest_run(tmp_path, "bare", task)
    assert probed_losses == bare_losses and len(bare_losses) == 8  # bit for bit, every step
    assert probed["metrics"] == bare["metrics"]
    assert probed["best_checkpoint"] == bare["best_checkpoint"]
    assert [e["valid"] for e in probed["training"]["history"]] == \
        [e["valid"] for e in bare["training"]["history"]]
    assert probed["telemetry"] == bare["telemetry"]  # router thresholds, gates, histograms
    assert all(torch.equal(probed_weights[k], bare_weights[k]) for k in bare_weights)
    assert not [f for f in probed["flags"] if f.startswith("leaky")]
