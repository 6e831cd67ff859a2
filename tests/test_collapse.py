"""Routing collapse (harness/engine/meters/collapse.py): detection, the record flag, the board."""

from __future__ import annotations

import json

from harness.cli.main import main
from harness.engine.meters.collapse import (
    collapse_flags,
    collapsed_ops,
    final_shares,
    find_collapses,
    plot_collapse,
)

OPS = ["dct", "rbf", "attn"]


def _history(rbf_shares, layers=2):
    return [{"step": 10 * (i + 1),
             "fractions": [[0.6 - s / 2, s, 0.4 - s / 2] for _ in range(layers)]}
            for i, s in enumerate(rbf_shares)]


def test_an_operator_that_stays_below_the_share_to_the_end_collapses():
    history = _history([0.3, 0.2, 0.05, 0.01, 0.005, 0.0, 0.0, 0.001])
    found = find_collapses(history, OPS)
    assert [(c.layer, c.op, c.since_step) for c in found] == [(0, "rbf", 40), (1, "rbf", 40)]
    flags = collapse_flags(found)
    assert flags == ["collapsed: rbf (layer 0 from step 40, layer 1 from step 40, share < 2%)"]
    assert collapsed_ops(flags + ["leaky: x", "preset:cpu"]) == ["rbf"]


def test_a_dip_at_the_end_or_a_recovery_is_not_a_collapse():
    assert find_collapses(_history([0.3] * 7 + [0.01]), OPS) == []  # 1 of 8 points: noise
    assert find_collapses(_history([0.3, 0.0, 0.0, 0.0, 0.0, 0.2, 0.3, 0.3]), OPS) == []
    assert find_collapses([], OPS) == [] and find_collapses(_history([0.0]), ["attn"]) == []


def test_an_operator_the_run_gives_no_share_is_not_collapsed():
    history = _history([0.0] * 8)
    assert find_collapses(history, OPS, targets=[0.6, 0.0, 0.4]) == []
    assert [c.op for c in find_collapses(history, OPS, targets=[0.3, 0.3, 0.4])] == ["rbf"] * 2


def test_final_shares_average_the_layers():
    history = [{"step": 1, "fractions": [[0.5, 0.1, 0.4], [0.7, 0.0, 0.3]]}]
    shares = final_shares(history, OPS)
    assert shares == {"dct": 0.6, "rbf": 0.05, "attn": 0.35}


def test_a_run_records_its_routing_history_and_is_flagged_on_the_board(tmp_path, capsys):
    out = tmp_path / "runs"
    # the MetaRouter's gate starts at attn_fraction: at 0.1% attention never gets 2% weight
    code = main(["run", "--preset", "smoke", "--router", "meta", "--ops", "dct,attn",
                 "--attn-fraction", "0.001", "--log-every", "1", "--out", str(out),
                 "--task-option", "n_train=64", "--task-option", "n_valid=16",
                 "--task-option", "n_test=16"])
    assert code == 0
    record = json.loads(next(out.glob("*.json")).read_text())
    history = record["telemetry"]["routing_history"]
    assert [p["step"] for p in history] == list(range(1, 7))
    assert all(len(p["fractions"][0]) == 2 for p in history)
    assert any(f.startswith("collapsed: attn") for f in record["flags"])
    board = tmp_path / "LB.md"
    assert main(["leaderboard", "--runs", str(out), "--out", str(board), "--no-plots"]) == 0
    assert "collapsed: attn" in board.read_text()
    plot_collapse(history, record["operators"], tmp_path / "c.png", title="t")
    assert (tmp_path / "c.png").stat().st_size > 1000
