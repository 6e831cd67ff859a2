"""Third-party plugins end to end, without installing anything.

A plugin is "installed" here the way pip would leave it, minus pip: a module on sys.path and a
``<name>-<version>.dist-info`` folder with METADATA and entry_points.txt, in a temporary
directory put at the front of sys.path. The example plugin's entry points are read from its own
pyproject.toml, so these tests also prove that what CI installs resolves and validates.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from harness.cli.main import main
from operators import OPERATORS
from routers import ROUTERS
from tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "examples" / "plugin"
PLUGIN_DIST = "chiaroscuro-example-plugin"
GROUPS = ("chiaroscuro.operators", "chiaroscuro.routers", "chiaroscuro.tasks")


def refresh_registries() -> None:
    for registry in (OPERATORS, ROUTERS, TASKS):
        registry.refresh()


def write_distribution(site: Path, name: str, version: str,
                       entry_points: dict[str, dict[str, str]],
                       modules: dict[str, str] | None = None) -> Path:
    """A minimal installed distribution: modules, and a .dist-info with entry points."""
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in entry_points.items():
        lines += [f"[{group}]", *(f"{key} = {value}" for key, value in entries.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines))
    importlib.invalidate_caches()
    return info


def load_example_plugin_package() -> None:
    """Import the example plugin from its source folder (installed or not), without putting
    examples/plugin on sys.path (an egg-info left there by `pip install -e` would make it look
    installed to every later test)."""
    name = "chiaroscuro_example_plugin"
    if name in sys.modules:
        return
    package_dir = PLUGIN_DIR / name
    spec = importlib.util.spec_from_file_location(
        name, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)


def example_plugin_metadata() -> tuple[str, dict[str, dict[str, str]]]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((PLUGIN_DIR / "pyproject.toml").read_text())["project"]
    assert project["name"] == PLUGIN_DIST
    assert project["dependencies"] == ["chiaroscuro-bench"]  # never makes pip fetch torch
    return project["version"], project["entry-points"]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """An empty directory at the front of sys.path; registries rediscover plugins afterwards."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    refresh_registries()
    yield root
    for module in [m for m in sys.modules if m.startswith("fakeplug_")]:
        del sys.modules[module]
    refresh_registries()  # rediscovery is lazy: it happens after sys.path is restored


@pytest.fixture
def example_plugin(site):
    """The example plugin as pip would install it: its package and its entry points."""
    load_example_plugin_package()
    version, entry_points = example_plugin_metadata()
    info = write_distribution(site, PLUGIN_DIST, version, entry_points)
    return info, version


PEEKING_OPERATOR = """
    import torch
    from operators import TokenMixer

    class PeekingMixer(TokenMixer):
        '''Declares a causal form, but output t reads token t + 1.'''

        supports_causal = True

        def forward(self, x, ctx):
            ahead = torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)
            return x + ahead

        def flops(self, n_query, n_key):
            return 0
"""


def listing(capsys) -> dict:
    capsys.readouterr()
    assert main(["list", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def rows(listing_: dict, kind: str) -> dict[str, dict]:
    return {row["name"]: row for row in listing_[kind]}


def test_list_shows_the_example_plugin_with_its_distribution(example_plugin, capsys):
    _, version = example_plugin
    listed = listing(capsys)
    origin = f"{PLUGIN_DIST} {version}"
    ops, routers, tasks = (rows(listed, k) for k in ("operators", "routers", "tasks"))
    assert ops["dwconv"]["origin"] == origin
    assert ops["dwconv"]["causal"] is True and ops["dwconv"]["query_subset"] is True
    assert routers["flatness"]["origin"] == origin and routers["flatness"]["hard"] is True
    assert tasks["copy"]["origin"] == origin and tasks["copy"]["causal"] is True
    assert ops["dct"]["origin"] == ops["attn"]["origin"] == "built-in"  # built-ins intact
    assert listed["plugin_failures"] == []
    # the table form names the distribution too
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert "dwconv" in table and origin in table


def test_uninstalling_the_plugin_leaves_the_builtins(example_plugin, capsys):
    info, _ = example_plugin
    assert "dwconv" in rows(listing(capsys), "operators")
    shutil.rmtree(info)  # what `pip uninstall` removes
    importlib.invalidate_caches()
    refresh_registries()
    listed = listing(capsys)
    for kind in ("operators", "routers", "tasks"):
        assert all(row["origin"] == "built-in" for row in listed[kind]), kind
    assert {"dct", "attn", "rbf", "identity"} <= set(rows(listed, "operators"))
    assert "flatness" not in rows(listed, "routers") and "copy" not in rows(listed, "tasks")


def test_a_short_run_with_the_plugin_operator_router_and_task(example_plugin, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", "--preset", "smoke", "--task", "copy", "--router", "flatness",
                 "--ops", "dwconv,attn", "--max-steps", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "check causality: pass" in captured.out  # the guard ran on the plugin's components
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert record["task"] == "copy" and record["router"] == "flatness"
    assert record["operators"] == ["dwconv", "attn"]  # the order given: attn gets the top band
    assert not any(flag.startswith("leaky") for flag in record["flags"])
    assert 0.0 <= record["metrics"]["test"]["accuracy"] <= 1.0
    plugins = record["environment"]["plugins"]
    assert plugins["operator:dwconv"].startswith(PLUGIN_DIST)
    assert plugins["router:flatness"].startswith(PLUGIN_DIST)
    assert plugins["task:copy"].startswith(PLUGIN_DIST)
    assert record["data"]["source"].startswith("generated in memory")


def test_check_command_passes_on_the_plugin_operator(example_plugin, capsys):
    code = main(["check", "--preset", "smoke", "--ops", "dwconv", "--router", "single",
                 "--task", "copy"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "causality" in out and "0 failed" in out


def test_a_peeking_plugin_operator_is_refused_on_a_causal_task(example_plugin, site, tmp_path,
                                                              capsys):
    write_distribution(site, "fakeplug-peek", "1.2.3",
                       {"chiaroscuro.operators": {"peek": "fakeplug_peek:PeekingMixer"}},
                       {"fakeplug_peek": PEEKING_OPERATOR})
    assert OPERATORS.entry("peek").origin == "fakeplug-peek 1.2.3"
    out = tmp_path / "runs"
    base = ["run", "--preset", "smoke", "--task", "copy", "--router", "single", "--ops", "peek",
            "--out", str(out), "--max-steps", "1"]
    code = main(base)
    err = capsys.readouterr().err
    assert code == 2
    assert "refusing to train a leaking combination" in err
    assert "check 'causality' failed" in err and "operator 'peek'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not list(out.glob("*.json"))  # nothing was trained
    # it declares itself causal and not leaky: only the empirical check caught it
    assert main([*base, "--allow-leaky"]) == 0
    assert "WARNING: leaky: check 'causality' failed" in capsys.readouterr().out
    record = json.loads(next(out.glob("*.json")).read_text())
    assert any(flag.startswith("leaky: check 'causality' failed") for flag in record["flags"])


def test_broken_plugins_are_reported_once_by_name_and_distribution_and_skipped(
        example_plugin, site, capsys):
    write_distribution(site, "fakeplug-broken", "1.2.3",
                       {"chiaroscuro.operators": {"broken-op": "fakeplug_broken:Mixer"}},
                       {"fakeplug_broken": "raise ImportError('needs a GPU library')\n"})
    write_distribution(site, "fakeplug-missing", "2.0",
                       {"chiaroscuro.routers": {"missing-router": "fakeplug_missing:Nope"}},
                       {"fakeplug_missing": "X = 1\n"})
    write_distribution(
        site, "fakeplug-invalid", "0.1",
        {"chiaroscuro.operators": {"invalid-op": "fakeplug_invalid:NotAMixer"},
         "chiaroscuro.routers": {"invalid-router": "fakeplug_invalid:NoDeclarations"},
         "chiaroscuro.tasks": {"invalid-task": "fakeplug_invalid:not_a_task"}},
        {"fakeplug_invalid": """
            from torch import nn

            class NotAMixer:  # not an nn.Module
                pass

            class NoDeclarations(nn.Module):  # a module, but declares nothing of a router
                pass

            def not_a_task():
                pass
        """})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        listed = listing(capsys)
        again = listing(capsys)  # listing twice reports nothing new
    failures = listed["plugin_failures"]
    assert again["plugin_failures"] == failures
    expected = {
        "broken-op": ("fakeplug-broken 1.2.3", "ImportError: needs a GPU library"),
        "missing-router": ("fakeplug-missing 2.0", "AttributeError"),
        "invalid-op": ("fakeplug-invalid 0.1", "is not an nn.Module subclass"),
        "invalid-router": ("fakeplug-invalid 0.1", "does not declare 'hard'"),
        "invalid-task": ("fakeplug-invalid 0.1", "is not a class"),
    }
    assert len(failures) == len(expected)
    for name, (distribution, error) in expected.items():
        (line,) = [f for f in failures if f.startswith(f"plugin '{name}' ")]
        assert f"from {distribution} skipped" in line and error in line
    reported = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert sorted(reported) == sorted(failures)  # one warning per failure, once
    # skipped, and nothing else harmed: built-ins and the good plugin still there
    ops, routers, tasks = (rows(listed, k) for k in ("operators", "routers", "tasks"))
    assert not set(expected) & (set(ops) | set(routers) | set(tasks))
    assert {"dct", "attn", "dwconv"} <= set(ops)
    assert {"entropy", "single", "flatness"} <= set(routers)
    assert {"copy", "wikitext2"} <= set(tasks)
    # asking for a skipped plugin: exit 2, one line that says why it is unavailable
    assert main(["run", "--preset", "smoke", "--task", "copy", "--router", "single",
                 "--ops", "broken-op"]) == 2
    err = capsys.readouterr().err
    assert "operator 'broken-op' is unavailable" in err and "needs a GPU library" in err
    assert len(err.strip().splitlines()) == 1


def test_entry_point_names_do_not_clash_with_builtins(example_plugin):
    _, entry_points = example_plugin_metadata()
    assert set(entry_points) == set(GROUPS)
    for group, registry in zip(GROUPS, (OPERATORS, ROUTERS, TASKS), strict=True):
        for name in entry_points[group]:
            entry = registry.entry(name)
            assert not entry.builtin and entry.origin.startswith(PLUGIN_DIST)
        assert registry.failures == []


def test_a_misspelt_plugin_option_names_the_known_ones(example_plugin, tmp_path, capsys):
    """Not the base class's "takes no options": the plugin's own options, and the closest."""
    code = main(["run", "--preset", "smoke", "--task", "copy", "--router", "flatness",
                 "--ops", "dwconv,attn", "--op-option", "dwconv.kernel=5",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "operator 'dwconv' got unknown option 'kernel'; did you mean 'kernel_size'?" in err
    assert "its options: kernel_size" in err
    assert main(["run", "--preset", "smoke", "--task", "copy", "--router", "flatness",
                 "--ops", "dwconv,attn", "--router-option", "momentun=0.1",
                 "--out", str(tmp_path)]) == 2
    assert "did you mean 'momentum'?" in capsys.readouterr().err
    assert main(["run", "--preset", "smoke", "--task", "copy", "--router", "flatness",
                 "--ops", "dwconv,attn", "--task-option", "n_symbol=4",
                 "--out", str(tmp_path)]) == 2
    assert ("task 'copy' got unknown option 'n_symbol'; did you mean 'n_symbols'? (its options: "
            "n_eval, n_symbols, n_train; set them with --task-option KEY=VALUE)"
            in capsys.readouterr().err)
