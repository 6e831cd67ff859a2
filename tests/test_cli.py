"""The command line end to end: a real smoke run, listings, and bad input (exit 2, one line)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ISOLATE_PLUGINS

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
    assert "model: 1 layer, d_model 32" in result.stdout  # not "1 layers"
    assert "majority-class baseline" in result.stdout
    records = list((tmp_path / "runs").glob("*.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["task"] == "listops" and record["router"] == "entropy"
    assert record["operators"] == ["dct", "attn"]  # in --ops order
    assert record["config"]["routing"]["attn_fraction"] == 0.375
    assert 0 <= record["metrics"]["test"]["accuracy"] <= 1
    assert "majority_accuracy" in record["metrics"]["test"]
    env = record["environment"]
    assert env["torch"] == torch.__version__
    assert env["hardware"]
    # provenance: the command as typed, the tree's state, the other key versions, the cores
    assert env["command"].startswith("python -m harness run --router entropy")
    assert isinstance(env["git_dirty"], bool)
    assert env["versions"]["numpy"] == __import__("numpy").__version__
    assert set(env["versions"]) >= {"datasets", "tokenizers", "xformers"}
    assert env["cpu_cores"] == os.cpu_count() and env["cpu_cores_usable"] >= 1
    # the best-validation checkpoint is evaluated and recorded next to the final one
    best = record["best_checkpoint"]
    assert best["step"] in (3, 6) and set(best["metrics"]) == {"valid", "test"}
    assert best["same_as_final"] == (best["step"] == 6)
    assert 0 <= best["metrics"]["test"]["accuracy"] <= 1
    # every number printed is labelled with its split, its size and its checkpoint; smoke
    # evaluates the first 8 batches of each split (seconds on every task) and says so
    assert "test, first 8 batches (64 examples), final (step 6)" in result.stdout
    assert record["metrics"]["test"]["examples"] == 64
    assert "on the first 8 batches of each split only" in result.stdout
    assert "capped evaluation: the first 8 batches of each split (--final-eval-batches 8)" in (
        record["flags"])
    if best["same_as_final"]:
        assert "the best-validation checkpoint is the final one (step 6)" in result.stdout
    else:
        assert f"best valid (step {best['step']})" in result.stdout
    assert "subset of 16 examples" in result.stdout  # the valid numbers during training
    assert "requested --attn-fraction 0.375" in result.stdout
    # plain progress lines (not a terminal) carry step/total and an ETA
    assert "step 2/6: train loss" in result.stdout and "ETA" in result.stdout
    assert result.stdout.count("step 3/6:") == 1  # the evaluation's line, not a second one
    # where everything was written
    work = tmp_path / "runs" / records[0].stem
    for name in ("checkpoint.pt", "metrics.jsonl"):
        assert f"{work / name}" in result.stdout and (work / name).exists()
    assert f"record:       {records[0]}" in result.stdout
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
        (["--router", "single", "--ops", "dct,attn"], "exactly 1 operator, got 2"),
        (["--d-model", "0"], "d_model"),
        (["--batch-size", "-3"], "batch_size"),
        (["--d-model", "30", "--heads", "4"], "not divisible"),
        (["--attn-fraction", "1.5"], "attn_fraction"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--preset", "Smoke"], "did you mean 'smoke'?"),
        (["--op-option", "dct.decy=2"], "did you mean 'decay'? (its options: decay, n_freq"),
        (["--router-option", "momentm=1"], "did you mean 'momentum'?"),
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

HEAVY = ("torch", "scipy", "pydantic", "harness.probes.bench.command",
         "harness.report.leaderboard.board", "harness.probes.conformance.suite")
COMMANDS = ["run", "check", "list", "bench", "leaderboard", "sweep", "conformance"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
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


def _help(*command: str) -> str:
    from harness.cli.main import build_parser

    argv = [*command, "--help"]
    parser = build_parser(argv)
    sub = next(a for a in parser._actions if a.dest == "command").choices
    return (sub[command[0]] if command else parser).format_help()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_description_examples_and_documented_flags(command):
    from harness.cli.main import build_parser

    text = _help(command)
    usage, _, rest = text.partition("\n\n")
    assert rest.strip() and not rest.startswith(("options:", "positional")), "no description"
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert 2 <= sum(line.strip().startswith("python -m harness") for line in examples) <= 4
    assert "issue" not in text.lower()  # no process words in the product
    sub = next(a for a in build_parser([command])._actions if a.dest == "command")
    for action in sub.choices[command]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and action.help != argparse.SUPPRESS, action.option_strings


def test_check_help_lists_only_what_check_uses():
    text = _help("check")
    for flag in ("--router", "--ops", "--task", "--preset", "--layers", "--d-model",
                 "--seq-len", "--attn-fraction", "--op-option", "--vocab-size"):
        assert flag in text
    for flag in ("--max-steps", "--lr", "--batch-size", "--out", "--resume",
                 "--ckpt-every", "--eval-every", "--allow-leaky", "--device"):
        assert flag not in text, flag
    # run's data flags are accepted (a run command turned into a check works), listed under a
    # heading that says check reads no data
    body = text.split("\n\n", 1)[1]  # after the usage lines
    before, heading, after = body.partition("check reads no data)")
    assert heading
    for flag in ("--data-dir", "--cache-dir", "--train-file", "--valid-file", "--test-file",
                 "--eval-stride"):
        assert flag not in before and flag in after, flag


def test_stated_defaults_are_the_config_defaults_and_the_presets():
    """The help states defaults without importing pydantic; they must be the real ones."""
    from harness.cli.main import add_run_arguments
    from harness.core.config import HARNESS_PRESETS, RunConfig
    from harness.core.options import OPTIONS, value_at

    cfg, checked = RunConfig(), 0
    by_dest = {o.dest: o for o in OPTIONS}
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    for action in parser._actions:
        if action.dest not in by_dest or not action.help:
            continue
        o = by_dest[action.dest]
        if o.key_depth or o.path.startswith("data.task_options."):
            continue  # task options: the task's own defaults
        actual = value_at(cfg, o.path)
        stated = re.search(r"\(default ([^;):\s]+)", action.help)
        if stated and o.path != "preset" and stated.group(1) not in ("none", "all"):
            if actual is None:  # the help says what None means (runs/, the --out folder)
                assert not re.fullmatch(r"[\d.e+-]+", stated.group(1)), action.dest
            else:
                text = ",".join(actual) if isinstance(actual, list) else str(actual)
                assert stated.group(1) == text, (action.dest, stated.group(1), actual)
                checked += 1
        for preset, value in re.findall(r"(smoke|cpu|paper|paper-400m) ([\w.+-]+)",
                                        action.help.split("presets:", 1)[-1]
                                        if "presets:" in action.help else ""):
            assert str(value_at(HARNESS_PRESETS[preset], o.path)) == value, (action.dest, preset)
    assert checked >= 25


def test_conformance_is_a_subcommand(capsys):
    assert main(["conformance", "--ops", "attn", "--mode", "non-causal",
                 "--no-flop-counter"]) == 0
    out = capsys.readouterr().out
    assert "operator 'attn'" in out and "0 failed" in out


def test_argument_specs_have_one_definition():
    """bench, leaderboard and conformance take their arguments from the light cli modules."""
    import harness.probes.bench.args as args_bench
    import harness.probes.bench.command as bench
    import harness.probes.bench.settings as settings
    import harness.probes.conformance.args as args_conformance
    import harness.probes.conformance.cli as conformance
    import harness.report.leaderboard.args as args_leaderboard
    import harness.report.leaderboard.board as leaderboard

    assert bench.add_arguments is args_bench.add_arguments
    assert settings.QUICK is args_bench.QUICK and settings.FULL is args_bench.FULL
    assert set(settings.BenchConfig.model_fields) == {
        o.path.split(".")[0] for o in args_bench.BENCH_OPTIONS}
    assert leaderboard.DEFAULT_RUNS == args_leaderboard.DEFAULT_RUNS == "results/runs"
    actions = {a.dest for a in conformance.build_parser()._actions}
    parser = argparse.ArgumentParser()
    args_conformance.add_arguments(parser)
    assert actions == {a.dest for a in parser._actions}


def test_list_imports_no_torch_and_filters_by_pattern():
    code = ISOLATE_PLUGINS + (  # a plugin installed here may import torch: not the built-ins
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


def test_list_says_where_descriptions_come_from(capsys):
    assert main(["list", "dct"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "description: the description= given at registration, else the first line" in out
