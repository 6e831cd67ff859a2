"""Result records: schema (old and new), the typed sections and their metrics, atomic writes
under concurrency, malformed files, data split hashes and the routing telemetry collector."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from harness.core import records
from harness.core.metrics import BOARD_COLUMN, task_metric
from harness.core.record_cost import SplitCost
from harness.core.records import RunRecord
from harness.engine import provenance
from registry import files

ROOT = Path(__file__).resolve().parents[1]


def minimal(run_id: str = "listops__entropy__dct+attn__abc__seed0", **extra) -> dict:
    """A schema-1 record as train.py wrote it before schema 2."""
    rec = {
        "schema_version": 1,
        "run_id": run_id,
        "created": "2026-01-01T00:00:00+00:00",
        "task": "listops",
        "router": "entropy",
        "operators": ["dct", "attn"],
        "seed": 0,
        "preset": "cpu",
        "config": {"routing": {"router": "entropy", "ops": ["dct", "attn"],
                               "router_options": {"momentum": 0.1},
                               "op_options": {"dct": {"filter": "learned"}, "rbf": {"s": 1}}},
                   "budget": {"max_steps": 300, "max_time": None}},
        "config_hash": "abc",
        "flags": ["preset:cpu"],
        "metrics": {"valid": {"accuracy": 0.5}, "test": {"accuracy": 0.55}},
        "cost": {"test": {"attention_flop_fraction": 0.375}},
        "training": {"steps": 300},
        "parameters": 1000,
        "data": {"name": "listops"},
        "environment": {"hardware": "cpu"},
    }
    rec.update(extra)
    return rec


def test_schema_1_records_load_and_fill_the_new_fields_from_the_config():
    r = RunRecord.model_validate(minimal())
    assert r.schema_version == 1
    assert r.operator_options == {"dct": {"filter": "learned"}, "rbf": {"s": 1}}
    assert r.router_options == {"momentum": 0.1}
    assert r.budget == {"max_steps": 300, "max_time": None}
    assert r.telemetry is None and r.split_hashes == {}
    assert r.headline() == ("accuracy", True)
    assert not r.leaky and r.warning_flags == []


def test_headline_flags_and_new_fields():
    r = RunRecord.model_validate(minimal(
        schema_version=2, task_metric="perplexity", higher_is_better=False,
        flags=["preset:cpu", "leaky: operator 'dct-leaky' sees future tokens", "dense"],
        metrics={"test": {"perplexity": 30.0, "word_perplexity": 50.0}},
        data={"split_hashes": {"test": "sha256:00"}},
        telemetry={"gate_history": [{"step": 10, "gate": [0.3, 0.4]}]},
    ))
    assert r.headline() == ("perplexity", False)
    assert r.leaky
    assert r.warning_flags == ["leaky: operator 'dct-leaky' sees future tokens", "dense"]
    assert r.split_hashes == {"test": "sha256:00"}
    assert r.telemetry.gate_history[0].gate == [0.3, 0.4]
    # inferred when the record does not declare it
    assert RunRecord.model_validate(minimal(
        metrics={"test": {"perplexity": 3.0}})).headline() == ("perplexity", False)


def test_newer_schema_and_inconsistent_histograms_are_rejected():
    with pytest.raises(ValueError, match="schema_version 99"):
        RunRecord.model_validate(minimal(schema_version=99))
    bad = {"entropy_histogram": {"bin_edges": [0, 0.5, 1], "per_layer": [{"attn": [1, 2, 3]}]}}
    with pytest.raises(ValueError, match="3 counts for 2 bins"):
        RunRecord.model_validate(minimal(telemetry=bad))


def test_write_and_load_round_trip(tmp_path):
    r = RunRecord.model_validate(minimal(schema_version=2))
    path = records.write_record(r, tmp_path)
    assert path.name == "listops__entropy__dct+attn__abc__seed0.json"
    loaded, problems = records.load_records(tmp_path)
    assert problems == [] and loaded == [r]
    assert records.record_filename("a/b\\..c") == "a_b_..c.json"
    assert records.record_filename("../x") == "_x.json"


def test_malformed_records_are_reported_by_file_and_skipped(tmp_path):
    records.write_record(RunRecord.model_validate(minimal()), tmp_path)
    (tmp_path / "a_bad_json.json").write_text('{"run_id": ')
    no_task = minimal(run_id="x")
    del no_task["task"]
    (tmp_path / "b_missing.json").write_text(json.dumps(no_task))
    (tmp_path / "c_wrong_type.json").write_text(json.dumps(minimal(run_id="y", seed="zero")))
    (tmp_path / "d_list.json").write_text("[1, 2]")
    (tmp_path / "e_binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / ".f.json.123.tmp").write_text("{")  # a writer's temp file: never read
    loaded, problems = records.load_records(tmp_path)
    assert [r.run_id for r in loaded] == ["listops__entropy__dct+attn__abc__seed0"]
    names = [Path(p.split(": ", 1)[0]).name for p in problems]
    assert names == ["a_bad_json.json", "b_missing.json", "c_wrong_type.json", "d_list.json",
                     "e_binary.json"]
    assert "not valid JSON" in problems[0]
    assert "task: Field required" in problems[1]
    assert "seed" in problems[2]
    assert records.load_records(tmp_path / "absent") == ([], [])


WRITER = textwrap.dedent("""
    import sys
    import time
    from harness.core import records
    from harness.engine import provenance
    sys.path.insert(0, sys.argv[3])
    from test_records import minimal
    who, directory, gate = sys.argv[1], sys.argv[2], records.Path(sys.argv[4])
    # start together: each announces itself and waits for the other
    (gate / who).touch()
    while len(list(gate.iterdir())) < 2:
        time.sleep(0.001)
    for i in range(100):
        rec = records.RunRecord.model_validate(minimal(run_id=f"{who}-{i:03d}", seed=i))
        records.write_record(rec, records.Path(directory))
        # both writers also keep replacing one shared record
        shared = records.RunRecord.model_validate(minimal(run_id="shared", seed=i))
        records.write_record(shared, records.Path(directory))
""")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out, gate = tmp_path / "runs", tmp_path / "gate"
    out.mkdir()
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, who, str(out),
                               str(Path(__file__).parent), str(gate)],
                              env=env, stderr=subprocess.PIPE)
             for who in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    loaded, problems = records.load_records(out)
    assert problems == []
    ids = sorted(r.run_id for r in loaded)
    assert ids == sorted([f"{w}-{i:03d}" for w in "ab" for i in range(100)] + ["shared"])
    assert [p.name for p in out.iterdir() if p.suffix != ".json"] == []  # no temp files


def test_a_failed_write_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "board.md"
    files.atomic_write_text(path, "old\n")

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        files.atomic_write_text(path, "new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.md"]


def test_split_hash_is_canonical_and_sensitive():
    torch = pytest.importorskip("torch")
    a = [(torch.tensor([1, 2, 3]), 0), (torch.tensor([4, 5]), 1)]
    b = [(torch.tensor([1, 2, 3], dtype=torch.int32), 0), (torch.tensor([4, 5]), 1)]
    h = provenance.split_hash(a)
    assert h.startswith("sha256:") and len(h) == 7 + 64
    assert provenance.split_hash(b) == h  # storage dtype does not matter
    assert provenance.split_hash(list(reversed(a))) != h  # order does
    assert provenance.split_hash([(torch.tensor([1, 2, 3]), 1), a[1]]) != h  # labels do
    assert provenance.split_hash([(torch.tensor([1, 2, 4]), 0), a[1]]) != h  # tokens do
    assert provenance.split_hash(a[:1]) != h
    assert provenance.split_hash(iter(a)) == h  # any iterable


def test_entropy_histograms_bin_each_real_token_by_its_operator():
    torch = pytest.importorskip("torch")
    from harness.engine.meters.telemetry import EntropyHistogramMeter
    from routers import Routing

    class Report:
        """Token 0 of each example routed to operator 1, the rest to 0; the last is padding."""

        def __init__(self, x):
            assignment = torch.zeros(x.shape[:2], dtype=torch.long)
            assignment[:, 0] = 1
            weights = torch.nn.functional.one_hot(assignment, 2).float()
            self.routing = Routing(assignment, weights, torch.zeros(()), {})
            self.x = x
            self.ctx = types.SimpleNamespace(
                padding_mask=torch.tensor([[True, True, True, False]] * 2))

    meter = EntropyHistogramMeter(2, ["dct", "attn"], "test", bins=10)
    x = torch.randn(2, 4, 8)
    out = types.SimpleNamespace(layers=[Report(x), Report(x)])
    meter.update(out)
    meter.update(out)
    h = meter.summary()
    assert h.split == "test" and len(h.bin_edges) == 11
    totals = h.totals()
    # 2 layers x 2 forwards x 2 examples: 1 token to attn, 2 real ones to dct (padding skipped)
    assert sum(totals["attn"]) == 8 and sum(totals["dct"]) == 16
    assert EntropyHistogramMeter(2, ["dct", "attn"]).summary() is None  # nothing seen
    summary = records.Telemetry(entropy_histogram=h)
    record = RunRecord.model_validate(minimal(telemetry=summary.model_dump()))
    assert record.telemetry == summary


# -- the typed sections ---------------------------------------------------------------------------


def test_every_committed_record_loads_and_writes_back_unchanged():
    """Typing the sections changed no record: each committed file reads into the models and
    writes back the same JSON (a section writes exactly the keys it was given)."""
    paths = sorted((ROOT / "results" / "runs").glob("*.json"))
    assert len(paths) > 50
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        back = json.loads(records.load_record(path).model_dump_json())
        for section in ("cost", "training", "telemetry", "best_checkpoint", "metrics"):
            assert back.get(section) == data.get(section), f"{path.name}: {section}"


def test_a_schema_1_record_reads_into_typed_sections():
    r = RunRecord.model_validate(minimal())
    assert r.test_cost.attention_flop_fraction == 0.375
    assert r.test_cost.per_layer == [] and r.test_cost.top_token_share() is None
    assert r.test_cost.gate() is None and r.cost.train is None
    assert r.training.steps == 300 and r.training.history == [] and r.best_checkpoint is None
    # nothing the record did not hold is written back
    assert json.loads(r.model_dump_json())["cost"] == {"test": {"attention_flop_fraction": 0.375}}
    sparse = RunRecord.model_validate(minimal(cost={}, training={}))
    assert sparse.test_cost.attention_flop_fraction is None and sparse.training.steps is None


def _layer(dct: float, attn: float, **extra) -> dict:
    return {"dct": {"token_fraction": dct, "flops": 1.0, "flop_fraction_of_full": dct},
            "attn": {"token_fraction": attn, "flops": 2.0, "flop_fraction_of_full": attn},
            **extra}


def test_derived_cost_quantities_have_one_definition():
    cost = SplitCost.model_validate({"operators": ["dct", "attn"], "per_layer": [
        _layer(0.6, 0.4, gate_mean=0.30), _layer(0.8, 0.2, gate_mean=0.20)]})
    assert cost.top_token_share() == pytest.approx(0.3)  # the last operator, mean over layers
    assert cost.gate() == pytest.approx(0.25)
    # a soft router (it has a gate) without weight shares: its token shares say nothing
    assert cost.router_shares(["dct", "attn"]) is None
    weighted = SplitCost.model_validate({"operators": ["dct", "attn"], "per_layer": [
        {"dct": {"token_fraction": 1.0, "weight_fraction": 0.7},
         "attn": {"token_fraction": 1.0, "weight_fraction": 0.3}, "gate_mean": 0.3}]})
    assert weighted.router_shares(["dct", "attn"]) == [[0.7, 0.3]]
    assert weighted.operator_share("attn") == pytest.approx(0.3)
    hard = SplitCost.model_validate({"operators": ["dct", "attn"],
                                     "per_layer": [_layer(0.6, 0.4), _layer(0.8, 0.2)]})
    assert hard.router_shares(["dct", "attn"]) == [[0.6, 0.4], [0.8, 0.2]]
    assert hard.gate() is None and hard.operator_share("rbf") is None
    # the layer's JSON shape survives the round trip, gate included
    assert json.loads(cost.model_dump_json())["per_layer"][0] == _layer(0.6, 0.4, gate_mean=0.3)


def test_the_meter_and_the_bench_use_the_records_definitions():
    """No second copy: the live cost meter's FLOP fraction is the record's, and the bench's
    top-band share comes from the record's SplitCost."""
    pytest.importorskip("torch")
    from harness.core import record_cost
    from harness.engine.meters import cost as meter
    from harness.probes.bench import end_to_end

    assert meter.flop_fraction is record_cost.flop_fraction
    assert not hasattr(meter, "top_token_share")
    summary = {"operators": ["dct", "attn"], "attention_flop_fraction": 0.5,
               "per_layer": [_layer(0.6, 0.4), _layer(0.8, 0.2)]}
    assert end_to_end._routing_measured(summary) == {
        "attention_token_share": SplitCost.model_validate(summary).top_token_share(),
        "attention_flop_fraction": 0.5}
    assert record_cost.flop_fraction([1.0, 2.0], [4.0, 4.0]) == 3 / 8
    assert record_cost.flop_fraction([], []) == 1.0  # nothing ran: nothing is claimed


def test_metrics_carry_their_metadata_once():
    columns = [m.name for m in records.measures(BOARD_COLUMN)]
    assert columns == ["attention_flop_fraction", "mixer_flops_per_token", "tokens_per_second"]
    assert [m.section for m in records.measures(BOARD_COLUMN)] == ["test_cost", "test_cost",
                                                                    "training"]
    fraction = records.measure("attention_flop_fraction")
    assert fraction.metric.label == "attn FLOP frac" and fraction.metric.format(0.6546) == "0.655"
    assert fraction.metric.higher_is_better is False
    assert records.measure("mixer_flops_per_token").metric.format(123456.7) == "123,457"
    assert records.measure("model_flops_per_token").metric.sentence(306912.0) == \
        "3.07e+05 model FLOPs/token (forward)"
    assert records.measure("wall_seconds").metric.sentence(1234.4) == "wall 1,234 s"
    r = RunRecord.model_validate(minimal(training={"steps": 3, "tokens_per_second": math.nan}))
    assert records.measure("tokens_per_second")(r) is None  # not finite: not a value
    assert records.measure("attention_flop_fraction")(r) == 0.375
    assert records.task_measure("test", "accuracy")(r) == 0.55
    assert (task_metric("perplexity").label, task_metric("perplexity").digits) == ("token PPL", 2)
    assert task_metric("accuracy").higher_is_better and task_metric("accuracy").digits == 4
    with pytest.raises(KeyError, match="no record section declares a metric 'speed'"):
        records.measure("speed")
