"""The guard watches the whole run (issue 33): components honest while the pre-training guard
looks at fresh copies, leaky afterwards, end with their record flagged leaky and unranked, the
message naming the component and the check; honest built-ins are never flagged; the probes
change none of an honest run's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cheaters
import pytest
import torch

from harness.cli.main import main
from harness.core.records import load_record
from tests.toy_tasks import ToyClasses, ToyLM, registered_tasks

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plugins():
    with registered_tasks({"watch-lm": ToyLM, "watch-classes": ToyClasses}):
        cheaters.register()
        yield
        cheaters.unregister()


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


def test_what_training_probes_found_survives_a_resume(plugins, tmp_path, capsys):
    """Findings travel in the checkpoint: a run resumed from it (here after its record was
    lost) with a fresh instance, honest again until its counter fills, still ends flagged for
    what the probes saw before."""
    assert _run(tmp_path, "watch-lm", "single", "cheat-calls") == 0
    next((tmp_path / "runs").glob("*.json")).unlink()
    assert _run(tmp_path, "watch-lm", "single", "cheat-calls") == 0
    out = capsys.readouterr().out
    assert "resumed from" in out and "checks of the trained model (causality and batch " \
        "independence; train mode with a backward pass at batch 8, eval mode at batch 8): pass" \
        in out  # the fresh instance behaves
    again = _record(tmp_path)
    assert again.leaky
    flags = [f for f in again.flags if f.startswith("leaky")]
    assert any(f.startswith("leaky: check 'causality' failed at training step") for f in flags)
    for flag in flags:  # from the checkpoint only
        assert "on the trained model" not in flag and "evaluation" not in flag
        assert flag.endswith("at fault: operator 'cheat-calls'")


class _NaNOnEvenCalls(cheaters.Cheater):
    """Poisons every second training forward once past the guard: with every step probed,
    the probes' variants."""

    def forward(self, x, ctx):
        y = super().forward(x, ctx)
        poison = self.training and self.training_calls > cheaters.AFTER_CALLS \
            and self.training_calls % 2 == 0
        return y * float("nan") if poison else y

    def cheats(self):
        return False


def test_a_variant_whose_loss_turns_nan_is_a_finding_not_the_runs_end(plugins, every_probe,
                                                                       tmp_path):
    from operators import OPERATORS

    OPERATORS.add("nan-on-even-calls", _NaNOnEvenCalls)
    try:
        assert _run(tmp_path, "watch-classes", "single", "nan-on-even-calls") == 0
    finally:
        del OPERATORS._entries["nan-on-even-calls"]
    record = _record(tmp_path)
    assert record.status == "finished" and record.training.steps == 12
    assert any(f.startswith("leaky: check 'batch independence' failed at training step")
               and "loss became nan" in f for f in record.flags), record.flags


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


# -- outside pytest, on the tasks -------------------------------------------------------

# the harness's own entry point with the cheaters registered, in a process with no pytest frame
# on its stack (a component that hides from pytest leaks there, as in a user's run)
DRIVER = ("import sys; sys.path[:0] = sys.argv[1:3]; import cheaters; cheaters.register(); "
          "from harness.cli.main import main; sys.exit(main(sys.argv[3:]))")


def _run_outside_pytest(out: Path, *args: str) -> tuple[str, object]:
    done = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT), str(ROOT / "tests"), "run",
                           "--preset", "smoke", "--max-steps", "12", "--out", str(out), *args],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("*.json")
    return done.stdout, load_record(path)


def test_a_component_hiding_from_pytest_and_the_checks_is_caught_in_a_real_run(tmp_path):
    out, record = _run_outside_pytest(tmp_path / "runs", "--task", "listops", "--router",
                                      "single", "--ops", "cheat-caller-pytest", "--cache-dir",
                                      str(tmp_path / "cache"), *TINY["listops"])
    assert record.leaky
    (flag,) = [f for f in record.flags if f.startswith("leaky")]
    assert flag.startswith("leaky: check 'batch independence' failed at training step")
    assert "evaluation" in flag and "on the trained model" not in flag  # it hid from the checks
    assert flag.endswith("at fault: operator 'cheat-caller-pytest'")
    assert f"WARNING: {flag}" in out


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One data cache for the module's runs: WikiText-2's tokenizer is trained once."""
    return tmp_path_factory.mktemp("cache")


WIKITEXT2 = Path(os.environ.get("CHIAROSCURO_SHARED_DATA", ROOT.parent / "shared" / "data")) \
    / "wikitext-2"


@pytest.mark.slow
@pytest.mark.skipif(not (WIKITEXT2 / "wiki.valid.tokens").is_file(),
                    reason=f"real WikiText-2 files not found in {WIKITEXT2}")
@pytest.mark.parametrize("task", ["wikitext2", "listops"])
@pytest.mark.parametrize("router,ops,culprit", [*CASES[:4],
                                                ("single", "cheat-caller-pytest",
                                                 "cheat-caller-pytest"), *CASES[4:]])
def test_every_cheat_ends_flagged_on_wikitext2_and_listops(shared_cache, tmp_path, task, router,
                                                           ops, culprit):
    """The issue's "Done when": each trigger, on the real WikiText-2 (trained on its validation
    split, tested on its test split) and on ListOps, ends flagged leaky and unranked, the flag
    naming the check and the component."""
    data = ["--data-dir", str(WIKITEXT2), "--task-option", "train_file=wiki.valid.tokens",
            "--vocab-size", "512"] if task == "wikitext2" else []
    check = "causality" if task == "wikitext2" and culprit != "cheat-batch-mean" \
        else "batch independence"
    _, record = _run_outside_pytest(tmp_path / "runs", "--task", task, "--router", router,
                                    "--ops", ops, "--cache-dir", str(shared_cache), *data)
    kind = "router" if culprit == router else "operator"
    assert record.leaky and record.warning_flags
    assert any(f.startswith(f"leaky: check '{check}' failed")
               and f.endswith(f"at fault: {kind} '{culprit}'") for f in record.flags), \
        record.flags
