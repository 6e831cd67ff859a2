"""The Python API: ``harness.run`` trains as ``python -m harness run`` does and returns the
record; ``harness.load_records`` reads records back; ``import harness`` stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import ISOLATE_PLUGINS

import harness
from harness.cli.main import main
from registry import ChiaroscuroError, DataError

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "runs"


def test_importing_harness_imports_nothing_heavy():
    code = ISOLATE_PLUGINS + (
        "import sys\n"
        "import harness\n"
        "assert callable(harness.run) and callable(harness.load_records)\n"
        "heavy = [m for m in ('torch', 'pydantic', 'scipy') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_run_returns_the_record_the_command_line_finds_finished(tmp_path, capsys):
    """Same options, same configuration, same record: the CLI answers 'already finished'."""
    out, cache = str(tmp_path / "runs"), str(tmp_path / "cache")
    record = harness.run(task="mqar", router="single", ops="attn", preset="smoke",
                         max_steps=2, out=out, cache_dir=cache, log=None)
    assert isinstance(record, harness.RunRecord) and record.status == "finished"
    assert record.task == "mqar" and record.operators == ["attn"]
    assert record.config["budget"]["max_steps"] == 2 and record.preset == "smoke"
    assert 0 <= record.metrics["test"]["accuracy"] <= 1
    (path,) = (tmp_path / "runs").glob("*.json")
    assert json.loads(path.read_text())["run_id"] == record.run_id
    assert capsys.readouterr().out == ""  # log=None: nothing printed
    assert main(["run", "--task", "mqar", "--router", "single", "--ops", "attn", "--preset",
                 "smoke", "--max-steps", "2", "--out", out, "--cache-dir", cache]) == 0
    assert f"already finished: {path}" in capsys.readouterr().out


def test_a_config_dict_or_runconfig_and_keywords_resolve_alike():
    from harness.api import overrides_of
    from harness.cli.main import resolve_overrides

    by_keywords = resolve_overrides(overrides_of(None, {
        "task": "mqar", "ops": "dct,attn", "preset": "smoke", "max_steps": 3,
        "op_options": {"dct": {"decay": 2.0}}}))
    as_dict = resolve_overrides(overrides_of({
        "preset": "smoke", "data": {"task": "mqar"}, "budget": {"max_steps": 3},
        "routing": {"ops": ["dct", "attn"], "op_options": {"dct": {"decay": 2.0}}}}, {}))
    assert by_keywords == as_dict
    # a RunConfig is taken as it is; keywords still win over it
    again = resolve_overrides(overrides_of(as_dict, {"seed": 4}))
    assert again.digest() == as_dict.digest() and again.seed == 4
    section = resolve_overrides(overrides_of(None, {"budget": {"max_steps": 5},
                                                    "preset": "smoke"}))
    assert section.budget.max_steps == 5


@pytest.mark.parametrize("options, message", [
    ({"max_step": 3}, "unknown option 'max_step'; did you mean 'max_steps'?"),
    ({"routing": {"router": "entrpy"}, "preset": "smoke"}, "did you mean 'entropy'?"),
    ({"d_model": 0, "preset": "smoke"}, "invalid configuration: model.d_model (--d-model)"),
    ({"budget": {"max_stepz": 3}}, "unknown option 'budget.max_stepz'"),
])
def test_bad_options_raise_one_line(options, message, tmp_path):
    with pytest.raises(ChiaroscuroError) as info:  # what the command line prints on one line
        harness.run(out=str(tmp_path), log=None, **options)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.glob("*.json"))


def test_load_records_reads_a_file_or_a_folder(tmp_path):
    committed = harness.load_records(COMMITTED)
    assert len(committed) == len(list(COMMITTED.glob("*.json")))
    assert all(isinstance(r, harness.RunRecord) for r in committed)
    first = sorted(COMMITTED.glob("*.json"))[0]
    assert [r.run_id for r in harness.load_records(first)] == [committed[0].run_id]
    (tmp_path / "good.json").write_text(first.read_text())
    (tmp_path / "torn.json").write_text('{"run_id": ')
    with pytest.warns(UserWarning, match=r"skipped .*torn\.json: not valid JSON"):
        assert len(harness.load_records(tmp_path)) == 1
    with pytest.raises(DataError, match=r"torn\.json: not valid JSON"):
        harness.load_records(tmp_path / "torn.json")
    with pytest.raises(DataError, match="neither a record file nor a folder"):
        harness.load_records(tmp_path / "missing")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert harness.load_records(tmp_path / "good.json")
