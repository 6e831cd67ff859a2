"""Experiment tracking: the tracker logs what metrics.jsonl holds, read back by its own tools."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.runner import tracking

SMOKE = ["run", "--preset", "smoke", "--router", "entropy", "--ops", "dct,attn",
         "--task", "listops", "--log-every", "1"]


def only(directory: Path, pattern: str) -> Path:
    found = list(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_scalars_flatten_a_metrics_line_with_routing_fractions_per_layer():
    entry = {"step": 3, "loss": 2.5, "lr": 1e-3, "tokens_per_second": 10.0,
             "layers": [{"fractions": [0.625, 0.375]}, {"fractions": [0.5, 0.5], "gate": 0.2}]}
    assert tracking.scalars(entry, ["dct", "attn"]) == {
        "train/loss": 2.5, "train/lr": 1e-3, "train/tokens_per_second": 10.0,
        "routing/layer0/dct": 0.625, "routing/layer0/attn": 0.375,
        "routing/layer1/dct": 0.5, "routing/layer1/attn": 0.5, "routing/layer1/gate": 0.2}
    assert tracking.scalars({"valid": {"accuracy": 0.5, "loss": 1.0}}, []) == {
        "valid/accuracy": 0.5, "valid/loss": 1.0}


def test_missing_tracker_extra_is_one_line(tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    assert main([*SMOKE, "--tracker", "tensorboard", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and 'pip install -e ".[tensorboard]"' in err


def test_tracker_does_not_change_the_run_identity():
    from harness.core.config import resolve

    plain = resolve({"preset": "smoke"}, {})
    tracked = resolve({"preset": "smoke", "tracker": "tensorboard"}, {})
    assert plain.digest() == tracked.digest()


def test_wandb_is_offline_without_a_key_or_network(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tracking.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(tracking, "_reachable", lambda host, port: False)
    assert tracking.wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.wandb_mode() == "disabled"


def test_tensorboard_events_match_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert main([*SMOKE, "--tracker", "tensorboard", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    work = only(tmp_path, "*/metrics.jsonl").parent
    lines = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(work / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "routing/layer0/dct", "routing/layer0/attn",
            "valid/accuracy"} <= tags

    def series(tag):
        return {e.step: e.value for e in events.Scalars(tag)}

    assert series("train/loss") == pytest.approx({e["step"]: e["loss"] for e in lines},
                                                 rel=1e-6)  # TensorBoard stores float32
    fractions = series("routing/layer0/attn")
    assert fractions == pytest.approx(
        {e["step"]: e["layers"][0]["fractions"][1] for e in lines}, rel=1e-6)
    record = json.loads(only(tmp_path, "*.json").read_text())
    history = {h["step"]: h["valid"]["accuracy"] for h in record["training"]["history"]}
    assert series("valid/accuracy") == pytest.approx(history, rel=1e-6)


@pytest.mark.slow
def test_wandb_offline_run_logs_the_same_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main([*SMOKE, "--tracker", "wandb", "--out", str(tmp_path),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    work = only(tmp_path, "*/metrics.jsonl").parent
    lines = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    run_dir = only(work / "wandb", "offline-run-*")
    # the run file `wandb sync` uploads; its history items hold each value as JSON text.
    # W&B's service process may still be flushing it when finish() returns: give it a moment.
    last = json.dumps(lines[-1]["loss"]).encode()
    run_file, deadline = only(run_dir, "run-*.wandb"), time.time() + 30
    while time.time() < deadline and last not in run_file.read_bytes():
        time.sleep(0.2)
    data = run_file.read_bytes()
    for key in (b"train/loss", b"train/lr", b"routing/layer0/dct", b"routing/layer0/attn",
                b"valid/accuracy"):
        assert key in data, key
    for entry in lines:
        assert json.dumps(entry["loss"]).encode() in data, entry
