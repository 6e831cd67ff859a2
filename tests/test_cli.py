"""The command line end to end: a real smoke run, listings, and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 300):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True,
        cwd=cwd or ROOT, env=env, timeout=timeout,
    )


def test_smoke_run_end_to_end_writes_a_complete_record(tmp_path):
    result = run_cli(
        "run", "--router", "entropy", "--ops", "dct,attn", "--task", "listops",
        "--preset", "smoke", "--out", str(tmp_path / "runs"),
        "--cache-dir", str(tmp_path / "cache"),
    )
    assert result.returncode == 0, result.stderr
    assert "preset in force: smoke" in result.stdout
    assert "majority-class baseline" in result.stdout
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["task"] == "listops" and record["router"] == "entropy"
    assert record["operators"] == ["dct", "attn"]  # ordered by cost, cheapest first
    assert record["config"]["routing"]["attn_fraction"] == 0.375
    assert 0 <= record["metrics"]["test"]["accuracy"] <= 1
    assert "majority_accuracy" in record["metrics"]["test"]
    assert record["environment"]["torch"] == torch.__version__
    assert record["environment"]["hardware"]
    assert record["seed"] == 0 and record["config_hash"]
    assert "preset:smoke" in record["flags"]
    cost = record["cost"]["test"]
    # entropy routing sends a share of tokens to attention and really skips the rest
    assert 0 < cost["attention_flop_fraction"] < 1
    fractions = [layer["attn"]["token_fraction"] for layer in cost["per_layer"]]
    assert all(0 < f < 1 for f in fractions)


def test_list_shows_builtins_with_origin():
    result = run_cli("list", "--json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    ops = {e["name"]: e for e in listing["operators"]}
    assert {"dct", "attn", "rbf", "xformers"} <= set(ops)
    assert ops["dct"]["origin"] == "built-in"
    assert {"single", "entropy", "meta", "learned", "random"} <= {
        e["name"] for e in listing["routers"]}
    assert "listops" in {e["name"] for e in listing["tasks"]}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--ops", "dtc,attn"], "did you mean 'dct'?"),
        (["--router", "entrpy"], "did you mean 'entropy'?"),
        (["--task", "listop"], "did you mean 'listops'?"),
        (["--router", "single", "--ops", "dct,attn"], "exactly 1 operators"),
        (["--d-model", "0"], "d_model"),
        (["--batch-size", "-3"], "batch_size"),
        (["--d-model", "30", "--heads", "4"], "not divisible"),
        (["--attn-fraction", "1.5"], "attn_fraction"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--task-option", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_input_is_one_line_exit_2_no_traceback(args, expected, capsys, tmp_path):
    code = main(["run", "--preset", "smoke", "--out", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_noncausal_operator_on_causal_task_is_refused(causal_task_and_noncausal_op, capsys,
                                                      tmp_path):
    code = main(["run", "--preset", "smoke", "--task", "tiny-lm-test", "--router", "single",
                 "--ops", "future-only-test", "--seq-len", "16", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no causal form" in err and "future-only-test" in err
    assert "Traceback" not in err


def test_leaky_variant_refused_on_causal_task_unless_allowed(causal_task_and_noncausal_op,
                                                            capsys, tmp_path):
    base = ["run", "--preset", "smoke", "--task", "tiny-lm-test", "--router", "entropy",
            "--ops", "dct-leaky,attn", "--seq-len", "16", "--out", str(tmp_path),
            "--max-steps", "2"]
    assert main(base) == 2
    assert "--allow-leaky" in capsys.readouterr().err
    assert main([*base, "--allow-leaky"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: leaky" in out
    record = json.loads(next(Path(tmp_path).glob("*.json")).read_text())
    assert any(flag.startswith("leaky") for flag in record["flags"])


# -- start-up: the parser and --help import no heavy module ------------------------------------

HEAVY = ("torch", "scipy", "pydantic", "harness.measure.bench", "harness.results.leaderboard")


@pytest.mark.parametrize("command", ["", "run", "check", "list", "bench", "leaderboard",
                                     "sweep"])
def test_help_works_and_imports_nothing_heavy(command):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['harness', *{command.split()!r}, '--help']\n"
        "try:\n"
        "    runpy.run_module('harness', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "usage: python -m harness" in out.stdout


def test_list_imports_no_torch_and_filters_by_pattern():
    code = (
        "import sys\n"
        "from harness.cli.main import main\n"
        "assert main(['list', '*attn*', '--json']) == 0\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [e["name"] for e in listed["operators"]] == ["attn"]
    assert listed["routers"] == [] and listed["tasks"] == []


def _actions(add_arguments) -> list[tuple]:
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return [(a.option_strings, a.dest, a.default, a.type, a.choices, a.help, a.nargs,
             type(a).__name__) for a in p._actions]


@pytest.mark.parametrize("light, heavy", [
    ("harness.cli.args_bench", "harness.measure.bench"),
    ("harness.cli.args_leaderboard", "harness.results.leaderboard"),
])
def test_copied_argument_specs_match_their_command(light, heavy):
    """The light copies that --help uses must build the same arguments as the command's own."""
    import importlib

    assert _actions(importlib.import_module(light).add_arguments) == _actions(
        importlib.import_module(heavy).add_arguments)
