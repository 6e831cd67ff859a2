"""docs/plugins.md keeps its promises: the helpers it lists come from `operators`, its operator
template passes the conformance suite as written, and the conformance command is spelt one way
in the README, the docs and the example plugin."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import operators
from harness.conformance import assert_operator_conforms

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "docs" / "plugins.md").read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_helpers_the_docs_list_are_exported_by_operators():
    table = DOCS.split("`operators` exports what an\noperator needs", 1)[1].split("\n\n")[1]
    listed = re.findall(r"^\| `(\w+)", table, flags=re.M)
    assert listed == ["TokenMixer", "MixContext", "gather_queries", "attention_mask",
                      "query_count"]
    for name in listed:
        assert name in operators.__all__ and callable(getattr(operators, name)), name


def test_the_operator_template_passes_conformance_as_written(monkeypatch):
    (template,) = [b for b in python_blocks(DOCS) if "class MyAttention(TokenMixer)" in b]
    module = types.ModuleType("my_attention_from_the_docs")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(template, "docs/plugins.md", "exec"), module.__dict__)
    assert_operator_conforms(module.MyAttention, causal_modes=(False, True))
    assert_operator_conforms(module.MyAttention, options={"temperature": 2.0},
                             causal_modes=(True,))


def test_one_spelling_of_the_conformance_command():
    texts = {path: path.read_text() for path in (
        ROOT / "README.md", ROOT / "docs" / "plugins.md", ROOT / "examples" / "plugin" /
        "README.md", ROOT / "examples" / "plugin" / "ci.sh", ROOT / "harness" / "conformance.py")}
    for path, text in texts.items():
        assert "python -m harness.conformance" not in text, path
    assert all("python -m harness conformance --ops" in text for text in texts.values())
