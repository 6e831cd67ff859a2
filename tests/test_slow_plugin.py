"""A plugin slow to import is named while it loads (registry/slow.py), a quick one is not."""

from __future__ import annotations

import sys
import textwrap

import pytest

from registry import Registry, slow


def _install(root, name: str, source: str) -> None:
    (root / f"{name}_mod.py").write_text(textwrap.dedent(source))
    info = root / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[chiaroscuro.test_slow]\n{name.removeprefix('fake')} = {name}_mod:Thing\n")


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(slow, "SLOW_AFTER", 0.2)
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fake") and m.endswith("_mod")]:
        del sys.modules[mod]


def test_a_slow_plugin_is_named_while_it_loads_and_a_quick_one_is_not(plugins, capsys):
    _install(plugins, "fakeslow", "import time\ntime.sleep(0.8)\nclass Thing:\n    pass\n")
    _install(plugins, "fakequick", "class Thing:\n    pass\n")
    registry = Registry("widget", group="chiaroscuro.test_slow")
    assert registry.names() == ["quick", "slow"]
    err = capsys.readouterr().err
    assert "loading widget plugin 'slow' from fakeslow 1.0 (fakeslow_mod:Thing)" in err
    assert "loaded widget plugin 'slow'" in err
    assert "quick" not in err
