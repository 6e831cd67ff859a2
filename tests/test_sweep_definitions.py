"""The committed sweep definitions: every cell of Zoology's difficulty sweep and of its routed
pairs is valid here, the data-limited Shakespeare sweep makes exactly the committed records of
its budget, and (slow) a slice of the sweep runs end to end onto the board's difficulty
section."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness.cli.main import build_parser, main
from harness.core.options import deep_merge
from harness.sweep.grid import expand, grid_from_args, record_path_of

ROOT = Path(__file__).resolve().parents[1]
DIFFICULTY = ROOT / "sweeps" / "mqar_difficulty.toml"
ROUTED = ROOT / "sweeps" / "mqar_routed.toml"
DATA_LIMITED = ROOT / "sweeps" / "shakespeare_data_limited.toml"


@pytest.mark.parametrize("file, cells", [(DIFFICULTY, 4 * 3 * 3 * 3), (ROUTED, 2 * 3 * 3)])
def test_every_cell_of_the_definition_can_run(file, cells, capsys):
    assert main(["sweep", "--file", str(file), "--dry-run"]) == 0
    assert f"{cells} cells to run, 0 skipped" in capsys.readouterr().out


def test_the_sweep_files_make_the_rows_this_section_reads():
    """The definition and its routed pairs: >= 3 settings x >= 3 widths for attention, dct and
    two cheap mixers, 3 seeds; the routed pairs at the middle setting and width."""
    sweep = tomllib.loads(DIFFICULTY.read_text())
    routed = tomllib.loads(ROUTED.read_text())
    grid, cases = sweep["sweep"], sweep["sweep"]["cases"]
    ops = grid["ops"][0]
    assert {"attn", "dct"} <= set(ops) and len(ops) >= 4 and grid["seeds"] == [0, 1, 2]
    widths = grid["model.d_model"]
    assert len(widths) >= 3 and len(cases) >= 3
    middle = cases[len(cases) // 2]
    assert routed["base"]["data"] == middle["data"]
    assert routed["base"]["optim"] == middle["optim"]
    assert routed["base"].get("budget") == middle.get("budget")
    assert routed["base"]["model"]["d_model"] == widths[len(widths) // 2]
    assert routed["base"]["preset"] == sweep["base"]["preset"]
    assert {tuple(p) for p in routed["sweep"]["ops"]} == {(op, "attn") for op in ops
                                                          if op not in ("attn", "dct")}
    assert set(routed["sweep"]["routers"]) == {"entropy", "random", "oracle"}
    for case in cases:  # Zoology's rule: the vocabulary is larger than the sequence
        assert case["data"]["task_options"]["vocab_size"] > case["data"]["seq_len"]
    assert sweep["base"]["preset"] == "cpu"


def test_the_data_limited_sweep_makes_the_committed_records_of_its_budget():
    """results/README.md reproduces the data-limited Shakespeare rows with this sweep file (and
    --routers/--ops for another arm) and --tune optim.lr=...: every committed record of that
    budget (the first 19,415 lines, a 4,800-step cap) must be the cell the file makes for its
    router, operators, rate and seed, configuration hash and all, or the command would run
    something else."""
    sweep = tomllib.loads(DATA_LIMITED.read_text())
    assert sweep["sweep"]["ops"] == [["attn"], ["identity"]]  # attention against its floor
    lines = sweep["base"]["data"]["task_options"]["train_lines"]
    cap = sweep["base"]["budget"]["max_steps"]
    checked = 0
    for path in sorted((ROOT / "results" / "runs").glob("shakespeare__*.json")):
        config = json.loads(path.read_text())["config"]
        if (config["data"].get("task_options", {}).get("train_lines") != lines
                or config["budget"]["max_steps"] != cap):
            continue
        routing = config["routing"]
        args = build_parser().parse_args(
            ["sweep", "--file", str(DATA_LIMITED), "--routers", routing["router"],
             "--ops", ",".join(routing["ops"]), "--seeds", str(config["seed"])])
        grid, base = grid_from_args(args)
        (cell,) = expand(grid, deep_merge(base, {"optim": {"lr": config["optim"]["lr"]}}))
        assert record_path_of(cell.overrides).name == path.name
        checked += 1
    assert checked >= 2 * 3, "the committed records of the data-limited budget are missing"


@pytest.mark.slow
def test_a_slice_of_the_sweep_lands_on_the_board(tmp_path):
    from harness.report.leaderboard import board as lb
    from harness.report.leaderboard import difficulty

    data = tomllib.loads(DIFFICULTY.read_text())
    grid = data["sweep"]
    grid["model.d_model"] = grid["model.d_model"][:2]
    grid["cases"] = grid["cases"][:1]
    grid["seeds"] = [0]
    grid["ops"] = [["attn", "linear"]]
    sliced = tmp_path / "slice.json"  # a sweep file may be JSON: no TOML writer needed
    sliced.write_text(json.dumps(data))
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "harness", "sweep", "--file", str(sliced), "--max-steps", "2",
           "--out", str(out), "--set", "data.task_options.n_train=64",
           "--set", "data.task_options.n_valid=32", "--set", "data.task_options.n_test=32",
           "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(list(out.glob("*.json"))) == 4  # 2 mixers x 2 widths
    text = lb.generate(out, tmp_path / "LEADERBOARD.md", tmp_path / "plots", None).markdown
    section = text[text.index(difficulty.TITLE):]
    assert "### mqar (preset cpu): difficulty sweep" in section
    assert "widths (d_model) 32, 64" in section
    assert "mqar_cpu_difficulty.png" in section
