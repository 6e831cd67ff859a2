"""The comparison behind a verdict: mean +- std over seeds and a t-test of A against B.

Paired (``scipy.stats.ttest_rel``) when both sides ran the same seeds (a seed fixes the
initialisation and the data order, so seed-matched runs differ only in the configuration);
Welch's (``ttest_ind(equal_var=False)``) otherwise. The 95% confidence interval is for
mean(A) - mean(B) (paired: the mean difference).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    test: str  # "paired t-test over seeds 0,1,2" or "Welch t-test"
    n_a: int
    n_b: int
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    diff: float  # mean(A) - mean(B); paired: the mean of the seed-wise differences
    ci_low: float
    ci_high: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def compare(a: dict[int, float], b: dict[int, float]) -> Comparison | None:
    """A against B, values keyed by seed; None when a side has fewer than two seeds."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(list(a.values())), mean_std(list(b.values()))
    if set(a) == set(b):
        seeds = sorted(a)
        xa, xb = [a[s] for s in seeds], [b[s] for s in seeds]
        diffs = [x - y for x, y in zip(xa, xb, strict=True)]
        test = f"paired t-test over seeds {','.join(map(str, seeds))}"
        diff = statistics.fmean(diffs)
        if statistics.pstdev(diffs) == 0:  # identical differences: no spread to test
            return Comparison(test, len(a), len(b), ma, sa, mb, sb, diff, diff, diff,
                              0.0 if diff else 1.0)
        result = stats.ttest_rel(xa, xb)
    else:
        test = "Welch t-test"
        diff = ma - mb
        if sa == sb == 0:
            return Comparison(test, len(a), len(b), ma, sa, mb, sb, diff, diff, diff,
                              0.0 if diff else 1.0)
        result = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    ci = result.confidence_interval(1 - ALPHA)
    p = float(result.pvalue)
    return Comparison(test, len(a), len(b), ma, sa, mb, sb, diff, float(ci.low),
                      float(ci.high), p if math.isfinite(p) else 1.0)
