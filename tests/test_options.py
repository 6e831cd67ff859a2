"""The run's options, declared once (harness/core/options.py): the config models, the flags of
run, check and bench, the sweep's --set and [base], and the bounds on what a user may type."""

from __future__ import annotations

import argparse
import inspect
import json
import warnings
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.core import flags
from harness.core.config import RunConfig, config_model, load_config_file
from harness.core.options import (
    ATTN_FRACTION,
    MAX_SEED,
    OPTIONS,
    SEED_STRIDE,
    Option,
    value_at,
)
from harness.core.presets import HARNESS_PRESETS
from registry import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# -- the digest of every committed configuration -----------------------------------------------


def test_every_committed_record_keeps_its_config_hash():
    """The models are built from the declarations now; every committed configuration must
    still hash to the config_hash its record carries (else its board row would split)."""
    records = sorted((ROOT / "results" / "runs").glob("*.json"))
    assert len(records) >= 99
    wrong = []
    for path in records:
        record = json.loads(path.read_text())
        if RunConfig.model_validate(record["config"]).digest() != record["config_hash"]:
            wrong.append(path.name)
    assert not wrong


def test_the_digest_leaves_out_where_and_how_fast_and_the_seed_only():
    base = RunConfig()
    for path, value in [("seed", 7), ("device", "cpu"), ("out", "x"), ("work_dir", "y"),
                        ("threads", 2), ("compile", True), ("tracker", "wandb"),
                        ("budget.ckpt_every", 9), ("budget.log_every", 3)]:
        section, _, name = path.rpartition(".")
        data = {section: {name: value}} if section else {name: value}
        assert RunConfig.model_validate(data).digest() == base.digest(), path
    for path, value in [("model.layers", 3), ("optim.beta1", 0.8), ("budget.min_delta", 0.01),
                        ("data.length_bucketing", False), ("preset", "smoke")]:
        section, _, name = path.rpartition(".")
        data = {section: {name: value}} if section else {name: value}
        assert RunConfig.model_validate(data).digest() != base.digest(), path


# -- one declaration, everything built from it ------------------------------------------------


def test_a_new_option_is_one_entry():
    """An option added to the declarations gets its config field (type, default, bounds), its
    flag and its help (default and preset values), and a flag given reaches the model."""
    new = Option("optim.beta3", float, 0.5, "a third beta", metavar="B", group="optim", gt=0,
                 lt=1)
    options = (*OPTIONS, new)
    optim = config_model("OptimConfig", options, "optim")
    assert optim().beta3 == 0.5
    with pytest.raises(ValueError, match="less than 1"):
        optim(beta3=1.5)
    parser = argparse.ArgumentParser()
    flags.add_flags(parser, options, presets={"fast": {"optim": {"beta3": 0.25}}})
    help_line = next(a.help for a in parser._actions if a.dest == "beta3")
    assert help_line == "a third beta (default 0.5; presets: fast 0.25)"
    given = flags.overrides_from(parser.parse_args(["--beta3", "0.7", "--layers", "3"]), options)
    assert given == {"optim": {"beta3": 0.7}, "model": {"layers": 3}}
    assert optim.model_validate(given["optim"]).beta3 == 0.7
    assert flags.overrides_from(parser.parse_args([]), options) == {}  # absent stays absent


def test_declarations_are_consistent():
    dests = [o.dest for o in OPTIONS if o.flag_name]
    assert len(dests) == len(set(dests))
    paths = {o.path for o in OPTIONS}

    def leaves(table, prefix=""):
        for key, value in table.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    for name, preset in HARNESS_PRESETS.items():  # every preset sets declared options
        assert set(leaves(preset)) <= paths, name
    for o in OPTIONS:  # every declared field exists with the declared default
        if o.type is not dict and not o.path.startswith("data.task_options."):
            default = list(o.default) if isinstance(o.default, tuple) else o.default
            assert value_at(RunConfig(), o.path) == default, o.path


def test_the_default_attention_fraction_is_read_from_one_place():
    from harness.probes.bench.settings import BenchConfig
    from harness.probes.conformance.common import Settings
    from routers import ROUTERS

    assert RunConfig().routing.attn_fraction == ATTN_FRACTION == 0.375
    assert BenchConfig().e2e.fraction == ATTN_FRACTION
    assert Settings.__dataclass_fields__["attn_fraction"].default == ATTN_FRACTION
    for name in ("entropy", "random", "meta", "learned", "mod", "single"):
        init = inspect.signature(ROUTERS.get(name).__init__)
        assert init.parameters["attn_fraction"].default == ATTN_FRACTION, name
    help_text = next(a.help for a in _run_parser()._actions if a.dest == "attn_fraction")
    assert f"(default {ATTN_FRACTION})" in help_text


def _run_parser() -> argparse.ArgumentParser:
    from harness.cli.main import add_run_arguments

    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser


def test_special_flags_reach_the_config():
    from harness.cli.main import resolve_config

    args = _run_parser().parse_args([
        "--ops", "dct,rbf,attn", "--router-option", "momentum=0.1", "--op-option",
        "dct.decay=2", "--task-option", "vocab_size=50", "--task-option", "tokenizer=word",
        "--tokenizer", "bytes", "--preset", "smoke", "--allow-leaky", "--no-length-bucketing"])
    cfg = resolve_config(args)
    assert cfg.routing.ops == ["dct", "rbf", "attn"]
    assert cfg.routing.router_options == {"momentum": 0.1}
    assert cfg.routing.op_options == {"dct": {"decay": 2}}
    # the shortcut wins over the same key given with --task-option
    options = cfg.data.task_options
    assert options["vocab_size"] == 50 and options["tokenizer"] == "bytes"
    assert cfg.allow_leaky and not cfg.data.length_bucketing


def test_a_deprecated_flag_spelling_still_works_and_says_which_replaces_it():
    options = (Option("optim.lr", float, 1e-3, "learning rate", group="optim",
                      aliases=("--learning-rate",)),)
    parser = argparse.ArgumentParser()
    flags.add_flags(parser, options)
    assert "--learning-rate" not in parser.format_help()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        args = parser.parse_args(["--learning-rate", "0.01"])
    assert flags.overrides_from(args, options) == {"optim": {"lr": 0.01}}
    assert "--learning-rate is deprecated; use --lr" in str(caught[0].message)


# -- check takes run's data flags ---------------------------------------------------------------


def test_check_accepts_the_data_flags_of_run_and_says_it_reads_no_data(capsys):
    code = main(["check", "--preset", "smoke", "--router", "single", "--ops", "identity",
                 "--data-dir", "/nonexistent", "--train-file", "wiki.train.tokens",
                 "--cache-dir", "/nonexistent/cache"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert ("accepted and not read (check reads no data): --data-dir, --cache-dir, "
            "--train-file") in out


# -- sweep: --set and [base] through the same declarations --------------------------------------


SWEEP = ["sweep", "--routers", "entropy", "--ops", "dct,attn", "--tasks", "listops",
         "--dry-run"]


@pytest.mark.parametrize("extra, expected", [
    (["--set", "model.layrs=4"], "--set model.layrs=4: unknown option 'model.layrs'; did you "
                                 "mean 'model.layers'?"),
    (["--set", "modle.layers=4"], "did you mean 'model.layers'?"),
    (["--set", "model.layers=0"], "model.layers (--layers): Input should be greater than 0"),
    (["--set", "seed=99999999999999999"], "seed (--seed)"),
])
def test_sweep_set_is_checked_by_the_declarations(extra, expected, capsys):
    assert main([*SWEEP, *extra]) == 2
    assert expected in one_line(capsys.readouterr().err)


def test_sweep_file_base_is_checked_by_the_declarations(tmp_path, capsys):
    file = tmp_path / "grid.toml"
    file.write_text('[sweep]\nrouters = ["entropy"]\nops = [["dct", "attn"]]\n'
                    'tasks = ["listops"]\n[base]\npreset = "smoke"\n[base.optim]\nlearning_rate'
                    ' = 0.1\n')
    assert main(["sweep", "--file", str(file), "--dry-run"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "[base]: unknown option 'optim.learning_rate'" in line
    file.write_text('[sweep]\nrouter = ["entropy"]\nops = [["dct", "attn"]]\n'
                    'tasks = ["listops"]\n')
    assert main(["sweep", "--file", str(file), "--dry-run"]) == 2
    assert "unknown [sweep] key 'router'; did you mean 'routers'?" in one_line(
        capsys.readouterr().err)


def test_a_valid_sweep_still_expands(capsys):
    assert main([*SWEEP, "--set", "model.layers=3", "--set", "routing.op_options.dct.decay=2",
                 "--preset", "smoke"]) == 0
    assert "1 cells to run, 0 skipped" in capsys.readouterr().out


# -- bench: the same path -----------------------------------------------------------------------


def test_bench_settings_are_a_model_with_quick_as_a_preset():
    from harness.probes.bench.args import QUICK, add_arguments
    from harness.probes.bench.settings import BenchConfig, bench_config

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    quick = bench_config(parser.parse_args(["--quick", "--repeats", "5", "--e2e-layers", "2"]))
    assert quick.seq_lens == QUICK["seq_lens"] and quick.d_model == QUICK["d_model"]
    assert quick.repeats == 5 and quick.e2e.layers == 2  # explicit flags win over the preset
    assert quick.e2e.repeats == QUICK["e2e"]["repeats"]
    full = bench_config(parser.parse_args([]))
    assert full == BenchConfig() and full.seq_lens == [256, 1024, 4096]
    with pytest.raises(ConfigError, match=r"seq_lens.1 \(--seq-lens\): Input should be greater"):
        bench_config(parser.parse_args(["--seq-lens", "32,0"]))
    with pytest.raises(ConfigError, match="--e2e-fraction"):
        bench_config(parser.parse_args(["--e2e-fraction", "1.5"]))


# -- bounds on what a user types (each failed on the code before) -------------------------------


# 2**45 and -2**45 pass as seeds but overflow torch's seed at the first step (seed * stride)
@pytest.mark.parametrize("seed", [str(2**64), str(2**45), str(-(2**45)), str(MAX_SEED + 1)])
def test_a_seed_the_run_cannot_use_is_one_line(seed, tmp_path, capsys):
    assert main(["run", "--preset", "smoke", "--seed", seed, "--max-steps", "1",
                 "--out", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "c")]) == 2
    assert "seed (--seed)" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seed", [MAX_SEED, -MAX_SEED])
def test_the_extreme_seeds_stay_within_int64_through_the_data_order(seed):
    import torch

    from harness.engine.data import EpochBatches

    assert RunConfig(seed=seed).seed == seed
    assert -(2**63) <= seed * SEED_STRIDE + SEED_STRIDE - 1 < 2**63
    batches = EpochBatches(list(range(10)), 2, seed, bucket=False)
    assert sorted(torch.cat([batches.indices(s) for s in range(5)]).tolist()) == list(range(10))


@pytest.mark.parametrize("flag", ["--out", "--work-dir"])
def test_a_folder_flag_naming_a_file_is_one_line(flag, tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    args = ["run", "--preset", "smoke", "--max-steps", "1", "--cache-dir", str(tmp_path / "c")]
    if flag == "--work-dir":
        args += ["--out", str(tmp_path / "runs")]
    assert main([*args, flag, str(file)]) == 2
    assert f"{flag} {file} is not a folder" in one_line(capsys.readouterr().err)
    assert main([*args, flag, str(file / "below")]) == 2  # a path through a file
    assert f"({file} is a file)" in one_line(capsys.readouterr().err)
    assert file.read_text() == "mine\n"


def test_bench_out_naming_a_file_is_one_line(tmp_path, capsys):
    file = tmp_path / "notes.txt"
    file.write_text("mine\n")
    assert main(["bench", "--quick", "--out", str(file)]) == 2
    assert f"--out {file} is not a folder" in one_line(capsys.readouterr().err)


def test_a_config_file_is_read_with_a_bound(tmp_path, capsys):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 120_000 + "seed = 1\n")  # valid TOML, 1.2 MB
    assert main(["run", "--config", str(big), "--dry-run"]) == 2
    assert "is larger than 1 MiB" in one_line(capsys.readouterr().err)
    if Path("/dev/zero").exists():
        with pytest.raises(ConfigError, match="larger than 1 MiB"):
            load_config_file("/dev/zero")
        assert main(["sweep", "--file", "/dev/zero", "--dry-run"]) == 2
        assert "larger than 1 MiB" in one_line(capsys.readouterr().err)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config_file(deep)
