"""Bland–Altman functions of harmonize.compare against published worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.anova import anova_lm

from harmonize import compare
from harmonize.compare import CompareError

# Bland & Altman 1986 (Lancet 327:307), Table 1: PEFR (l/min), first reading by the
# Wright and the mini Wright meter, 17 subjects.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]

# Bland & Altman 1999 (SMMR 8:135) Table 4 = Bland & Altman 2007 (J Biopharm Stat 17:571)
# example: cardiac ejection fraction by radionuclide ventriculography (RV) and impedance
# cardiography (IC), 12 subjects, 60 pairs (subject, RV, IC).
CO = """1,7.83,6.57 1,7.42,5.62 1,7.89,6.9 1,7.12,6.57 1,7.88,6.35 2,6.16,4.06 2,7.26,4.29
2,6.71,4.26 2,6.54,4.09 3,4.75,4.71 3,5.24,5.5 3,4.86,5.08 3,4.78,5.02 3,6.05,6.01 3,5.42,5.67
4,4.21,4.14 4,3.61,4.2 4,3.72,4.61 4,3.87,4.68 4,3.92,5.04 5,3.13,3.03 5,2.98,2.86 5,2.85,2.77
5,3.17,2.46 5,3.09,2.32 5,3.12,2.43 6,5.92,5.9 6,6.42,5.81 6,5.92,5.7 6,6.27,5.76 7,7.13,5.09
7,6.62,4.63 7,6.58,4.61 7,6.93,5.09 8,4.54,4.72 8,4.81,4.61 8,5.11,4.36 8,5.29,4.2 8,5.39,4.36
8,5.57,4.2 9,4.48,3.17 9,4.92,3.12 9,3.97,2.96 10,4.22,4.35 10,4.65,4.62 10,4.74,3.16
10,4.44,3.53 10,4.5,3.53 11,6.78,7.2 11,6.07,6.09 11,6.52,7.0 11,6.42,7.1 11,6.41,7.4
11,5.76,6.8 12,5.06,4.5 12,4.72,4.2 12,4.9,3.8 12,4.8,3.8 12,4.9,4.2 12,5.1,4.5"""


def co_table() -> pd.DataFrame:
    rows = [r.split(",") for r in CO.split()]
    return pd.DataFrame(rows, columns=["sub", "rv", "ic"]).astype(float)


def test_ba1986_pefr_published_values() -> None:
    """BA1986 p. 308: mean difference −2.1, SD 38.8, limits −2.1 ∓ 2×38.8 = −79.7, 75.5.

    BA1986 used 2 SD (not 1.96) and computed the limits from the rounded mean and SD;
    the paper's 75.5 is −2.1 + 77.6 whereas the unrounded −2.118 + 77.530 = 75.41, so the
    limits are checked to 0.1 (the rounding of the intermediates), bias and SD to 0.05.
    """
    r = compare.bland_altman(WRIGHT, MINI, multiplier=2.0)
    assert r.bias == pytest.approx(-2.1, abs=0.05)
    assert r.sd == pytest.approx(38.8, abs=0.05)
    assert r.loa_lower == pytest.approx(-79.7, abs=0.1)
    assert r.loa_upper == pytest.approx(75.5, abs=0.1)
    assert round(r.bias, 1) + 2 * round(r.sd, 1) == pytest.approx(75.5)  # paper's arithmetic


def test_ba1986_confidence_intervals() -> None:
    """BA1986 CIs: t(16) = 2.12; SE(bias) = s/√n = 9.4; SE(limit) = √(3s²/n) = 16.3.

    Published lower-limit CI −114.3 to −45.1 (BA1986, as quoted in the R package presize's
    tests). The bias CI (−2.1 ± 2.12×9.4 = −22.0, 17.8) and the upper-limit CI
    (75.5 ± 2.12×16.3 = 40.9, 110.1) are derived here by the paper's own rule. The paper
    rounds t, SE and the limits before multiplying, so tolerance 0.15 Gy-equivalent units.
    """
    r = compare.bland_altman(WRIGHT, MINI, multiplier=2.0, loa_ci_method="bland_altman_1986")
    assert r.bias_ci == pytest.approx((-22.0, 17.8), abs=0.06)
    assert r.loa_lower_ci == pytest.approx((-114.3, -45.1), abs=0.15)
    assert r.loa_upper_ci == pytest.approx((40.9, 110.1), abs=0.2)
    se = r.sd * math.sqrt(3 / 17)
    assert se == pytest.approx(16.3, abs=0.05)
    assert r.sd / math.sqrt(17) == pytest.approx(9.4, abs=0.05)


def test_exact_loa_ci_coverage() -> None:
    """Exact (noncentral t, Carkeet 2015) LoA CIs cover the true limit at the nominal rate.

    Monte Carlo with 20 000 samples of n = 10 from N(0, 1): the standard error of a coverage
    of 0.95 is 0.0015, so |coverage − 0.95| < 0.006 (4 SE). The BA1999 approximation is
    known to under-cover at n = 10 (Carkeet 2015), which the test also shows.
    """
    rng = np.random.default_rng(7)
    n, reps, k = 10, 20_000, 1.959963984540054
    d = rng.standard_normal((reps, n))
    mean, sd = d.mean(axis=1), d.std(axis=1, ddof=1)
    q_lo, q_hi = stats.nct.ppf([0.025, 0.975], n - 1, k * math.sqrt(n))
    lo, hi = mean + sd * q_lo / math.sqrt(n), mean + sd * q_hi / math.sqrt(n)
    coverage = np.mean((lo <= k) & (k <= hi))
    assert abs(coverage - 0.95) < 0.006
    one = compare.bland_altman(d[0], np.zeros(n))
    assert one.loa_upper_ci == pytest.approx((lo[0], hi[0]), rel=1e-12)
    t = stats.t.ppf(0.975, n - 1)
    se = sd * math.sqrt(1 / n + k * k / (2 * (n - 1)))
    approx = np.mean((mean + k * sd - t * se <= k) & (k <= mean + k * sd + t * se))
    assert approx < coverage


def test_ratio_version_back_transforms() -> None:
    """BA1999 §3.1: the log analysis back-transformed gives geometric-mean ratio limits."""
    r = compare.bland_altman(WRIGHT, MINI, log=True)
    ld = np.log(WRIGHT) - np.log(MINI)
    assert r.scale == "ratio"
    assert r.bias == pytest.approx(math.exp(ld.mean()), rel=1e-12)
    assert r.loa_lower == pytest.approx(math.exp(ld.mean() - 1.959963984540054 * ld.std(ddof=1)))
    assert r.bias_ci[0] < r.bias < r.bias_ci[1]


def test_regression_limits_match_hand_fit() -> None:
    """BA1999 §3.2 by hand: OLS of D on A, OLS of |residual| on A, sd = √(π/2)(c0 + c1 A)."""
    rng = np.random.default_rng(3)
    b = rng.uniform(5, 100, 200)
    a = b * (1.1 + rng.normal(0, 0.05, 200))
    r = compare.bland_altman_regression(a, b)
    d, m = a - b, (a + b) / 2
    x = np.column_stack([np.ones_like(m), m])
    beta = np.linalg.lstsq(x, d, rcond=None)[0]
    gamma = np.linalg.lstsq(x, np.abs(d - x @ beta), rcond=None)[0]
    assert (r.b0, r.b1) == pytest.approx(tuple(beta), rel=1e-9, abs=1e-9)
    assert (r.c0, r.c1) == pytest.approx(tuple(gamma), rel=1e-9, abs=1e-9)
    lo, hi = r.limits(50.0)
    sd50 = math.sqrt(math.pi / 2) * (gamma[0] + gamma[1] * 50)
    assert hi - lo == pytest.approx(2 * 1.959963984540054 * sd50, rel=1e-9)


def test_ba2007_repeated_pairs_against_anova() -> None:
    """BA2007 §3 on the RV/IC data, checked against an independent one-way ANOVA.

    The published BA2007 numbers could not be retrieved, so the test recomputes the
    mean squares with statsmodels ``anova_lm`` and applies BA2007's formulas by hand:
    var_within = MS_w; var_between = (MS_b − MS_w)/D, D = (n² − Σm_i²)/((N−1)n).
    """
    df = co_table()
    r = compare.bland_altman_repeated(df, subject="sub", a="rv", b="ic")
    df["d"] = df["rv"] - df["ic"]
    tab = anova_lm(smf.ols("d ~ C(sub)", df).fit())
    ms_b, ms_w = tab.loc["C(sub)", "mean_sq"], tab.loc["Residual", "mean_sq"]
    m = df.groupby("sub").size().to_numpy(float)
    n, big_n = m.sum(), m.size
    divisor = (n**2 - np.sum(m**2)) / ((big_n - 1) * n)
    assert r.var_within == pytest.approx(ms_w, rel=1e-10)
    assert r.var_between == pytest.approx((ms_b - ms_w) / divisor, rel=1e-10)
    assert r.bias == pytest.approx(df["d"].mean(), rel=1e-12)
    assert r.n_pairs == 60 and r.n_subjects == 12
    assert r.loa_upper - r.loa_lower == pytest.approx(2 * 1.959963984540054 * r.sd)
    # BA2007 takes the bias as the mean of all differences, as plain BA does:
    plain = compare.bland_altman(df["rv"], df["ic"])
    assert plain.bias == pytest.approx(r.bias)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(1, 1e3), st.floats(1, 1e3)), min_size=3, max_size=30).filter(
        lambda p: len({round(x - y, 9) for x, y in p}) > 1
    )
)
def test_bias_antisymmetric_under_swap(pairs: list[tuple[float, float]]) -> None:
    """Swapping the workflows negates bias and limits and keeps the SD."""
    a, b = np.array(pairs).T
    r1, r2 = compare.bland_altman(a, b), compare.bland_altman(b, a)
    scale = max(1.0, np.abs(a - b).max())
    assert r1.bias == pytest.approx(-r2.bias, abs=1e-9 * scale)
    assert r1.sd == pytest.approx(r2.sd, rel=1e-9)
    assert r1.loa_upper == pytest.approx(-r2.loa_lower, abs=1e-9 * scale)


@pytest.mark.parametrize(
    ("a", "b", "kw", "match"),
    [
        ([1.0, 2.0], [1.0, 2.5], {}, "at least 3"),
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "same length"),
        ([1.0, 2.0, 3.0], [0.0, 2.0, 3.0], {"log": True}, "zero or negative"),
        ([1.0, -2.0, 3.0], [1.0, 2.0, 3.0], {"log": True}, "zero or negative"),
        ([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], {}, "SD = 0"),
        ([1.0, np.nan, 3.0], [1.0, 2.0, 3.0], {}, "non-finite"),
        ([1.0, 2.0, 3.0], [1.0, 2.5, 3.0], {"ci_level": 95}, "ci_level"),
    ],
)
def test_bad_input(a: list[float], b: list[float], kw: dict, match: str) -> None:
    with pytest.raises(CompareError, match=match):
        compare.bland_altman(a, b, **kw)


def test_repeated_bad_input() -> None:
    df = pd.DataFrame({"s": [1, 2, 3], "a": [1.0, 2, 3], "b": [1.5, 2, 2]})
    with pytest.raises(CompareError, match="single pair"):
        compare.bland_altman_repeated(df, "s", "a", "b")
    with pytest.raises(CompareError, match="column 'x'"):
        compare.bland_altman_repeated(df, "x", "a", "b")
