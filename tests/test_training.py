"""Research-grade training: config files, resume after SIGKILL, signals, NaN, sweeps, torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from harness.core.config import load_config_file, resolve
from registry import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--router", "entropy", "--ops", "dct,attn", "--task", "listops"]


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


# -- configuration -----------------------------------------------------------------------------


def test_toml_config_with_cli_overrides_on_top(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('preset = "smoke"\nseed = 3\n[model]\nlayers = 2\n'
                      '[budget]\nmax_steps = 2\neval_every = 1\n')
    code = main(["run", "--config", str(config), "--max-steps", "3", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    out = capsys.readouterr().out
    assert "model    2 layers, d_model 32" in out and "budget   3 steps" in out  # printed
    resolved = json.loads(only(tmp_path, "*.json").read_text())["config"]
    assert resolved["seed"] == 3 and resolved["model"]["layers"] == 2  # from the file
    assert resolved["budget"]["max_steps"] == 3  # the flag wins
    assert resolved["model"]["d_model"] == 32  # the preset fills the rest


def test_unknown_config_keys_are_rejected_clearly(tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nlayer = 2\n")
    assert main(["run", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown option 'model.layer'; did you mean 'model.layers'?" in err
    assert len(err.strip().splitlines()) == 1
    config.write_text("[model\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "malformed" in capsys.readouterr().err


def test_presets_layer_under_explicit_options():
    cfg = resolve({"preset": "smoke", "model": {"layers": 3}}, {"smoke": {"seq_len": 40}})
    assert cfg.model.layers == 3 and cfg.model.d_model == 32 and cfg.data.seq_len == 40
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve({"preset": "giant"}, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config_file("/nonexistent/run.toml")


# -- resume ------------------------------------------------------------------------------------


def _final_weights(work_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = only(work_dir, "*/checkpoint.pt")
    return torch.load(ckpt, weights_only=True)["model"]


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    cache = str(tmp_path / "cache")
    # enough steps, each logged, that the poller below sees a step past a checkpoint well
    # before the run ends (with 16 steps logged every 10 a fast machine finished first)
    steps = 120
    common = [*SMOKE, "--max-steps", str(steps), "--eval-every", "4", "--ckpt-every", "2",
              "--log-every", "1", "--cache-dir", cache]
    straight = tmp_path / "straight"
    subprocess.run(harness_cmd("run", *common, "--out", str(straight)), check=True, env=env(),
                   capture_output=True, cwd=ROOT, timeout=300)

    killed = tmp_path / "killed"
    cmd = harness_cmd("run", *common, "--out", str(killed))
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    log_steps: list[int] = []
    while time.time() < deadline:  # kill once a checkpoint exists and training is past it
        logs = list(killed.glob("*/metrics.jsonl"))
        if logs and list(killed.glob("*/checkpoint.pt")):
            log_steps = [json.loads(line)["step"] for line in logs[0].read_text().splitlines()
                         if line.strip()]
            if log_steps and max(log_steps) >= 7:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert log_steps and max(log_steps) < steps, "the run finished before it could be killed"
    assert not list(killed.glob("*.json")), "no record may exist for a killed run"

    resumed = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout

    a = json.loads(only(straight, "*.json").read_text())
    b = json.loads(only(killed, "*.json").read_text())
    assert a["metrics"] == b["metrics"]
    assert a["best_checkpoint"] == b["best_checkpoint"]  # best.pt survives the kill
    def untimed(history):
        return [{k: v for k, v in entry.items() if k != "tokens_per_second"} for entry in history]

    assert untimed(a["training"]["history"]) == untimed(b["training"]["history"])
    wa, wb = _final_weights(straight), _final_weights(killed)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name
    # the metrics log has each step once, in order, after the resume truncated the tail
    steps = [json.loads(line)["step"] for line in
             only(killed, "*/metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))

    again = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "already finished" in again.stdout


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
    cmd = harness_cmd("run", *SMOKE, "--max-steps", "100000", "--ckpt-every", "100000",
                      "--eval-every", "100000", "--out", str(tmp_path),
                      "--cache-dir", str(tmp_path / "cache"))
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "checkpoint saved" in err
    state = torch.load(only(tmp_path, "*/checkpoint.pt"), weights_only=True)
    assert json.loads(state["progress"])["step"] >= 10


def test_nonfinite_loss_stops_keeps_checkpoint_and_records_failure(nan_operator, tmp_path,
                                                                   capsys):
    code = main(["run", "--preset", "smoke", "--router", "single", "--ops", nan_operator,
                 "--max-steps", "10", "--ckpt-every", "2", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2
    assert "loss became nan at step 4" in err and "last good checkpoint" in err
    record = json.loads(only(tmp_path, "*.json").read_text())
    assert record["status"] == "diverged" and "nan" in record["error"]
    state = torch.load(only(tmp_path, "*/checkpoint.pt"), weights_only=True)
    assert json.loads(state["progress"])["step"] == 2
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


# -- sweeps ------------------------------------------------------------------------------------


def test_sweep_expands_grid_and_skips_invalid_cells(capsys):
    code = main(["sweep", "--routers", "entropy,random,single,learned", "--ops", "dct,attn",
                 "--ops", "attn", "--tasks", "listops", "--seeds", "0,1", "--preset", "smoke",
                 "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    # entropy, random, learned x {dct+attn} + single x {dct, attn}: 5 cells x 2 seeds; the
    # one-operator set is invalid for the three multi-operator routers
    assert "10 cells to run, 6 skipped" in out
    assert "skip listops entropy attn seed 0: router 'entropy' takes 2-" in out
    assert "listops single dct seed 1" in out and "listops single attn seed 0" in out


@pytest.mark.slow
def test_sweep_runs_cells_and_skips_finished_ones(tmp_path):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        '[sweep]\nrouters = ["entropy", "random"]\nops = [["dct", "attn"]]\n'
        'tasks = ["listops"]\nseeds = [0]\n'
        f'[base]\npreset = "smoke"\nout = "{tmp_path / "runs"}"\n'
        f'[base.data]\ncache_dir = "{tmp_path / "cache"}"\n[base.budget]\nmax_steps = 2\n')
    first = subprocess.run(harness_cmd("sweep", "--file", str(sweep)), env=env(), cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr + first.stdout
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    assert first.stdout.count(": ran") == 2
    second = subprocess.run(harness_cmd("sweep", "--file", str(sweep)), env=env(), cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0
    assert second.stdout.count("done before") >= 2 and ": ran" not in second.stdout


# -- multi-process -----------------------------------------------------------------------------


def torchrun_cmd(*args: str, port: int) -> list[str]:
    """Two gloo processes on this machine; the same command line serves --nnodes 2 with a
    c10d rendezvous (docs/scaling.md, "Scaling out")."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
            "--nproc-per-node", "2", "--master-port", str(port), "-m", "harness", *args]


@pytest.mark.slow
def test_torchrun_two_gloo_processes_match_one_process_and_resume_exactly(tmp_path):
    """Same global batch, 1 vs 2 processes: equal up to the order of the gradient reduction
    (stated tolerance rel 1e-4). Two processes killed mid-run (SIGKILL to every process, as a
    lost node) and re-launched resume from the DDP checkpoint to exactly the uninterrupted
    two-process result: metrics and weights bit for bit."""
    common = ["run", "--preset", "smoke", "--router", "single", "--ops", "attn",
              "--max-steps", "30", "--eval-every", "10", "--ckpt-every", "3", "--log-every", "1",
              "--cache-dir", str(tmp_path / "cache")]
    one = subprocess.run(harness_cmd(*common, "--out", str(tmp_path / "one")), env=env(),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(torchrun_cmd(*common, "--out", str(tmp_path / "two"), port=29517),
                         env=env(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads(only(tmp_path / "one", "*.json").read_text())
    b = json.loads(only(tmp_path / "two", "*.json").read_text())
    assert b["training"]["processes"] == 2 and a["training"]["processes"] == 1
    for split in ("valid", "test"):
        assert b["metrics"][split]["loss"] == pytest.approx(a["metrics"][split]["loss"],
                                                             rel=1e-4)
    assert b["training"]["train_tokens"] == a["training"]["train_tokens"]

    killed = tmp_path / "killed"
    cmd = torchrun_cmd(*common, "--out", str(killed), port=29518)
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, steps = time.time() + 240, []
    while time.time() < deadline and proc.poll() is None:
        logs, ckpts = list(killed.glob("*/metrics.jsonl")), list(killed.glob("*/checkpoint.pt"))
        if logs and ckpts:
            steps = [json.loads(line)["step"] for line in logs[0].read_text().splitlines()
                     if line.strip()]
            if steps and max(steps) >= 5:
                break
        time.sleep(0.05)
    # torchrun starts each worker in a session of its own: killing torchrun's process group
    # left them running to the end (and the re-launch then found a finished run)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    workers = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    for pid in workers:  # torchrun and both workers at once
        os.kill(pid, signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(workers) == 2, "the workers were not found through /proc"
    assert steps and max(steps) < 30, "the run finished before it could be killed"
    assert not list(killed.glob("*.json"))
    resumed = subprocess.run(cmd, env=env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    c = json.loads(only(killed, "*.json").read_text())
    assert c["metrics"] == b["metrics"]
    wb, wc = _final_weights(tmp_path / "two"), _final_weights(killed)
    assert all(torch.equal(wb[name], wc[name]) for name in wb)


@pytest.mark.slow
def test_signal_to_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    """SLURM or a user may signal one process only: the ranks agree on the step to stop at,
    save one checkpoint and exit, instead of one rank waiting in a barrier forever."""
    if not Path("/proc/self/task").exists():
        pytest.skip("finds the worker processes through /proc")
    cmd = torchrun_cmd("run", "--preset", "smoke", "--router", "single", "--ops", "attn",
                       "--max-steps", "100000", "--eval-every", "100000", "--ckpt-every",
                       "100000", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"),
                       port=29519)
    proc = subprocess.Popen(cmd, env=env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("*/metrics.jsonl")):
        time.sleep(0.05)
    workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(workers) == 2
    os.kill(int(workers[1]), signal.SIGTERM)  # rank 1 only
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the ranks did not agree to stop: one is stuck")
    assert err.count("checkpoint saved") == 2, err[-3000:]
    state = torch.load(only(tmp_path, "*/checkpoint.pt"), weights_only=True)
    assert json.loads(state["progress"])["step"] >= 10
