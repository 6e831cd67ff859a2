"""Conformance cases: one (check, mode) of one component, how they are enumerated for a class or
registered name, and the assert_* helpers that run them all."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.probes.conformance.common import Probe, Settings, is_router, registered_name
from harness.probes.conformance.operator_checks import _OPERATOR_CHECKS
from harness.probes.conformance.router_checks import _ROUTER_CHECKS
from registry import ConfigError


@dataclass(frozen=True)
class ConformanceCase:
    """One check of one component in one mode. ``run()`` raises AssertionError on failure."""

    kind: str  # "operator" or "router"
    target: type
    check: str
    causal: bool
    settings: Settings
    func: Callable[[Probe], None] = field(repr=False, compare=False)

    @property
    def mode(self) -> str:
        return "causal" if self.causal else "non-causal"

    @property
    def id(self) -> str:
        return f"{self.check.replace(' ', '-')}-{self.mode}"

    @property
    def component(self) -> str:
        return f"{self.kind} '{registered_name(self.target)}'"

    def run(self) -> None:
        try:
            self.func(Probe(self.target, self.causal, self.settings, self.check))
        except AssertionError as exc:
            raise AssertionError(f"{self.component} fails '{self.check}' ({self.mode}): "
                                 f"{exc}") from None
        except Exception as exc:  # a crash inside the component is a failure of the check
            raise AssertionError(f"{self.component} fails '{self.check}' ({self.mode}): "
                                 f"raised {type(exc).__name__}: {exc}") from exc

    def failure(self) -> str | None:
        """None if the check passes, else the message."""
        try:
            self.run()
        except AssertionError as exc:
            return str(exc)
        return None


def _resolve(target: type | str, kind: str | None) -> tuple[type, str]:
    if isinstance(target, str):  # a registered name, plugins included
        from operators import OPERATORS
        from routers import ROUTERS

        if kind == "router" or (kind is None and target not in OPERATORS and target in ROUTERS):
            return ROUTERS.get(target), "router"
        return OPERATORS.get(target), "operator"
    return target, kind or ("router" if is_router(target) else "operator")


def conformance_cases(
    target: type | str,
    *,
    kind: str | None = None,
    causal_modes: Iterable[bool] = (False, True),
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> list[ConformanceCase]:
    """Every (check, mode) case for an operator or router class (or registered name).

    ``settings`` are ``Settings`` fields (d_model, n_heads, seq_len, options, n_ops, ...).
    Operators: in causal mode, one without a causal form (``supports_causal = False``) is only
    checked to refuse ``causal=True``; 'query subset' applies only when declared; 'flop counter'
    only when ``count_flops`` (default True). Routers: 'causality' runs in causal mode whatever
    the router declares; pass ``causal_modes=(False,)`` for a classification-only router.
    """
    cls, kind = _resolve(target, kind)
    options = settings.pop("options", None) or {}
    s = Settings(options=dict(options), **settings)
    table = _ROUTER_CHECKS if kind == "router" else _OPERATOR_CHECKS
    if kind == "router" and s.n_ops is not None:
        lo, hi = getattr(cls, "min_ops", 1), getattr(cls, "max_ops", 16)
        if not lo <= s.n_ops <= hi:
            raise ConfigError(f"router '{registered_name(cls)}' routes between {lo} and {hi} "
                              f"operators; n_ops={s.n_ops} cannot be checked")
    wanted = set(checks) if checks is not None else None
    if wanted is not None and wanted - {name for name, _ in table}:
        raise ValueError(f"unknown checks {sorted(wanted - {n for n, _ in table})}; "
                         f"{kind} checks are {[n for n, _ in table]}")
    cases = []
    for causal in causal_modes:
        for name, func in table:
            if wanted is not None and name not in wanted:
                continue
            if name == "causality" and not causal:
                continue
            if kind == "operator":
                if causal and not getattr(cls, "supports_causal", True) and name != "contract":
                    continue
                if name == "query subset" and not getattr(cls, "supports_query_subset", False):
                    continue
                if name == "flop counter" and not s.count_flops:
                    continue
            cases.append(ConformanceCase(kind, cls, name, bool(causal), s, func))
    return cases


def _assert_all(cases: list[ConformanceCase]) -> None:
    failures = [f for f in (case.failure() for case in cases) if f is not None]
    if failures:
        raise AssertionError(f"{len(failures)} of {len(cases)} conformance checks failed:\n"
                             + "\n".join(f"- {f}" for f in failures))


def assert_operator_conforms(
    op_cls: type | str,
    *,
    d_model: int = 32,
    n_heads: int = 4,
    seq_len: int = 24,
    causal_modes: Iterable[bool] = (False, True),
    options: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> None:
    """Run every operator check in each mode; raise one AssertionError listing all failures."""
    _assert_all(conformance_cases(op_cls, kind="operator", causal_modes=causal_modes,
                                  checks=checks, d_model=d_model, n_heads=n_heads,
                                  seq_len=seq_len, options=options, **settings))


def assert_router_conforms(
    router_cls: type | str,
    n_ops: int | None = None,
    *,
    d_model: int = 32,
    seq_len: int = 24,
    causal_modes: Iterable[bool] = (False, True),
    options: Mapping[str, Any] | None = None,
    checks: Iterable[str] | None = None,
    **settings: Any,
) -> None:
    """Run every router check in each mode, routing between ``n_ops`` operators (default 2,
    within the router's [min_ops, max_ops]); raise one AssertionError listing all failures."""
    _assert_all(conformance_cases(router_cls, kind="router", causal_modes=causal_modes,
                                  checks=checks, d_model=d_model, seq_len=seq_len, n_ops=n_ops,
                                  options=options, **settings))
