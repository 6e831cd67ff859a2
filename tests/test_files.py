"""The one atomic writer (registry/files.py): what a killed writer leaves behind is cleaned."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from registry import files

ROOT = Path(__file__).resolve().parents[1]

# A writer killed (SIGKILL) after its temp file is complete and before the rename: what a kill
# during a checkpoint write does.
KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from registry import files
files.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
files.atomic_write_bytes(Path(sys.argv[1]), b"half of a checkpoint")
"""


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "checkpoint.pt"
    files.atomic_write_bytes(target, b"step 1")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -9
    assert len(temporaries(tmp_path)) == 1 and target.read_bytes() == b"step 1"
    files.atomic_write_bytes(target, b"step 2")  # the re-run's next checkpoint
    assert temporaries(tmp_path) == [] and target.read_bytes() == b"step 2"


def test_temp_files_of_live_writers_are_kept(tmp_path):
    target = tmp_path / "record.json"
    machine = files._machine()
    ours = tmp_path / f".record.json.{machine}-{os.getpid()}.0123456789ab.tmp"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        theirs = tmp_path / f".record.json.{machine}-{live.pid}.0123456789ab.tmp"
        elsewhere = tmp_path / ".record.json.ffffffff-1.0123456789ab.tmp"  # another machine
        other_file = tmp_path / ".other.json.00000000-1.0123456789ab.tmp"  # another target
        for tmp in (ours, theirs, elsewhere, other_file):
            tmp.write_bytes(b"being written")
        files.atomic_write_text(target, "{}")
        assert temporaries(tmp_path) == sorted([ours, theirs, elsewhere, other_file])
    finally:
        live.kill()
        live.wait()


def test_temp_files_older_than_a_day_are_removed_whoever_made_them(tmp_path):
    target = tmp_path / "record.json"
    old_name = tmp_path / ".record.json.0123456789ab.tmp"  # named before names said whose
    elsewhere = tmp_path / ".record.json.ffffffff-1.0123456789ab.tmp"
    for tmp in (old_name, elsewhere):
        tmp.write_bytes(b"left behind")
        day_ago = time.time() - files.STALE_AFTER_S - 60
        os.utime(tmp, (day_ago, day_ago))
    files.atomic_write_text(target, "{}")
    assert temporaries(tmp_path) == []


def test_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "f.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
