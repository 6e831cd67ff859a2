"""The random control says what it matched, and can match attention FLOPs instead of the
token share (routers/random.py, harness/engine/calibrate.py)."""

import pytest
import torch

from registry import ConfigError
from routers import ROUTERS


def _trainer(router_options, fraction=0.375):
    from harness.core.config import resolve
    from harness.runner.train import Trainer
    from tasks import TASKS

    # the task's smoke entry too: without it ListOps is generated at full size (100,000 trees,
    # a minute of CPU) for four calibration batches
    cfg = resolve({"preset": "smoke", "routing": {"router": "random", "ops": ["dct", "attn"],
                                                  "attn_fraction": fraction,
                                                  "router_options": router_options},
                   "data": {"task": "listops"}}, TASKS.get("listops").presets)
    trainer = Trainer(cfg, log=lambda m: None)
    trainer.build()
    return trainer


@pytest.mark.parametrize("target", [0.6, 0.8])
def test_match_flops_spends_the_target_attention_fraction(target):
    from harness.engine.calibrate import (
        calibrate_routers,
        calibration_batches,
        spent_flop_fraction,
    )

    trainer = _trainer({"match": "flops", "flop_fraction": target})
    line = calibrate_routers(trainer.model, trainer.task, trainer.device, 8)
    assert "matched on attention FLOPs" in line
    batches = calibration_batches(trainer.task, 8)
    spent = spent_flop_fraction(trainer.model, batches, trainer.device)
    assert abs(spent - target) < 0.01
    # the share found is state: a checkpoint carries it
    router = trainer.model.mixing_layers[0].router
    fresh = ROUTERS.get("random")(32, 2, causal=False, match="flops", flop_fraction=target)
    fresh.load_state_dict(router.state_dict())
    assert torch.equal(fresh.levels, router.levels) and float(fresh.top_share) != 0.375


def test_the_default_matches_the_token_share_and_is_unchanged():
    from harness.engine.calibrate import calibrate_routers

    trainer = _trainer({})
    line = calibrate_routers(trainer.model, trainer.task, trainer.device, 8)
    assert "matched on attention FLOPs" not in line
    assert "top_share" not in trainer.model.state_dict().keys().__str__()


@pytest.mark.parametrize("options,message", [
    ({"match": "cost"}, "option match='cost' is invalid: Input should be 'tokens' or 'flops'"),
    ({"match": "flops"}, "needs flop_fraction=F"),
    ({"match": "flops", "flop_fraction": 1.5}, "flop_fraction=1.5 is invalid: Input should be "
                                               "less than or equal to 1"),
    ({"flop_fraction": 0.5}, "flop_fraction needs match=flops"),
])
def test_bad_match_options_say_what_to_pass(options, message):
    with pytest.raises(ConfigError, match=message):
        ROUTERS.get("random")(16, 2, causal=True, **options)


def test_the_chance_table_says_what_the_control_matched(tmp_path):
    from test_leaderboard import make_record, write

    from harness.report.leaderboard import board as lb

    d = tmp_path / "results" / "runs"
    d.mkdir(parents=True)
    for router, fraction, values in (("entropy", 0.70, [0.61, 0.62]),
                                     ("random", 0.67, [0.60, 0.61])):
        for seed, value in enumerate(values):
            rec = make_record("listops", router, ("dct", "attn"), seed, value, fraction)
            rec["cost"]["test"]["per_layer"] = [
                {"dct": {"token_fraction": 0.625}, "attn": {"token_fraction": 0.375}}]
            write(d, rec)
    md = lb.generate(d, tmp_path / "LEADERBOARD.md", tmp_path / "plots", None).markdown
    header = next(line for line in md.splitlines() if "random config" in line)
    assert "matched on" in header and "top-band token share" in header
    row = next(line for line in md.splitlines() if "| token share" in line)
    assert "0.375 / 0.375" in row and "0.700 / 0.670" in row
