"""Fuzz harness: seeded generated inputs for kinetics, studies and compare; no foreign exception.

Each public function either returns numbers that are finite (and a positive TIA), or raises
harmonize's own error type (:class:`~harmonize.errors.HarmonizeError` subclass) with a
message. Any other exception type — ``ZeroDivisionError``, ``IndexError``,
``OverflowError``, ``LinAlgError`` … — is a crash and fails the test with the case.
The property tests (Hypothesis) search the same space with shrinking; the seeded harness
counts ≥ 1,000 cases (figure asserted, not the time).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harmonize import compare
from harmonize._fuzz import MUTATIONS, mutated_studies
from harmonize.errors import HarmonizeError
from harmonize.kinetics import fit_tac, fit_voxels
from harmonize.study import StudyError, validate_study

MODELS = ("monoexp", "biexp", "biexp_uptake", "triexp", "trapezoid", "auto")
_MODEL_P = np.array([7, 0.5, 0.5, 0.5, 7, 0.5]) / 16.0


# -- generators ------------------------------------------------------------------------------
def _times(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(1, 8))
    t = np.sort(rng.uniform(0.0, 250.0, n))
    kind = rng.integers(10)
    if kind == 0:
        t = t * float(rng.choice([60.0, 3600.0]))  # minutes, seconds
    elif kind == 1:
        t = t[::-1].copy()  # unsorted
    elif kind == 2 and n > 1:
        t[1] = t[0]  # duplicate
    elif kind == 3:
        t[0] = float(rng.choice([-1.0, np.nan, np.inf]))
    return t


def _activity(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    # effective half-lives of 7 h to 700 h; amplitudes over 50 decades (beyond the accepted
    # 1e-30…1e30 at both ends)
    lam = float(rng.uniform(0.001, 0.1))
    y = float(10.0 ** rng.uniform(-25, 25)) * np.exp(-lam * np.nan_to_num(t, nan=0.0, posinf=0.0))
    kind = rng.integers(12)
    if kind == 0:
        y = y * rng.normal(1.0, 1.0, y.size)  # heavy noise, negatives
    elif kind == 1:
        y = np.zeros_like(y)
    elif kind == 2:
        y[int(rng.integers(y.size))] = float(rng.choice([np.nan, np.inf, -np.inf, 1e308]))
    elif kind == 3:
        y[0] = -100.0 * abs(y.max())  # a large negative point
    elif kind == 4:
        y = np.full_like(y, float(rng.uniform(0.1, 10)))  # constant
    elif kind == 5 and y.size > 1:
        y = y[:-1]  # length mismatch
    return y


def kinetics_case(rng: np.random.Generator) -> None:
    """One generated fit_tac call: a finite positive TIA or a KineticsError."""
    t = _times(rng)
    y = _activity(rng, t)
    # the multi-exponential fits cost up to seconds each on pathological data (least squares
    # from several starts), so they are 1 case in 15; the property tests cover them too
    model = str(rng.choice(MODELS, p=_MODEL_P))
    try:
        fit = fit_tac(t, y, model=model)
    except HarmonizeError:
        return
    assert math.isfinite(fit.tia) and fit.tia > 0, (t, y, model, fit.tia)


def voxel_case(rng: np.random.Generator) -> None:
    """One generated fit_voxels call: a finite non-negative TIA map or a KineticsError."""
    t = _times(rng)
    cols = [_activity(rng, t) for _ in range(4)]
    n = min(c.size for c in cols)
    a = np.stack([c[:n] for c in cols], axis=1).reshape(n, 1, 2, 2)
    try:
        tia = fit_voxels(t, a, model=str(rng.choice(["monoexp", "trapezoid"])))
    except HarmonizeError:
        return
    assert np.all(np.isfinite(tia)) and np.all(tia >= 0), (t, a)


def _pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(0, 12))
    kind = rng.integers(8)
    x = float(10.0 ** rng.uniform(-3, 3)) * rng.lognormal(0.0, 1.0, n)
    y = x * rng.lognormal(0.0, 0.2, n)
    if kind == 0:
        x, y = np.round(x), np.round(y)  # discrete values, ties
    elif kind == 1:
        x = y = np.full(n, 5.0)  # identical constant
    elif kind == 2:
        x = x * 1e300  # overflow territory
    elif kind == 3:
        x, y = x * 1e-300, y * 1e-300  # underflow territory
    elif kind == 4 and n:
        y = y.copy()
        y[0] = np.nan
    elif kind == 5:
        y = np.tile([1.0, 2.0], n)[:n]
        x = np.repeat([1.0, 2.0], n)[:n]  # uncorrelated (lin_ccc reproducer shape)
    elif kind == 6:
        y = -y
    return x, y


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def compare_case(rng: np.random.Generator) -> None:
    """One generated call of each pairwise compare function: finite estimates or CompareError."""
    x, y = _pair(rng)
    calls = {
        "lin_ccc": lambda: compare.lin_ccc(x, y).ccc,
        "bland_altman": lambda: compare.bland_altman(x, y).bias,
        "bland_altman_log": lambda: compare.bland_altman(x, y, log=True).bias,
        "bland_altman_regression": lambda: compare.bland_altman_regression(x, y).b1,
        "deming": lambda: compare.deming(x, y).slope,
        "passing_bablok": lambda: compare.passing_bablok(x, y).slope,
        "passing_bablok_mcr": lambda: compare.passing_bablok(x, y, rule="mcr").slope,
        "cohen_kappa": lambda: compare.cohen_kappa(x > np.median(x), y > np.median(y)).kappa,
    }
    for name, call in calls.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value = float(call())
        except HarmonizeError:
            continue
        assert _finite(value), (name, x, y, value)


def study_case(name: str, study: object) -> bool:
    """``validate_study`` on one mutated study: accepts it (True) or raises StudyError."""
    try:
        validate_study(study)  # type: ignore[arg-type]
    except StudyError:
        return False
    return True


# -- the seeded harness --------------------------------------------------------------------------
N_KINETICS, N_VOXELS, N_COMPARE, N_STUDIES = 450, 250, 250, 102


def test_fuzz_harness_has_no_foreign_exception():
    """≥ 1,000 seeded cases across kinetics, studies and compare; any crash fails here."""
    rng = np.random.default_rng(20261129)
    for _ in range(N_KINETICS):
        kinetics_case(rng)
    for _ in range(N_VOXELS):
        voxel_case(rng)
    for _ in range(N_COMPARE):
        compare_case(rng)
    cases = list(mutated_studies(N_STUDIES, seed=1))
    per_name = pd.Series([study_case(n, s) for n, s in cases], index=[n for n, _ in cases])
    # every issue-12 study fault is refused by validate_study, every mutation is exercised
    for fault in ("empty_voi", "empty_grid", "empty_voi_table", "parent_cycle",
                  "direction_text", "huge_cycle", "zero_frame", "times_in_minutes_or_seconds"):  # fmt: skip
        assert not per_name[fault].any(), fault
    assert set(per_name.index) == set(MUTATIONS)
    assert N_KINETICS + N_VOXELS + N_COMPARE + N_STUDIES >= 1000


# -- issue-12 statistics reproducers ---------------------------------------------------------------
def test_lin_ccc_of_uncorrelated_discrete_values_is_zero_with_a_ci():
    r = compare.lin_ccc([1, 2, 1, 2], [1, 1, 2, 2])
    assert r.ccc == 0.0 and r.pearson_r == 0.0
    # r = 0: var(Z) is the limit C_b²/(n − 2) with C_b = 1 (equal means and SDs) → ±1.96/√2
    half = math.tanh(1.959963984540054 / math.sqrt(2.0))
    assert r.ci == pytest.approx((-half, half), rel=1e-12)
    assert r.bias_correction == 1.0


def test_lin_ccc_ci_unchanged_where_r_is_not_zero():
    # the rewritten variance equals Lin's form: CI of a published-style example stays put
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    b = np.array([1.2, 1.8, 3.3, 3.9, 5.4, 5.7])
    r = compare.lin_ccc(a, b)
    n, rc, pr = a.size, r.ccc, r.pearson_r
    sxx, syy = a.var(), b.var()
    u2 = (a.mean() - b.mean()) ** 2 / math.sqrt(sxx * syy)
    var_z = (
        (1 - pr * pr) * rc * rc / ((1 - rc * rc) * pr * pr)
        + 2 * rc**3 * (1 - rc) * u2 / (pr * (1 - rc * rc) ** 2)
        - rc**4 * u2 * u2 / (2 * pr * pr * (1 - rc * rc) ** 2)
    ) / (n - 2)
    half = 1.959963984540054 * math.sqrt(var_z)
    assert r.ci == pytest.approx(
        (math.tanh(math.atanh(rc) - half), math.tanh(math.atanh(rc) + half))
    )


def test_agreement_reaches_lin_ccc_on_discrete_doses_without_crash():
    x, y = np.array([1.0, 2.0, 1.0, 2.0]), np.array([1.0, 1.0, 2.0, 2.0])
    assert math.isfinite(compare.lin_ccc(x, y).ci[0])


def test_passing_bablok_mcr_on_identical_points_is_a_compare_error():
    with pytest.raises(compare.CompareError, match="all points are identical"):
        compare.passing_bablok([5] * 4, [5] * 4, rule="mcr")


@pytest.mark.parametrize(
    "func",
    [compare.lin_ccc, compare.bland_altman, compare.deming, compare.passing_bablok],
)
def test_values_near_1e300_are_a_compare_error(func):
    with pytest.raises(compare.CompareError, match=r"magnitude outside \[1e-60, 1e\+60\]"):
        func([1e300, 2e300, 3e300, 4e300], [1.1e300, 2e300, 3.2e300, 4e300])


def test_bland_altman_regression_near_1e_300_is_a_compare_error():
    with pytest.raises(compare.CompareError, match="magnitude outside"):
        compare.bland_altman_regression(
            [1e-300, 2e-300, 3e-300, 5e-300], [1e-300, 3e-300, 2e-300, 4e-300]
        )


# -- property tests (Hypothesis) -------------------------------------------------------------------
FAST = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@FAST
@given(
    t=st.lists(st.floats(-10, 1e6, allow_nan=False), min_size=1, max_size=7),
    y=st.lists(floats, min_size=1, max_size=7),
    model=st.sampled_from(MODELS),
)
def test_fit_tac_property(t, y, model):
    try:
        fit = fit_tac(t, y, model=model)
    except HarmonizeError:
        return
    assert math.isfinite(fit.tia) and fit.tia > 0


@FAST
@given(
    t=st.lists(st.floats(0, 5000, allow_nan=False), min_size=1, max_size=5, unique=True),
    y=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=4, max_size=20),
    model=st.sampled_from(["monoexp", "trapezoid"]),
)
def test_fit_voxels_property(t, y, model):
    t = sorted(t)
    n = len(t)
    values = np.resize(np.asarray(y), n * 4).reshape(n, 1, 2, 2)
    try:
        tia = fit_voxels(t, values, model=model)
    except HarmonizeError:
        return
    assert np.all(np.isfinite(tia)) and np.all(tia >= 0)


@FAST
@given(
    x=st.lists(floats, min_size=0, max_size=10),
    y=st.lists(floats, min_size=0, max_size=10),
)
def test_compare_property(x, y):
    n = min(len(x), len(y))
    rng = np.random.default_rng(0)
    xs, ys = np.asarray(x[:n]), np.asarray(y[:n])
    for call in (
        lambda: compare.lin_ccc(xs, ys).ccc,
        lambda: compare.bland_altman(xs, ys).bias,
        lambda: compare.bland_altman(xs, ys, log=True).bias,
        lambda: compare.bland_altman_regression(xs, ys).b1,
        lambda: compare.deming(xs, ys).slope,
        lambda: compare.passing_bablok(xs, ys).slope,
        lambda: compare.passing_bablok(xs, ys, rule="mcr").slope,
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                value = float(call())
        except HarmonizeError:
            continue
        assert math.isfinite(value)
    del rng
