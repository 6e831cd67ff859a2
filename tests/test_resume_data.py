"""A checkpoint carries the hash of the data it was trained on: the config names the training
file, not its contents, so a resume over a file changed under the same name is refused."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.engine import checkpoint
from harness.runner.train import Trainer
from registry import ConfigError

WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]


def _text(seed: int, lines: int) -> str:
    r = random.Random(seed)
    return "\n".join(" ".join(r.choice(WORDS) for _ in range(12)) for _ in range(lines)) + "\n"


def _args(tmp_path: Path) -> list[str]:
    return ["run", "--preset", "smoke", "--task", "wikitext2", "--router", "single", "--ops",
            "attn", "--tokenizer", "word", "--max-steps", "4", "--ckpt-every", "2",
            "--train-file", str(tmp_path / "train.txt"), "--valid-file",
            str(tmp_path / "valid.txt"), "--test-file", str(tmp_path / "test.txt"),
            "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]


def test_resume_over_a_changed_training_file_is_refused_naming_it(tmp_path, capsys,
                                                                  monkeypatch):
    train = tmp_path / "train.txt"
    train.write_text(_text(0, 300))
    (tmp_path / "valid.txt").write_text(_text(1, 40))
    (tmp_path / "test.txt").write_text(_text(2, 40))
    original = Trainer.save_checkpoint

    def save_then_interrupt(self):
        original(self)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(Trainer, "save_checkpoint", save_then_interrupt)
        assert main(_args(tmp_path)) == 130  # stopped after its step-2 checkpoint
    (ckpt,) = (tmp_path / "runs").glob("*/checkpoint.pt")
    state = checkpoint.load(ckpt)
    assert set(state["data_hashes"]) == {"train", "valid", "test"}
    capsys.readouterr()

    kept = train.read_text()
    train.write_text(_text(3, 300))  # same name, other text (and so another word vocabulary)
    assert main(_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert f"other train data than the file {train}" in err and str(ckpt) in err
    assert checkpoint.load(ckpt)["progress"] == state["progress"]  # it is left as it was

    train.write_text(kept)  # the data it was trained on: it resumes
    assert main(_args(tmp_path)) == 0
    assert "resumed from" in capsys.readouterr().out


def test_a_checkpoint_with_malformed_data_hashes_is_one_line(tmp_path):
    path = tmp_path / "checkpoint.pt"
    checkpoint.save(path, {"config": "{}", "config_hash": "x", "model": {}, "rng": {},
                           "progress": "{}", "data_hashes": ["not", "a", "map"]})
    with pytest.raises(ConfigError, match=r"'data_hashes' is not a map.*delete it"):
        checkpoint.load(path)
