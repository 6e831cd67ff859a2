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


# -- lazy built-ins, declared metadata, names, deprecations, filters ---------------------------

REGISTRIES = ("operators:OPERATORS", "routers:ROUTERS", "tasks:TASKS")


def _registry(spec: str):
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def test_listing_the_builtins_imports_neither_their_modules_nor_torch():
    import subprocess

    code = textwrap.dedent("""
        import sys
        import operators, routers, tasks
        assert 'torch' not in sys.modules, 'import'
        for reg in (operators.OPERATORS, routers.ROUTERS, tasks.TASKS):
            assert reg.names() and 'dct' in operators.OPERATORS
        from harness.cli.listing import describe_registries
        describe_registries()
        loaded = [m for m in sys.modules if m.split('.')[0] in ('operators', 'routers', 'tasks')
                  and m.count('.')]
        assert not loaded, loaded
        assert 'torch' not in sys.modules, 'listing'
        operators.OPERATORS.get('identity')
        assert 'operators.identity' in sys.modules and 'operators.dct' not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("spec", REGISTRIES)
def test_every_builtin_declares_its_listed_properties_and_they_match_the_class(spec):
    reg = _registry(spec)
    assert reg.dynamic_modules == []  # every built-in decorator is readable statically
    builtins = [e for e in reg if e.builtin]
    assert builtins
    for entry in builtins:
        assert entry.target is not None
        missing = set(reg.declared) - set(entry.metadata)
        assert not missing, f"{entry.name} does not declare {sorted(missing)} in its decorator"
        assert "description" in entry.metadata, entry.name
        obj = reg.get(entry.name)  # imports it: validation compares declared and actual
        assert entry.loaded and f"{obj.__module__}:{obj.__qualname__}" == entry.target
        for attr in reg.declared:
            assert getattr(obj, attr) == entry.metadata[attr], (entry.name, attr)
        assert obj.registry_name == entry.name


def _fake_builtin_package(tmp_path, monkeypatch, name: str, sources: dict[str, str]):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from registry import Registry
        WIDGETS = Registry("widget", group="chiaroscuro.test_widgets", builtins=__name__,
                           decorators=("register_widget",), declared=("flag",))
        register_widget = WIDGETS.register
    """))
    for module, source in sources.items():
        (pkg / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    try:
        yield importlib.import_module(name).WIDGETS
    finally:
        for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[mod]


@pytest.fixture
def lazy_widgets(tmp_path, monkeypatch):
    yield from _fake_builtin_package(tmp_path, monkeypatch, "fakelazy_pkg", {"things": """
        from fakelazy_pkg import register_widget

        @register_widget("good", aliases=("g",), deprecated_aliases=("old-good",),
                         description="declared right", flag=True)
        class Good:
            flag = True
    """, "liars": """
        from fakelazy_pkg import register_widget

        @register_widget("liar", description="declared wrong", flag=True)
        class Liar:
            flag = False
    """})


def test_lazy_builtins_are_listed_then_imported_and_checked_on_get(lazy_widgets):
    reg = lazy_widgets
    assert reg.names() == ["good", "liar"]
    assert "fakelazy_pkg.things" not in sys.modules
    assert reg.entry("g").metadata == {"description": "declared right", "flag": True}
    assert reg.entry("good").prop("flag") is True and not reg.entry("good").loaded
    good = reg.get("good")
    assert good.__name__ == "Good" and good.registry_name == "good"
    with pytest.raises(TypeError, match="declares flag=True at registration but Liar.flag"):
        reg.get("liar")
    with pytest.raises(UnknownNameError, match="did you mean 'good'"):
        reg.get("goood")


def test_deprecated_aliases_work_and_warn_with_the_new_name(lazy_widgets):
    with pytest.warns(DeprecationWarning, match="'old-good' is deprecated; use 'good'"):
        assert lazy_widgets.get("old-good").__name__ == "Good"
    assert "old-good" in lazy_widgets
    reg = make_registry()

    @reg.register("new", deprecated_aliases=("old",))
    class New:
        pass

    with pytest.warns(DeprecationWarning, match="use 'new'"):
        assert reg.get("old") is New
    with pytest.raises(DuplicateNameError):
        reg.add("other", object(), aliases=("old",))


def test_a_refused_class_is_left_untouched_and_a_declared_name_must_match():
    reg = make_registry()
    reg.add("plain", object())

    class Plain:
        pass

    with pytest.raises(DuplicateNameError):
        reg.add("plain", Plain)
    assert "registry_name" not in Plain.__dict__
    refusing = make_registry(validate=lambda obj: (_ for _ in ()).throw(TypeError("no")))
    with pytest.raises(TypeError, match="no"):
        refusing.add("plain", Plain)
    assert "registry_name" not in Plain.__dict__

    class Named:
        registry_name = "named"

    reg.register("named")(Named)  # the class body's name agrees with the decorator's
    assert reg.get("named") is Named
    with pytest.raises(TypeError, match="declares registry_name = 'named'"):
        reg.register("renamed")(Named)


def test_eager_metadata_is_checked_against_the_class():
    reg = Registry("widget", group="chiaroscuro.test_widgets", declared=("flag",))

    class W:
        flag = False

    with pytest.raises(TypeError, match="declares flag=True"):
        reg.register("w", flag=True)(W)


def test_filter_by_fnmatch_patterns_on_names_and_aliases():
    reg = make_registry()
    for name, aliases in (("attn", ()), ("xformers", ("xformers-attn",)), ("dct", ())):
        reg.add(name, object(), aliases=aliases)
    assert [e.name for e in reg.filter("*attn*")] == ["attn", "xformers"]
    assert [e.name for e in reg.filter("d*", "a*")] == ["attn", "dct"]
    assert [e.name for e in reg.filter()] == ["attn", "dct", "xformers"]
