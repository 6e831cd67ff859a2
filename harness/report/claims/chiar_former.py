"""CHIAR-Former's claims (arXiv 2606.08327, DESIGN.md), each as data: what it says, the
paper's number, the runs it needs and the rule that turns those runs into a verdict.

The paper's numbers come from results/reference.json (``Paper``), by id; the tolerances and
thresholds below are this project's choices, stated in each rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from harness.core.metrics import fixed
from harness.core.records import Measure, RunRecord, task_measure
from harness.core.stats import compare, mean
from harness.report.claims import rules
from harness.report.claims.evidence import (
    ATTENTION_FLOP_FRACTION,
    BEST_TEST_PPL,
    BEST_VALID_PPL,
    GATE,
    MODEL_FLOPS_PER_TOKEN,
    TOP_TOKEN_SHARE,
    Evidence,
    best_measure,
    gate_drift,
    logged_gate,
    tokens_per_step,
    valid_at,
)
from harness.report.claims.paper import Paper
from harness.report.claims.rules import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    SUPPORTED,
    TESTED,
    Verdict,
)
from harness.report.markdown import mean_std

SOURCE = "chiar-former"  # the paper, in the reference file's sources
LARGE_GAIN = 0.10  # claim 8: a "large" gain is 10% of the comparison's perplexity or more
FRACTION_TOLERANCE = 0.025  # claim 2: measured attention FLOP fraction above the paper's
GATE_TOLERANCE = 0.05  # claim 4: distance of the gate from the paper's
GATE_SETTLED = 0.02  # claim 4: the logged gate moves less than this over the last quarter
SAVING_TOLERANCE = 0.05  # claim 7: on each side of the paper's FLOP saving range
WT2_WORD_PPL = "wikitext2/word_perplexity"  # claim 5: the mix's WikiText-2 component


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
    # the runs the verdict is computed from (default: every run it needs; the others give
    # details); a language-modelling claim's gates (harness/report/claims/gates.py) read these
    arms: tuple[str, ...] = ()
    # the rule at a smaller budget in training tokens, on validation (harness/report/claims/
    # budgets.py); None where the claim's measurement exists only for the final weights
    at_budget: Callable[[Evidence, float], Verdict] | None = field(default=None)

    @property
    def judged_on(self) -> tuple[str, ...]:
        return self.arms or self.needs


def _claim1(ev: Evidence, gain: float, value: Measure) -> Verdict:
    # validation perplexity: what the paper reports
    return rules.beats(ev.runs("lm-entropy"), ev.runs("lm-attn"), value, paper_gain=gain)


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


def _claim4(ev: Evidence, target: float, tokens: float | None = None) -> Verdict:
    """The paper's form's gate near ``target``, judged only once it has settled: at the end of
    training (the test gate) or at a budget of ``tokens`` (the logged gate)."""
    paper_form = ev.runs("lm-meta-batch")
    value = GATE if tokens is None else logged_gate(tokens)
    label = ("test gate" if tokens is None else "logged training gate") + \
        " of the paper's batch-mean MetaRouter"
    v = rules.near(paper_form, value, target=target, tolerance=GATE_TOLERANCE, label=label)
    if v.ours != "—":
        v.ours = f"{paper_form.label}: {v.ours}"
    drifts = {}
    for r in paper_form.records:
        per_step = tokens_per_step(r)
        end = r.training.steps if tokens is None else tokens / per_step if per_step else None
        drifts[r.seed] = gate_drift(r, end) if end else None
    moving = [s for s, d in drifts.items() if d is None or abs(d) >= GATE_SETTLED]
    if drifts:
        v.details.append("gate drift over the last quarter of training: " + ", ".join(
            f"seed {s} {'unlogged' if d is None else f'{d:+.3f}'}" for s, d in drifts.items())
            + f" (settled below {GATE_SETTLED:g})")
    if tokens is None:
        for key in ("lm-meta", "listops-meta"):
            runs = ev.runs(key)
            values = runs.values(GATE)
            if values:
                v.details.append(f"{runs.spec.family} {runs.label}: test gate "
                                 f"{rules.summary(values, GATE.metric.digits)}")
        v.details.append("every MetaRouter starts at g = attn_fraction = 0.375 (routers/meta.py)")
    if v.status in (SUPPORTED, CONTRADICTED) and moving:
        return Verdict(NOT_TESTABLE, v.ours, why=f"the gate has not settled: it moved "
                       f"{GATE_SETTLED:g} or more over the last quarter of training in seed(s) "
                       f"{', '.join(map(str, moving))}", details=v.details)
    return v


def _test_gate(records: list[RunRecord]) -> str | None:
    gates = [g for r in records if (g := GATE(r)) is not None]
    if not gates:
        return None
    return f"test gate {mean_std(gates, GATE.metric.digits)} ({len(gates)} seeds)"


def _claim5(ev: Evidence, value: Measure, alone: bool = True) -> Verdict:
    v = rules.beats(ev.runs("mix-entropy"), ev.runs("mix-attn"), value)
    if alone:  # each against its small-corpus-alone run
        small = best_measure("test", "word_perplexity")
        for mixed, only in (("mix-entropy", "small-entropy"), ("mix-attn", "small-attn")):
            a, b = ev.runs(mixed), ev.runs(only)
            va, vb = a.values(value), b.values(small)
            digits = value.metric.digits
            if not va or not vb:
                v.details.append(f"{a.label}: mixed vs alone not measured yet ({b.label} on "
                                 f"WikiText-2 alone: {len(vb)} seed(s))")
                continue
            c = compare(va, vb)
            test = f"; {rules.test_text(c, digits)}" if c is not None else ""
            v.details.append(f"{a.label}, test word PPL on WikiText-2: mixed "
                             f"{rules.summary(va, digits)} vs WikiText-2 alone "
                             f"{rules.summary(vb, digits)}{test}")
        v.details.append("word perplexity, because the mix's tokenizer (trained on both "
                         "corpora) and WikiText-2's own differ")
    return v


def _claim6(ev: Evidence) -> Verdict:
    return rules.beats(ev.runs("listops-attn"), ev.runs("listops-entropy"),
                       task_measure("test", "accuracy"))


def _claim7(ev: Evidence, gap: float, saving: tuple[float, float]) -> Verdict:
    a, b = ev.runs("lm400m-entropy"), ev.runs("lm400m-attn")
    v = rules.beats(a, b, BEST_TEST_PPL)
    if v.status == NOT_TESTABLE and rules.missing(a, b):
        return v
    fa, fb = a.values(MODEL_FLOPS_PER_TOKEN), b.values(MODEL_FLOPS_PER_TOKEN)
    if not fa or not fb:
        return Verdict(NOT_TESTABLE, v.ours, v.test, why="records lack model FLOPs per token")
    ours = 1 - mean(list(fa.values())) / mean(list(fb.values()))
    c = compare(a.values(BEST_TEST_PPL), b.values(BEST_TEST_PPL))
    ok_flops = saving[0] - SAVING_TOLERANCE <= ours <= saving[1] + SAVING_TOLERANCE
    ok_ppl = c is not None and c.ci_low <= gap <= c.ci_high
    status = SUPPORTED if ok_flops and ok_ppl else CONTRADICTED
    return Verdict(status, f"{v.ours}; {ours:.1%} fewer FLOPs per token", v.test,
                   f"FLOP saving {ours:.1%} {'in' if ok_flops else 'outside'} "
                   f"{_percent_range(saving, SAVING_TOLERANCE)}; +{gap:.2f} PPL "
                   f"{'inside' if ok_ppl else 'outside'} the 95% CI")


LEAK_PAIRS = (("lm-entropy-leaky", "lm-entropy"), ("lm-meta-batch", "lm-meta"))


def _claim8(ev: Evidence, value: Measure) -> Verdict:
    verdicts = [leak_explains_gain(ev, leaky, causal, "lm-attn", value)
                for leaky, causal in LEAK_PAIRS]
    details = [f"{ev.runs(leaky).label} vs {ev.runs(causal).label}: {v.status}: {v.why}"
               + (f" ({v.test})" if v.test != "—" else "")
               for (leaky, causal), v in zip(LEAK_PAIRS, verdicts, strict=True)]
    statuses = [v.status for v in verdicts]
    status = SUPPORTED if SUPPORTED in statuses else \
        CONTRADICTED if all(s == CONTRADICTED for s in statuses) else \
        INCONCLUSIVE if all(s in TESTED for s in statuses) else NOT_TESTABLE
    first = verdicts[0]
    why = "supported if any leaky form passes; per form:"
    if status == NOT_TESTABLE:
        why = next(v.why for v in verdicts if v.status == NOT_TESTABLE)
    return Verdict(status, first.ours, first.test, why, details)


def leak_explains_gain(ev: Evidence, leaky: str, causal: str, baseline: str,
                       value: Measure) -> Verdict:
    """The leaky form beats its causal form by a large, significant margin (>= LARGE_GAIN of
    the causal form's perplexity, CI excluding 0), while the causal form does not beat full
    attention by that much: supported. The CI excludes a large leak gain, or the causal form
    has the large gain too: contradicted. Otherwise inconclusive (5 seeds needed where the CI
    is wider than the large gain)."""
    a, b, base = ev.runs(leaky), ev.runs(causal), ev.runs(baseline)
    digits = value.metric.digits
    why = rules.missing(a, b, base)
    va, vb, vbase = a.values(value), b.values(value), base.values(value)
    ours = (f"{a.label} {rules.summary(va, digits)} vs {b.label} {rules.summary(vb, digits)}; "
            f"{base.label} {rules.summary(vbase, digits)}") if va and vb and vbase else "—"
    if why:
        return Verdict(NOT_TESTABLE, ours, why=why)
    leak, causal_gain = compare(va, vb), compare(vb, vbase)
    if leak is None or causal_gain is None:
        return Verdict(NOT_TESTABLE, ours, why=f"fewer than 2 records hold {value.name}")
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
    return rules.inconclusive(ours, test, text, leak, effect=LARGE_GAIN * scale,
                              effect_text=f"a {LARGE_GAIN:.0%} leak gain")


def _percent_range(bounds: tuple[float, float], widen: float = 0.0) -> str:
    return f"{100 * (bounds[0] - widen):g}-{100 * (bounds[1] + widen):g}%"


BEATS = ("supported if A is significantly better (95% CI of the difference excludes 0) and "
         "the CI does not exclude the paper's gain as too large; contradicted if A is "
         "significantly worse or the CI excludes the paper's gain; otherwise inconclusive "
         f"({rules.MORE_SEEDS} seeds needed where the CI is wider than the paper's gain)")
BEATS_NO_SIZE = ("supported if A is significantly better (95% CI of the difference excludes "
                 "0), contradicted if significantly worse, otherwise inconclusive")
AT_PLATEAU = ("judged at the plateau: each run's best-validation checkpoint; at smaller "
              "budgets on the best full validation so far")


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
              "A = entropy dct+attn, B = single attn, validation token perplexity "
              f"({AT_PLATEAU}); " + BEATS,
              lambda ev: _claim1(ev, gain, BEST_VALID_PPL),
              at_budget=lambda ev, tokens: _claim1(ev, gain, valid_at("perplexity", tokens))),
        Claim(2, f"...at {1 - fraction:.1%} fewer attention FLOPs",
              f"attention FLOP fraction {fraction:g}", ("lm-entropy",),
              f"supported if the measured attention FLOP fraction of entropy dct+attn (final "
              f"weights, test split), mean over seeds, is at most {fraction:g} + "
              f"{FRACTION_TOLERANCE:g}; contradicted if above",
              lambda ev: _claim2(ev, fraction)),
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
              f"the paper's form (meta-batch, leaky) on language modelling; judged only once "
              f"the gate has settled: its logged training gate (mean over layers) moves less "
              f"than {GATE_SETTLED:g} over the last quarter of training (least-squares trend) "
              f"in every seed, else not testable here; test gate = the trained model's gate "
              f"on the test split, mean over layers (at smaller budgets: the logged gate over "
              f"the last quarter up to the budget); supported if the mean over seeds is "
              f"within {gate:g} ± {GATE_TOLERANCE:g}, contradicted otherwise",
              lambda ev: _claim4(ev, gate),
              note="The paper's g weights a spectral path against an identity path; here "
                   "the gate is the weight of the top-band (last) operator, attention, in a "
                   "2-operator layer, so compare the trend, not the number",
              on_board=_test_gate, arms=("lm-meta-batch",),
              at_budget=lambda ev, tokens: _claim4(ev, gate, tokens)),
        Claim(5, "under mixed-dataset training it beats full attention on small corpora",
              "no number given",
              ("mix-entropy", "mix-attn", "small-entropy", "small-attn"),
              "mix task (large corpus 0.8, small corpus 0.2); A = entropy dct+attn, B = single "
              "attn, both trained on the mix, test word perplexity on the small corpus's "
              "component (best-validation checkpoint; at smaller budgets its validation word "
              "perplexity); " + BEATS_NO_SIZE + "; details: each against its run on the small "
              "corpus alone",
              lambda ev: _claim5(ev, best_measure("test", WT2_WORD_PPL)),
              takes="two language-modelling corpora with training splits",
              arms=("mix-entropy", "mix-attn"),
              at_budget=lambda ev, tokens: _claim5(ev, valid_at(WT2_WORD_PPL, tokens),
                                                   alone=False)),
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
              f"per leaky form against its causal form (validation token perplexity, "
              f"{AT_PLATEAU}): supported if the leaky form is better by at least "
              f"{LARGE_GAIN:.0%} with a CI excluding 0 while the causal form is not "
              f"{LARGE_GAIN:.0%} better than full attention; contradicted if the CI excludes a "
              f"{LARGE_GAIN:.0%} leak gain or the causal form has the large gain too; "
              f"otherwise inconclusive; the claim is supported if any leaky form is",
              lambda ev: _claim8(ev, BEST_VALID_PPL),
              at_budget=lambda ev, tokens: _claim8(ev, valid_at("perplexity", tokens))),
    ]
