"""The claims' verdict rules (harness/report/claims/) against synthetic records: supported,
contradicted and not testable here, the paper's numbers read from results/reference.json, and
the page's freshness check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from harness.core.records import RunRecord
from harness.report.claims.chiar_former import claims
from harness.report.claims.evidence import Evidence, spec_digest
from harness.report.claims.paper import load_paper
from harness.report.claims.render import judge, render
from harness.report.claims.reproduce import run as reproduce
from harness.report.claims.rules import CONTRADICTED, NOT_TESTABLE, SUPPORTED
from harness.report.claims.runs import SPEC_BY_KEY
from registry import DataError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference.json"
CLAIMS = claims(load_paper(REFERENCE)[0])
CLAIM = {c.number: c for c in CLAIMS}
_DIGESTS: dict[tuple[str, str], str] = {}


def rec(key, seed, *, valid_ppl=None, test=None, attn_frac=1.0, flags=(), gates=None,
        history=None, setting="cpu", flops=None, test_gate=None):
    spec = SPEC_BY_KEY[key]
    if (key, setting) not in _DIGESTS:
        _DIGESTS[key, setting] = spec_digest(spec, setting)
    metrics = {"valid": {} if valid_ppl is None else {"perplexity": valid_ppl},
               "test": dict(test or {})}
    telemetry = {"gate_history": [{"step": 10 * i, "gate": [g, g]}
                                  for i, g in enumerate(gates or [])],
                 "routing_history": history or []}
    return RunRecord.model_validate({
        "run_id": f"{key}-{seed}", "created": "2026-01-01T00:00:00+00:00",
        "task": "t", "router": spec.router, "operators": list(spec.ops), "seed": seed,
        "preset": "cpu", "config": {}, "config_hash": _DIGESTS[key, setting],
        "flags": list(flags) + (["leaky: test"] if spec.leaky else []), "metrics": metrics,
        "cost": {"test": {"attention_flop_fraction": attn_frac, "model_flops_per_token": flops,
                          "per_layer": [] if test_gate is None else [
                              {"dct": {}, "attn": {}, "gate_mean": test_gate + d}
                              for d in (-0.01, 0.01)]}},
        "training": {},
        "parameters": 1, "data": {}, "environment": {}, "telemetry": telemetry})


def lm(key, ppls):
    return [rec(key, s, valid_ppl=p) for s, p in enumerate(ppls)]


def verdict(number, records):
    return judge(CLAIM[number], Evidence(records, "cpu"))


def test_claim1_supported_contradicted_and_not_testable():
    attn = lm("lm-attn", [60, 62, 61])
    v = verdict(1, attn + lm("lm-entropy", [30, 31, 29]))
    assert v.status == SUPPORTED and "30.00 ± 1.00 (n=3) vs 61.00 ± 1.00 (n=3)" == v.ours
    assert verdict(1, attn + lm("lm-entropy", [61, 63, 62])).status == CONTRADICTED  # worse
    # a tie whose CI excludes the paper's 45% gain contradicts the claim
    tie = verdict(1, attn + lm("lm-entropy", [59.5, 62.6, 60.2]))
    assert tie.status == CONTRADICTED and "outside the 95% CI" in tie.why
    one_seed = verdict(1, attn + lm("lm-entropy", [30]))
    assert one_seed.status == NOT_TESTABLE and "needs 2" in one_seed.why


def test_claim2_is_about_the_measured_attention_flop_fraction():
    assert verdict(2, [rec("lm-entropy", s, attn_frac=0.38) for s in range(3)]).status \
        == SUPPORTED
    v = verdict(2, [rec("lm-entropy", s, attn_frac=0.70) for s in range(3)])
    assert v.status == CONTRADICTED and "0.700" in v.ours
    assert verdict(2, []).status == NOT_TESTABLE


def test_claim3_rbf_rejected_in_a_majority_of_seeds():
    history = [{"step": 10, "fractions": [[0.6, 0.0, 0.4]]}]
    flag = "collapsed: rbf (layer 0 from step 10, share < 2%)"
    collapsed = [rec("listops-learned3", s, flags=[flag] if s < 2 else [], history=history)
                 for s in range(3)]
    v = verdict(3, collapsed)
    assert v.status == SUPPORTED and "2/3" in v.ours
    alive = [rec("listops-learned3", s, history=[{"step": 10, "fractions": [[0.4, 0.3, 0.3]]}])
             for s in range(3)]
    assert verdict(3, alive).status == CONTRADICTED
    # records without a routing history (made before it was recorded) cannot decide
    assert verdict(3, [rec("listops-learned3", s) for s in range(3)]).status == NOT_TESTABLE


def test_claim4_reads_the_test_gate_of_the_trained_model():
    def runs(test_gate, training_tail):
        return [rec("lm-meta-batch", s, test_gate=test_gate,
                    gates=[0.375] * 6 + [training_tail] * 2) for s in range(3)]

    v = verdict(4, runs(0.23, 0.40))
    assert v.status == SUPPORTED and "0.230" in v.ours  # the test gate, not the training tail
    assert verdict(4, runs(0.40, 0.23)).status == CONTRADICTED
    assert verdict(4, runs(None, 0.23)).status == NOT_TESTABLE  # no test gate recorded


def test_the_claims_read_the_papers_numbers_from_the_reference_file(tmp_path):
    data = json.loads(REFERENCE.read_text())
    data["numbers"][0]["value"] = 0.40  # meta-gate
    data["rows"][0]["value"] = 60.0  # chiar-4l: a 10% gain instead of 45%
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    moved = {c.number: c for c in claims(load_paper(path)[0])}
    assert moved[4].text == "the MetaRouter gate settles near g = 0.4"
    records = [rec("lm-meta-batch", s, test_gate=0.40) for s in range(3)]
    assert judge(moved[4], Evidence(records, "cpu")).status == SUPPORTED
    assert verdict(4, records).status == CONTRADICTED  # against the committed 0.22
    assert moved[1].paper == "val PPL 60 vs 66.62" and moved[8].paper.startswith("the 10% ")
    del data["numbers"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no row with id 'meta-gate'"):
        claims(load_paper(path)[0])


def test_reproduce_without_the_reference_file_is_one_line(tmp_path):
    args = argparse.Namespace(study="chiar-former", preset="cpu", out=str(tmp_path),
                              page=str(tmp_path / "CLAIMS.md"), data_dir=None, check=True,
                              reference=str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="missing.json does not exist"):
        reproduce(args)


def test_claim6_inconclusive_is_not_testable_and_a_clear_edge_is_supported():
    def acc(key, values):
        return [rec(key, s, test={"accuracy": a}) for s, a in enumerate(values)]

    edge = acc("listops-attn", [0.50, 0.52, 0.51]) + acc("listops-entropy", [0.40, 0.41, 0.39])
    assert verdict(6, edge).status == SUPPORTED
    noisy = acc("listops-attn", [0.44, 0.45, 0.42]) + acc("listops-entropy", [0.43, 0.42, 0.43])
    v = verdict(6, noisy)
    assert v.status == NOT_TESTABLE and "inconclusive" in v.why
    worse = acc("listops-attn", [0.40, 0.41, 0.39]) + acc("listops-entropy", [0.50, 0.52, 0.51])
    assert verdict(6, worse).status == CONTRADICTED


def test_claims_5_and_7_say_what_testing_them_would_take():
    for number in (5, 7):
        v = verdict(number, [])
        assert v.status == NOT_TESTABLE and "H100 GPU-hours" in v.why
    assert "WikiText-103" in verdict(7, []).why


def test_claim8_leak_explains_the_gain_or_not():
    attn = lm("lm-attn", [60, 61, 62])
    causal = lm("lm-entropy", [60.5, 61, 61.5]) + lm("lm-meta", [60, 61, 62])
    leak = lm("lm-entropy-leaky", [30, 31, 29]) + lm("lm-meta-batch", [60, 61, 62.1])
    v = verdict(8, attn + causal + leak)
    assert v.status == SUPPORTED and len(v.details) == 3  # two forms and the budget note
    assert "leaky" in v.details[0]
    no_leak = lm("lm-entropy-leaky", [60.4, 61.1, 61.4]) + lm("lm-meta-batch", [60, 61, 62])
    assert verdict(8, attn + causal + no_leak).status == CONTRADICTED
    # the causal form has the same large gain: the leak does not explain it
    big_causal = lm("lm-entropy", [30, 31, 29]) + lm("lm-meta", [30, 31, 29])
    both = lm("lm-entropy-leaky", [20, 21, 19]) + lm("lm-meta-batch", [20, 21, 19])
    assert verdict(8, attn + big_causal + both).status == CONTRADICTED


def test_page_lists_every_claim_and_marks_leaky_runs():
    records = lm("lm-attn", [60, 61, 62]) + lm("lm-entropy-leaky", [30, 31, 29])
    page = render(Evidence(records, "cpu"), CLAIMS, "python -m harness reproduce chiar-former")
    for c in CLAIMS:
        assert f"## {c.number}. " in page
    assert "entropy dct-leaky+attn ⚠ leaky" in page
    assert page.count("| **") == len(CLAIMS)


def test_check_fails_on_a_stale_page_and_passes_on_a_fresh_one(tmp_path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for r in lm("lm-attn", [60, 61]):
        (runs / f"{r.run_id}.json").write_text(r.model_dump_json())
    page = tmp_path / "CLAIMS.md"
    args = argparse.Namespace(study="chiar-former", preset="cpu", out=str(runs),
                              page=str(page), data_dir=None, check=True,
                              reference=str(REFERENCE))
    assert reproduce(args) == 1  # missing page
    page.write_text(render(Evidence([RunRecord.model_validate(json.loads(p.read_text()))
                                     for p in sorted(runs.glob("*.json"))], "cpu"),
                           CLAIMS, "python -m harness reproduce chiar-former --preset cpu"))
    assert reproduce(args) == 0
    page.write_text(page.read_text().replace("supported", "SUPPORTED"))
    assert reproduce(args) == 1


def test_reproduce_cells_are_seed_major_and_skip_finished_records(tmp_path):
    from harness.report.claims.sweep_runs import cells_for, run_missing
    from harness.sweep import record_path_of

    specs = [SPEC_BY_KEY["listops-attn"], SPEC_BY_KEY["mix-attn"], SPEC_BY_KEY["lm-attn"]]
    cells = cells_for(specs, "cpu", [0, 1], out=str(tmp_path), work_dir=str(tmp_path / "w"))
    # mix cannot run at the cpu scale: no cell for it
    assert [(c.task, c.seed) for c in cells] == [("listops", 0), ("wikitext2", 0),
                                                 ("listops", 1), ("wikitext2", 1)]
    for cell in cells:
        path = record_path_of(cell.overrides)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "finished"}))
    assert run_missing(cells, tmp_path / "logs", log=lambda m: None)
    assert all(c.status == "done before" for c in cells)


def test_the_committed_listops_records_are_the_claims_cells():
    """The claims reuse the committed ListOps runs: their cells resolve to those records."""
    from pathlib import Path

    from harness.report.claims.runs import overrides
    from harness.sweep import record_path_of

    for key in ("listops-attn", "listops-entropy", "listops-meta"):
        path = record_path_of(overrides(SPEC_BY_KEY[key], "cpu", 0, out="results/runs"))
        assert (Path(__file__).parents[1] / path).exists(), path


def test_claim7_at_the_paper_setting():
    def run(key, ppls, flops):
        return [rec(key, s, test={"perplexity": p}, setting="paper", flops=flops)
                for s, p in enumerate(ppls)]

    attn = run("lm400m-attn", [23.5, 23.6, 23.7], 8.4e8)
    ok = judge(CLAIM[7], Evidence(attn + run("lm400m-entropy", [27.0, 27.9, 27.4], 5.2e8),
                                  "paper"))
    assert ok.status == SUPPORTED and "38.1% fewer FLOPs" in ok.ours
    cheap_and_good = run("lm400m-entropy", [23.5, 23.6, 23.8], 8.0e8)
    assert judge(CLAIM[7], Evidence(attn + cheap_and_good, "paper")).status == CONTRADICTED
    assert judge(CLAIM[7], Evidence(attn, "paper")).status == NOT_TESTABLE
