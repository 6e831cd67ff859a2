"""The one statistics module (harness/core/stats.py): Student's t by hand and against tables,
Welch's and the paired t-test against scipy's own intervals, the cluster bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.core.stats import (
    cluster_bootstrap,
    compare,
    mean,
    sample_std,
    t_quantile,
    t_two_sided_p,
    welch,
)


def _t_two_sided_by_integration(t: float, df: float, n: int = 4000) -> float:
    """Independent reference: 1 - 2 * integral_0^|t| of Student's density (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def f(x: float) -> float:
        return c * (1 + x * x / df) ** (-(df + 1) / 2)

    h = abs(t) / n
    s = f(0) + f(abs(t)) + sum((4 if i % 2 else 2) * f(i * h) for i in range(1, n))
    return 1 - 2 * s * h / 3


def test_welch_matches_known_values():
    # textbook quantiles: t = 2.228 at df = 10 and 2.776 at df = 4 leave 5% in both tails
    assert t_two_sided_p(2.228138852, 10) == pytest.approx(0.05, abs=1e-6)
    assert t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-5)
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5, abs=1e-9)  # Cauchy
    for t, df in ((0.3, 2.0), (2.0, 10.0), (3.7, 5.52), (1.1, 30.0), (6.0, 1.5)):
        assert t_two_sided_p(t, df) == pytest.approx(_t_two_sided_by_integration(t, df),
                                                        abs=1e-8)
    w = welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0])
    # by hand: variances 5/3 and 10, se^2 = 5/12 + 2, t = -3.5 / sqrt(29/12)
    assert w.t == pytest.approx(-3.5 / math.sqrt(29 / 12))
    assert w.df == pytest.approx((29 / 12) ** 2 / ((5 / 12) ** 2 / 3 + 2 ** 2 / 4))
    assert w.p == pytest.approx(_t_two_sided_by_integration(w.t, w.df), abs=1e-8)
    half = t_quantile(0.975, w.df) * math.sqrt(29 / 12)
    assert (w.ci_low, w.ci_high) == pytest.approx((-3.5 - half, -3.5 + half))
    assert welch([1.0], [2.0, 3.0]) is None
    assert welch([1.0, 1.0], [1.0, 1.0]).p == 1.0
    assert welch([1.0, 1.0], [2.0, 2.0]).p == 0.0
    tiny = welch([0.0, 1.2780494329701085e-139], [0.0, 0.0])  # squares underflow
    assert tiny.df == pytest.approx(1.0) and 0.0 <= tiny.p <= 1.0
    for a, b in (([0.6, 0.61, 0.62], [0.605, 0.615, 0.61]), ([1, 5, 2, 8], [3, 3.5, 4])):
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert welch(a, b).p == pytest.approx(ref.pvalue, rel=1e-6)


def test_t_quantiles_match_tables():
    # Student's t table, two-sided 5% / one-sided 5% / two-sided 1%, and the normal limit
    for q, df, tabulated in ((0.975, 10, 2.228), (0.975, 4, 2.776), (0.975, 1, 12.706),
                             (0.95, 20, 1.725), (0.995, 5, 4.032), (0.975, 1e9, 1.960)):
        assert t_quantile(q, df) == pytest.approx(tabulated, abs=5e-4)
        assert t_two_sided_p(t_quantile(q, df), df) == pytest.approx(2 * (1 - q))
    assert t_two_sided_p(math.inf, 3) == 0.0
    assert t_two_sided_p(0.0, 3) == pytest.approx(1.0)


def test_welch_p_value_by_hand():
    # a = 1, 2, 3 and b = 4, 5, 6: both variances 1, se^2 = 2/3, t = -3 / sqrt(2/3), and the
    # Welch-Satterthwaite df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4 exactly
    w = welch([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    t = -3 / math.sqrt(2 / 3)
    assert w.diff == pytest.approx(-3.0)
    assert w.t == pytest.approx(t)
    assert w.df == pytest.approx(4.0)
    # closed-form CDF of Student's t with 4 degrees of freedom:
    # F(x) = 1/2 + (3/4) u (1 - u^2 / 3), u = x / sqrt(4 + x^2)
    u = abs(t) / math.sqrt(4 + t * t)
    p = 2 * (1 - (0.5 + 0.75 * u * (1 - u * u / 3)))
    assert w.p == pytest.approx(p, rel=1e-9)
    assert w.p == pytest.approx(0.0213, abs=5e-5)
    half = 2.776445 * math.sqrt(2 / 3)  # t_{0.975, 4} from the table
    assert (w.ci_low, w.ci_high) == pytest.approx((-3 - half, -3 + half), abs=1e-5)
    # the textbook example above (df = 5.52): p between the df = 5 and df = 6 table rows
    assert welch([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]).p == pytest.approx(
        0.0691, abs=5e-4)


def test_compare_is_paired_when_the_seeds_pair_and_welch_otherwise():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0}, {0: 1.5, 1: 2.9, 2: 4.1}
    c = compare(a, b)
    ref = stats.ttest_rel([1, 2, 4], [1.5, 2.9, 4.1])
    assert c.test == "paired t-test over seeds 0,1,2" and c.p == pytest.approx(ref.pvalue)
    ci = ref.confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert c.diff == pytest.approx(mean([-0.5, -0.9, -0.1]))
    w = compare(a, {0: 1.5, 1: 2.9, 5: 4.1})
    ref = stats.ttest_ind([1, 2, 4], [1.5, 2.9, 4.1], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert w.test == "Welch t-test" and w.p == pytest.approx(ref.pvalue)
    assert (w.ci_low, w.ci_high) == pytest.approx((ci.low, ci.high))
    assert compare(a, {0: 1.0}) is None
    # every seed-wise difference the same: no spread to test, the means differ
    same = compare({0: 1.0, 1: 2.0}, {0: 0.5, 1: 1.5})
    assert same.p == 0.0 and same.ci_low == same.ci_high == 0.5
    assert compare({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0}).p == 1.0


def test_mean_and_sample_std():
    assert mean([1.0, 2.0, 6.0]) == 3.0
    assert sample_std([1.0, 2.0, 6.0]) == pytest.approx(math.sqrt(7.0))
    assert sample_std([4.0]) is None


def test_cluster_bootstrap_resamples_whole_groups():
    groups = [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [10.0, 10.0]]
    seen: list[list[int]] = []

    def statistic(picked: list[int]) -> float:
        seen.append(picked)
        return float(np.mean([x for g in picked for x in groups[g]]))

    low, high = cluster_bootstrap(statistic, len(groups), resamples=200, seed=0)
    assert all(len(p) == len(groups) and set(p) <= set(range(4)) for p in seen)
    assert 1.0 <= low < 4.0 < high <= 10.0
    assert (low, high) == cluster_bootstrap(statistic, len(groups), resamples=200, seed=0)
    one_group_each = cluster_bootstrap(lambda picked: 5.0, 3, resamples=50, seed=1)
    assert one_group_each == (5.0, 5.0)
