"""CHIAR-Former's claims (arXiv 2606.08327, DESIGN.md), each as data: what it says, the
paper's number, the runs it needs and the rule that turns those runs into a verdict.

The paper's numbers come from results/reference.json (``Paper``), by id; the tolerances and
thresholds below are this project's choices, stated in each rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.metrics import fixed
from harness.core.records import RunRecord, task_measure
from harness.core.stats import compare, mean
from harness.report.claims import rules
from harness.report.claims.evidence import (
    ATTENTION_FLOP_FRACTION,
    GATE,
    MODEL_FLOPS_PER_TOKEN,
    TEST_PPL,
    TOP_TOKEN_SHARE,
    VALID_PPL,
    Evidence,
)
from harness.report.claims.paper import Paper
from harness.report.claims.rules import CONTRADICTED, NOT_TESTABLE, SUPPORTED, Verdict
from harness.report.markdown import mean_std

SOURCE = "chiar-former"  # the paper, in the reference file's sources
LARGE_GAIN = 0.10  # claim 8: a "large" gain is 10% of the comparison's perplexity or more
FRACTION_TOLERANCE = 0.025  # claim 2: measured attention FLOP fraction above the paper's
GATE_TOLERANCE = 0.05  # claim 4: distance of the gate from the paper's
SAVING_TOLERANCE = 0.05  # claim 7: on each side of the paper's FLOP saving range


@dataclass(frozen=True)
class Claim:
    number: int
    text: str
    paper: str  # the paper's number, as it states it
    needs: tuple[str, ...]  # run spec keys (harness/report/claims/runs.py)
    rule_text: str  # the rule, in words; the code in `judge` is the rule
    judge: Callable[[Evidence], Verdict]
    takes: str = ""  # what testing it would take where the setting cannot run it
    note: str = ""  # how to read it on the board
    # the measurement that bears on the claim in any board row (its seeds' records), in
    # words, or None where the row does not have it
    on_board: Callable[[list[RunRecord]], str | None] | None = field(default=None)


def _claim1(ev: Evidence, gain: float) -> Verdict:
    # validation perplexity: what the paper reports
    return rules.beats(ev.runs("lm-entropy"), ev.runs("lm-attn"), VALID_PPL, paper_gain=gain)


def _claim2(ev: Evidence, limit: float) -> Verdict:
    v = rules.at_most(ev.runs("lm-entropy"), ATTENTION_FLOP_FRACTION, limit=limit,
                      tolerance=FRACTION_TOLERANCE, label="attention FLOP fraction")
    v.details.append("measured from the tokens really routed on the test split, charged what "
                     "the routed execution computes (harness/engine/meters/cost.py)")
    shares = ev.runs("lm-entropy").values(TOP_TOKEN_SHARE)
    if shares:
        v.details.append(f"share of tokens routed to attention: "
                         f"{rules.summary(shares, TOP_TOKEN_SHARE.metric.digits)}; causal "
                         "attention for a routed query costs the keys its execution computes, "
                         "so FLOPs need not fall as fast as the token share")
    return v


def _claim3(ev: Evidence) -> Verdict:
    return rules.rejects(ev.runs("listops-learned3"), "rbf")


def _rbf_share(records: list[RunRecord]) -> str | None:
    shares = [s for r in records if (s := r.test_cost.operator_share("rbf")) is not None]
    if not shares:
        return None
    return f"rbf share {fixed(mean(shares), 3)} (mean over layers and seeds)"


def _claim4(ev: Evidence, target: float) -> Verdict:
    paper_form = ev.runs("lm-meta-batch")
    v = rules.near(paper_form, GATE, target=target, tolerance=GATE_TOLERANCE,
                   label="test gate of the paper's batch-mean MetaRouter")
    v.ours = f"{paper_form.label}: {v.ours}"
    for key in ("lm-meta", "listops-meta"):
        runs = ev.runs(key)
        values = runs.values(GATE)
        if values:
            v.details.append(f"{runs.spec.family} {runs.label}: test gate "
                             f"{rules.summary(values, GATE.metric.digits)}")
    v.details.append("every MetaRouter starts at g = attn_fraction = 0.375 (routers/meta.py)")
    return v


def _test_gate(records: list[RunRecord]) -> str | None:
    gates = [g for r in records if (g := GATE(r)) is not None]
    if not gates:
        return None
    return f"test gate {mean_std(gates, GATE.metric.digits)} ({len(gates)} seeds)"


def _claim5(ev: Evidence) -> Verdict:
    return rules.beats(ev.runs("mix-entropy"), ev.runs("mix-attn"),
                       task_measure("test", "wikitext2/perplexity"))


def _claim6(ev: Evidence) -> Verdict:
    return rules.beats(ev.runs("listops-attn"), ev.runs("listops-entropy"),
                       task_measure("test", "accuracy"))


def _claim7(ev: Evidence, gap: float, saving: tuple[float, float]) -> Verdict:
    a, b = ev.runs("lm400m-entropy"), ev.runs("lm400m-attn")
    v = rules.beats(a, b, TEST_PPL)
    if v.status == NOT_TESTABLE and rules.missing(a, b):
        return v
    fa, fb = a.values(MODEL_FLOPS_PER_TOKEN), b.values(MODEL_FLOPS_PER_TOKEN)
    if not fa or not fb:
        return Verdict(NOT_TESTABLE, v.ours, v.test, why="records lack model FLOPs per token")
    ours = 1 - mean(list(fa.values())) / mean(list(fb.values()))
    c = compare(a.values(TEST_PPL), b.values(TEST_PPL))
    ok_flops = saving[0] - SAVING_TOLERANCE <= ours <= saving[1] + SAVING_TOLERANCE
    ok_ppl = c is not None and c.ci_low <= gap <= c.ci_high
    status = SUPPORTED if ok_flops and ok_ppl else CONTRADICTED
    return Verdict(status, f"{v.ours}; {ours:.1%} fewer FLOPs per token", v.test,
                   f"FLOP saving {ours:.1%} {'in' if ok_flops else 'outside'} "
                   f"{_percent_range(saving, SAVING_TOLERANCE)}; +{gap:.2f} PPL "
                   f"{'inside' if ok_ppl else 'outside'} the 95% CI")


def _claim8(ev: Evidence) -> Verdict:
    pairs = [("lm-entropy-leaky", "lm-entropy"), ("lm-meta-batch", "lm-meta")]
    verdicts = [leak_explains_gain(ev, leaky, causal, "lm-attn") for leaky, causal in pairs]
    details = [f"{ev.runs(leaky).label} vs {ev.runs(causal).label}: {v.status}: {v.why}"
               + (f" ({v.test})" if v.test != "—" else "")
               for (leaky, causal), v in zip(pairs, verdicts, strict=True)]
    statuses = [v.status for v in verdicts]
    status = SUPPORTED if SUPPORTED in statuses else \
        CONTRADICTED if all(s == CONTRADICTED for s in statuses) else NOT_TESTABLE
    details.append("a model exploits a leak only once it has learned to read it: the "
                   "verdict holds at the budget in the scale column, not beyond it")
    first = verdicts[0]
    return Verdict(status, first.ours, first.test,
                   "supported if any leaky form passes; per form:", details)


def leak_explains_gain(ev: Evidence, leaky: str, causal: str, baseline: str) -> Verdict:
    """The leaky form beats its causal form by a large, significant margin (>= LARGE_GAIN of
    the causal form's perplexity, CI excluding 0), while the causal form does not beat full
    attention by that much: supported. The CI excludes a large leak gain, or the causal form
    has the large gain too: contradicted. Otherwise inconclusive."""
    a, b, base = ev.runs(leaky), ev.runs(causal), ev.runs(baseline)
    digits = VALID_PPL.metric.digits
    why = rules.missing(a, b, base)
    va, vb, vbase = a.values(VALID_PPL), b.values(VALID_PPL), base.values(VALID_PPL)
    ours = (f"{a.label} {rules.summary(va, digits)} vs {b.label} {rules.summary(vb, digits)}; "
            f"{base.label} {rules.summary(vbase, digits)}") if va and vb and vbase else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    leak, causal_gain = compare(va, vb), compare(vb, vbase)
    assert leak is not None and causal_gain is not None
    scale = abs(leak.mean_b)
    gain, best_gain = -leak.diff / scale, -leak.ci_low / scale  # relative, of the causal PPL
    cgain = -causal_gain.diff / abs(causal_gain.mean_b)
    test = rules.test_text(leak, digits)
    text = (f"leak gain {gain:.1%} of the causal perplexity (CI up to {best_gain:.1%}); "
            f"causal vs full attention {cgain:+.1%}")
    if best_gain < LARGE_GAIN or (causal_gain.ci_high < 0 and cgain >= LARGE_GAIN):
        return Verdict(CONTRADICTED, ours, test, text)
    if leak.ci_high < 0 and gain >= LARGE_GAIN and cgain < LARGE_GAIN:
        return Verdict(SUPPORTED, ours, test, text)
    return Verdict(NOT_TESTABLE, ours, test, text + ": inconclusive at this number of seeds")


def _percent_range(bounds: tuple[float, float], widen: float = 0.0) -> str:
    return f"{100 * (bounds[0] - widen):g}-{100 * (bounds[1] + widen):g}%"


BEATS = ("supported if A is significantly better (95% CI of the difference excludes 0) and "
         "the CI does not exclude the paper's gain as too large; contradicted if A is "
         "significantly worse or the CI excludes the paper's gain; otherwise inconclusive "
         "(not testable at this number of seeds)")
BEATS_NO_SIZE = ("supported if A is significantly better (95% CI of the difference excludes "
                 "0), contradicted if significantly worse, otherwise inconclusive (not "
                 "testable at this number of seeds)")


def claims(paper: Paper) -> list[Claim]:
    """The eight claims, with the paper's numbers read from ``paper``."""
    ppl, ppl_attn = paper.value("chiar-4l"), paper.value("attn-4l")
    gain = 1 - ppl / ppl_attn
    fraction = paper.stated("chiar-4l", "attention_flop_fraction")
    gate = paper.value("meta-gate")
    big, big_attn = paper.value("chiar-400m"), paper.value("attn-400m")
    saving = paper.stated("chiar-400m", "flop_saving")
    return [
        Claim(1, "DCT+attention beats full attention on WikiText-103 (4 layers)",
              f"val PPL {ppl:g} vs {ppl_attn:g}", ("lm-entropy", "lm-attn"),
              "A = entropy dct+attn, B = single attn, validation perplexity; " + BEATS,
              lambda ev: _claim1(ev, gain)),
        Claim(2, f"...at {1 - fraction:.1%} fewer attention FLOPs",
              f"attention FLOP fraction {fraction:g}", ("lm-entropy",),
              f"supported if the measured attention FLOP fraction of entropy dct+attn, mean "
              f"over seeds, is at most {fraction:g} + {FRACTION_TOLERANCE:g}; contradicted if "
              f"above", lambda ev: _claim2(ev, fraction)),
        Claim(3, "routing collapse: a router over dct, rbf, attn rejects rbf",
              "rbf is \"rejected\" (no number given)", ("listops-learned3",),
              "learned router over dct+rbf+attn; supported if rbf is flagged `collapsed` "
              "(share below 2% of tokens for the rest of training, at least the last quarter "
              "of it) in a majority of seeds, contradicted otherwise", _claim3,
              note="Calibrated band routers (entropy, random) hold each operator's token "
                   "share at its target by construction and cannot reject an operator; only "
                   "learned routers (learned, meta) can",
              on_board=_rbf_share),
        Claim(4, f"the MetaRouter gate settles near g = {gate:g}", f"g ≈ {gate:g}",
              ("lm-meta-batch", "lm-meta", "listops-meta"),
              f"the paper's form (meta-batch, leaky) on language modelling; test gate = the "
              f"trained model's gate on the test split, mean over layers; supported if the "
              f"mean over seeds is within {gate:g} ± {GATE_TOLERANCE:g}, contradicted "
              f"otherwise", lambda ev: _claim4(ev, gate),
              note="The paper's g weights a spectral path against an identity path; here "
                   "the gate is the weight of the top-band (last) operator, attention, in a "
                   "2-operator layer, so compare the trend, not the number",
              on_board=_test_gate),
        Claim(5, "under mixed-dataset training it beats full attention on small corpora",
              "no number given", ("mix-entropy", "mix-attn"),
              "mix task wikitext103:0.8,wikitext2:0.2; A = entropy dct+attn, B = single attn, "
              "test perplexity on the WikiText-2 component; " + BEATS_NO_SIZE, _claim5,
              takes="two language-modelling corpora with training splits: only WikiText-2's "
                    "validation and test files are on this machine (IMDB is not an LM "
                    "corpus)"),
        Claim(6, "full attention keeps an edge on small datasets and synthetic tasks (ListOps)",
              "no number given", ("listops-attn", "listops-entropy"),
              "A = single attn, B = entropy dct+attn, ListOps test accuracy; " + BEATS_NO_SIZE,
              _claim6),
        Claim(7, f"at 400M parameters: {_percent_range(saving)} fewer FLOPs for "
                 f"+{big - big_attn:.2f} test PPL",
              f"test PPL {big:g} vs {big_attn:g}, {_percent_range(saving)} fewer FLOPs",
              ("lm400m-entropy", "lm400m-attn"),
              f"preset paper-400m on WikiText-103; supported if the model FLOPs per token "
              f"saving of entropy dct+attn over single attn is within "
              f"{_percent_range(saving, SAVING_TOLERANCE)} and +{big - big_attn:.2f} test PPL "
              f"lies in the 95% CI of the difference; contradicted otherwise",
              lambda ev: _claim7(ev, big - big_attn, saving),
              takes="a GPU and WikiText-103's training split"),
        Claim(8, "(ours) the paper's leaky forms (dct-leaky, meta-batch) explain a large gain "
                 "that the causal forms do not have", f"the {gain:.0%} PPL gain of claim 1",
              ("lm-entropy-leaky", "lm-entropy", "lm-meta-batch", "lm-meta", "lm-attn"),
              "per leaky form against its causal form (validation perplexity): supported if "
              f"the leaky form is better by at least {LARGE_GAIN:.0%} with a CI excluding 0 "
              f"while the causal form is not {LARGE_GAIN:.0%} better than full attention; "
              f"contradicted if the CI excludes a {LARGE_GAIN:.0%} leak gain or the causal "
              "form has the large gain too; the claim is supported if any leaky form is",
              _claim8),
    ]
