"""Promises about time, checked without a stopwatch: smoke caps the final evaluation on every
task, and a long evaluation shows its progress while a short one shows nothing."""

from __future__ import annotations

import pytest
import torch

from harness.core.config import resolve
from harness.runner.console import EvalProgress
from tasks import TASKS


@pytest.mark.parametrize("task", TASKS.names())
def test_smoke_caps_the_final_evaluation_on_every_task(task):
    """WikiText-2's and IMDB's full splits took minutes: smoke reads 8 batches of each."""
    cfg = resolve({"preset": "smoke", "data": {"task": task}}, TASKS.get(task).presets)
    assert cfg.budget.final_eval_batches == 8
    assert resolve({"preset": "cpu", "data": {"task": task}},
                   TASKS.get(task).presets).budget.final_eval_batches is None  # full splits


def test_a_long_evaluation_prints_progress_lines_a_short_one_nothing(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)  # a log file, not a terminal
    lines: list[str] = []
    long = EvalProgress("evaluating test (final weights)", lines.append, quiet_s=0)
    for done in range(1, 4):
        long(done, 3)
    long.close()
    assert [line.split(", ETA")[0] for line in lines] == [
        "evaluating test (final weights): 1/3 batches",
        "evaluating test (final weights): 2/3 batches"]  # the last batch: the result follows
    tenths: list[str] = []
    every = EvalProgress("evaluating valid (final weights)", tenths.append, quiet_s=0)
    for done in range(1, 1001):
        every(done, 1000)
    assert [line.split(":")[1].split(",")[0] for line in tenths] == [
        f" {n}/1000 batches" for n in range(100, 1000, 100)]  # a line a tenth, nine at most
    quick: list[str] = []
    short = EvalProgress("evaluating valid (final weights)", quick.append)  # 5 s of quiet
    for done in range(1, 4):
        short(done, 3)
    assert quick == []
    EvalProgress("silent rank", None, quiet_s=0)(1, 3)  # other ranks: nothing, no error


def test_evaluate_tells_its_progress_over_the_batches_it_reads(tmp_path):
    from harness.engine.data import build_task
    from harness.engine.model import Model
    from harness.engine.steps import evaluate

    cfg = resolve({"preset": "smoke", "data": {"task": "listops",
                                               "cache_dir": str(tmp_path / "cache")}},
                  TASKS.get("listops").presets)
    task = build_task(cfg)
    model = Model(cfg, task, cfg.data.seq_len)
    seen: list[tuple[int, int]] = []
    capped = evaluate(model, task, "valid", torch.device("cpu"), 8, 3,
                      progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)] and capped["examples"] == 24
    seen.clear()
    full = evaluate(model, task, "valid", torch.device("cpu"), 8,
                    progress=lambda done, total: seen.append((done, total)))
    n = len(task.dataset("valid"))
    assert seen[-1] == (-(-n // 8), -(-n // 8)) and full["examples"] == n
