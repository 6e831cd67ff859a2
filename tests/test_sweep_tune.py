"""Sweeps that tune an option on validation, and run cells side by side on CPU cores."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.sweep.driver import choose, tuning_axes, validation_score, value_combinations
from harness.sweep.grid import Cell
from registry import ConfigError


def test_tuning_axes_parse_values_and_refuse_a_single_value():
    assert tuning_axes(["optim.lr=1e-3,2e-3"]) == {"optim.lr": [0.001, 0.002]}
    assert value_combinations({"optim.lr": [1, 2], "optim.weight_decay": [0, 0.1]}) == [
        {"optim": {"lr": 1, "weight_decay": 0}}, {"optim": {"lr": 1, "weight_decay": 0.1}},
        {"optim": {"lr": 2, "weight_decay": 0}}, {"optim": {"lr": 2, "weight_decay": 0.1}}]
    for bad in ("optim.lr=1e-3", "lr=1e-3,2e-3", "optim.lr"):
        with pytest.raises(ConfigError, match="--tune expects"):
            tuning_axes([bad])


def _record(valid: float, best: float | None = None, metric: str = "perplexity") -> dict:
    record = {"task_metric": metric, "higher_is_better": metric != "perplexity",
              "metrics": {"valid": {metric: valid}}}
    if best is not None:
        record["best_checkpoint"] = {"metrics": {"valid": {metric: best}}}
    return record


def test_the_score_is_the_best_checkpoints_validation_metric_oriented_up():
    assert validation_score(_record(20.0)) == -20.0
    assert validation_score(_record(20.0, best=18.0)) == -18.0  # ranked on its best checkpoint
    assert validation_score(_record(0.7, metric="accuracy")) == 0.7
    assert validation_score({"metrics": {}}) is None


def _cell(router: str, lr: float, record: dict | None) -> Cell:
    overrides = {"seed": 0, "data": {"task": "t"}, "optim": {"lr": lr},
                 "routing": {"router": router, "ops": ["attn"]}}
    return Cell(router, ["attn"], "t", 0, overrides, record=record or {})


def test_each_configuration_gets_the_value_with_the_best_validation_metric():
    cells = [_cell("single", 1e-3, _record(30.0)), _cell("single", 2e-3, _record(25.0)),
             _cell("single", 4e-3, _record(27.0, best=24.0)),  # its best checkpoint wins
             _cell("entropy", 1e-3, _record(30.0)), _cell("entropy", 2e-3, None)]
    chosen = choose(cells, ["optim.lr"])
    picks = {json.loads(k)["routing"]["router"]: v for k, v in chosen.items()}
    assert picks == {"single": {"optim": {"lr": 4e-3}}, "entropy": {"optim": {"lr": 1e-3}}}
    assert choose([_cell("single", 1e-3, None)], ["optim.lr"]) == {
        json.dumps({"data": {"task": "t"}, "optim": {},
                    "routing": {"router": "single", "ops": ["attn"]}}, sort_keys=True): None}


@pytest.mark.slow
def test_a_tuned_sweep_runs_every_value_then_the_chosen_one_side_by_side(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "sweep", "--routers", "single", "--ops", "attn",
           "--tasks", "listops", "--preset", "smoke", "--seeds", "0,1", "--jobs", "2",
           "--tune", "optim.lr=1e-4,3e-3", "--out", str(out),
           "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], []).append(r)
    assert len(by_seed[0]) == 2 and len(by_seed[1]) == 1  # both values, then the chosen one
    best = max(by_seed[0], key=validation_score)
    assert by_seed[1][0]["config"]["optim"]["lr"] == best["config"]["optim"]["lr"]
    assert all(r["config"]["threads"] == 1 for r in records)  # side by side: a core each
    assert f"chose optim.lr={best['config']['optim']['lr']}" in result.stdout
    assert f"records: {out}" in result.stdout


@pytest.mark.parametrize("jobs", ["0", "-2"])
def test_jobs_below_one_is_a_one_line_error(tmp_path, capsys, jobs):
    from harness.cli.main import main

    code = main(["sweep", "--tasks", "listops", "--routers", "single", "--ops", "attn",
                 "--jobs", jobs,
                 "--out", str(tmp_path / "runs")])
    assert code == 2
    assert f"--jobs must be >= 1, got {jobs}" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
