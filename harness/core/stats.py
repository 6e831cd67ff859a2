"""The statistics every page uses: means over seeds, t-tests of A against B, bootstrap intervals.

One module for the board (ties with the best row, routing against chance), the claims (verdicts)
and ``harness analyze`` (Spearman intervals), so that a p-value or an interval means the same
thing wherever it is printed. scipy is imported inside the functions: the command line imports
nothing heavy to answer ``--help``.

- ``compare(a, b)``: values keyed by seed. Paired t-test (``scipy.stats.ttest_rel``) when both
  sides ran the same seeds (a seed fixes the initialisation and the data order, so seed-matched
  runs differ only in the configuration); Welch's otherwise. ``welch(a, b)`` is Welch's alone,
  for lists. The 95% confidence interval is for mean(A) - mean(B) (paired: the mean difference).
- ``mean_interval(xs)``: the 95% t interval of a mean over seeds.
- ``binomial_interval(k, n)``: the exact interval of a proportion (an accuracy on n examples).
- ``cluster_bootstrap(statistic, n_groups)``: a percentile interval from
  ``scipy.stats.bootstrap`` that resamples whole groups (the tokens of one example are not
  independent, the examples are).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ALPHA = 0.05  # significance level of every test: ties, chance comparisons, verdicts


def mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_std(xs: Sequence[float]) -> float | None:
    """Sample standard deviation (n - 1); None for fewer than two values."""
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def mean_interval(xs: Sequence[float]) -> tuple[float, float] | None:
    """95% t interval of the mean of repeats (seeds); None for fewer than two values."""
    s = sample_std(xs)
    if s is None:
        return None
    half = t_quantile(1 - ALPHA / 2, len(xs) - 1) * s / math.sqrt(len(xs))
    return mean(xs) - half, mean(xs) + half


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    from scipy import stats

    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, 2.0 * float(stats.t.sf(abs(t), df))))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


@dataclass(frozen=True)
class Comparison:
    test: str  # "paired t-test over seeds 0,1,2" or "Welch t-test"
    n_a: int
    n_b: int
    mean_a: float
    std_a: float  # 0 for a single value
    mean_b: float
    std_b: float
    diff: float  # mean(A) - mean(B); paired: the mean of the seed-wise differences
    ci_low: float  # 95% confidence interval of the difference
    ci_high: float
    p: float
    t: float
    df: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def _no_spread(test: str, a: Sequence[float], b: Sequence[float], diff: float,
               df: float) -> Comparison:
    """Every difference the same: identical means tie, different ones do not."""
    t = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return Comparison(test, len(a), len(b), mean(a), sample_std(a) or 0.0, mean(b),
                      sample_std(b) or 0.0, diff, diff, diff, 1.0 if diff == 0 else 0.0, t, df)


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison | None:
    """Welch's two-sided t-test (unequal variances) of mean(a) == mean(b); None with fewer
    than two values on either side. t and its p are computed here from the spread above,
    not by ``scipy.stats.ttest_ind``: the same numbers, without its "precision loss" warning
    for nearly identical values (a warning naming no row, on every page that compares)."""
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = sample_std(a) ** 2 / len(a), sample_std(b) ** 2 / len(b)  # type: ignore[operator]
    se2 = sa + sb
    diff = mean(a) - mean(b)
    test = "Welch t-test"
    if se2 == 0.0:
        return _no_spread(test, a, b, diff, float(len(a) + len(b) - 2))
    # Welch-Satterthwaite, written in the shares sa/se2 and sb/se2 (each in [0, 1]) so that a
    # tiny spread cannot underflow its squares to a zero denominator (scipy's own df can)
    ra, rb = sa / se2, sb / se2
    df = 1.0 / (ra ** 2 / (len(a) - 1) + rb ** 2 / (len(b) - 1))
    t = diff / math.sqrt(se2)
    half = t_quantile(1.0 - ALPHA / 2, df) * math.sqrt(se2)
    p = t_two_sided_p(t, df)
    return Comparison(test, len(a), len(b), mean(a), sample_std(a) or 0.0, mean(b),
                      sample_std(b) or 0.0, diff, diff - half, diff + half,
                      p if math.isfinite(p) else 1.0, t, df)


def paired(a: Sequence[float], b: Sequence[float], test: str) -> Comparison | None:
    """The paired t-test of a[i] - b[i] (same length); None with fewer than two pairs."""
    from scipy import stats

    if len(a) != len(b) or len(a) < 2:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    diff, df = mean(diffs), float(len(diffs) - 1)
    spread = sample_std(diffs) or 0.0
    if spread == 0.0:
        return _no_spread(test, a, b, diff, df)
    res = stats.ttest_rel(list(a), list(b))
    half = t_quantile(1.0 - ALPHA / 2, df) * spread / math.sqrt(len(diffs))
    p = float(res.pvalue)
    return Comparison(test, len(a), len(b), mean(a), sample_std(a) or 0.0, mean(b),
                      sample_std(b) or 0.0, diff, diff - half, diff + half,
                      p if math.isfinite(p) else 1.0, float(res.statistic), df)


def compare(a: dict[int, float], b: dict[int, float]) -> Comparison | None:
    """A against B, values keyed by seed: paired when both ran the same seeds, Welch's
    otherwise; None when a side has fewer than two seeds."""
    if len(a) < 2 or len(b) < 2:
        return None
    if set(a) == set(b):
        seeds = sorted(a)
        return paired([a[s] for s in seeds], [b[s] for s in seeds],
                      f"paired t-test over seeds {','.join(map(str, seeds))}")
    return welch(list(a.values()), list(b.values()))


def cluster_bootstrap(statistic: Callable[[list[int]], float], n_groups: int, *,
                      resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of ``statistic(groups)`` over resamples of whole groups (the
    argument is a list of group indices drawn with replacement), by ``scipy.stats.bootstrap``.
    Percentile rather than BCa: BCa's jackknife would cost one more statistic per group."""
    import numpy as np
    from scipy.stats import bootstrap

    result = bootstrap((np.arange(n_groups),), lambda groups: statistic(groups.tolist()),
                       n_resamples=resamples, vectorized=False, method="percentile",
                       confidence_level=1 - ALPHA, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def binomial_interval(successes: int, trials: int) -> tuple[float, float]:
    """95% Clopper-Pearson (exact) interval of a proportion, successes out of trials: how far
    an accuracy measured on ``trials`` examples can be from the model's true one by the luck
    of the draw alone."""
    from scipy.stats import binomtest

    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials >= 1, got {successes} of "
                         f"{trials}")
    ci = binomtest(successes, trials).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    return float(ci.low), float(ci.high)
