"""Conformance suite: the contract checks every operator and router must pass, plugins included.

The harness trusts nothing it is told: each check feeds random inputs and looks at outputs, so
it needs no knowledge of the code under test. Parameters are randomised a little before any
check (many mixers and gates start as the identity or a constant and would pass trivially).

Operators (``operators/base.py``), in non-causal and causal mode:

- contract: declarations are booleans and ``roles`` known role names; construction works;
  ``forward`` returns (B, N, D) float32 and finite; an operator without a causal form refuses
  ``causal=True`` with a ConfigError;
- dtypes: float32, and bfloat16 (float32 and bf16 inputs under bf16 autocast) runs, is finite
  and stays close to float32;
- padding: appending padding, or changing what padding holds, never changes real outputs;
- causality (causal mode): perturbing tokens after t leaves outputs at <= t unchanged;
- batch independence: an example's outputs are the same alone and in a batch;
- gradients: finite gradients for the input and every parameter, and every parameter gets one;
- query subset (only if ``supports_query_subset``): outputs at the given positions equal the full
  outputs gathered there (causal masking by original position, padding, padded query slots);
- flops: ``flops(n_query, n_key)`` is declared, an integer >= 0, does not grow when fewer queries
  are asked for, and ``untracked_flops`` is at most flops (it may be negative: work torch's
  counter charges that the kernel skips);
- flop counter: ``flops() - untracked_flops()`` agrees with ``torch.utils.flop_counter`` within
  5%, for the full sequence and for a query subset (attention counted on the math SDPA backend:
  torch has no FLOP formula for the fused CPU kernel).

Routers (``routers/base.py``), in non-causal and causal mode, after a few calibration batches in
training mode and then in eval mode (as the harness uses them):

- contract: a ``Routing`` with weights (B, N, K) finite, a finite scalar aux loss, 'fractions'
  (K,); hard routers give an assignment in [0, K) and weights only at the assigned operator;
  a number of operators outside [min_ops, max_ops] is refused with a ConfigError;
- dtypes, padding, causality (causal mode, whatever the router declares: a router without a
  causal form fails it and the harness refuses it on causal tasks), batch independence,
  gradients: as for operators, on the routing weights and decisions.

Use it three ways::

    from harness.conformance import assert_operator_conforms, assert_router_conforms
    assert_operator_conforms(MyMixer)          # AssertionError listing every failed check
    assert_router_conforms(MyRouter, n_ops=2)

    # a whole pytest module: one test per check and mode
    from harness.conformance import operator_conformance_tests, router_conformance_tests
    from my_pkg import MyMixer, MyRouter
    test_my_mixer = operator_conformance_tests(MyMixer)
    test_my_router = router_conformance_tests(MyRouter)

    # command line, on registered names (plugins included)
    python -m harness conformance --ops my_mixer --router my_router
"""

# Also importable by name though not in __all__: main (harness/conformance.py, __main__.py),
# conformance_check_results (harness/cli/main.py), build_parser and the tolerances.
from harness.probes.conformance.cases import (
    ConformanceCase,
    assert_operator_conforms,
    assert_router_conforms,
    conformance_cases,
)
from harness.probes.conformance.cli import (
    ConformanceResult,
    build_parser,  # noqa: F401
    conformance_check_results,  # noqa: F401
    main,  # noqa: F401
    run_conformance,
)
from harness.probes.conformance.common import (
    BF16_TOLERANCE,  # noqa: F401
    FLOP_TOLERANCE,  # noqa: F401
    PADDING_GARBAGE,  # noqa: F401
    RTOL,  # noqa: F401
    Settings,
)
from harness.probes.conformance.operator_checks import OPERATOR_CHECKS
from harness.probes.conformance.pytest_support import (
    operator_conformance_tests,
    router_conformance_tests,
)
from harness.probes.conformance.router_checks import ROUTER_CHECKS

__all__ = [
    "ConformanceCase",
    "ConformanceResult",
    "OPERATOR_CHECKS",
    "ROUTER_CHECKS",
    "Settings",
    "assert_operator_conforms",
    "assert_router_conforms",
    "conformance_cases",
    "operator_conformance_tests",
    "router_conformance_tests",
    "run_conformance",
]
