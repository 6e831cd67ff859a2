"""The run lock (harness/runner/lock.py): one writer per run folder, and a lock file that cannot
be turned against another file."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.runner.lock import LOCK_NAME, RunLock, RunLocked, UnsafeRunLock

ROOT = Path(__file__).resolve().parents[1]

HOLD = ("import sys, time; from pathlib import Path; from harness.runner.lock import RunLock; "
        "lock = RunLock(Path(sys.argv[1])); lock.__enter__(); print('held', flush=True); "
        "time.sleep(120)")


@pytest.fixture
def holder(tmp_path):
    """A live process that holds the lock of tmp_path/run."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_held_run_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(
        tmp_path, holder):
    folder = tmp_path / "run"
    with pytest.raises(RunLocked, match=f"run folder {folder} is in use by PID {holder.pid}"):
        RunLock(folder).acquire()
    assert (folder / LOCK_NAME).read_text() == f"{holder.pid}\n"  # the contender wrote nothing
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    said = []
    with RunLock(folder, said.append):
        assert (folder / LOCK_NAME).read_text() == f"{os.getpid()}\n"
    assert len(said) == 1 and f"lock of PID {holder.pid}" in said[0] and "taken over" in said[0]
    assert (folder / LOCK_NAME).read_text() == ""  # released cleanly: nothing looks stale
    said.clear()
    with RunLock(folder, said.append):
        pass
    assert said == []


def test_a_second_lock_in_the_same_process_is_refused(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunLocked, match=f"PID {os.getpid()}"):
        RunLock(tmp_path).acquire()


def test_a_symlink_planted_at_run_lock_is_refused_and_its_target_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("a week of notes")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).symlink_to(precious)
    with pytest.raises(UnsafeRunLock, match="is a symbolic link .*remove the link"):
        RunLock(folder).acquire()
    assert precious.read_text() == "a week of notes"


def test_a_hard_link_at_run_lock_is_refused_and_the_other_name_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("a week of notes")
    folder = tmp_path / "run"
    folder.mkdir()
    os.link(precious, folder / LOCK_NAME)
    with pytest.raises(UnsafeRunLock, match="has other hard links"):
        RunLock(folder).acquire()
    assert precious.read_text() == "a week of notes"
    with RunLock(tmp_path / "elsewhere"):  # and nothing is left held
        pass


def test_a_filesystem_without_flock_runs_unlocked_with_a_warning(tmp_path, monkeypatch):
    real = fcntl.flock

    def no_locks(fd, op):
        if op & fcntl.LOCK_UN:
            return real(fd, op)
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    said = []
    with RunLock(tmp_path, said.append):
        pass
    assert len(said) == 1 and said[0].startswith(f"warning: cannot lock {tmp_path / LOCK_NAME}")
