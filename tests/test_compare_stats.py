"""CCC, ICC, Deming, Passing–Bablok, kappa and variance statistics of harmonize.compare."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmonize import compare
from harmonize.compare import CompareError

# Shrout & Fleiss 1979 (Psychol Bull 86:420) Table 2: 6 targets × 4 judges.
SF1979 = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def long(matrix: np.ndarray) -> pd.DataFrame:
    n, k = matrix.shape
    return pd.DataFrame(
        {
            "t": np.repeat(np.arange(n), k),
            "r": np.tile(np.arange(k), n),
            "y": matrix.ravel(),
        }
    )


def test_icc_shrout_fleiss_1979_table2() -> None:
    """SF1979 Table 2 data; published ICCs (2 decimals, SF1979 p. 425).

    CIs: R psych::ICC output for the same data (3 decimals for lower, 2 for upper bounds,
    as printed in psych's documentation); F = 1.79 (df 5, 18) and 11.03 (df 5, 15) from
    R DescTools::ICC. psych's ICC(2,k) interval is the Spearman–Brown step-up of the
    ICC(2,1) bounds, which is the convention followed here.
    """
    t = compare.icc(long(SF1979), targets="t", raters="r", ratings="y")
    published = {
        "ICC(1,1)": 0.17,
        "ICC(2,1)": 0.29,
        "ICC(3,1)": 0.71,
        "ICC(1,k)": 0.44,
        "ICC(2,k)": 0.62,
        "ICC(3,k)": 0.91,
    }
    for form, value in published.items():
        assert round(t.loc[form, "icc"], 2) == value, form
    psych_lo = {
        "ICC(1,1)": -0.133,
        "ICC(2,1)": 0.019,
        "ICC(3,1)": 0.342,
        "ICC(1,k)": -0.884,
        "ICC(2,k)": 0.071,
        "ICC(3,k)": 0.676,
    }
    psych_hi = {
        "ICC(1,1)": 0.72,
        "ICC(2,1)": 0.76,
        "ICC(3,1)": 0.95,
        "ICC(1,k)": 0.91,
        "ICC(2,k)": 0.93,
        "ICC(3,k)": 0.99,
    }
    for form in published:
        assert round(t.loc[form, "ci_low"], 3) == psych_lo[form], form
        assert round(t.loc[form, "ci_high"], 2) == psych_hi[form], form
    assert round(t.loc["ICC(1,1)", "F"], 2) == 1.79
    assert round(t.loc["ICC(3,1)", "F"], 2) == 11.03
    assert (t.loc["ICC(3,1)", "df1"], t.loc["ICC(3,1)", "df2"]) == (5, 15)
    assert list(t["mcgraw_wong"]) == [
        "ICC(1)",
        "ICC(A,1)",
        "ICC(C,1)",
        "ICC(k)",
        "ICC(A,k)",
        "ICC(C,k)",
    ]


def test_icc_mixed_equals_anova_on_balanced_data() -> None:
    """REML equals the ANOVA estimators for a balanced design with positive components.

    Tolerance 1e-4: the REML optimiser's convergence tolerance.
    """
    t = compare.icc(long(SF1979), "t", "r", "y")
    m = compare.icc_mixed(long(SF1979), "t", "r", "y")
    assert m.loc["ICC(3,1)", "icc"] == pytest.approx(t.loc["ICC(3,1)", "icc"], abs=1e-4)
    assert m.loc["ICC(2,1)", "icc"] == pytest.approx(t.loc["ICC(2,1)", "icc"], abs=1e-4)


def test_icc_unbalanced_is_refused_and_mixed_handles_it() -> None:
    df = long(SF1979).iloc[1:]
    with pytest.raises(CompareError, match="icc_mixed"):
        compare.icc(df, "t", "r", "y")
    m = compare.icc_mixed(df, "t", "r", "y")
    assert 0 < m.loc["ICC(2,1)", "icc"] < m.loc["ICC(3,1)", "icc"] < 1


@settings(max_examples=25, deadline=None)
@given(st.permutations(range(6)), st.permutations(range(4)))
def test_icc_invariant_to_relabelling(rows: list[int], cols: list[int]) -> None:
    """Permuting targets or raters (relabelling) leaves every ICC unchanged."""
    base = compare.icc(long(SF1979), "t", "r", "y")
    perm = compare.icc(long(SF1979[np.ix_(rows, cols)]), "t", "r", "y")
    np.testing.assert_allclose(perm["icc"], base["icc"], rtol=1e-12)
    np.testing.assert_allclose(perm["ci_low"], base["ci_low"], rtol=1e-10)


# Bland & Altman 1986 Table 1 (PEFR, Wright and mini Wright first readings).
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]


def _ccc_by_hand(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """Lin 1989 estimator and Lin 2000 Z-variance written out with scalar arithmetic."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((v - mx) ** 2 for v in x) / n
    syy = sum((v - my) ** 2 for v in y) / n
    sxy = sum((u - mx) * (v - my) for u, v in zip(x, y, strict=True)) / n
    rc = 2 * sxy / (sxx + syy + (mx - my) ** 2)
    r = sxy / math.sqrt(sxx * syy)
    u = (mx - my) / (sxx * syy) ** 0.25
    var = (
        (1 - r**2) * rc**2 / ((1 - rc**2) * r**2)
        + 2 * rc**3 * (1 - rc) * u**2 / (r * (1 - rc**2) ** 2)
        - rc**4 * u**4 / (2 * r**2 * (1 - rc**2) ** 2)
    ) / (n - 2)
    z = math.atanh(rc)
    return (
        rc,
        math.tanh(z - 1.959963984540054 * math.sqrt(var)),
        math.tanh(z + 1.959963984540054 * math.sqrt(var)),
    )


def test_ccc_against_hand_computation() -> None:
    """No Lin (1989) dataset with published values was retrievable; this is an independent
    scalar re-computation of the Lin 1989 estimator and Lin 2000 Fisher-Z variance on the
    BA1986 PEFR data (Wright vs mini Wright)."""
    r = compare.lin_ccc(WRIGHT, MINI)
    rc, lo, hi = _ccc_by_hand([float(v) for v in WRIGHT], [float(v) for v in MINI])
    assert r.ccc == pytest.approx(rc, rel=1e-12)
    assert r.ci == pytest.approx((lo, hi), rel=1e-10)
    assert r.ccc == pytest.approx(r.pearson_r * r.bias_correction, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=4, max_size=25).filter(
        lambda p: np.ptp([v[0] for v in p]) > 1e-3 and np.ptp([v[1] for v in p]) > 1e-3
    ),
    st.randoms(use_true_random=False),
)
def test_ccc_symmetric_and_permutation_invariant(pairs, rnd) -> None:
    a, b = (np.array(v) for v in zip(*pairs, strict=True))
    c = compare.lin_ccc(a, b).ccc
    assert compare.lin_ccc(b, a).ccc == pytest.approx(c, abs=1e-12)
    order = list(range(len(a)))
    rnd.shuffle(order)
    assert compare.lin_ccc(a[order], b[order]).ccc == pytest.approx(c, abs=1e-10)


# Creatinine data of R package mcr (serum vs plasma, mg/dL; 110 patients, 2 with a missing
# plasma value dropped), as listed in R. Wicklin, "Passing-Bablok regression in SAS", 2022.
CREATININE = """0.82 0.79 1.83 1.62 1.39 1.36 0.81 1.3 1.72 1.88 3.23 3.35 1.23 1.06 1.37 1.34
1.72 1.56 0.96 0.94 0.76 0.69 1.15 1.16 0.95 0.71 1 0.83 1.52 1.44 1.56 1.26 2.45 2.36 1.85 1.9
0.89 0.95 0.82 0.77 1.01 0.82 0.96 0.88 3.38 3.42 1.31 1.15 1.1 0.96 1.26 1.12 1.15 1.02 1.2
1.29 1.01 0.87 1.33 1.13 0.87 0.82 1.66 1.33 1.41 1.14 1.08 0.93 1.17 1.09 0.82 nan 1.77 1.89
1.33 1.57 1.23 1.29 1.21 1.13 1.2 1.11 1.49 1.61 0.89 0.79 1.09 1.19 1.03 0.96 1.07 1.25 0.89
0.87 1.39 1.36 0.96 0.86 1.06 1.03 1.17 0.86 0.9 0.8 1.39 1.22 0.91 0.86 2.28 2.25 0.9 0.87
0.83 nan 1.34 1.3 1.32 1.04 1.02 0.92 1.04 1.01 1.27 1.21 1.08 1.11 1.1 1.21 1.39 1.54 1.07 0.99
0.79 0.79 1.02 1.06 0.94 1.02 1.99 2.15 0.7 0.56 0.84 1.01 0.66 0.59 1.1 1.17 0.9 0.82 2.06
2.09 1.31 1.44 1.03 1.22 1.61 1.77 1.52 1.6 1.11 1.13 0.85 1.06 1.2 1.38 1.09 1.24 1.27 1.29
2.06 2.08 1.21 1.31 0.77 0.82 1.06 1.28 1.02 1.15 1 1.04 1.47 1.51 0.97 1.13 1.7 1.84 1.78
1.94 0.93 1.32 0.92 1.36 1.59 1.88 0.68 0.73 0.7 0.78 1.08 1.01 0.83 0.9 1.17 1.3 0.98 0.96
0.77 0.61 0.91 1.27 1.1 1.05 0.8 1.12 0.85 0.72 0.82 0.87"""


def creatinine() -> tuple[np.ndarray, np.ndarray]:
    v = np.array(CREATININE.split(), dtype=float).reshape(-1, 2)
    v = v[~np.isnan(v).any(axis=1)]
    return v[:, 0], v[:, 1]


def test_passing_bablok_mcr_creatinine() -> None:
    """R mcr::mcreg(PaBa, analytical, radian) printSummary on mcr's creatinine data:
    intercept −0.1171729 [−0.2001149, −0.020000], slope 1.0880089 [1.0000000, 1.173005].

    rule="mcr" reproduces all seven printed decimals. The PB1983 rule gives the same
    estimates (to 1e-8: mcr averages neighbouring slopes as angles) but a slightly different
    upper slope bound (mcr interpolates ranks, PB1983 rounds them).
    """
    x, y = creatinine()
    assert x.size == 108
    r = compare.passing_bablok(x, y, rule="mcr")
    assert round(r.intercept, 7) == -0.1171729
    assert round(r.slope, 7) == 1.0880089
    assert round(r.intercept_ci[0], 7) == -0.2001149
    assert round(r.intercept_ci[1], 6) == -0.02
    assert round(r.slope_ci[0], 7) == 1.0
    assert round(r.slope_ci[1], 6) == 1.173005
    p = compare.passing_bablok(x, y)
    assert p.slope == pytest.approx(1.0880089, abs=1e-7)
    assert p.intercept == pytest.approx(-0.1171729, abs=1e-7)
    assert p.slope_ci[1] == pytest.approx(1.173005, abs=1e-4)  # rank rounding, see above


def test_passing_bablok_pb1983_by_brute_force() -> None:
    """PB1983 rule re-implemented with Python loops on a small dataset with ties."""
    rng = np.random.default_rng(11)
    x = np.round(rng.uniform(1, 10, 25), 1)
    y = np.round(1.2 * x + rng.normal(0, 0.5, 25), 1)
    slopes = []
    for i in range(25):
        for j in range(i + 1, 25):
            dx, dy = x[j] - x[i], y[j] - y[i]
            if dx == 0 and dy == 0:
                continue
            s = math.copysign(math.inf, dy) if dx == 0 else dy / dx
            if s != -1:
                slopes.append(s)
    slopes.sort()
    n_s, k = len(slopes), sum(s < -1 for s in slopes)
    b = (
        slopes[(n_s + 1) // 2 + k - 1]
        if n_s % 2
        else 0.5 * (slopes[n_s // 2 + k - 1] + slopes[n_s // 2 + k])
    )
    c = 1.959963984540054 * math.sqrt(25 * 24 * 55 / 18)
    m1 = math.floor((n_s - c) / 2 + 0.5)
    m2 = n_s - m1 + 1
    r = compare.passing_bablok(x, y)
    assert r.slope == pytest.approx(b, rel=1e-12)
    assert r.slope_ci == pytest.approx((slopes[m1 + k - 1], slopes[m2 + k - 1]), rel=1e-12)
    assert r.intercept == pytest.approx(float(np.median(y - b * x)), rel=1e-12)


def test_passing_bablok_size_limit() -> None:
    x = np.arange(1.0, 60.0)
    with pytest.raises(CompareError, match="max_n"):
        compare.passing_bablok(x, x + 1, max_n=50)


def test_deming_orthogonal_equals_principal_axis() -> None:
    """With error ratio 1, Deming = orthogonal regression = the principal eigenvector of the
    covariance matrix (independent computation by numpy.linalg.eigh)."""
    x, y = creatinine()
    r = compare.deming(x, y)
    w, v = np.linalg.eigh(np.cov(x, y))
    vec = v[:, np.argmax(w)]
    assert r.slope == pytest.approx(vec[1] / vec[0], rel=1e-10)
    assert r.intercept == pytest.approx(y.mean() - r.slope * x.mean(), rel=1e-10)


def test_deming_error_ratio_limits_and_jackknife() -> None:
    """δ → ∞ approaches OLS of y on x; δ → 0 approaches the inverse of OLS of x on y.
    The jackknife SE equals a leave-one-out loop."""
    x, y = creatinine()
    ols_yx = np.polyfit(x, y, 1)[0]
    ols_xy = 1 / np.polyfit(y, x, 1)[0]
    assert compare.deming(x, y, 1e9).slope == pytest.approx(ols_yx, rel=1e-6)
    assert compare.deming(x, y, 1e-9).slope == pytest.approx(ols_xy, rel=1e-6)
    r = compare.deming(x[:30], y[:30], 2.0)
    loo = [compare.deming(np.delete(x[:30], i), np.delete(y[:30], i), 2.0).slope for i in range(30)]
    pseudo = 30 * r.slope - 29 * np.array(loo)
    assert r.slope_se == pytest.approx(pseudo.std(ddof=1) / math.sqrt(30), rel=1e-8)


def test_deming_bad_input() -> None:
    with pytest.raises(CompareError, match="error_ratio"):
        compare.deming([1.0, 2, 3], [1.0, 2, 4], error_ratio=0)
    with pytest.raises(CompareError, match="zero variance"):
        compare.deming([1.0, 1, 1], [1.0, 2, 4])


# Fleiss 1971 (Psychol Bull 76:378) Table 1: 30 patients, 6 psychiatrists, 5 diagnoses
# (as the subjects × raters matrix of R irr::diagnoses, shipped in statsmodels' tests).
def test_fleiss_1971_kappa() -> None:
    """Fleiss 1971: κ = 0.430 (R irr::kappam.fleiss: 0.4302445)."""
    from statsmodels.stats.tests.test_inter_rater import diagnoses

    r = compare.fleiss_kappa(diagnoses)
    assert round(r.kappa, 3) == 0.430
    assert r.kappa == pytest.approx(0.4302445, abs=5e-8)
    assert (r.n_subjects, r.n_raters) == (30, 6)
    assert r.kappa == pytest.approx(
        (r.agreement - r.expected_agreement) / (1 - r.expected_agreement), rel=1e-12
    )


def test_cohen_kappa_irr_anxiety() -> None:
    """Cohen's kappa: Cohen 1960's own table was not retrievable; R irr::kappa2 on irr's
    anxiety data (raters 2 and 3) gives −0.006289308 (value quoted in statsmodels' tests),
    and a hand-derived 2 × 2 example: p_o = 0.7, p_e = 0.5 → κ = 0.4."""
    from statsmodels.stats.tests.test_inter_rater import anxiety

    r = compare.cohen_kappa(anxiety[:, 1], anxiety[:, 2])
    assert r.kappa == pytest.approx(-0.006289308, abs=5e-10)
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    k = compare.cohen_kappa(a, b)
    assert (k.agreement, k.expected_agreement, k.kappa) == pytest.approx((0.7, 0.5, 0.4))
    assert k.ci[0] < 0.4 < k.ci[1]
    assert k.marginals.loc["y", "a"] == 0.5 and k.marginals.loc["y", "b"] == 0.6


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["lo", "mid", "hi"]), min_size=2, max_size=40).filter(
        lambda v: len(set(v)) > 1
    )
)
def test_kappa_one_for_identical(labels: list[str]) -> None:
    assert compare.cohen_kappa(labels, labels).kappa == pytest.approx(1.0)
    assert compare.fleiss_kappa(np.array([labels, labels, labels]).T).kappa == pytest.approx(1.0)


def test_kappa_bad_input() -> None:
    with pytest.raises(CompareError, match="same length"):
        compare.cohen_kappa([1, 2, 1], [1, 2])
    with pytest.raises(CompareError, match="undefined"):
        compare.cohen_kappa([1, 1, 1], [1, 1, 1])
    with pytest.raises(CompareError, match="2-D"):
        compare.fleiss_kappa([1, 2, 3])


def test_within_subject_by_hand() -> None:
    """wSD, RMS and log wCV, repeatability 1.96·√2·wSD written out per subject."""
    data = np.array([[10.0, 12.0, 11.0], [20.0, 22.0, 25.0], [30.0, 33.0, 29.0]])
    r = compare.within_subject(data)
    v = data.var(axis=1, ddof=1)
    assert r.wsd == pytest.approx(math.sqrt(v.mean()), rel=1e-12)
    assert r.wcv == pytest.approx(math.sqrt(np.mean(v / data.mean(axis=1) ** 2)), rel=1e-12)
    assert r.repeatability == pytest.approx(1.959963984540054 * math.sqrt(2) * r.wsd)
    rl = compare.within_subject(data, cv_method="log")
    assert rl.wcv == pytest.approx(math.sqrt(math.expm1(np.log(data).var(axis=1, ddof=1).mean())))
    df = pd.DataFrame({"s": np.repeat([1, 2, 3], 3), "v": data.ravel()})
    assert compare.within_subject(df, subject="s", value="v").wsd == pytest.approx(r.wsd)
    with pytest.raises(CompareError, match="positive"):
        compare.within_subject(data - 15, cv_method="log")


def test_variance_components_recovers_simulation() -> None:
    """Simulated patient (SD 3), lesion (SD 2), workflow offsets (0, +1, −1 → variance 1),
    residual (SD 1); 80 patients × 4 lesions × 3 workflows, seed fixed. Tolerances are
    ~3 standard errors of each REML estimate at this size (patient variance has only 80
    levels, hence the wide bound)."""
    rng = np.random.default_rng(5)
    rows = []
    for p in range(80):
        pe = rng.normal(0, 3)
        for les in range(4):
            le = rng.normal(0, 2)
            for w, off in zip(("a", "b", "c"), (0.0, 1.0, -1.0), strict=True):
                rows.append((f"P{p}", les, w, 20 + pe + le + off + rng.normal(0, 1)))
    df = pd.DataFrame(rows, columns=["patient_id", "voi_id", "workflow", "dose_mean_gy"])
    vc = compare.variance_components(df, "dose_mean_gy")
    assert vc.loc["patient", "variance"] == pytest.approx(9.0, rel=0.45)
    assert vc.loc["lesion_within_patient", "variance"] == pytest.approx(4.0, rel=0.3)
    assert vc.loc["residual", "variance"] == pytest.approx(1.0, rel=0.15)
    assert vc.loc["workflow", "variance"] == pytest.approx(1.0, rel=0.3)
    assert vc["fraction"].sum() == pytest.approx(1.0)


def test_passing_bablok_refuses_negatively_related_data():
    # every pairwise slope is below −1, so PB1983's K-shifted median falls past the last
    # slope: a clear error rather than an IndexError
    from harmonize import compare

    with pytest.raises(compare.CompareError, match="slopes are below −1"):
        compare.passing_bablok([1.0, 2.0, 3.0, 4.0], [10.0, 6.0, 3.0, 1.0])
