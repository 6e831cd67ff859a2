"""Warmup-stable-decay (``--schedule wsd``): a run to its plateau cools down when the plateau
rule fires at the peak rate, or when the cap leaves just enough steps, and ends when the
cool-down does; the record says where it began and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli.main import main
from harness.core.records import load_record
from harness.engine.steps import WarmupStableDecay


def test_the_rate_warms_up_holds_then_falls_linearly_once_told():
    wsd = WarmupStableDecay(warmup=10, share=0.2)
    assert [wsd(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert all(wsd(s) == 1.0 for s in range(10, 500))  # no end in sight: the peak rate
    wsd.cool_down(100, "plateau")
    assert wsd.cool_steps == 20 and wsd(99) == 1.0 and wsd(100) == 1.0
    factors = [wsd(s) for s in range(100, 120)]
    assert factors == sorted(factors, reverse=True) and factors[-1] == pytest.approx(0.05)
    assert not wsd.cooled(119) and wsd.cooled(120)


@pytest.mark.parametrize("max_steps,share", [(100, 0.25), (4000, 0.2), (37, 0.1), (10, 1.0)])
def test_a_cap_started_cool_down_is_the_last_that_ends_by_the_cap(max_steps, share):
    wsd = WarmupStableDecay(warmup=0, share=share)
    start = next(s for s in range(max_steps) if wsd.fits_before(s, max_steps))
    wsd.cool_down(start, "max_steps")
    assert start + wsd.cool_steps <= max_steps  # it ends in time
    later = WarmupStableDecay(warmup=0, share=share)
    later.cool_down(start + 1, "max_steps")
    assert start + 1 + later.cool_steps > max_steps  # a step later would not


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_a_resumed_schedule_cools_down_where_it_was():
    def fresh():
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        wsd = WarmupStableDecay(warmup=2, share=0.5)
        return wsd, torch.optim.lr_scheduler.LambdaLR(opt, wsd)

    wsd, schedule = fresh()
    for _ in range(10):
        schedule.step()
    wsd.cool_down(10, "plateau")
    schedule.step()
    state = schedule.state_dict()
    wsd2, schedule2 = fresh()
    schedule2.load_state_dict(state)
    assert (wsd2.cool_from, wsd2.cool_steps, wsd2.reason) == (10, 5, "plateau")
    schedule.step(), schedule2.step()
    assert schedule.get_last_lr() == schedule2.get_last_lr() == [pytest.approx(0.6)]


def _run(tmp_path: Path, *extra: str) -> tuple[object, list[dict]]:
    out = tmp_path / "runs"
    assert main(["run", "--preset", "smoke", "--task", "mqar", "--router", "single", "--ops",
                 "attn", "--schedule", "wsd", "--warmup-steps", "2", "--log-every", "1",
                 "--out", str(out), "--cache-dir", str(tmp_path / "cache"), *extra]) == 0
    record = load_record(next(out.glob("*.json")))
    lines = [json.loads(line) for line in
             next(out.glob("*/metrics.jsonl")).read_text().splitlines()]
    return record, [entry for entry in lines if "lr" in entry]


def test_the_plateau_rule_starts_the_cool_down_and_its_end_stops_the_run(tmp_path):
    # min-delta 0.99: no evaluation improves by 99%, so the rule fires at its first chance
    record, steps = _run(tmp_path, "--max-steps", "200", "--eval-every", "4", "--patience",
                         "2", "--min-delta", "0.99", "--cooldown", "0.5")
    t = record.training
    assert t.stop_reason == "plateau" and t.plateau is not None and t.plateau.reached
    assert t.plateau.cooldown_from == 12 and t.plateau.cooldown_steps == 6  # 3 evaluations
    assert t.steps == 18 < 200
    assert t.history[-1].step == 18  # the weights the run ends on were evaluated
    lr = {e["step"]: e["lr"] for e in steps}
    peak = lr[12]
    assert all(lr[s] == pytest.approx(peak) for s in range(3, 13))
    assert [lr[s] for s in range(13, 19)] == sorted((lr[s] for s in range(13, 19)),
                                                    reverse=True)
    assert lr[18] < peak / 5


def test_without_a_plateau_the_cap_leaves_room_for_the_cool_down(tmp_path):
    record, _ = _run(tmp_path, "--max-steps", "20", "--eval-every", "5", "--cooldown", "0.25")
    t = record.training
    assert t.stop_reason == "max_steps" and t.steps == 20
    assert t.plateau is None  # no --patience: no plateau question asked
