"""The command line (``python -m harness.conformance``) and the per-component summary used by
``python -m harness check``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.probes.conformance.cases import ConformanceCase, conformance_cases
from registry import ChiaroscuroError, ConfigError


@dataclass
class ConformanceResult:
    component: str
    check: str
    mode: str
    passed: bool
    detail: str

    def row(self) -> list[str]:
        return [self.component, self.check, self.mode, "pass" if self.passed else "FAIL",
                self.detail]


def run_conformance(
    ops: Iterable[str] = (),
    router: str | None = None,
    *,
    op_options: Mapping[str, Mapping[str, Any]] | None = None,
    router_options: Mapping[str, Any] | None = None,
    causal_modes: Iterable[bool] = (False, True),
    **settings: Any,
) -> list[ConformanceResult]:
    """Every check for registered operators and a router (by name); one result per case.
    Unknown names raise UnknownNameError (with "did you mean")."""
    from operators import OPERATORS
    from routers import ROUTERS

    causal_modes = tuple(causal_modes)
    groups: list[list[ConformanceCase]] = []
    for name in ops:
        groups.append(conformance_cases(
            OPERATORS.get(name), kind="operator", causal_modes=causal_modes,
            options=dict((op_options or {}).get(name, {})), **settings))
    if router is not None:
        groups.append(conformance_cases(
            ROUTERS.get(router), kind="router", causal_modes=causal_modes,
            options=dict(router_options or {}), **settings))
    results = []
    for case in (c for group in groups for c in group):
        message = case.failure()
        detail = "ok" if message is None else message.split("): ", 1)[-1]
        results.append(ConformanceResult(case.component, case.check, case.mode,
                                         message is None, detail))
    return results


def conformance_check_results(cfg: Any, causal: bool, *, seq_len: int = 32,
                              seed: int = 0) -> list[Any]:
    """The suite for a run's operators and router, in the task's mode, summarised as one
    ``harness.probes.checks.CheckResult`` per component (for ``python -m harness check``)."""
    from harness.probes.checks import CheckResult

    m, r = cfg.model, cfg.routing
    results = run_conformance(
        r.ops, r.router, op_options=r.op_options, router_options=r.router_options,
        causal_modes=(causal,), d_model=m.d_model, n_heads=m.heads,
        seq_len=max(8, seq_len), n_ops=len(r.ops), attn_fraction=r.attn_fraction, seed=seed)
    out = []
    for component in dict.fromkeys(res.component for res in results):
        mine = [res for res in results if res.component == component]
        failed = [res for res in mine if not res.passed]
        if failed:
            detail = "; ".join(f"{res.check}: {res.detail}" for res in failed)
        else:
            detail = f"{len(mine)} checks pass ({', '.join(res.check for res in mine)})"
        out.append(CheckResult(f"conformance: {component}", not failed, detail,
                               (component,) if failed else ()))
    return out


def build_parser() -> argparse.ArgumentParser:
    from harness.probes.conformance.args import DESCRIPTION, EPILOG, add_arguments

    p = argparse.ArgumentParser(prog="python -m harness.conformance", description=DESCRIPTION,
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def _parse_options(pairs: list[str] | None, flag: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} expects KEY=VALUE, got '{pair}'")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.conformance``: warnings on one line, as ``python -m harness``."""
    from harness.core.warning_lines import one_line_warnings

    one_line_warnings()
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The command, on parsed arguments (``python -m harness conformance`` calls this)."""
    try:
        ops = [o.strip() for o in args.ops.split(",") if o.strip()]
        if not ops and args.router is None:
            raise ConfigError("nothing to check: pass --ops NAME[,NAME] and/or --router NAME")
        op_options: dict[str, dict[str, Any]] = {}
        for key, value in _parse_options(args.op_option, "--op-option").items():
            op, dot, option = key.partition(".")
            if not dot:
                raise ConfigError(f"--op-option expects OP.KEY=VALUE, got '{key}={value}'")
            op_options.setdefault(op, {})[option] = value
        modes = {"both": (False, True), "causal": (True,), "non-causal": (False,)}[args.mode]
        results = run_conformance(
            ops, args.router, op_options=op_options,
            router_options=_parse_options(args.router_option, "--router-option"),
            causal_modes=modes, d_model=args.d_model, n_heads=args.heads,
            seq_len=args.seq_len, batch_size=args.batch_size, seed=args.seed,
            device=args.device, count_flops=not args.no_flop_counter, n_ops=args.n_ops)
    except ChiaroscuroError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
    else:
        from tabulate import tabulate

        print(tabulate([r.row() for r in results],
                       headers=["component", "check", "mode", "result", "detail"]))
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed", file=sys.stderr if args.json
          else sys.stdout)
    return 1 if failed else 0
