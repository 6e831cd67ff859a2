"""Faults a user meets are one line and exit status 2 (or 130 for a Ctrl-C), never a traceback:
a read-only output folder, a malformed record or checkpoint given to `analyze`, sizes the
conformance suite cannot use, a truncated IMDB archive, a device as a training file."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from harness.core.config import resolve, seq_len_of
from harness.engine import checkpoint
from harness.engine.data import build_task
from harness.engine.model import Model
from harness.runner.train import Trainer
from registry import DataError
from tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["--preset", "smoke", "--task", "listops", "--router", "single", "--ops", "attn"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(("error:", "Traceback"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- a read-only output folder ------------------------------------------------------------------


def test_a_read_only_out_folder_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    """What a user without write permission meets (root writes anyway, so the refusal of the
    kernel is played here): mkdir inside the folder fails with EACCES."""
    out = tmp_path / "out"
    out.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if Path(path).parent == out:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(Trainer, "build", lambda self: pytest.fail("work began"))
    assert main(["run", *SMOKE, "--out", str(out)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"--out {out}" in line and "Permission denied" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_folder_without_write_permission_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        assert main(["run", *SMOKE, "--out", str(out), "--max-steps", "1"]) == 2
    finally:
        out.chmod(0o755)
    assert f"--out {out}" in one_error_line(capsys.readouterr().err)


def test_the_record_folder_turning_read_only_during_the_run_is_one_line(tmp_path, capsys,
                                                                       monkeypatch):
    def write(self, record):
        raise PermissionError(errno.EROFS, "Read-only file system", str(self.record_path))

    monkeypatch.setattr(Trainer, "write", write)
    assert main(["run", *SMOKE, "--max-steps", "2", "--out", str(tmp_path / "runs"),
                 "--cache-dir", str(tmp_path / "cache")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "Read-only file system" in line and "checkpoint" in line


# -- a Ctrl-C just after the last training step -------------------------------------------------


def test_a_ctrl_c_during_the_last_checkpoint_stops_the_run(tmp_path, capsys, monkeypatch):
    original = Trainer.save_checkpoint

    def save_then_ctrl_c(self):
        original(self)
        if self.progress.step == self.cfg.budget.max_steps:  # after the loop's last look
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_ctrl_c)
    args = ["run", *SMOKE, "--max-steps", "2", "--ckpt-every", "2", "--out",
            str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 130
    assert "after the last training step" in capsys.readouterr().err
    assert not list((tmp_path / "runs").glob("*.json"))  # no record: it was stopped
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
    assert main(args) == 0  # the re-run only evaluates and writes the record
    assert list((tmp_path / "runs").glob("*.json"))


# -- analyze ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,what", [
    ('{"config": {"model": ', "not valid JSON"),
    ("[1, 2]", "no 'config' table"),
    ('{"config": {"model": {"layers": "many"}}}', "its config is invalid: model.layers"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_analyze_on_a_malformed_record_is_one_line_naming_it(tmp_path, capsys, text, what):
    record = tmp_path / "run.json"
    record.write_text(text)
    assert main(["analyze", str(record)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot read the record {record}" in line and what in line


def test_analyze_on_a_checkpoint_with_a_wrong_shaped_tensor_is_one_line(tmp_path, capsys):
    cfg = resolve({"preset": "smoke", "data": {"task": "listops",
                                               "cache_dir": str(tmp_path / "cache")},
                   "routing": {"router": "single", "ops": ["attn"]}},
                  TASKS.get("listops").presets)
    weights = Model(cfg, build_task(cfg, shape_only=True), seq_len_of(cfg)).state_dict()
    name = next(k for k, v in weights.items() if v.dim() == 2)
    weights[name] = torch.zeros(3, 5)
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"config": cfg.model_dump_json(), "config_hash": cfg.digest(),
                           "model": weights, "rng": {}, "progress": "{}"})
    assert main(["analyze", str(path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"checkpoint {path} cannot be read" in line and name in line


# -- conformance --------------------------------------------------------------------------------


@pytest.mark.parametrize("flags,what", [(["--seq-len", "0"], "seq_len must be >= 4"),
                                        (["--batch-size", "1"], "batch_size must be >= 2"),
                                        (["--seq-len", "100000000"],
                                         "seq_len 100,000,000 is above the conformance suite's"),
                                        (["--d-model", "100000"], "d_model 100,000 is above")])
def test_conformance_sizes_it_cannot_use_are_one_line(capsys, flags, what):
    assert main(["conformance", "--ops", "attn", *flags]) == 2
    assert what in one_error_line(capsys.readouterr().err)


def test_conformance_module_prints_warnings_on_one_line(tmp_path):
    """`python -m harness.conformance`, like `python -m harness`: a plugin that fails to
    import is a one-line warning, not Python's two lines with our source under it."""
    (tmp_path / "fakebroken_mod.py").write_text("raise ImportError('needs a GPU library')\n")
    info = tmp_path / "fakebroken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakebroken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[chiaroscuro.operators]\nbroken = fakebroken_mod:Thing\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    done = subprocess.run([sys.executable, "-m", "harness.conformance", "--ops", "identity",
                           "--mode", "non-causal", "--no-flop-counter"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    warned = [line for line in done.stderr.splitlines() if "broken" in line]
    assert warned and warned[0].startswith("warning: plugin 'broken' from fakebroken 1.0"), \
        done.stderr
    assert "warnings.warn" not in done.stderr and "RuntimeWarning" not in done.stderr


# -- data files ---------------------------------------------------------------------------------


def test_a_truncated_imdb_archive_says_so_and_names_it(tmp_path):
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from test_imdb import make, make_acl
    finally:
        sys.path.remove(str(ROOT / "tests"))
    make_acl(tmp_path / "folder")
    archive = tmp_path / "aclImdb_v1.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "folder" / "aclImdb", arcname="aclImdb")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) * 3 // 10 // 512 * 512])  # cut at a block boundary
    with pytest.raises(DataError, match=rf"{archive} is truncated or corrupt"):
        make(archive, tmp_path).dataset("train")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_a_device_as_training_file_is_not_called_missing(tmp_path, capsys):
    assert main(["run", "--task", "wikitext2", "--train-file", "/dev/zero", "--out",
                 str(tmp_path / "runs")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "/dev/zero is not a regular file" in line and "does not exist" not in line
