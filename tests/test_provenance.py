"""Provenance and robustness at the edges: the record names only the plugins a run used, a
plugin that exits on import is reported and skipped, a folder given as a file is named so."""

import json

import pytest
import test_plugin
from test_plugin import PLUGIN_DIST, write_distribution

from harness.cli.main import main
from operators import OPERATORS

site, example_plugin = test_plugin.site, test_plugin.example_plugin  # the plugin tests' fixtures


def test_the_record_lists_only_the_plugins_the_run_used(example_plugin, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--task", "copy", "--router", "single",
                 "--ops", "attn", "--max-steps", "1", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    env = json.loads(next(out.glob("*.json")).read_text())["environment"]
    assert set(env["plugins"]) == {"task:copy"}  # dwconv and flatness were installed, unused
    assert env["plugins"]["task:copy"].startswith(PLUGIN_DIST)
    assert {"operator:dwconv", "router:flatness", "task:copy"} <= set(env["installed_plugins"])


@pytest.mark.parametrize("body", ["import sys\nsys.exit(3)\n", "raise SystemExit('bye')\n",
                                  "raise GeneratorExit()\n"])
def test_a_plugin_that_exits_on_import_is_reported_and_skipped(site, body, capsys):
    write_distribution(site, "fakeplug-exits", "0.3",
                       {"chiaroscuro.operators": {"exits-op": "fakeplug_exits:Mixer"}},
                       {"fakeplug_exits": body})
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    (failure,) = listed["plugin_failures"]
    assert "plugin 'exits-op' from fakeplug-exits 0.3 skipped" in failure
    assert "dct" in {row["name"] for row in listed["operators"]}  # built-ins unharmed


def test_ctrl_c_during_a_plugin_import_still_interrupts(site):
    write_distribution(site, "fakeplug-interrupt", "0.1",
                       {"chiaroscuro.operators": {"ctrl-c": "fakeplug_interrupt:Mixer"}},
                       {"fakeplug_interrupt": "raise KeyboardInterrupt\n"})
    with pytest.raises(KeyboardInterrupt):
        OPERATORS.names()


def test_a_folder_given_as_train_file_is_named_a_folder(tmp_path, capsys):
    folder = tmp_path / "wikitext-2"
    folder.mkdir()
    code = main(["run", "--preset", "smoke", "--task", "wikitext2", "--train-file", str(folder),
                 "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a folder, not a file" in err and "--data-dir" in err
    assert "does not exist" not in err and len(err.strip().splitlines()) == 1
