"""Names from a command line, a config file or a sweep become paths: they never lead outside the
folder they are joined to, and links planted where the harness writes are not followed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.core.config import resolve
from harness.core.paths import run_paths
from tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def _cfg(out: Path, **routing):
    return resolve({"preset": "smoke", "out": str(out), "data": {"task": "listops"},
                    "routing": routing}, TASKS.get("listops").presets)


def test_run_folder_and_record_stay_directly_inside_out_whatever_the_names(tmp_path):
    out = tmp_path / "a" / "out"
    cfg = _cfg(out, router="../../../r", ops=["../../escape", "/abs", "attn"])
    record, work = run_paths(cfg)
    assert record.parent == out and work.parent == out
    assert "/" not in work.name and not work.name.startswith(".")
    # plain names are left as they are: existing run folders keep their names
    plain = run_paths(_cfg(out, router="entropy", ops=["dct", "attn"]))[1].name
    assert plain.startswith("listops__entropy__dct+attn__")


@pytest.mark.parametrize("flags", [["--ops", "../../escape,attn"],
                                   ["--router", "../../escape"]])
def test_a_name_with_dot_dot_is_refused_before_any_folder_is_made(tmp_path, capsys, flags):
    out = tmp_path / "a" / "out"
    code = main(["run", "--preset", "smoke", "--task", "listops", "--max-steps", "1",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *flags])
    assert code == 2
    assert "unknown" in capsys.readouterr().err
    assert not (tmp_path / "escape").exists() and not any(tmp_path.rglob("run.lock"))
    assert not out.exists()  # looked up before the run folder is made


# -- sweep cells ------------------------------------------------------------------------------


def _spec(tmp_path: Path, overrides: dict):
    from harness.sweep.cell import CellSpec

    return CellSpec(label="cell", overrides=overrides,
                    record_path=str(tmp_path / "runs" / "cell.json"),
                    log_path=str(tmp_path / "sweep-logs" / "cell.log"), cwd=str(tmp_path),
                    pythonpath=str(ROOT))


def test_a_sweep_log_planted_as_a_symlink_is_not_followed(tmp_path):
    from harness.sweep.cell import run_cell

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "sweep-logs").mkdir()
    (tmp_path / "sweep-logs" / "cell.log").symlink_to(victim)
    result = run_cell(_spec(tmp_path, {"data": {"task": "no-such-task"}}))
    assert victim.read_text() == "precious\n"
    assert result.status.startswith("failed") and "symbolic link" in result.status
    assert "cell.log" in result.status


def test_a_sweep_cell_reads_its_config_and_leaves_no_file_behind(tmp_path, monkeypatch):
    from harness.sweep.cell import run_cell

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    result = run_cell(_spec(tmp_path, {"data": {"task": "no-such-task"}}))
    log = (tmp_path / "sweep-logs" / "cell.log").read_text()
    assert result.returncode == 2 and "unknown task 'no-such-task'" in log, log  # it was read
    assert list((tmp_path / "tmp").iterdir()) == []


DRIVER = """
import sys
from harness.sweep.cell import CellSpec, run_cell
spec = CellSpec("cell", {"data": {"task": "listops"}}, sys.argv[1] + "/runs/cell.json",
                sys.argv[1] + "/sweep-logs/cell.log", sys.argv[1], sys.argv[2])
run_cell(spec, on_start=lambda proc: print("started", proc.pid, flush=True))
"""


def test_a_killed_sweep_driver_leaves_no_temporary_config_file(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), str(ROOT)],
                              stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    line = driver.stdout.readline().split()
    assert line[0] == "started", line
    cell = int(line[1])
    try:
        driver.send_signal(signal.SIGKILL)  # no finally of the driver runs
        driver.wait()
        assert list(tmp.iterdir()) == []
    finally:
        os.kill(cell, signal.SIGKILL)
        for _ in range(50):  # the cell is not our child: wait until it is gone
            try:
                os.kill(cell, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)


def test_overrides_reach_the_cell_as_json(tmp_path):
    """What the cell reads is exactly the overrides (a float, a nested option, None)."""
    from harness.core.config import load_config_file
    from harness.sweep.cell import config_file

    overrides = {"optim": {"lr": 1e-3}, "routing": {"op_options": {"dct": {"decay": 0.5}}},
                 "budget": {"max_time": None}}
    with config_file(overrides) as (path, fds):
        assert fds and load_config_file(path) == overrides


def test_a_metrics_log_planted_as_a_symlink_is_not_followed(tmp_path, capsys):
    """The run folder's metrics.jsonl is appended to at every logged step: a link planted there
    (the folder may be shared) would send every line into its target."""
    out = tmp_path / "out"
    args = ["run", "--preset", "smoke", "--task", "listops", "--router", "single", "--ops",
            "attn", "--max-steps", "2", "--out", str(out), "--cache-dir", str(tmp_path / "c")]
    _, work = run_paths(resolve({"preset": "smoke", "out": str(out), "budget": {"max_steps": 2},
                                 "data": {"task": "listops", "cache_dir": str(tmp_path / "c")},
                                 "routing": {"router": "single", "ops": ["attn"]}},
                                TASKS.get("listops").presets))
    work.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (work / "metrics.jsonl").symlink_to(victim)
    assert main(args) == 2
    assert victim.read_text() == "precious\n"
    err = capsys.readouterr().err
    assert "metrics.jsonl is a symbolic link; remove it and re-run" in err, err
