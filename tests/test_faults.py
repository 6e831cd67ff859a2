"""Fault injection: what an adversarial pass threw at the harness (issue #20), one test per fault.

Each fault must end in one line naming the problem and the fix (exit 2), never a traceback, and
lose nothing already written. Extend this file when a new fault is found.

Most tests start from one finished smoke run (``finished_run``, built once) or one run stopped
after its first checkpoint (``stopped_run``), copied into the test's own folder.
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel, ValidationError

from harness.cli.main import main
from harness.core import records
from harness.core.config import RunConfig
from harness.engine import checkpoint
from harness.runner.train import Trainer
from registry import files

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--preset", "smoke", "--router", "single", "--ops", "attn", "--task", "listops",
       "--max-steps", "4", "--ckpt-every", "2", "--log-every", "1", "--eval-every", "4"]


CACHE: list[Path] = []  # one cache folder for every test: it is part of the run id


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    CACHE.append(tmp_path_factory.mktemp("cache"))
    yield
    CACHE.pop()


def run_args(folder: Path, *extra: str) -> list[str]:
    return [*RUN, "--out", str(folder / "runs"), "--cache-dir", str(CACHE[-1]), *extra]


def one_error_line(err: str) -> str:
    """The single line a fault must produce on stderr (progress bars aside)."""
    lines = [line for line in err.splitlines() if line.startswith(("error:", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def work_dir(folder: Path) -> Path:
    found = [p.parent for p in (folder / "runs").glob("*/checkpoint.pt")]
    assert len(found) == 1, found
    return found[0]


def record_file(folder: Path) -> Path:
    found = list((folder / "runs").glob("*.json"))
    assert len(found) == 1, found
    return found[0]


def metric_steps(work: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (work / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def _finished(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("finished")
    assert main(run_args(folder)) == 0
    return folder


@pytest.fixture
def finished_run(_finished, tmp_path) -> Path:
    shutil.copytree(_finished / "runs", tmp_path / "runs")
    return tmp_path


@pytest.fixture(scope="module")
def _stopped(tmp_path_factory) -> Path:
    """A run interrupted right after its step-2 checkpoint (Ctrl-C)."""
    folder = tmp_path_factory.mktemp("stopped")
    original = Trainer.save_checkpoint

    def save_then_interrupt(self):
        original(self)
        raise KeyboardInterrupt

    Trainer.save_checkpoint = save_then_interrupt
    try:
        assert main(run_args(folder)) == 130
    finally:
        Trainer.save_checkpoint = original
    return folder


@pytest.fixture
def stopped_run(_stopped, tmp_path) -> Path:
    shutil.copytree(_stopped / "runs", tmp_path / "runs")
    assert metric_steps(work_dir(tmp_path)) == [1, 2]
    return tmp_path


# -- 1. one writer per run ---------------------------------------------------------------------

HOLD = ("import sys, time; from pathlib import Path; from harness.runner.lock import RunLock; "
        "lock = RunLock(Path(sys.argv[1])); lock.__enter__(); print('held', flush=True); "
        "time.sleep(120)")


def test_second_process_on_a_run_is_refused_and_a_killed_holder_is_taken_over(
        finished_run, capsys):
    work = work_dir(finished_run)
    before = (work / "metrics.jsonl").read_text()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(work)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(run_args(finished_run)) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"PID {holder.pid}" in line and str(work) in line
        assert (work / "metrics.jsonl").read_text() == before  # the second process wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died without releasing: its lock is stale, the next run takes it over
    assert main(run_args(finished_run)) == 0
    out = capsys.readouterr().out
    assert f"PID {holder.pid}" in out and "taken over" in out


def test_sweep_cell_on_a_held_run_fails_naming_the_holder(tmp_path):
    from harness import sweep
    from harness.core.config import resolve
    from harness.runner.lock import RunLock
    from harness.runner.train import run_paths
    from harness.sweep.cell import run_cell
    from harness.sweep.driver import cell_spec, finish
    from tasks import TASKS

    base = {"preset": "smoke", "out": str(tmp_path / "runs"),
            "data": {"cache_dir": str(CACHE[-1])}, "budget": {"max_steps": 2}}
    grid = {"routers": ["single"], "ops": [["attn"]], "tasks": ["listops"], "seeds": [0]}
    (cell,) = sweep.expand(grid, base)
    work = run_paths(resolve(cell.overrides, TASKS.get("listops").presets))[1]
    with RunLock(work):  # another sweep (here: this process) is running this cell
        finish(cell, run_cell(cell_spec(cell, tmp_path / "logs")))
    assert cell.status.startswith("failed (exit 2"), cell.status
    log = next((tmp_path / "logs").glob("*.log")).read_text()
    assert f"PID {os.getpid()}" in log and "Traceback" not in log
    assert not list((tmp_path / "runs").glob("*.json"))


def test_sweep_cell_with_a_corrupt_record_runs_and_says_which_file(tmp_path):
    """A torn record must not crash the sweep's driver with a JSON traceback: the cell counts
    as not finished, so it runs, and `harness run` names the file to delete."""
    from harness.sweep.cell import finished_record

    bad = tmp_path / "torn.json"
    bad.write_text('{"status": "fini')
    assert finished_record(bad) is None
    bad.write_text("[1, 2]")
    assert finished_record(bad) is None


# -- 2. malformed checkpoints ------------------------------------------------------------------


def _drop_config_hash(state):
    del state["config_hash"]
    return state


def _wrong_shape(state):
    name = next(k for k, v in state["model"].items() if v.dim() == 2)
    state["model"][name] = torch.zeros(3, 5)
    return state


def _model_is_a_list(state):
    state["model"] = list(state["model"].values())
    return state


def _progress_not_json(state):
    state["progress"] = "{torn"
    return state


@pytest.mark.parametrize("damage", [
    _drop_config_hash, lambda state: [1, 2, 3], _wrong_shape, _model_is_a_list,
    _progress_not_json, lambda state: {**state, "rng": 7},
], ids=["missing key", "list instead of dict", "wrong tensor shape", "model is a list",
        "progress not JSON", "rng not a dict"])
def test_malformed_checkpoint_gives_one_line_and_delete_hint(stopped_run, capsys, damage):
    """Resuming reads the checkpoint (a finished run answers from its record instead)."""
    ckpt = work_dir(stopped_run) / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    torch.save(damage(state), ckpt)
    assert main(run_args(stopped_run)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"checkpoint {ckpt} cannot be read" in line and "delete it to start over" in line


def test_a_finished_run_answers_from_its_record_before_building_anything(finished_run, capsys,
                                                                         monkeypatch):
    """Re-running a finished command builds no data and runs no guard: it says so at once."""
    def no_building(self):
        raise AssertionError("a finished run was built again")

    monkeypatch.setattr(Trainer, "build", no_building)
    before = record_file(finished_run).read_text()
    assert main(run_args(finished_run)) == 0
    out = capsys.readouterr().out
    assert f"already finished: {record_file(finished_run)}" in out
    assert "test, first 8 batches" in out  # the summary, from the record
    assert record_file(finished_run).read_text() == before


# -- 3. a corrupt record next to a finished checkpoint -----------------------------------------


@pytest.mark.parametrize("content", ["{ not json", '{"run_id": "x"}'])
def test_corrupt_record_of_a_finished_run_is_named_and_rewritten_once_deleted(
        finished_run, capsys, content):
    path = record_file(finished_run)
    path.write_text(content)
    assert main(run_args(finished_run)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(path) in line and "invalid configuration" not in line and "delete" in line
    path.unlink()  # what the message says to do: the record is written again from the checkpoint
    assert main(run_args(finished_run)) == 0
    assert records.load_record(path).status == "finished"


# -- 4. impossible metrics ---------------------------------------------------------------------


@pytest.mark.parametrize("split, metric, value", [
    ("test", "accuracy", 99.0), ("valid", "accuracy", -0.1), ("test", "majority_accuracy", 1.5),
    ("test", "perplexity", 0.5), ("test", "word_perplexity", float("nan")),
    ("test", "loss", float("inf")), ("valid", "loss", float("nan")),
])
def test_records_reject_impossible_metrics(finished_run, split, metric, value):
    data = json.loads(record_file(finished_run).read_text())
    records.RunRecord.model_validate(data)  # the real record passes
    data["metrics"].setdefault(split, {})[metric] = value
    with pytest.raises(ValidationError, match=metric):
        records.RunRecord.model_validate(data)


def test_board_warns_and_skips_a_record_with_impossible_accuracy(finished_run, tmp_path):
    from harness.report.leaderboard import board as lb

    data = json.loads(record_file(finished_run).read_text())
    runs = tmp_path / "board"
    runs.mkdir()
    for seed in (0, 1):
        good = {**data, "seed": seed, "run_id": data["run_id"].replace("seed0", f"seed{seed}")}
        (runs / f"good{seed}.json").write_text(json.dumps(good))
    bad = {**data, "seed": 2, "run_id": data["run_id"].replace("seed0", "seed2")}
    bad["metrics"] = {**data["metrics"], "test": {**data["metrics"]["test"], "accuracy": 99.0}}
    (runs / "bad.json").write_text(json.dumps(bad))
    board = lb.generate(runs, tmp_path / "LB.md", tmp_path / "plots",
                        ROOT / "results" / "reference.json")
    assert any(p.startswith("bad.json:") and "accuracy" in p for p in board.problems)
    assert board.n_records == 2  # the two good seeds are ranked, the impossible one is not


# -- 5. tracebacks still reachable -------------------------------------------------------------


@pytest.mark.parametrize("device", ["tpu", "cuda:abc", "banana"])
def test_unknown_device_is_one_line(tmp_path, capsys, device):
    assert main(run_args(tmp_path, "--device", device)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--device {device}" in line and "cpu" in line


def test_config_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes('preset = "smoke"\n# caf\xe9\n'.encode("latin-1"))
    assert main(["run", "--config", str(config), "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(config) in line and "UTF-8" in line


# -- 6. NaN before the first checkpoint, non-finite options -------------------------------------


@pytest.mark.parametrize("ckpt_every, kept", [
    ("8", "no checkpoint had been written yet: a re-run starts from the beginning"),
    ("2", "the last good checkpoint (step 2) is kept in"),
])
def test_nan_message_says_what_is_really_kept(nan_operator, tmp_path, capsys, ckpt_every, kept):
    args = ["run", "--preset", "smoke", "--router", "single", "--ops", nan_operator,
            "--max-steps", "10", "--ckpt-every", ckpt_every, "--out", str(tmp_path / "runs"),
            "--cache-dir", str(CACHE[-1])]
    assert main(args) == 2  # the loss becomes NaN at step 4
    line = one_error_line(capsys.readouterr().err)
    assert "loss became nan at step 4" in line and kept in line
    assert bool(list((tmp_path / "runs").glob("*/checkpoint.pt"))) == (ckpt_every == "2")
    assert records.load_record(record_file(tmp_path)).status == "diverged"


def _float_fields(model: type[BaseModel], prefix: str = ""):
    """(dotted name, field) of every float field of a config model, nested sections included."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _float_fields(annotation, f"{prefix}{name}.")
        elif float in (annotation, *typing.get_args(annotation)):
            yield f"{prefix}{name}", info


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_every_float_option_rejects_non_finite_values(value):
    fields = list(_float_fields(RunConfig))
    assert len(fields) >= 10  # lr, dropout, attn_fraction, max_time, ...
    for dotted, _ in fields:
        section, _, name = dotted.rpartition(".")
        data = {section: {name: value}} if section else {name: value}
        with pytest.raises(ValidationError, match="finite"):
            RunConfig.model_validate(data)


def test_lr_inf_is_rejected_before_anything_runs(tmp_path, capsys):
    assert main(run_args(tmp_path, "--lr", "inf")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "optim.lr" in line and "finite" in line
    assert not (tmp_path / "runs").exists()


# -- 7. a torn last line in metrics.jsonl -------------------------------------------------------


def test_torn_metrics_tail_is_dropped_on_resume_and_complete_lines_kept(stopped_run, capsys):
    log = work_dir(stopped_run) / "metrics.jsonl"
    with log.open("a") as f:
        f.write('{"step": 3, "loss": 2.3')  # the write of step 3 was cut off
    assert main(run_args(stopped_run)) == 0
    out = capsys.readouterr().out
    assert "torn" in out and str(log) in out
    assert metric_steps(log.parent) == [1, 2, 3, 4]


def test_torn_metrics_tail_before_any_checkpoint_is_dropped(finished_run, capsys):
    """Without a checkpoint the run starts over: the old lines would be written again, so they
    go, and a torn tail must not glue itself onto the first new line."""
    work = work_dir(finished_run)
    (work / "checkpoint.pt").unlink()
    record_file(finished_run).unlink()
    with (work / "metrics.jsonl").open("a") as f:
        f.write('{"step": 5, "lo')
    assert main(run_args(finished_run)) == 0
    assert metric_steps(work) == [1, 2, 3, 4]


# -- 8. disk full ------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="tells files by /proc/self/fd")
def test_disk_full_is_one_line_that_says_what_is_kept_and_resume_works(stopped_run, capsys,
                                                                       monkeypatch):
    work = work_dir(stopped_run)
    real_write, real_fsync = os.write, os.fsync

    def is_file(fd: int) -> bool:
        return os.path.isfile(f"/proc/self/fd/{fd}")

    def no_space():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # every write or fsync of a file (not stdout/stderr) fails, as on a full disk
    monkeypatch.setattr(os, "write", lambda fd, b: no_space() if is_file(fd) else real_write(fd, b))
    monkeypatch.setattr(os, "fsync", lambda fd: no_space() if is_file(fd) else real_fsync(fd))
    assert main(run_args(stopped_run)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no space left" in line.lower() and "last good checkpoint (step 2) is kept" in line
    monkeypatch.undo()
    assert not [p for p in stopped_run.rglob("*") if p.name.endswith(".tmp")]
    state = torch.load(work / "checkpoint.pt", weights_only=True)
    assert json.loads(state["progress"])["step"] == 2
    # once there is space again, the run resumes from what was kept
    assert main(run_args(stopped_run)) == 0
    assert "resumed from" in capsys.readouterr().out
    assert metric_steps(work) == [1, 2, 3, 4]


def test_disk_full_in_the_atomic_writer_names_the_file_and_keeps_the_old_one(tmp_path,
                                                                            monkeypatch):
    from registry import ChiaroscuroError

    path = tmp_path / "r.json"
    files.atomic_write_text(path, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(ChiaroscuroError, match="no space left on device") as info:
        files.atomic_write_text(path, "new")
    assert str(path) in str(info.value) and "previous version is kept" in str(info.value)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.json"]


# -- 9. file modes follow the umask ------------------------------------------------------------


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        files.atomic_write_text(tmp_path / "record.json", "{}")
        checkpoint.save(tmp_path / "run" / "checkpoint.pt", {"step": 1})
    finally:
        os.umask(old)
    for path in (tmp_path / "record.json", tmp_path / "run" / "checkpoint.pt"):
        assert path.stat().st_mode & 0o777 == mode, path


def test_a_run_leaves_files_readable_by_others_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        assert main(run_args(tmp_path, "--max-steps", "2")) == 0
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"checkpoint.pt", "metrics.jsonl", record_file(tmp_path).name}
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files), \
        {p.name: oct(p.stat().st_mode) for p in files}
