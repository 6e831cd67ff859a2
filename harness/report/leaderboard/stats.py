"""Statistics for the leaderboard: means over seeds and Welch's t-test (scipy.stats)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as _st

ALPHA = 0.05  # significance level for ties and for the chance comparison


def mean(xs: list[float]) -> float:
    return math.fsum(xs) / len(xs)


def sample_std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = mean(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, max(0.0, 2.0 * float(_st.t.sf(abs(t), df))))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t with df degrees of freedom."""
    return float(_st.t.ppf(q, df))


@dataclass(frozen=True)
class Welch:
    diff: float  # mean(a) - mean(b)
    t: float
    df: float
    p: float
    ci: tuple[float, float]  # 95% confidence interval of the difference


def welch_test(a: list[float], b: list[float]) -> Welch | None:
    """Welch's two-sided t-test (unequal variances) of mean(a) == mean(b); None with fewer
    than two values on either side."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = sample_std(a) ** 2, sample_std(b) ** 2  # type: ignore[operator]
    sa, sb = va / len(a), vb / len(b)
    se2 = sa + sb
    diff = mean(a) - mean(b)
    if se2 == 0.0:  # no spread at all: identical means tie, different ones do not
        df = float(len(a) + len(b) - 2)
        return Welch(diff, 0.0 if diff == 0 else math.copysign(math.inf, diff), df,
                     1.0 if diff == 0 else 0.0, (diff, diff))
    # Welch-Satterthwaite, written in the shares sa/se2 and sb/se2 (each in [0, 1]) so that a
    # tiny spread cannot underflow its squares to a zero denominator
    ra, rb = sa / se2, sb / se2
    df = 1.0 / (ra ** 2 / (len(a) - 1) + rb ** 2 / (len(b) - 1))
    res = _st.ttest_ind(a, b, equal_var=False)
    half = t_quantile(1.0 - ALPHA / 2, df) * math.sqrt(se2)
    return Welch(diff, float(res.statistic), df, float(res.pvalue), (diff - half, diff + half))
