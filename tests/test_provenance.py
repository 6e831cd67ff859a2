"""Provenance and robustness at the edges: the record names only the plugins a run used, a
plugin that exits on import is reported and skipped, a folder given as a file is named so."""

import json

import pytest
import test_plugin
from test_plugin import PLUGIN_DIST, write_distribution

from harness.cli.main import main
from harness.core.config import resolve
from operators import OPERATORS

site, example_plugin = test_plugin.site, test_plugin.example_plugin  # the plugin tests' fixtures


def test_the_record_lists_only_the_plugins_the_run_used(example_plugin, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--task", "copy", "--router", "single",
                 "--ops", "attn", "--max-steps", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    env = json.loads(next(out.glob("*.json")).read_text())["environment"]
    assert set(env["plugins"]) == {"task:copy"}  # dwconv and flatness were installed, unused
    assert env["plugins"]["task:copy"].startswith(PLUGIN_DIST)
    assert {"operator:dwconv", "router:flatness", "task:copy"} <= set(env["installed_plugins"])


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "raise SystemExit('bye')\n",
                                  "raise GeneratorExit()\n"])
def test_a_plugin_that_exits_on_import_is_reported_and_skipped(site, body, capsys):
    write_distribution(site, "fakeplug-exits", "0.3",
                       {"chiaroscuro.operators": {"exits-op": "fakeplug_exits:Mixer"}},
                       {"fakeplug_exits": body})
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (failure,) = listed["plugin_failures"]
    assert "plugin 'exits-op' from fakeplug-exits 0.3 skipped" in failure
    assert "dct" in {row["name"] for row in listed["operators"]}  # built-ins unharmed


def test_ctrl_c_during_a_plugin_import_still_interrupts(site):
    write_distribution(site, "fakeplug-interrupt", "0.1",
                       {"chiaroscuro.operators": {"ctrl-c": "fakeplug_interrupt:Mixer"}},
                       {"fakeplug_interrupt": "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        OPERATORS.names()


def test_a_folder_given_as_train_file_is_named_a_folder(tmp_path, capsys):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    code = main(["run", "--preset", "smoke", "--task", "wikitext2", "--train-file", str(folder),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a folder, not a file" in err and "--data-dir" in err
    assert "does not exist" not in err and len(err.strip().splitlines()) == 1


def test_the_record_names_the_code_the_run_started_on_not_the_code_at_its_end(
        causal_task_and_noncausal_op, tmp_path, monkeypatch):
    # a commit made while a run trains is not the code it ran: the record keeps the commit read
    # when the process started
    from harness.engine import provenance
    from harness.runner import train as runner

    head = {"commit": "a" * 40}
    monkeypatch.setattr(provenance, "git_commit", lambda: head["commit"])
    fit = runner.Trainer.fit

    def fit_then_commit(self):
        fit(self)
        head["commit"] = "b" * 40 + "-dirty"  # committed (and edited) while it trained

    monkeypatch.setattr(runner.Trainer, "fit", fit_then_commit)
    cfg = resolve({"preset": "smoke", "out": str(tmp_path), "data": {"task": "tiny-lm-test"},
                   "routing": {"router": "single", "ops": ["identity"]},
                   "budget": {"max_steps": 2}}, {})
    record, _ = runner.train(cfg, log=lambda msg: None)
    assert record.environment["git_commit"] == "a" * 40
    assert record.environment["git_dirty"] is False
    assert not [f for f in record.flags if "other code" in f]


def test_a_run_resumed_on_other_code_says_so():
    from harness.runner.progress import Progress
    from harness.runner.record import code_flags

    p = Progress()
    for commit in ("a" * 40, "a" * 40, None, "b" * 40 + "-dirty"):  # None: not a checkout
        p.ran_on(commit)
    assert p.code == ["a" * 40, "b" * 40 + "-dirty"]
    assert Progress.from_json(p.to_json()).code == p.code  # the checkpoint carries it
    (note,) = code_flags(p.code)
    assert note == f"note: resumed on other code: started on {'a' * 12}, then ran {'b' * 12}"
    assert code_flags(["a" * 40]) == []


def test_a_resumed_runs_wall_time_counts_the_processes_before_it(
        causal_task_and_noncausal_op, tmp_path, monkeypatch):
    # a run killed and resumed used to report only its last process's wall time (a 4,000-step
    # run resumed for its last 500 steps read "wall 355 s")
    import time

    from harness.runner import train as runner

    cfg = resolve({"preset": "smoke", "out": str(tmp_path), "data": {"task": "tiny-lm-test"},
                   "routing": {"router": "single", "ops": ["identity"]},
                   "budget": {"max_steps": 3}}, {})
    step = runner.Trainer.train_step

    def slow_step(self, i):
        time.sleep(1.0)  # 3 s of wall time before the first process's last checkpoint
        return step(self, i)

    with monkeypatch.context() as m:
        m.setattr(runner.Trainer, "train_step", slow_step)
        first, path = runner.train(cfg, log=lambda msg: None)
    assert first.training.resumes == 0 and first.training.wall_seconds >= 3.0
    path.unlink()  # the record lost: the same command resumes from the final checkpoint
    t0 = time.perf_counter()
    again, _ = runner.train(cfg, log=lambda msg: None)
    alone = time.perf_counter() - t0  # the second process: the final evaluation, no steps
    assert again.training.resumes == 1
    assert again.training.wall_seconds >= alone + 3.0
    assert again.training.train_seconds == first.training.train_seconds  # carried, not redone
