"""A newcomer's first hour: the README's commands leave the repository clean, the committed board
is built from committed records only, a reproduction lands in its committed row, progress is
live on a terminal, `check` needs no data, the best-validation checkpoint survives a resume."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from harness.cli.main import build_parser, main, resolve_config
from harness.core.paths import LOCAL_RUNS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMMITTED = ROOT / "results" / "runs"


def readme_main_command() -> list[str]:
    """The first README command's `python -m harness ...` part, as argv."""
    first = next(line.strip() for line in README.splitlines() if line.startswith("    pip "))
    return first.split("&& python -m harness ", 1)[1].split()


# -- runs stay out of git; the committed board stays the committed records' --------------------


def test_readme_starts_with_the_two_commands():
    lines = [line.strip() for line in README.splitlines() if line.startswith("    ")][:2]
    assert lines == ['pip install -c constraints/cpu.txt -e ".[dev]" && python -m harness run '
                     '--router entropy --ops dct,attn --task listops', "python -m pytest"]


def test_the_readme_test_command_is_the_fast_tier_and_ci_runs_both_tiers_with_budgets():
    import shlex
    import tomllib

    pytest_ini = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    addopts = shlex.split(pytest_ini["ini_options"]["addopts"])
    assert addopts[addopts.index("-m") + 1] == "not slow"  # plain `python -m pytest`: fast
    assert "-q" not in addopts  # a line per file with its share done, not dots only
    readme_tests = [line.strip() for line in README.splitlines() if line.startswith("    ")][1]
    assert "python -m pytest -m slow" in README
    ci = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in ci.splitlines()]
    steps = [words[words.index("timeout"):] for words in lines if "timeout" in words]
    budgets = {" ".join(step[2:]): int(step[1]) for step in steps}
    assert readme_tests in budgets and "python -m pytest -m slow" in budgets
    assert len(budgets) == 3  # and the scale-out step's tests
    assert budgets[readme_tests] <= 5 * 60  # the fast tier's promise
    assert sum(budgets.values()) <= 16 * 60  # the rest (installs, plugin, checks): 4 minutes


def test_the_readme_python_api_example_runs(tmp_path, monkeypatch, capsys):
    """The README's example, as written (smoke preset: seconds), from a folder that has the
    committed records at results/runs."""
    section = README.split("## Python API", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(line[4:] for line in section.splitlines() if line.startswith("    "))
    assert "harness.run(" in code and "harness.load_records(" in code
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs").symlink_to(COMMITTED)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["record"].status == "finished" and list((tmp_path / "runs").glob("*.json"))
    assert len(namespace["records"]) == len(list(COMMITTED.glob("*.json")))


def test_readme_main_command_reproduces_a_committed_row():
    """Its resolved config is the one the committed rows were made with (same config hash), so
    a newcomer's run lands in that row instead of starting a row of its own."""
    argv = readme_main_command()
    cfg = resolve_config(build_parser(argv).parse_args(argv + ["--preset", "cpu"]))
    hashes = {json.loads(p.read_text())["config_hash"] for p in COMMITTED.glob("*.json")}
    assert cfg.digest() in hashes


@pytest.mark.slow
def test_a_run_with_default_paths_writes_only_what_git_ignores(tmp_path):
    """With default paths a run writes its record, checkpoints and caches under runs/ and
    .cache/ of the folder it runs in, and the checkout ignores both: a run in the checkout
    leaves git status clean. (It runs in a scratch folder: the tests write nothing into the
    checkout.)"""
    argv = ["run", "--preset", "smoke", "--seed", "90417", "--max-steps", "2"]
    cfg = resolve_config(build_parser(argv).parse_args(argv))
    from harness.core.paths import run_paths

    record, work = run_paths(cfg)
    assert record.parent == Path(LOCAL_RUNS) and work.parent == Path(LOCAL_RUNS)
    result = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / record).exists() and (tmp_path / work / "checkpoint.pt").exists()
    written = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert {Path(p).parts[0] for p in written} == {LOCAL_RUNS, ".cache"}
    ignored = subprocess.run(["git", "check-ignore", "--stdin"], input="\n".join(written),
                             cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(written)  # every file it wrote, git ignores


def _copy_record(src: Path, dst_dir: Path, **changes) -> Path:
    data = json.loads(src.read_text())
    data.update(changes)
    dst_dir.mkdir(parents=True, exist_ok=True)
    path = dst_dir / src.name
    path.write_text(json.dumps(data))
    return path


def test_leaderboard_reads_committed_records_unless_told(tmp_path, monkeypatch, capsys):
    """The default board is the committed one; --include-local reads runs/ too and writes to
    runs/LEADERBOARD.md; a reproduction of a committed seed lands in that row, and since its
    numbers differ the board says so, naming both files."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(COMMITTED, tmp_path / "results" / "runs")
    shutil.copy(ROOT / "results" / "reference.json", tmp_path / "results" / "reference.json")
    src = next(COMMITTED.glob("listops__entropy__dct+attn__*__seed0.json"))
    chash = json.loads(src.read_text())["config_hash"]

    def row(board: str) -> str:
        return next(line for line in board.splitlines() if line.startswith("|") and chash in line)

    assert main(["leaderboard", "--no-plots"]) == 0
    before = row((tmp_path / "results" / "LEADERBOARD.md").read_text())
    _copy_record(src, tmp_path / LOCAL_RUNS, created="2099-01-01T00:00:00+00:00",
                 metrics={"valid": {"accuracy": 0.5}, "test": {"accuracy": 0.999}})
    assert main(["leaderboard", "--no-plots"]) == 0
    committed = (tmp_path / "results" / "LEADERBOARD.md").read_text()
    assert row(committed) == before  # the local seed 0 changed nothing
    assert not (tmp_path / "runs" / "LEADERBOARD.md").exists()

    assert main(["leaderboard", "--no-plots", "--include-local"]) == 0
    n = len(list(COMMITTED.glob("*.json")))
    assert f"{n} records on the board (files: {n} in results/runs, 1 in runs)" in (
        capsys.readouterr().out)
    local = (tmp_path / "runs" / "LEADERBOARD.md").read_text()
    assert (tmp_path / "results" / "LEADERBOARD.md").read_text() == committed  # untouched
    assert row(local) != before and "| 3 " in row(local)  # the local seed 0 replaced the old
    run_id = json.loads(src.read_text())["run_id"]
    conflict = next(line for line in local.splitlines()
                    if line.startswith(f"- runs/{src.name}: conflict: run {run_id}"))
    assert f"results/runs/{src.name}" in conflict and "test accuracy 0.9990" in conflict
    assert f"the board shows runs/{src.name} (its folder is read last)" in conflict


def test_a_board_of_local_runs_alone_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _copy_record(next(COMMITTED.glob("listops__single__attn__*seed0.json")), tmp_path / "mine")
    assert main(["leaderboard", "--runs", "mine", "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "1 record on the board (files: 1 in mine)" in out
    assert "the board has your rows only; add --runs PATH/results/runs" in out
    assert (tmp_path / "runs" / "LEADERBOARD.md").exists()  # never over a committed board


def test_rows_never_mix_presets(tmp_path):
    """Two presets are two rankings, even if the records claimed the same config hash."""
    from harness.report.leaderboard import board as lb

    runs = tmp_path / "runs"
    for src in sorted(COMMITTED.glob("listops__single__attn__*.json")):
        _copy_record(src, runs)
        smoke = json.loads(src.read_text())
        smoke.update(preset="smoke", run_id=smoke["run_id"] + "-smoke")
        (runs / f"smoke-{src.name}").write_text(json.dumps(smoke))
    md = lb.generate(runs, tmp_path / "LB.md", tmp_path / "plots", None).markdown
    assert "### Budget: 4.1M training tokens, preset cpu" in md
    assert "### Budget: 4.1M training tokens, preset smoke" in md
    for section in md.split("### Budget: ")[1:]:
        assert "1 configuration, 3 runs" in section


# -- check: the task's shape only -------------------------------------------------------------


def test_check_needs_no_data_set(capsys, tmp_path):
    """WikiText-2 without --data-dir: its data is unreachable here, its shape is not."""
    code = main(["check", "--task", "wikitext2", "--preset", "smoke", "--router", "single",
                 "--ops", "attn"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "vocabulary 8192 (nominal)" in out and "no data is read" in out


def test_a_shape_only_task_refuses_to_read_data():
    from harness.runner.train import build_task

    argv = ["check", "--task", "wikitext2", "--preset", "smoke"]
    task = build_task(resolve_config(build_parser(argv).parse_args(argv)), shape_only=True)
    assert task.causal and task.vocab_size == 8192 and task.vocab_is_nominal
    with pytest.raises(Exception, match="shape only"):
        task.dataset("train")


# -- progress -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_terminal_gets_a_live_bar_with_eta(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # 160 columns
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "run", "--preset", "smoke", "--max-steps", "12",
         "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=slave,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert re.search(r"\d+/12 \[\d\d:\d\d<\d\d:\d\d", text), text[-2000:]  # step/total, ETA
    assert "loss=" in text and "tok_s=" in text and "val_acc=" in text


# -- the best-validation checkpoint -------------------------------------------------------------


def test_best_checkpoint_survives_an_interrupted_run(tmp_path, monkeypatch):
    from harness.runner import train as train_mod

    common = ["run", "--preset", "smoke", "--max-steps", "8", "--eval-every", "2",
              "--ckpt-every", "2", "--cache-dir", str(tmp_path / "cache")]
    assert main([*common, "--out", str(tmp_path / "straight")]) == 0
    straight = json.loads(next((tmp_path / "straight").glob("*.json")).read_text())
    assert not straight["best_checkpoint"]["same_as_final"]  # best.pt is what gets evaluated

    real_step = train_mod.Trainer.train_step

    def dies_at_step_5(self, step):
        if step == 5:
            raise KeyboardInterrupt
        return real_step(self, step)

    monkeypatch.setattr(train_mod.Trainer, "train_step", dies_at_step_5)
    assert main([*common, "--out", str(tmp_path / "cut")]) == 130
    assert list((tmp_path / "cut").glob("*/best.pt"))
    monkeypatch.setattr(train_mod.Trainer, "train_step", real_step)
    assert main([*common, "--out", str(tmp_path / "cut")]) == 0
    resumed = json.loads(next((tmp_path / "cut").glob("*.json")).read_text())
    assert resumed["best_checkpoint"] == straight["best_checkpoint"]
    assert resumed["best_checkpoint"]["metrics"]["test"]


def test_an_unreadable_best_checkpoint_keeps_the_run_and_says_why(tmp_path, monkeypatch,
                                                                  capsys):
    from harness.runner import best as best_mod
    from harness.runner import train as train_mod

    def torn(work_dir, step, config_hash, model):
        (work_dir / best_mod.BEST_FILE).parent.mkdir(parents=True, exist_ok=True)
        (work_dir / best_mod.BEST_FILE).write_bytes(b"torn")

    monkeypatch.setattr(train_mod, "save_best", torn)
    assert main(["run", "--preset", "smoke", "--max-steps", "8", "--eval-every", "2",
                 "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]) == 0
    record = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert record["metrics"]["test"]["accuracy"] >= 0  # the final checkpoint's numbers stand
    best = record["best_checkpoint"]
    assert best["metrics"] == {} and "cannot be read" in best["missing"]
    assert f"best-validation checkpoint (step {best['step']}) not evaluated" in (
        capsys.readouterr().out)
