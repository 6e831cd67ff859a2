"""Language-modelling claims (harness/report/claims/): tuned runs, judged at the plateau, above
the no-mixing floor, on one clean commit, and at smaller budgets; reproduce's tuning stages.
Synthetic records only: nothing trains here."""

from __future__ import annotations

import json

from test_claims import (
    CAP,
    CHOSEN,
    CLAIM,
    COMMIT,
    STEP_TOKENS,
    floor_records,
    lm,
    rec,
    reproduce_args,
    verdict,
    write_records,
)

from harness.core.records import RunRecord
from harness.report.claims.budgets import moves
from harness.report.claims.evidence import Evidence, valid_until
from harness.report.claims.render import render
from harness.report.claims.reproduce import run as reproduce
from harness.report.claims.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    Verdict,
)
from harness.report.claims.runs import LR_GRID, SPEC_BY_KEY


def test_tuning_chooses_the_best_validation_value_at_the_first_seed():
    # seed 0: 1e-3 best (valid 50), 2e-3 worse, 4e-3 diverged; seeds 1, 2 at the chosen 1e-3
    records = [rec("lm-attn", 0, lr=1e-3, valid_ppl=50), rec("lm-attn", 0, lr=2e-3, valid_ppl=55),
               rec("lm-attn", 0, lr=4e-3, status="diverged")]
    records += [rec("lm-attn", s, lr=1e-3, valid_ppl=51) for s in (1, 2)]
    records += [rec("lm-attn", s, lr=2e-3, valid_ppl=40) for s in (1, 2)]  # not the choice
    runs = Evidence(records, "cpu").runs("lm-attn")
    assert runs.tuning.chosen == 1e-3 and runs.tuning.seed == 0
    assert runs.seeds == [0, 1, 2] and runs.values(lambda r: r.metrics["valid"]["perplexity"]) \
        == {0: 50, 1: 51, 2: 51}
    text = runs.tuning.text()
    assert "lr tuned over 1e-3, 2e-3, 4e-3 at seed 0" in text and "chose 1e-3" in text
    assert "50.00, 55.00, no valid metric" in text


def test_tuning_reads_the_best_validation_checkpoint_like_the_sweep():
    # the final weights of 2e-3 look better, its best-validation checkpoint does not
    best = {"valid": {"perplexity": 58.0}, "test": {"perplexity": 59.0}}
    records = [rec("lm-attn", 0, lr=1e-3, valid_ppl=50),
               rec("lm-attn", 0, lr=2e-3, valid_ppl=45, best=best),
               rec("lm-attn", 0, lr=4e-3, valid_ppl=60)]
    assert Evidence(records, "cpu").runs("lm-attn").tuning.chosen == 1e-3


def test_an_unfinished_grid_chooses_nothing_and_says_what_is_missing():
    records = [rec("lm-attn", 0, lr=1e-3, valid_ppl=50), rec("lm-attn", 0, lr=2e-3, valid_ppl=55)]
    records += [rec("lm-attn", s, lr=1e-3, valid_ppl=51) for s in (1, 2)]
    runs = Evidence(records, "cpu").runs("lm-attn")
    assert runs.tuning.chosen is None and runs.records == []
    v = verdict(1, records + lm("lm-entropy", [30, 31, 29]) + floor_records())
    assert v.status == NOT_TESTABLE and "no run of lr 4e-3 at seed 0 yet" in v.why


def test_only_runs_at_their_plateau_are_judged_and_the_others_are_counted():
    attn = lm("lm-attn", [60, 62]) + [rec("lm-attn", 2, valid_ppl=61, plateau=False)]
    v = verdict(1, attn + lm("lm-entropy", [30, 31, 29]) + floor_records())
    assert v.status == NOT_TESTABLE
    assert "2 finished seed(s) at its plateau (seeds: 0,1)" in v.why
    assert "1 more did not reach their plateau (seeds 2" in v.why


def test_a_claim_about_a_mixer_is_judged_only_where_attention_beats_the_floor():
    attn = lm("lm-attn", [60, 62, 61])
    entropy = lm("lm-entropy", [30, 31, 29])
    v = verdict(1, attn + entropy + floor_records(identity=(59, 62, 61)))
    assert v.status == NOT_TESTABLE and "does not beat the no-mixing floor" in v.why
    assert v.ours.startswith("30.00")  # still shown
    missing = verdict(1, attn + entropy)
    assert missing.status == NOT_TESTABLE and "floor is not measured" in missing.why


def test_attention_still_improving_beats_a_floor_at_its_plateau_but_never_loses_to_it():
    # the step cap stopped every attention run short of its plateau; the floor reached its own
    from harness.report.claims.evidence import BEST_VALID_PPL
    from harness.report.claims.gates import floor

    identity = floor_records()  # 90-92, at their plateau
    short = lm("lm-attn", [60, 62, 61], plateau=False)
    v = floor(Evidence(short + identity, "cpu"), BEST_VALID_PPL)
    assert v.status == SUPPORTED and "survives a longer run" in v.why
    assert v.ours.startswith("61.00 ± 1.00 (n=3) vs 91.00")
    # behind the floor: more steps could still change it, so no verdict either way
    behind = lm("lm-attn", [95, 97, 96], plateau=False)
    v = floor(Evidence(behind + identity, "cpu"), BEST_VALID_PPL)
    assert v.status == NOT_TESTABLE and "did not reach their plateau" in v.why
    # a floor short of its plateau could still fall below attention: not judged
    v = floor(Evidence(short + lm("lm-identity", [90, 91, 92], plateau=False), "cpu"),
              BEST_VALID_PPL)
    assert v.status == NOT_TESTABLE
    # two seeds are not three
    v = floor(Evidence(lm("lm-attn", [60, 62], plateau=False) + identity, "cpu"), BEST_VALID_PPL)
    assert v.status == NOT_TESTABLE
    # a claim's own arms still need their plateau: the floor passing does not judge them
    claim = verdict(1, short + identity + lm("lm-entropy", [30, 31, 29]))
    assert claim.status == NOT_TESTABLE and "0 finished seed(s) at its plateau" in claim.why


def test_every_arm_from_one_commit_and_a_clean_tree():
    base = lm("lm-attn", [60, 62, 61]) + floor_records()
    other = {"git_commit": "beef" + "0" * 36, "git_dirty": False}
    v = verdict(1, base + lm("lm-entropy", [30, 31, 29], environment=other))
    assert v.status == NOT_TESTABLE and "2 commits (beef000, c0ffee0)" in v.why
    dirty = {**COMMIT, "git_dirty": True}
    v = verdict(1, base + lm("lm-entropy", [30, 31, 29], environment=dirty))
    assert v.status == NOT_TESTABLE and "uncommitted changes" in v.why
    ok = verdict(1, base + lm("lm-entropy", [30, 31, 29]))
    assert ok.status == SUPPORTED and ok.commit == COMMIT["git_commit"]
    page = render(Evidence(base + lm("lm-entropy", [30, 31, 29]), "cpu"), [CLAIM[1]], "cmd")
    assert f"- commit: `{COMMIT['git_commit'][:12]}` (every arm, clean tree)" in page


def curves(key, finals, early):
    """Per seed a curve at steps 250..1500 (tokens 512k..3.07M): ``early`` up to step 750,
    then falling to the seed's final value; the grid's other values stay high."""
    chosen = [rec(key, s, curve=[early + s] * 3 + [final + 5, final + 2, final])
              for s, final in enumerate(finals)]
    return chosen + [rec(key, 0, lr=lr, curve=[early * 1.3] * 6)
                     for lr in LR_GRID if lr != CHOSEN]


def test_the_budget_curve_re_applies_the_rule_and_says_when_the_verdict_moves():
    # attention improves steadily; entropy starts worse and ends far better: contradicted at
    # the small budgets, supported at the plateau
    attn = curves("lm-attn", [60, 61, 62], early=80)
    identity = curves("lm-identity", [90, 91, 92], early=95)
    entropy = curves("lm-entropy", [30, 31, 29], early=100)
    v = verdict(1, attn + identity + entropy)
    assert v.status == SUPPORTED
    labels = [label for label, _ in v.budgets]
    assert labels == [f"1/8 of the cap: {CAP * STEP_TOKENS // 8:,} tokens",
                      f"1/4 of the cap: {CAP * STEP_TOKENS // 4:,} tokens",
                      f"1/2 of the cap: {CAP * STEP_TOKENS // 2:,} tokens"]
    assert [b.status for _, b in v.budgets] == [CONTRADICTED, CONTRADICTED, SUPPORTED]
    half = f"{CAP * STEP_TOKENS // 2:,} training tokens"
    assert v.budget_note == f"budget-dependent: contradicted below {half}, supported at and above"
    page = render(Evidence(attn + identity + entropy, "cpu"), [CLAIM[1]], "cmd")
    assert "(budget-dependent: contradicted below" in page
    assert "| 1/8 of the cap: 768,000 tokens |" in page
    assert "[claims_lm.png](plots/claims_lm.png)" in page


def test_at_a_smaller_budget_the_floor_is_checked_again():
    # the identity floor is better than attention early on: no verdict at those budgets
    attn = curves("lm-attn", [60, 61, 62], early=100)
    identity = curves("lm-identity", [90, 91, 92], early=80)
    entropy = curves("lm-entropy", [30, 31, 29], early=70)
    v = verdict(1, attn + identity + entropy)
    assert v.status == SUPPORTED
    first = v.budgets[0][1]
    assert first.status == NOT_TESTABLE and "does not beat the no-mixing floor" in first.why
    assert v.budget_note == ""  # the tested verdicts agree


def test_budget_wording():
    def rows(*statuses):
        return [(f"b{i}", 1000.0 * 2 ** i, Verdict(s, "")) for i, s in enumerate(statuses)]

    final = Verdict(SUPPORTED, "")
    assert moves(rows(SUPPORTED, SUPPORTED, SUPPORTED), final) == ""
    assert moves(rows(CONTRADICTED, NOT_TESTABLE, CONTRADICTED), final) == \
        ("budget-dependent: contradicted up to 4,000 training tokens, supported at the "
         "plateau")
    assert moves(rows(CONTRADICTED, INCONCLUSIVE, SUPPORTED), final) == \
        ("budget-dependent: contradicted from 1,000 training tokens, inconclusive from 2,000 "
         "training tokens, supported from 4,000 training tokens")


def test_the_budget_value_is_the_best_so_far_at_the_nearest_evaluation():
    r = rec("lm-attn", 0, curve=[10, 8, 9, 7])  # steps 250..1000
    assert valid_until(r, "perplexity", 250 * STEP_TOKENS) == 10
    assert valid_until(r, "perplexity", 740 * STEP_TOKENS) == 8  # step 750 is 9: best so far 8
    assert valid_until(r, "perplexity", 10 ** 9) == 7
    # records whose evaluations carry their tokens use them
    data = json.loads(r.model_dump_json())
    for i, e in enumerate(data["training"]["history"]):
        e["train_tokens"] = 100 * (i + 1)
    assert valid_until(RunRecord.model_validate(data), "perplexity", 210) == 8


def test_claim5_mixed_training_against_the_small_corpus_alone():
    def tuned(key, metric, values):
        return [rec(key, s, valid_ppl=50, test={metric: v}) for s, v in enumerate(values)] + [
            rec(key, 0, lr=lr, valid_ppl=60) for lr in LR_GRID if lr != CHOSEN]

    def mix(key, values):
        return tuned(key, "wikitext2/word_perplexity", values)

    def small(key, values):
        return tuned(key, "word_perplexity", values)

    floor = lm("lm-attn", [60, 62, 61]) + floor_records()
    records = floor + mix("mix-entropy", [300, 310, 305]) + mix("mix-attn", [400, 410, 405]) \
        + small("small-entropy", [500, 510, 505]) + small("small-attn", [450, 460, 455])
    v = verdict(5, records)
    assert v.status == SUPPORTED and v.ours.startswith("305.00")
    alone = [d for d in v.details if "WikiText-2 alone" in d]
    assert len(alone) == 2 and "mixed 305.00" in alone[0] and "alone 505.00" in alone[0]
    assert any("tokenizer" in d for d in v.details)
    # the small-corpus runs are details: without them the verdict stands
    assert verdict(5, floor + mix("mix-entropy", [300, 310, 305])
                   + mix("mix-attn", [400, 410, 405])).status == SUPPORTED


def test_reproduce_tunes_at_the_first_seed_then_runs_the_chosen_value(tmp_path):
    from harness.report.claims.sweep_runs import evidence, reproduce_runs, stage1, stage2
    from harness.sweep import record_path_of

    specs = [SPEC_BY_KEY["lm-attn"], SPEC_BY_KEY["listops-attn"], SPEC_BY_KEY["lm400m-attn"]]
    where = {"out": str(tmp_path), "work_dir": str(tmp_path / "w"), "data_dir": None}
    first = stage1(specs, "cpu", [0, 1, 2], evidence(str(tmp_path), "cpu", None), **where)
    assert [(c.task, c.seed, c.overrides["optim"]["lr"]) for c in first] == \
        [("shakespeare", 0, lr) for lr in LR_GRID]
    # stage 1's records: 4e-3 has the best validation metric
    for cell, ppl in zip(first, (12.0, 11.0, 10.0), strict=True):
        r = rec("lm-attn", 0, lr=cell.overrides["optim"]["lr"], valid_ppl=ppl)
        path = record_path_of(cell.overrides)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(r.model_dump_json())
    logs = []
    second = stage2(specs, "cpu", [0, 1, 2], evidence(str(tmp_path), "cpu", None), logs.append,
                    **where)
    # seed-major; lm400m cannot run on the cpu; the tuned spec at its choice, not at seed 0
    assert [(c.task, c.seed, c.overrides.get("optim", {}).get("lr")) for c in second] == \
        [("listops", 0, None), ("shakespeare", 1, 4e-3), ("listops", 1, None),
         ("shakespeare", 2, 4e-3), ("listops", 2, None)]
    for cell in second:  # every cell finished: nothing trains, nothing fails
        path = record_path_of(cell.overrides)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "finished"}))
    assert reproduce_runs(specs, "cpu", [0, 1, 2], jobs=2, log=logs.append, **where)
    args = reproduce_args(tmp_path, check=False, dry_run=True)
    assert reproduce(args) == 0


def test_render_only_draws_the_budget_curves(tmp_path):
    runs = tmp_path / "runs"
    write_records(runs, curves("lm-attn", [60, 61, 62], early=80)
                  + curves("lm-identity", [90, 91, 92], early=95))
    args = reproduce_args(tmp_path, out=str(runs), check=False, render_only=True)
    assert reproduce(args) == 0
    assert (tmp_path / "plots" / "claims_lm.png").stat().st_size > 0
    assert not (tmp_path / "plots" / "claims_mix.png").exists()
    page = (tmp_path / "CLAIMS.md").read_text()
    assert "## The no-mixing floor" in page and "**supported**" in page.split(
        "## The no-mixing floor")[1].split("##")[0]
    assert CHOSEN == 2e-3 and "chose 2e-3" in page
