"""A sweep file's config axes: dotted config paths and cases that vary several entries together,
their product with the grid, the command line over them, and one line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli.main import main

HEAD = '[sweep]\nrouters = ["single"]\nops = [["attn", "dct"]]\ntasks = ["mqar"]\nseeds = [0, 1]\n'
CASES = ('[[sweep.cases]]\ndata = { seq_len = 30, task_options = { n_pairs = 4, '
         'vocab_size = 32 } }\noptim = { batch_size = 64 }\n'
         '[[sweep.cases]]\ndata = { seq_len = 62, task_options = { n_pairs = 8, '
         'vocab_size = 64 } }\noptim = { batch_size = 32 }\n')
BASE = '[base]\npreset = "cpu"\n'


def sweep_file(tmp_path: Path, body: str) -> str:
    path = tmp_path / "grid.toml"
    path.write_text(HEAD + body + BASE)
    return str(path)


def cells(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  ")]


def test_axes_multiply_the_grid_and_each_cell_says_its_values(tmp_path, capsys):
    file = sweep_file(tmp_path, '"model.d_model" = [32, 64, 128]\n' + CASES)
    assert main(["sweep", "--file", file, "--dry-run"]) == 0
    listed = cells(capsys.readouterr().out)
    assert len(listed) == 2 * 3 * 2 * 2  # operators x widths x cases x seeds
    assert len(set(listed)) == len(listed)
    assert ("mqar single dct (seq_len=62, n_pairs=8, vocab_size=64, d_model=128, "
            "batch_size=32) seed 1") in listed


def test_each_cell_has_its_own_config_and_record(tmp_path):
    import argparse

    from harness.sweep.grid import expand, grid_from_args, record_path_of

    file = sweep_file(tmp_path, 'model = { d_model = [32, 64] }\n' + CASES)
    args = argparse.Namespace(file=file, routers=None, ops=None, tasks=None, seeds=None,
                              preset=None, max_steps=None, out=None, allow_leaky=False, set=[])
    made = expand(*grid_from_args(args))
    assert len(made) == 16
    seen = {(c.overrides["model"]["d_model"], c.overrides["data"]["seq_len"],
             c.overrides["data"]["task_options"]["n_pairs"], c.overrides["optim"]["batch_size"])
            for c in made}
    assert seen == {(d, 30, 4, 64) for d in (32, 64)} | {(d, 62, 8, 32) for d in (32, 64)}
    # the width and the case are in the config hash: one record file per cell
    assert len({record_path_of(c.overrides) for c in made}) == len(made)
    assert all(c.overrides["preset"] == "cpu" for c in made)


def test_the_command_line_holds_over_the_axes(tmp_path, capsys):
    file = sweep_file(tmp_path, '"model.d_model" = [32, 64, 128]\n' + CASES)
    assert main(["sweep", "--file", file, "--dry-run", "--set", "model.d_model=48",
                 "--set", "optim.batch_size=8", "--seeds", "0", "--ops", "attn"]) == 0
    listed = cells(capsys.readouterr().out)
    assert listed == [
        "mqar single attn (seq_len=30, n_pairs=4, vocab_size=32, d_model=48, batch_size=8) "
        "seed 0",
        "mqar single attn (seq_len=62, n_pairs=8, vocab_size=64, d_model=48, batch_size=8) "
        "seed 0"]


@pytest.mark.parametrize("body, expected", [
    ('router = ["x"]\n', "unknown [sweep] key 'router'; did you mean 'routers'?"),
    ('"model.d_modle" = [1]\n', "unknown option 'model.d_modle'; did you mean 'model.d_model'?"),
    ('"model.d_model" = 32\n', '"model.d_model" must be a list of values'),
    ('"routing.ops" = [["attn"]]\n', "routing.ops is set by the grid's own keys"),
    ('cases = [1]\n', "cases must be an array of tables"),
    ('"model.d_model" = [0, 32]\n', "config axes ([sweep]): model.d_model (--d-model): Input "
                                    "should be greater than 0"),
    ('[[sweep.cases]]\nmodel = { widht = 3 }\n', "[[sweep.cases]]: unknown option "
                                                 "'model.widht'"),
])
def test_a_wrong_axis_is_one_line(tmp_path, capsys, body, expected):
    file = sweep_file(tmp_path, body)
    assert main(["sweep", "--file", file, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert expected in err
