"""The claims' verdict rules (harness/report/claims/) against synthetic records: supported,
contradicted, inconclusive and not testable here; the paper's numbers read from
results/reference.json; the page's freshness check. Language modelling's tuning, plateau, floor,
commit and budget rules are in tests/test_claims_lm.py."""

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
from harness.report.claims.rules import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED
from harness.report.claims.runs import LR_GRID, SPEC_BY_KEY, tuned
from registry import ConfigError, DataError

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference.json"
CLAIMS = claims(load_paper(REFERENCE)[0])
CLAIM = {c.number: c for c in CLAIMS}
_DIGESTS: dict[tuple[str, str, float | None], str] = {}
CHOSEN = 2e-3  # the learning rate the synthetic tuning families choose
COMMIT = {"git_commit": "c0ffee" + "0" * 34, "git_dirty": False}
STEP_TOKENS = 2048  # training tokens per step of the synthetic runs
CAP = 3000  # their step cap


def rec(key, seed, *, valid_ppl=None, test=None, attn_frac=1.0, flags=(), gates=None,
        history=None, setting="cpu", flops=None, test_gate=None, lr=None, curve=None,
        plateau=True, environment=COMMIT, status="finished", best=None):
    """A synthetic record of ``key``'s configuration. ``curve``: full validation perplexity at
    steps 250, 500, ... (the final value is its best unless ``valid_ppl`` says otherwise);
    ``best``: the best-validation checkpoint's metrics."""
    spec = SPEC_BY_KEY[key]
    if lr is None and tuned(spec, setting):
        lr = CHOSEN
    if (key, setting, lr) not in _DIGESTS:
        _DIGESTS[key, setting, lr] = spec_digest(spec, setting, lr=lr)
    curve = list(curve or [])
    if valid_ppl is None and curve:
        valid_ppl = min(curve)
    metrics = {"valid": {} if valid_ppl is None else {"perplexity": valid_ppl},
               "test": dict(test or {})}
    telemetry = {"gate_history": [{"step": 10 * i, "gate": [g, g]}
                                  for i, g in enumerate(gates or [])],
                 "routing_history": history or []}
    steps = 250 * len(curve) if curve else (10 * len(gates) if gates else 1000)
    return RunRecord.model_validate({
        "run_id": f"{key}-{lr}-{seed}", "created": "2026-01-01T00:00:00+00:00",
        "task": "t", "router": spec.router, "operators": list(spec.ops), "seed": seed,
        "preset": "cpu", "config": {"budget": {"max_steps": CAP}},
        "config_hash": _DIGESTS[key, setting, lr],
        "flags": list(flags) + (["leaky: test"] if spec.leaky else []),
        "metrics": metrics if status == "finished" else {},
        "task_metric": "accuracy" if spec.family == "listops" else "perplexity",
        "higher_is_better": spec.family == "listops",
        "cost": {"test": {"attention_flop_fraction": attn_frac, "model_flops_per_token": flops,
                          "per_layer": [] if test_gate is None else [
                              {"dct": {}, "attn": {}, "gate_mean": test_gate + d}
                              for d in (-0.01, 0.01)]}},
        "training": {"steps": steps, "train_tokens": steps * STEP_TOKENS,
                     "plateau": {"reached": plateau, "patience": 3, "min_delta": 0.002},
                     "history": [{"step": 250 * (i + 1), "valid": {"perplexity": v}}
                                 for i, v in enumerate(curve)]},
        "best_checkpoint": None if best is None else {"step": steps, "metrics": best},
        "parameters": 1, "data": {}, "environment": dict(environment),
        "telemetry": telemetry, "status": status})


def lm(key, ppls, *, worse=1.2, **kw):
    """A tuned spec's records: the grid at seed 0 (the values not chosen ``worse`` times the
    chosen one's perplexity), the chosen value (CHOSEN) at every seed."""
    out = [rec(key, s, valid_ppl=p, **kw) for s, p in enumerate(ppls)]
    return out + [rec(key, 0, valid_ppl=ppls[0] * worse, lr=lr, **kw)
                  for lr in LR_GRID if lr != CHOSEN]


def floor_records(identity=(90, 91, 92)):
    """The no-mixing floor, well above attention's 60-62: the floor gate passes."""
    return lm("lm-identity", list(identity))


def verdict(number, records):
    return judge(CLAIM[number], Evidence(records, "cpu"))


def test_claim1_supported_contradicted_inconclusive_and_not_testable():
    attn = lm("lm-attn", [60, 62, 61]) + floor_records()
    v = verdict(1, attn + lm("lm-entropy", [30, 31, 29]))
    assert v.status == SUPPORTED and "30.00 ± 1.00 (n=3) vs 61.00 ± 1.00 (n=3)" == v.ours
    assert verdict(1, attn + lm("lm-entropy", [61, 63, 62])).status == CONTRADICTED  # worse
    # a tie whose CI excludes the paper's 45% gain contradicts the claim
    tie = verdict(1, attn + lm("lm-entropy", [59.5, 62.6, 60.2]))
    assert tie.status == CONTRADICTED and "outside the 95% CI" in tie.why
    # a CI that holds both 0 and the paper's gain: inconclusive, and wider than the gain the
    # claim names, so 5 seeds are needed
    wide = verdict(1, attn + lm("lm-entropy", [20, 75, 45]))
    assert wide.status == INCONCLUSIVE and "5 seeds are needed" in wide.why
    assert "--seeds 0,1,2,3,4" in wide.why
    two_seeds = verdict(1, attn + lm("lm-entropy", [30, 31]))
    assert two_seeds.status == NOT_TESTABLE and "needs 3" in two_seeds.why
    none = verdict(1, attn)
    assert none.status == NOT_TESTABLE and none.why.startswith("no records of entropy dct+attn")


def test_claim2_is_about_the_measured_attention_flop_fraction():
    base = lm("lm-attn", [60, 62, 61]) + floor_records()
    assert verdict(2, base + lm("lm-entropy", [50] * 3, attn_frac=0.38)).status == SUPPORTED
    v = verdict(2, base + lm("lm-entropy", [50] * 3, attn_frac=0.70))
    assert v.status == CONTRADICTED and "0.700" in v.ours
    assert verdict(2, base).status == NOT_TESTABLE
    assert not v.budgets  # measured on the final weights only: no budget curve


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


def meta_batch(test_gate, gates, **kw):
    return lm("lm-meta-batch", [50, 51, 52], test_gate=test_gate, gates=gates, **kw)


def test_claim4_reads_the_test_gate_of_a_settled_gate():
    base = lm("lm-attn", [60, 62, 61]) + floor_records()
    settled = [0.375] * 6 + [0.40] * 2
    v = verdict(4, base + meta_batch(0.23, settled))
    assert v.status == SUPPORTED and "0.230" in v.ours  # the test gate, not the training tail
    assert "settled below 0.02" in " ".join(v.details)
    assert verdict(4, base + meta_batch(0.40, settled)).status == CONTRADICTED
    assert verdict(4, base + meta_batch(None, settled)).status == NOT_TESTABLE  # no test gate


def test_claim4_a_gate_still_moving_over_the_last_quarter_has_not_settled():
    base = lm("lm-attn", [60, 62, 61]) + floor_records()
    falling = [0.40 - 0.01 * i for i in range(16)]  # 0.04 over the last quarter
    v = verdict(4, base + meta_batch(0.23, falling))
    assert v.status == NOT_TESTABLE and "has not settled" in v.why and "0, 1, 2" in v.why
    assert "0.230" in v.ours  # the measurement is still shown


def test_the_claims_read_the_papers_numbers_from_the_reference_file(tmp_path):
    data = json.loads(REFERENCE.read_text())
    data["numbers"][0]["value"] = 0.40  # meta-gate
    data["rows"][0]["value"] = 60.0  # chiar-4l: a 10% gain instead of 45%
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(data))
    moved = {c.number: c for c in claims(load_paper(path)[0])}
    assert moved[4].text == "the MetaRouter gate settles near g = 0.4"
    records = lm("lm-attn", [60, 62, 61]) + floor_records() + meta_batch(0.40, [0.4] * 8)
    assert judge(moved[4], Evidence(records, "cpu")).status == SUPPORTED
    assert verdict(4, records).status == CONTRADICTED  # against the committed 0.22
    assert moved[1].paper == "val PPL 60 vs 66.62" and moved[8].paper.startswith("the 10% ")
    del data["numbers"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="no row with id 'meta-gate'"):
        claims(load_paper(path)[0])


def reproduce_args(tmp_path, **extra):
    values = dict(study="chiar-former", preset="cpu", out=str(tmp_path),
                  page=str(tmp_path / "CLAIMS.md"), plots=str(tmp_path / "plots"),
                  data_dir=None, check=True, reference=str(REFERENCE), render_only=False,
                  seeds="0,1,2", work_dir=str(tmp_path / "work"), jobs=1, dry_run=False)
    values.update(extra)
    return argparse.Namespace(**values)


def test_reproduce_without_the_reference_file_is_one_line(tmp_path):
    args = reproduce_args(tmp_path, reference=str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="missing.json does not exist"):
        reproduce(args)


def test_the_cpu_setting_refuses_a_data_dir_that_would_change_its_hashes(tmp_path):
    with pytest.raises(ConfigError, match="--data-dir is for --preset paper"):
        reproduce(reproduce_args(tmp_path, data_dir="/elsewhere"))


def test_claim6_inconclusive_is_tested_not_untestable_and_a_clear_edge_is_supported():
    def acc(key, values):
        return [rec(key, s, test={"accuracy": a}) for s, a in enumerate(values)]

    edge = acc("listops-attn", [0.50, 0.52, 0.51]) + acc("listops-entropy", [0.40, 0.41, 0.39])
    assert verdict(6, edge).status == SUPPORTED
    noisy = acc("listops-attn", [0.44, 0.45, 0.42]) + acc("listops-entropy", [0.43, 0.42, 0.43])
    v = verdict(6, noisy)
    assert v.status == INCONCLUSIVE and "CI includes 0" in v.why
    assert "5 seeds" not in v.why  # the claim names no effect to resolve
    worse = acc("listops-attn", [0.40, 0.41, 0.39]) + acc("listops-entropy", [0.50, 0.52, 0.51])
    assert verdict(6, worse).status == CONTRADICTED
    assert verdict(6, acc("listops-attn", [0.5])).status == NOT_TESTABLE


def test_claim7_says_what_testing_it_would_take():
    v = verdict(7, [])
    assert v.status == NOT_TESTABLE and "H100 GPU-hours" in v.why
    assert "WikiText-103" in v.why


def test_claim8_leak_explains_the_gain_or_not():
    attn = lm("lm-attn", [60, 61, 62]) + floor_records()
    causal = lm("lm-entropy", [60.5, 61, 61.5]) + lm("lm-meta", [60, 61, 62])
    leak = lm("lm-entropy-leaky", [30, 31, 29]) + lm("lm-meta-batch", [60, 61, 62.1])
    v = verdict(8, attn + causal + leak)
    assert v.status == SUPPORTED and len(v.details) == 2  # the two leaky forms
    assert "leaky" in v.details[0]
    no_leak = lm("lm-entropy-leaky", [60.4, 61.1, 61.4]) + lm("lm-meta-batch", [60, 61, 62])
    assert verdict(8, attn + causal + no_leak).status == CONTRADICTED
    # the causal form has the same large gain: the leak does not explain it
    big_causal = lm("lm-entropy", [30, 31, 29]) + lm("lm-meta", [30, 31, 29])
    both = lm("lm-entropy-leaky", [20, 21, 19]) + lm("lm-meta-batch", [20, 21, 19])
    assert verdict(8, attn + big_causal + both).status == CONTRADICTED
    # noisy leak gains whose CIs hold both answers: inconclusive, 5 seeds needed
    noisy = lm("lm-entropy-leaky", [40, 75, 50]) + lm("lm-meta-batch", [40, 75, 50])
    v = verdict(8, attn + causal + noisy)
    assert v.status == INCONCLUSIVE and all("5 seeds are needed" in d for d in v.details)


def test_page_lists_every_claim_and_marks_leaky_runs():
    records = lm("lm-attn", [60, 61, 62]) + lm("lm-entropy-leaky", [30, 31, 29])
    page = render(Evidence(records, "cpu"), CLAIMS, "python -m harness reproduce chiar-former")
    for c in CLAIMS:
        assert f"## {c.number}. " in page
    assert "entropy dct-leaky+attn ⚠ leaky" in page
    assert page.count("| **") == len(CLAIMS)  # no budget tables without records at a plateau
    assert "**inconclusive** (tested: the 95% CI holds both answers)" in page
    assert "**not testable here** (could not be tested" in page


def write_records(directory: Path, records: list[RunRecord]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for r in records:
        (directory / f"{r.run_id}.json").write_text(r.model_dump_json())


def test_check_fails_on_a_stale_page_and_render_only_makes_it_fresh(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_records(runs, lm("lm-attn", [60, 61]))
    args = reproduce_args(tmp_path, out=str(runs))
    assert reproduce(args) == 1  # missing page
    assert reproduce(reproduce_args(tmp_path, out=str(runs), check=False,
                                    render_only=True)) == 0
    assert reproduce(args) == 0
    page = Path(args.page)
    page.write_text(page.read_text().replace("supported", "SUPPORTED"))
    assert reproduce(args) == 1


def test_the_committed_listops_records_are_the_claims_cells():
    """The claims reuse the committed ListOps runs: their cells resolve to those records."""
    from harness.report.claims.runs import overrides
    from harness.sweep import record_path_of

    for key in ("listops-attn", "listops-entropy", "listops-meta"):
        path = record_path_of(overrides(SPEC_BY_KEY[key], "cpu", 0, out="results/runs"))
        assert (Path(__file__).parents[1] / path).exists(), path


def test_claim7_at_the_paper_setting():
    def run(key, ppls, flops):
        return [rec(key, s, test={"perplexity": p}, setting="paper", flops=flops)
                for s, p in enumerate(ppls)]

    floor = [rec(k, s, valid_ppl=p, setting="paper") for k, ppls in
             (("lm-attn", [40, 41, 42]), ("lm-identity", [60, 61, 62]))
             for s, p in enumerate(ppls)]
    attn = run("lm400m-attn", [23.5, 23.6, 23.7], 8.4e8) + floor
    ok = judge(CLAIM[7], Evidence(attn + run("lm400m-entropy", [27.0, 27.9, 27.4], 5.2e8),
                                  "paper"))
    assert ok.status == SUPPORTED and "38.1% fewer FLOPs" in ok.ours
    cheap_and_good = run("lm400m-entropy", [23.5, 23.6, 23.8], 8.0e8)
    assert judge(CLAIM[7], Evidence(attn + cheap_and_good, "paper")).status == CONTRADICTED
    assert judge(CLAIM[7], Evidence(attn, "paper")).status == NOT_TESTABLE
