"""Roles on the pages: which router is a control, which is privileged, which operator is
attention, decided in one function (harness/report/roles.py) that no page bypasses."""

from __future__ import annotations

import ast
from pathlib import Path

from test_records import minimal

from harness.core.records import RunRecord
from harness.report.roles import roles_of

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"random", "oracle", "entropy", "single", "learned", "meta", "mod", "attn", "xformers"}


def roles(router: str, ops: list[str]):
    return roles_of(RunRecord.model_validate(minimal(router=router, operators=ops)))


def test_roles_of_routers_and_operators():
    assert roles("random", ["dct", "attn"]).control
    assert roles("oracle", ["dct", "attn"]).privileged
    assert roles("single", ["attn"]).unrouted and roles("single", ["attn"]).attention == (True,)
    assert roles("single", ["dct"]).attention == (False,)
    assert roles("entropy", ["dct", "xformers"]).method
    assert roles("entropy", ["dct", "xformers"]).attention == (False, True)
    assert all(roles(r, ["dct", "attn"]).learned for r in ("learned", "meta", "mod"))
    assert [roles(r, ["dct", "attn"]).order
            for r in ("oracle", "entropy", "random", "meta", "mine")] == [0, 1, 2, 3, 4]
    # routed: it decides something (not the control, not one operator)
    assert roles("entropy", ["dct", "attn"]).routed and roles("mine", ["dct", "attn"]).routed
    assert not roles("random", ["dct", "attn"]).routed
    assert not roles("single", ["attn"]).routed and not roles("entropy", ["attn"]).routed
    # the no-mixing floor: a single operator that mixes nothing
    assert roles("single", ["identity"]).floor
    assert not roles("single", ["attn"]).floor and not roles("entropy", ["identity"]).floor


def _name_tests(source: str) -> list[str]:
    """Comparisons of a value with a router or operator name (== / in) in a module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        for side in [node.left, *node.comparators]:
            for const in ast.walk(side):
                if isinstance(const, ast.Constant) and const.value in NAMES:
                    found.append(f"line {node.lineno}: '{const.value}'")
    return found


def test_no_page_tests_router_or_operator_names_itself():
    pages = [p for p in (ROOT / "harness" / "report").rglob("*.py") if p.name != "roles.py"]
    assert len(pages) > 10
    found = [f"{p.relative_to(ROOT)} {hit}" for p in pages
             for hit in _name_tests(p.read_text(encoding="utf-8"))]
    assert not found, "name tests outside roles_of:\n" + "\n".join(found)


def test_the_name_check_sees_a_name_test():
    assert _name_tests('def f(g):\n    return g.router == "oracle"\n') == ["line 2: 'oracle'"]
    assert _name_tests('ok = op in ("attn", "xformers")\n') == ["line 1: 'attn'",
                                                                "line 1: 'xformers'"]
    assert _name_tests('label = "oracle"\n') == []  # text is not a test
