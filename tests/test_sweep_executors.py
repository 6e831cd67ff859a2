"""Sweep executors: Ray tasks, SLURM job arrays through submitit, and the missing-extra message.

The Ray tests start a real local Ray instance (tens of seconds on 2 cores): they are marked
``ray`` and ``slow`` and run in a CI step of their own, after installing the ray extra.
The SLURM path runs the real job array on submitit's local executor, and checks the sbatch
script submitit writes for a real cluster (a stand-in sbatch on PATH records the call).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--routers", "entropy,random", "--ops", "dct,attn", "--tasks", "listops",
        "--preset", "smoke"]


def sweep_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "harness", "sweep", *GRID, "--out", str(tmp_path / "runs"),
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "budget.max_steps=2",
            *extra]


def run_sweep(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "RAY_USAGE_STATS_ENABLED": "0", **kw.pop("env", {})}
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)


def records(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "runs").glob("*.json"))]


# -- a missing extra is one line -------------------------------------------------------------


@pytest.mark.parametrize("executor, package, extra", [("ray", "ray", "ray"),
                                                      ("slurm", "submitit", "slurm")])
def test_missing_extra_is_one_line_naming_the_install(executor, package, extra, monkeypatch,
                                                      capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    assert main(["sweep", *GRID, "--executor", executor]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f'pip install -e ".[{extra}]"' in err


# -- Ray -------------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_ray_sweep_writes_one_record_per_cell_and_skips_them_on_rerun(tmp_path):
    pytest.importorskip("ray")
    first = run_sweep(sweep_cmd(tmp_path, "--executor", "ray"))
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout
    assert "Started a local Ray instance" in first.stderr + first.stdout
    assert first.stdout.count(": ran") == 2
    got = records(tmp_path)
    assert sorted(r["router"] for r in got) == ["entropy", "random"]
    assert all(r["status"] == "finished" for r in got)
    assert not list((tmp_path / "runs").glob("*.tmp*")), "a record was left half-written"

    again = run_sweep(sweep_cmd(tmp_path, "--executor", "ray"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(": done before") == 2 and ": ran" not in again.stdout
    assert "Ray" not in again.stderr, "nothing to dispatch: no Ray instance is started"
    assert records(tmp_path) == got
    # the summary table is the executor-independent one
    assert "attn FLOP frac" in again.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_ray_retries_a_failing_cell_then_reports_it(tmp_path):
    pytest.importorskip("ray")
    cmd = [sys.executable, "-m", "harness", "sweep", "--routers", "single", "--ops", "attn",
           "--tasks", "listops", "--preset", "smoke", "--out", str(tmp_path / "runs"),
           "--set", "device=no-such-device", "--executor", "ray", "--retries", "1"]
    out = run_sweep(cmd)
    assert out.returncode == 1
    assert "failed after 2 attempts" in out.stdout
    log = only(tmp_path / "runs" / "sweep-logs", "*.log").read_text()
    assert log.count("preset in force") == 2, "one first attempt and one retry"
    assert not list((tmp_path / "runs").glob("*.json"))


def only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


# -- SLURM through submitit ------------------------------------------------------------------


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """srun and sbatch stand-ins on PATH: submitit writes its real sbatch script and 'submits'."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {bin_dir}/sbatch.calls\necho "Submitted batch job 4242"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_slurm_submits_one_job_array_with_the_requested_resources(tmp_path, fake_slurm,
                                                                  capsys):
    pytest.importorskip("submitit")
    code = main(["sweep", *GRID, "--out", str(tmp_path / "runs"), "--executor", "slurm",
                 "--slurm-partition", "gpu", "--slurm-time", "240", "--gpus-per-cell", "1",
                 "--cpus-per-cell", "4", "--slurm-parallel", "8", "--no-wait"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count(": submitted (job 4242_") == 2
    calls = (fake_slurm / "sbatch.calls").read_text().splitlines()
    assert len(calls) == 1, "both cells go in one sbatch call: a job array"
    script = Path(calls[0].split()[-1]).read_text()
    lines = set(script.splitlines())
    for flag in ("--array=0-1%2", "--partition=gpu", "--time=240", "--gpus-per-node=1",
                 "--cpus-per-task=4", "--nodes=1", "--ntasks-per-node=1", "--signal=USR2@90"):
        assert f"#SBATCH {flag}" in lines, (flag, script)
    assert "-m submitit.core._submit" in script
    assert not list((tmp_path / "runs").glob("*.json")), "nothing ran: it was only submitted"


def test_slurm_without_srun_is_one_line(tmp_path, monkeypatch, capsys):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun anywhere
    assert main(["sweep", *GRID, "--out", str(tmp_path / "runs"), "--executor", "slurm"]) == 2
    err = capsys.readouterr().err.strip()
    assert "srun not found" in err and "--slurm-cluster local" in err and "\n" not in err


@pytest.mark.slow
def test_slurm_local_job_array_runs_cells_and_skips_them_on_rerun(tmp_path):
    pytest.importorskip("submitit")
    first = run_sweep(sweep_cmd(tmp_path, "--executor", "slurm", "--slurm-cluster", "local"))
    assert first.returncode == 0, first.stderr[-3000:] + first.stdout
    assert first.stdout.count(": ran") == 2
    assert len(records(tmp_path)) == 2
    again = run_sweep(sweep_cmd(tmp_path, "--executor", "slurm", "--slurm-cluster", "local"))
    assert again.returncode == 0
    assert again.stdout.count(": done before") == 2 and "submitted" not in again.stdout


@pytest.mark.slow
def test_slurm_preempted_cell_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """Preemption as SLURM does it (USR2 to the job): the cell checkpoints, is requeued and
    resumes; its record matches an uninterrupted run's exactly."""
    pytest.importorskip("submitit")
    if not Path("/proc/self/task").exists():
        pytest.skip("finds the job's process through /proc")
    import time

    from harness.sweep.driver import cell_spec
    from harness.sweep.executors.slurm import CellJob, make_executor
    from harness.sweep.grid import expand

    def spec_for(out: Path):
        base = {"preset": "smoke", "out": str(out), "data": {"cache_dir": str(tmp_path / "c")},
                "budget": {"max_steps": 40, "ckpt_every": 4, "eval_every": 20}}
        cell = expand({"routers": ["entropy"], "ops": [["dct", "attn"]], "tasks": ["listops"],
                       "seeds": [0]}, base)[0]
        return cell_spec(cell, out / "sweep-logs")

    args = argparse.Namespace(slurm_cluster="local", slurm_time=10, slurm_partition=None,
                              cpus_per_cell=1, gpus_per_cell=0, slurm_parallel=1)
    straight = spec_for(tmp_path / "straight")
    job = make_executor(args, tmp_path / "submitit-a").submit(CellJob(), straight)
    assert job.result().status == "ran"

    preempted = spec_for(tmp_path / "preempted")
    job = make_executor(args, tmp_path / "submitit-b").submit(CellJob(), preempted)
    work = tmp_path / "preempted"
    deadline = time.time() + 240
    while time.time() < deadline and not list(work.glob("*/checkpoint.pt")):
        time.sleep(0.1)
    # what SLURM's --signal=USR2@90 does before preemption or the time limit: signal the
    # process running the job (the local controller's child), not the run under it
    controller = Path(f"/proc/{job.job_id}/task/{job.job_id}/children").read_text().split()
    os.kill(int(controller[0]), signal.SIGUSR2)
    assert job.result().status == "ran"
    log = Path(preempted.log_path).read_text()
    assert "resumed from" in log, log[-2000:]
    a = json.loads(Path(straight.record_path).read_text())
    b = json.loads(Path(preempted.record_path).read_text())
    assert a["metrics"] == b["metrics"]
    assert a["training"]["steps"] == b["training"]["steps"] == 40


def test_a_cell_stops_when_its_sweep_is_killed(tmp_path):
    """A sweep killed by a signal it cannot pass on (SIGKILL here; a plain SIGTERM to the sweep
    alone is the same) must not leave its cell training unwatched: the cell sees its parent
    gone, checkpoints and exits, so a re-started sweep resumes it instead of racing it."""
    import signal
    import subprocess
    import time

    from test_training import env, harness_cmd

    out = tmp_path / "runs"
    sweep = subprocess.Popen(
        harness_cmd("sweep", "--routers", "single", "--ops", "attn", "--tasks", "listops",
                    "--preset", "smoke", "--max-steps", "100000", "--set", "budget.log_every=1",
                    "--set", "budget.ckpt_every=100000", "--set", f"data.cache_dir={tmp_path}",
                    "--out", str(out)),
        env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    logs: list = []
    while time.time() < deadline and not any(len(p.read_text().splitlines()) >= 3
                                             for p in logs):  # three steps logged
        time.sleep(0.2)
        logs = list(out.glob("*/metrics.jsonl"))
    assert logs, "the cell never started training"
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    cell_log = next((out / "sweep-logs").glob("*.log"))
    deadline = time.time() + 60
    while time.time() < deadline and "stopped by signal" not in cell_log.read_text():
        time.sleep(0.2)
    text = cell_log.read_text()
    assert "stopped by signal" in text and "checkpoint saved" in text, text[-2000:]
    assert list(out.glob("*/checkpoint.pt"))  # written on the way out: a re-run resumes
