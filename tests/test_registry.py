"""The generic registry: registration, aliases, 'did you mean', duplicates, entry-point plugins."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest
from conftest import ISOLATE_PLUGINS

from registry import ConfigError, DuplicateNameError, InvalidNameError, Registry, UnknownNameError


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
    subprocess.run([sys.executable, "-c", ISOLATE_PLUGINS + code], check=True)


@pytest.mark.parametrize("spec", REGISTRIES)
def test_every_builtin_is_read_whole_from_its_source_and_matches_the_class(spec):
    from registry._scan import scan_package
    from registry.options import specs_of

    reg = _registry(spec)
    assert reg.dynamic_modules == []  # every built-in decorator is readable statically
    declarations, dynamic = scan_package(reg.builtins, list(sys.modules[reg.builtins].__path__),
                                         reg.decorators, (*reg.declared, "roles"))
    assert declarations and not dynamic
    assert {d.name for d in declarations} == {e.name for e in reg if e.builtin}
    for d in declarations:
        missing = {*reg.declared, "roles"} - set(d.metadata)
        assert not missing, f"{d.name}: {sorted(missing)} not readable from the source"
        assert "description" in d.metadata and not d.keywords, d.name
        obj = reg.get(d.name)  # imports it: validation compares the source and the class
        assert f"{obj.__module__}:{obj.__qualname__}" == d.target
        for attr in (*reg.declared, "roles"):
            assert getattr(obj, attr) == d.metadata[attr], (d.name, attr)
        assert d.options == specs_of(getattr(obj, "Options", None)), d.name
        assert set(reg.entry(d.name).roles) <= set(reg.role_names)
        assert obj.registry_name == d.name


def test_the_roles_the_board_reads_are_declared_and_readable_without_importing():
    import subprocess

    code = textwrap.dedent("""
        import sys
        from operators import OPERATORS
        from routers import ROUTERS
        assert OPERATORS.with_role("attention") == ["attn", "xformers"]
        assert OPERATORS.with_role("no-mixing") == ["identity"]
        assert not OPERATORS.has_role("rbf", "attention")  # attention's machinery only
        assert ROUTERS.with_role("control") == ["random"]
        assert ROUTERS.with_role("privileged") == ["oracle"]  # a subclass of random, not one
        assert ROUTERS.with_role("single") == ["single"]
        assert not ROUTERS.has_role("uninstalled-plugin", "control")
        assert 'torch' not in sys.modules
    """)
    subprocess.run([sys.executable, "-c", ISOLATE_PLUGINS + code], check=True)
    from operators import OPERATORS

    with pytest.raises(ValueError, match="unknown operator role 'atention'"):
        OPERATORS.has_role("attn", "atention")


def _fake_builtin_package(tmp_path, monkeypatch, name: str, sources: dict[str, str]):
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(textwrap.dedent("""
        from registry import Registry
        WIDGETS = Registry("widget", group="chiaroscuro.test_widgets", builtins=__name__,
                           decorators=("register_widget",), declared=("flag",),
                           roles={"reference": "what the others are compared with"})
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
    yield from _fake_builtin_package(tmp_path, monkeypatch, "fakelazy_pkg", {"base": """
        from pydantic import Field

        from registry.options import ComponentOptions

        from registry.options import parse_options

        class Widget:
            flag = False
            roles = ()
            registry_name = "?"

            class Options(ComponentOptions):
                size: int = Field(3, ge=1, description="how big")

            @classmethod
            def parse_options(cls, values):
                return parse_options("widget", cls.registry_name, cls.Options, values,
                                     "--widget-option {name}.{key}=VALUE")
    """, "things": """
        from fakelazy_pkg import register_widget
        from fakelazy_pkg.base import Widget as Base

        @register_widget("good", aliases=("g",), deprecated_aliases=("old-good",),
                         description="declared right")
        class Good(Base):
            flag = True
            roles = ("reference",)

            class Options(Base.Options):
                colour: str = "red"

        @register_widget("plain", description="inherits everything")
        class Plain(Good):
            roles = ()
    """, "liars": """
        from fakelazy_pkg import register_widget
        from fakelazy_pkg.base import Widget

        class Overruling(Widget):
            def __init_subclass__(cls):
                cls.flag = False  # ... and the class another

        @register_widget("liar", description="its source says one thing")
        class Liar(Overruling):
            flag = True
    """, "computed": """
        import fakelazy_pkg.base as base
        from fakelazy_pkg import register_widget

        @register_widget("computed", description="a value the source cannot tell")
        class Computed(base.Widget):
            flag = bool(len("x"))
    """})


def test_lazy_builtins_are_listed_from_their_source_then_imported_and_checked_on_get(
        lazy_widgets):
    reg = lazy_widgets
    assert reg.names() == ["computed", "good", "liar", "plain"]
    assert not [m for m in sys.modules if m.startswith("fakelazy_pkg.")]
    good = reg.entry("g")
    assert good.metadata == {"description": "declared right", "flag": True,
                             "roles": ("reference",)}
    assert [(o.name, o.default, o.description, o.constraints) for o in good.options] == [
        ("size", 3, "how big", (("ge", 1),)), ("colour", "red", "", ())]
    plain = reg.entry("plain")  # bases followed through the module and across modules
    assert plain.metadata["flag"] is True and plain.roles == frozenset()
    assert [o.name for o in plain.options] == ["size", "colour"]
    assert reg.has_role("old-good", "reference") and not reg.has_role("plain", "reference")
    assert not any(e.loaded for e in reg)
    assert "flag" not in reg.entry("computed").metadata  # not a literal: read on import
    assert reg.entry("computed").prop("flag") is True and reg.entry("computed").loaded
    cls = reg.get("good")
    assert cls.__name__ == "Good" and cls.registry_name == "good"
    with pytest.raises(TypeError, match=r"the source declares flag=True but Liar.flag is False"):
        reg.get("liar")
    with pytest.raises(UnknownNameError, match="did you mean 'good'"):
        reg.get("goood")
    options = reg.check_options("good", {"size": 2})
    assert (options.size, options.colour) == (2, "red")
    with pytest.raises(ConfigError, match=r"widget 'good' option size=0 is invalid: .*greater "
                                          r"than or equal to 1 \(set it with --widget-option "
                                          r"good.size=VALUE\)"):
        reg.check_options("good", {"size": 0})


def test_properties_in_the_decorator_are_refused(tmp_path, monkeypatch):
    reg = make_registry()
    with pytest.raises(TypeError, match="declare flag in the class body"):
        reg.register("w", flag=True)
    packages = _fake_builtin_package(tmp_path, monkeypatch, "fakeold_pkg", {"old": """
        from fakeold_pkg import register_widget

        @register_widget("old", description="the old style", flag=True)
        class Old:
            flag = True
    """})
    widgets = next(packages)
    with pytest.raises(TypeError, match="widget 'old': declare flag in the class body"):
        widgets.names()
    next(packages, None)


def test_roles_must_be_a_tuple_of_known_names():
    reg = Registry("widget", group="chiaroscuro.test_widgets", roles={"reference": "..."})
    for roles, message in ((("refrence",), "unknown role 'refrence'"),
                           ("reference", "use a tuple of role names")):
        with pytest.raises(TypeError, match=message):
            reg.add("w", type("W", (), {"roles": roles}))
    assert "w" not in reg
    reg.add("w", type("W", (), {"roles": ("reference",)}))
    assert reg.has_role("w", "reference") and reg.with_role("reference") == ["w"]


@pytest.mark.parametrize("name", [
    "Upper", "has space", "new\nline", "../up", "a/b", "a..b", "<script>", "[link](x)",
    "-dash-first", "", "tab\there", "a|b", "#heading", "`code`",
])
def test_names_that_are_not_plain_are_refused_at_registration(name):
    reg = make_registry()
    with pytest.raises(InvalidNameError, match="is refused: names are lowercase letters"):
        reg.add(name, object())
    with pytest.raises(InvalidNameError):
        reg.add("fine", object(), aliases=(name,))
    with pytest.raises(InvalidNameError):
        reg.register(name)(type("W", (), {}))
    assert reg.names() == []


def test_plain_names_are_accepted():
    reg = make_registry()
    for name in ("dct", "dct-leaky", "my_mixer", "wt2", "a.b", "x+y", "0day"):
        reg.add(name, object())
    assert len(reg) == 7


def test_a_plugin_with_a_bad_name_is_skipped_naming_it_and_its_package(plugin_path):
    _install_fake_distribution(
        plugin_path,
        "fakebadname",
        "class Good:\n    pass\n",
        "[chiaroscuro.test_widgets]\n<img src=x onerror=alert(1)> = fakebadname_never:Good\n"
        "ok-name = fakebadname_mod:Good\n",
    )
    reg = make_registry()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert reg.names() == ["ok-name"]
    (failure,) = reg.failures
    assert "fakebadname 1.2.3" in str(failure) and "InvalidNameError" in str(failure)
    assert "is refused: names are lowercase letters" in str(failure)
    assert len(str(failure).splitlines()) == 1 and len(caught) == 1
    assert "fakebadname_never" not in str(failure)  # refused before importing anything


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


def test_filter_by_fnmatch_patterns_on_names_and_aliases():
    reg = make_registry()
    for name, aliases in (("attn", ()), ("xformers", ("xformers-attn",)), ("dct", ())):
        reg.add(name, object(), aliases=aliases)
    assert [e.name for e in reg.filter("*attn*")] == ["attn", "xformers"]
    assert [e.name for e in reg.filter("d*", "a*")] == ["attn", "dct"]
    assert [e.name for e in reg.filter()] == ["attn", "dct", "xformers"]
