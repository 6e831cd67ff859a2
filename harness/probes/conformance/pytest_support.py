"""Pytest helpers: one parametrised test function per component, one test per check and mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.probes.conformance.cases import ConformanceCase, conformance_cases


def _pytest_function(cases: list[ConformanceCase]) -> Callable[[ConformanceCase], None]:
    import pytest

    @pytest.mark.parametrize("case", cases, ids=[c.id for c in cases])
    def test_conformance(case: ConformanceCase) -> None:
        case.run()

    return test_conformance


def operator_conformance_tests(op_cls: type | str, **kwargs: Any):
    """A parametrised pytest test function, one test per check and mode. In a test module::

        test_my_mixer = operator_conformance_tests(MyMixer)
    """
    return _pytest_function(conformance_cases(op_cls, kind="operator", **kwargs))


def router_conformance_tests(router_cls: type | str, **kwargs: Any):
    """As ``operator_conformance_tests``, for a router: ``test_r = router_conformance_tests(R)``."""
    return _pytest_function(conformance_cases(router_cls, kind="router", **kwargs))
