"""The conformance suite (harness/conformance.py) applied to every built-in operator and router
and to the example plugin's; and proof that each of its checks can fail."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from harness import conformance
from harness.conformance import (
    ROUTER_CHECKS,
    assert_operator_conforms,
    assert_router_conforms,
    conformance_cases,
    operator_conformance_tests,
    router_conformance_tests,
)
from operators import OPERATORS, TokenMixer
from operators.base import gather_queries
from routers import ROUTERS, Router, Routing
from routers.base import token_fractions

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGE = ROOT / "examples" / "plugin" / "chiaroscuro_example_plugin"


def load_example_plugin(module: str):
    """Import a module of the example plugin from its source folder, installed or not (without
    putting examples/plugin on sys.path, where an egg-info left by an editable install would
    make it look installed to every later test)."""
    name = "chiaroscuro_example_plugin"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, PLUGIN_PACKAGE / "__init__.py", submodule_search_locations=[str(PLUGIN_PACKAGE)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.{module}")


DepthwiseConvMixer = load_example_plugin("dwconv").DepthwiseConvMixer
FlatnessRouter = load_example_plugin("router").FlatnessRouter

# -- the example plugin: exactly what a plugin author writes (one line per component) ----------

test_example_plugin_operator = operator_conformance_tests(DepthwiseConvMixer)
test_example_plugin_router = router_conformance_tests(FlatnessRouter)


# -- every built-in ----------------------------------------------------------------------------

# (kind, name, check, causal) that must FAIL: the paper's leaky variants
EXPECTED_FAILURES = {
    ("operator", "dct-leaky", "causality", True): "sees the future",
    ("router", "entropy-topk", "causality", True): "declares causal = False",
    ("router", "mod-topk", "causality", True): "declares causal = False",
    ("router", "meta-batch", "causality", True): "declares causal = False",
    ("router", "meta-batch", "batch independence", False): "batch_independent = False",
    ("router", "meta-batch", "batch independence", True): "batch_independent = False",
}


def _xformers_usable() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("xformers") is not None


def _builtin_cases():
    params = []
    for kind, registry in (("operator", OPERATORS), ("router", ROUTERS)):
        for entry in registry:
            if not entry.builtin:  # an installed plugin is tested by its own suite
                continue
            marks, settings = (), {}
            if entry.name == "xformers":
                if _xformers_usable():
                    settings = {"device": "cuda"}
                else:
                    marks = (pytest.mark.skip(reason="xformers needs CUDA and xformers"),)
            for case in conformance_cases(entry.obj, kind=kind, **settings):
                key = (kind, entry.name, case.check, case.causal)
                params.append(pytest.param(key, case, id=f"{entry.name}-{case.id}", marks=marks))
    return params


BUILTIN_CASES = _builtin_cases()


@pytest.mark.parametrize("key, case", BUILTIN_CASES)
def test_builtins_conform_and_leaky_variants_fail(key, case):
    expected = EXPECTED_FAILURES.get(key)
    if expected is None:
        case.run()
        return
    with pytest.raises(AssertionError) as info:
        case.run()
    message = str(info.value)
    assert f"'{key[1]}' fails '{key[2]}'" in message  # names the component and the check
    assert expected in message


def test_expected_failures_are_all_exercised():
    keys = {p.values[0] for p in BUILTIN_CASES}
    assert set(EXPECTED_FAILURES) <= keys
    # every built-in operator is covered, in both modes
    covered = {k[1] for k in keys if k[0] == "operator"}
    assert {"attn", "dct", "dct-leaky", "identity", "rbf", "xformers"} <= covered
    assert {e.name for e in ROUTERS if e.builtin} <= {k[1] for k in keys if k[0] == "router"}


def test_assert_helpers_list_every_failure_at_once():
    with pytest.raises(AssertionError) as info:
        assert_operator_conforms(OPERATORS.get("dct-leaky"))
    message = str(info.value)
    assert message.startswith("1 of 15 conformance checks failed")
    assert "operator 'dct-leaky' fails 'causality' (causal)" in message
    with pytest.raises(AssertionError, match="3 of 11 conformance checks failed"):
        assert_router_conforms("meta-batch", 2)
    assert_operator_conforms("dct", causal_modes=(True,), checks=["causality", "padding"])
    assert_router_conforms(ROUTERS.get("entropy"), 3, seq_len=16)
    # a classification-only router is checked in non-causal mode only
    assert_router_conforms("entropy-topk", causal_modes=(False,))


def test_case_selection_follows_declarations():
    ids = {c.id for c in conformance_cases(OPERATORS.get("dct"))}
    assert "query-subset-causal" not in ids and "causality-non-causal" not in ids
    assert "causality-causal" in ids and "flop-counter-non-causal" in ids
    ids = {c.id for c in conformance_cases("attn", count_flops=False)}
    assert "query-subset-causal" in ids and "flop-counter-causal" not in ids
    assert {c.check for c in conformance_cases("single")} == set(ROUTER_CHECKS)
    with pytest.raises(ValueError, match="unknown checks"):
        conformance_cases("dct", checks=["nope"])


def test_command_line_reports_each_check(capsys):
    assert conformance.main(["--ops", "identity", "--router", "single"]) == 0
    out = capsys.readouterr().out
    assert "operator 'identity'" in out and "router 'single'" in out
    assert "28 passed, 0 failed" in out  # identity 8 + 9 cases, single 5 + 6
    assert conformance.main(["--ops", "dct-leaky", "--mode", "causal", "--json"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" not in captured.out  # JSON, not a table
    assert '"passed": false' in captured.out and "1 failed" in captured.err
    assert conformance.main(["--ops", "dtc"]) == 2
    assert "did you mean 'dct'?" in capsys.readouterr().err


# -- the suite can fail: one deliberately broken component per check ---------------------------


class PeekingMixer(TokenMixer):
    """Declares a causal form but reads token t + 1."""

    def forward(self, x, ctx):
        return x + torch.cat([x[:, 1:], torch.zeros_like(x[:, :1])], dim=1)

    def flops(self, n_query, n_key):
        return 0


class UnmaskedMean(TokenMixer):
    """Adds the mean over all positions, padding included."""

    supports_causal = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x, ctx):
        return x + self.scale * x.mean(dim=1, keepdim=True)

    def flops(self, n_query, n_key):
        return 0


class BatchCentred(TokenMixer):
    """Subtracts the batch mean: an example depends on the others."""

    def forward(self, x, ctx):
        return x - x.mean(dim=0, keepdim=True)

    def flops(self, n_query, n_key):
        return 0


class InconsistentSubset(TokenMixer):
    """A prefix sum whose query-subset path forgets causality and padding."""

    supports_query_subset = True

    def forward(self, x, ctx):
        if ctx.padding_mask is not None:
            x = x * ctx.padding_mask[..., None]
        if ctx.query_positions is not None:
            return gather_queries(x.sum(dim=1, keepdim=True).expand_as(x), ctx)
        return x.cumsum(dim=1)

    def flops(self, n_query, n_key):
        return 0


class UnderDeclaredFlops(TokenMixer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.proj = nn.Linear(self.d_model, self.d_model)

    def forward(self, x, ctx):
        return self.proj(x)

    def flops(self, n_query, n_key):
        return 7 * n_query  # torch counts 2 * n * d * d


class InfiniteGradient(TokenMixer):
    def forward(self, x, ctx):
        return x + torch.sqrt(x.abs() * 0)  # d/dx sqrt(0) = inf

    def flops(self, n_query, n_key):
        return 0


class FractionalFlops(TokenMixer):
    def forward(self, x, ctx):
        return x

    def flops(self, n_query, n_key):
        return 0.5 * n_query


class SilentlyNonCausal(nn.Module):
    """Declares no causal form yet accepts causal=True without complaint."""

    supports_causal = False
    supports_query_subset = False

    def __init__(self, d_model, n_heads, max_len, causal, **options):
        super().__init__()

    def forward(self, x, ctx):
        return x

    def flops(self, n_query, n_key):
        return 0


class BrokenInBF16(TokenMixer):
    def forward(self, x, ctx):
        if x.dtype == torch.bfloat16:
            raise RuntimeError("no bf16 kernel")
        return x

    def flops(self, n_query, n_key):
        return 0


class StringRoles(TokenMixer):
    """Declares a role as a bare string: the board would read 'a', 't', 't', 'n'."""

    roles = "attn"

    def forward(self, x, ctx):
        return x

    def flops(self, n_query, n_key):
        return 0


def _hard(assignment, n_ops, x, mask):
    weights = nn.functional.one_hot(assignment, n_ops).to(x.dtype)
    return Routing(assignment, weights, torch.zeros(()),
                   {"fractions": token_fractions(assignment, n_ops, mask)})


class PeekingRouter(Router):
    min_ops = 2

    def forward(self, x, ctx):
        ahead = torch.roll(x.detach().float().sum(-1), -1, dims=1)
        return _hard((ahead > 0).long(), self.n_ops, x, ctx.padding_mask)


class DetachedGateRouter(Router):
    """Its gate never receives a gradient, so it never trains."""

    min_ops = 2

    def __init__(self, d_model, n_ops, **kwargs):
        super().__init__(d_model, n_ops, **kwargs)
        self.gate = nn.Linear(d_model, n_ops)

    def forward(self, x, ctx):
        with torch.no_grad():
            assignment = self.gate(x).argmax(-1)
        return _hard(assignment, self.n_ops, x, ctx.padding_mask)


class SoftOnHardRouter(Router):
    """Claims to be hard but puts weight on every operator."""

    min_ops = 2

    def forward(self, x, ctx):
        b, n = x.shape[:2]
        assignment = torch.zeros(b, n, dtype=torch.long)
        weights = torch.full((b, n, self.n_ops), 1.0 / self.n_ops)
        return Routing(assignment, weights, torch.zeros(()),
                       {"fractions": token_fractions(assignment, self.n_ops, ctx.padding_mask)})


class LaxRouter(Router):
    """Accepts any number of operators while declaring exactly two."""

    min_ops = max_ops = 2

    def __init__(self, d_model, n_ops, *, causal, attn_fraction=0.375, **options):
        nn.Module.__init__(self)
        self.n_ops = 2

    def forward(self, x, ctx):
        b, n = x.shape[:2]
        return _hard(torch.zeros(b, n, dtype=torch.long), 2, x, ctx.padding_mask)


@pytest.mark.parametrize(
    "component, check, causal, expected",
    [
        (PeekingMixer, "causality", True, "the operator sees the future"),
        (UnmaskedMean, "padding", False, "appending 6 padding tokens changed real outputs"),
        (BatchCentred, "batch independence", False, "alone differs from the same example"),
        (InconsistentSubset, "query subset", True, "subset of query positions differ"),
        (InconsistentSubset, "query subset", False, "subset of query positions differ"),
        (UnderDeclaredFlops, "flop counter", False, "but torch counted"),
        (InfiniteGradient, "gradients", False, "gradient of the input: "),
        (FractionalFlops, "flops", False, "not an integer count"),
        (SilentlyNonCausal, "contract", True, "accepts causal=True without raising ConfigError"),
        (BrokenInBF16, "dtypes", False, "raised RuntimeError: no bf16 kernel"),
        (PeekingRouter, "causality", True, "routing on a causal task is not causal"),
        (DetachedGateRouter, "gradients", False, "neither weights nor aux_loss depend on them"),
        (SoftOnHardRouter, "contract", False, "non-zero weight on operators"),
        (LaxRouter, "contract", False, "accepts 1 operators without raising ConfigError"),
        (StringRoles, "contract", False, "roles must be a tuple of role names (attention, "
                                         "no-mixing), got 'attn'"),
    ],
)
def test_each_check_can_fail(component, check, causal, expected):
    (case,) = conformance_cases(component, causal_modes=(causal,), checks=[check])
    message = case.failure()
    assert message is not None, f"{component.__name__} passed '{check}'"
    assert f"fails '{check}'" in message and component.__qualname__ in message
    assert expected in message


def test_randomised_parameters_expose_a_zero_initialised_gate():
    """The batch MetaRouter's gate starts at zero weight: without the suite's parameter noise its
    batch dependence would be invisible."""
    (case,) = conformance_cases("meta-batch", causal_modes=(False,),
                                checks=["batch independence"])
    assert case.failure() is not None
    router = ROUTERS.get("meta-batch")(32, 2, causal=False)
    x = torch.randn(3, 8, 32)
    together = router(x, None).weights
    alone = router(x[:1], None).weights
    assert torch.equal(together[:1], alone)  # untouched, it looks batch independent
