"""The generic registry: registration, aliases, 'did you mean', duplicates, entry-point plugins."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest

from registry import DuplicateNameError, Registry, UnknownNameError


def make_registry(validate=None) -> Registry:
    return Registry("widget", group="chiaroscuro.test_widgets", validate=validate)


def test_decorator_registration_and_aliases():
    reg = make_registry()

    @reg.register("spectral", aliases=("dct-mix",), description="mixes in the DCT domain")
    class Spectral:
        pass

    assert reg.get("spectral") is Spectral
    assert reg.get("dct-mix") is Spectral
    entry = reg.entry("dct-mix")
    assert entry.name == "spectral"
    assert entry.metadata["description"] == "mixes in the DCT domain"
    assert entry.origin.startswith("module ")  # defined outside the project's packages
    assert Spectral.registry_name == "spectral"
    assert reg.names() == ["spectral"]
    assert "dct-mix" in reg and "nope" not in reg


def test_builtin_origin():
    from operators import OPERATORS

    for entry in OPERATORS:
        if entry.obj.__module__.startswith("operators."):
            assert entry.builtin, entry
    assert OPERATORS.entry("dct").origin == "built-in"


def test_unknown_name_suggests_closest_and_lists_available():
    reg = make_registry()
    for name in ("dct", "attn", "rbf"):
        reg.add(name, object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("dtc")
    message = str(info.value)
    assert "unknown widget 'dtc'" in message
    assert "did you mean 'dct'?" in message
    assert "attn, dct, rbf" in message


def test_unknown_name_without_close_match_has_no_suggestion():
    reg = make_registry()
    reg.add("dct", object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_duplicates_are_refused_names_and_aliases():
    reg = make_registry()
    reg.add("dct", object())
    with pytest.raises(DuplicateNameError, match="'dct' is already registered"):
        reg.add("dct", object())
    with pytest.raises(DuplicateNameError):
        reg.add("other", object(), aliases=("dct",))
    obj = object()
    reg.add("same", obj)
    assert reg.add("same", obj).obj is obj  # re-registering the same object is harmless


def _install_fake_distribution(tmp_path, name: str, module_source: str, entry_points: str):
    """A real (if minimal) installed distribution: a module and a .dist-info on sys.path."""
    (tmp_path / f"{name}_mod.py").write_text(textwrap.dedent(module_source))
    info = tmp_path / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.endswith("_mod") and "fake" in m]:
        del sys.modules[mod]


def test_entry_point_plugins_are_discovered_with_their_distribution(plugin_path):
    _install_fake_distribution(
        plugin_path,
        "fakegood",
        "class Good:\n    pass\n",
        "[chiaroscuro.test_widgets]\ngood = fakegood_mod:Good\n",
    )
    reg = make_registry()
    reg.add("builtin_one", object())
    entry = reg.entry("good")
    assert entry.obj.__name__ == "Good"
    assert entry.origin == "fakegood 1.2.3"
    assert not entry.builtin
    assert reg.failures == []


def test_broken_plugins_are_reported_and_skipped(plugin_path):
    _install_fake_distribution(
        plugin_path,
        "fakebroken",
        "raise ImportError('needs a GPU library')\n",
        "[chiaroscuro.test_widgets]\nbroken = fakebroken_mod:Thing\n",
    )
    _install_fake_distribution(
        plugin_path,
        "fakemissing",
        "X = 1\n",
        "[chiaroscuro.test_widgets]\nmissing = fakemissing_mod:DoesNotExist\n",
    )
    _install_fake_distribution(
        plugin_path,
        "fakeinvalid",
        "class NotAWidget:\n    pass\n",
        "[chiaroscuro.test_widgets]\ninvalid = fakeinvalid_mod:NotAWidget\n",
    )

    def validate(obj):
        if obj.__name__ == "NotAWidget":
            raise TypeError("does not satisfy the widget contract")

    reg = make_registry(validate)
    reg.add("builtin_one", type("BuiltinOne", (), {}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = reg.names()
    assert names == ["builtin_one"]  # built-ins intact, every broken plugin skipped
    by_name = {f.name: f for f in reg.failures}
    assert set(by_name) == {"broken", "missing", "invalid"}
    assert by_name["broken"].distribution == "fakebroken 1.2.3"
    assert "needs a GPU library" in by_name["broken"].error
    assert "AttributeError" in by_name["missing"].error
    assert "widget contract" in by_name["invalid"].error
    assert len(caught) == 3  # reported once each
    reg.names()
    assert len(reg.failures) == 3  # not rediscovered


def test_plugin_name_clash_with_builtin_is_reported_not_fatal(plugin_path):
    _install_fake_distribution(
        plugin_path,
        "fakeclash",
        "class Clash:\n    pass\n",
        "[chiaroscuro.test_widgets]\ndct = fakeclash_mod:Clash\n",
    )
    reg = make_registry()
    builtin = object()
    reg.add("dct", builtin)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert reg.get("dct") is builtin
    assert "already registered" in reg.failures[0].error
