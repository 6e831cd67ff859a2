"""Who a failed leak check blames: the leaking component, and never a router that passes the
check alone."""

import pytest

from harness.core.config import resolve, seq_len_of
from harness.engine.data import build_task
from harness.probes.checks import run_checks
from tasks import TASKS


@pytest.mark.parametrize("batch_size", [4, 32])
def test_a_leaking_operator_is_blamed_alone_not_the_entropy_router_beside_it(batch_size):
    # entropy has buffers (its thresholds move in training mode) and no parameter: compared
    # across two forwards without restoring them, it looked like it leaked
    cfg = resolve({"preset": "smoke", "allow_leaky": True, "data": {"task": "mqar"},
                   "routing": {"router": "entropy", "ops": ["dct-leaky", "attn"]}},
                  TASKS.get("mqar").presets)
    (causality,) = run_checks(cfg, build_task(cfg, shape_only=True), seq_len_of(cfg),
                              which=("causality",), seed=1, batch_size=batch_size)
    assert not causality.passed
    assert causality.culprits == ("operator 'dct-leaky'",), causality.detail
