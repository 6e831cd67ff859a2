"""Who a failed leak check blames (harness/probes/checks.py ``blame``): the leaking component,
and never a router that passes the check alone."""

import pytest
import torch

from harness.core.config import resolve, seq_len_of
from harness.engine.data import build_task
from harness.probes.checks import CheckResult, blame
from tasks import TASKS


@pytest.mark.parametrize("seed", [0, 1])
def test_a_leaking_operator_is_blamed_alone_not_the_entropy_router_beside_it(seed):
    # entropy has buffers (its thresholds move in training mode) and no parameter: compared
    # across two forwards without restoring them, it looked like it leaked
    cfg = resolve({"preset": "smoke", "allow_leaky": True, "data": {"task": "mqar"},
                   "routing": {"router": "entropy", "ops": ["dct-leaky", "attn"]}},
                  TASKS.get("mqar").presets)
    task = build_task(cfg, shape_only=True)
    for check in ("causality", "batch independence"):
        result = CheckResult(check, False, "failed")
        blame(result, cfg, task, seq_len_of(cfg), torch.Generator().manual_seed(seed), 32)
        assert result.culprits == ("operator 'dct-leaky'",), (check, result.detail)
