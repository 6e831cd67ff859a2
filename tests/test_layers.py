"""The floor plan: imports only go down the layers, and no module imports itself back.

Layers, top to bottom (DESIGN.md, "The house"):

    cli        harness/cli, harness/__main__.py, harness/conformance.py (the plugin entry point),
               harness/api.py and harness/__init__.py (the Python API: its names load lazily)
    report     harness/report: leaderboard, plots, claims
    sweep      harness/sweep: many runs
    runner     harness/runner: guard, training driver, record building
    probes     harness/probes: checks, conformance, bench, analyze
    engine     harness/engine: model, optimiser step, data, checkpoints, meters
    components operators/, routers/, tasks/
    core       harness/core (config, record schema, paths), registry/

Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a
lazy import is still an arrow. ``python -m pytest tests/test_layers.py`` is the check.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "registry", "operators", "routers", "tasks")
LAYERS = [
    ("cli", ("harness.cli", "harness.__main__", "harness.conformance", "harness.api")),
    ("report", ("harness.report",)),
    ("sweep", ("harness.sweep",)),
    ("runner", ("harness.runner",)),
    ("probes", ("harness.probes",)),
    ("engine", ("harness.engine",)),
    ("components", ("operators", "routers", "tasks")),
    ("core", ("harness.core", "registry")),
]
# harness/__init__.py serves the Python API (harness.api) lazily: it sits on top, with the
# command line. Every other module of the package is in a subpackage named above.
TOP_PACKAGE = "harness"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports; ``from package import submodule`` is the submodule."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def layer_of(name: str) -> int:
    if name == TOP_PACKAGE:
        return 0
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best[0]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_imports_only_go_down():
    climbing = [f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                for a, targets in graph().items() for b in targets
                if layer_of(b) < layer_of(a)]
    assert not climbing, "imports that climb:\n" + "\n".join(sorted(climbing))


def test_no_import_circles():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in list(g):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_check_sees_a_climbing_import(tmp_path):
    """The checker itself: an engine module importing the runner is caught."""
    known = {"harness.engine.x": tmp_path / "x.py", "harness.runner.train": tmp_path / "t.py"}
    (tmp_path / "x.py").write_text("def f():\n    from harness.runner import train\n")
    found = imports_of("harness.engine.x", tmp_path / "x.py", known)
    assert found == {"harness.runner.train"}
    assert layer_of("harness.runner.train") < layer_of("harness.engine.x")
