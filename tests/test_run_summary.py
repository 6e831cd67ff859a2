"""What `harness run` prints at the end, from the typed record: the measured rows its sections
declare for the run summary, the attention explanation and the ground-truth lines."""

from __future__ import annotations

from pathlib import Path

from harness.cli import summary
from harness.core.records import load_record

RUNS = Path(__file__).resolve().parents[1] / "results" / "runs"


def test_measured_rows_are_the_declared_run_summary_metrics():
    record = load_record(RUNS / "listops__entropy__dct+attn__92a125e4f118__seed0.json")
    rows = summary.measured_rows(record)
    assert [r[:2] for r in rows] == [["test, cost", "attention_flop_fraction"],
                                     ["test, cost", "mixer_flop_fraction"],
                                     ["training", "tokens_per_second"],
                                     ["training", "wall_seconds"]]
    assert rows[0][2] == f"{record.test_cost.attention_flop_fraction:.3f}"
    assert rows[2][2] == f"{record.training.tokens_per_second:,.0f}"
    text = summary.fraction_explanation(record)
    share = record.test_cost.top_token_share()
    assert f"the router sent {share:.1%} of real test tokens to 'attn'" in text
    assert f"Its FLOP fraction {record.test_cost.attention_flop_fraction:.3f}" in text


def test_ground_truth_lines_read_the_typed_telemetry():
    record = load_record(RUNS / "mqar__mod__dct+attn__6c13053212a2__seed0.json")
    lines = summary.ground_truth_lines(record)
    truth = record.telemetry.ground_truth
    assert len([line for line in lines if line.startswith("ground truth, layer")]) == len(truth)
    assert f"{truth[0].recall:.1%} of the tokens that needed attention got it" in lines[0]
    assert any(line.startswith("predictor, layer 0: agrees") for line in lines)


def test_a_single_operator_run_has_no_attention_explanation():
    record = load_record(RUNS / "listops__single__attn__25a0800442ec__seed0.json")
    assert summary.fraction_explanation(record) is None
    assert summary.ground_truth_lines(record) == []
