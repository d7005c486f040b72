"""Survival functions against published worked examples and invariants."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from harmonize.outcomes import (
    OutcomesError,
    concordance_index,
    cox,
    kaplan_meier,
    landmark,
    logrank,
)

# Freireich 6-MP leukaemia remission trial: weeks in remission, 21 patients per arm.
# Freireich EJ et al., Blood 1963;21:699-716, as tabulated by Gehan EA, Biometrika
# 1965;52:203-223 (Table 1; also R's MASS::gehan and Kleinbaum & Klein, Survival Analysis,
# 3rd ed. 2012, Table 1.1). event 0 = censored ("+" in the source).
SIX_MP_WEEKS = [6, 6, 6, 6, 7, 9, 10, 10, 11, 13, 16, 17, 19, 20, 22, 23, 25, 32, 32, 34, 35]
SIX_MP_EVENT = [1, 1, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]
PLACEBO_WEEKS = [1, 1, 2, 2, 3, 4, 4, 5, 5, 8, 8, 8, 8, 11, 11, 12, 12, 15, 17, 22, 23]

#: Log-rank chi-square of the two arms: 16.79 (Kleinbaum & Klein 2012, ch. 2: 16.793).
FREIREICH_LOGRANK_CHI2 = 16.793
#: Cox coefficient of placebo vs 6-MP with Efron ties: 1.572, SE 0.412 (R survival::coxph
#: default, as printed in the R survival-analysis literature for MASS::gehan); Breslow ties:
#: 1.509 (Kleinbaum & Klein 2012, ch. 3).
FREIREICH_COX_EFRON = (1.572, 0.412)
FREIREICH_COX_BRESLOW = 1.509
#: Kaplan-Meier of the 6-MP arm at 6, 7, 10, 13, 16, 22, 23 weeks (Kleinbaum & Klein 2012,
#: ch. 2 table): 0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448; placebo median 8 weeks.
FREIREICH_KM_6MP = (0.857, 0.807, 0.753, 0.690, 0.627, 0.538, 0.448)


@pytest.fixture
def freireich() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "weeks": SIX_MP_WEEKS + PLACEBO_WEEKS,
            "relapse": SIX_MP_EVENT + [1] * 21,
            "arm": ["6-MP"] * 21 + ["placebo"] * 21,
            "placebo": [0] * 21 + [1] * 21,
        }
    )


def test_logrank_reproduces_freireich(freireich: pd.DataFrame) -> None:
    res = logrank(freireich, "weeks", "relapse", "arm")
    # the published value has three decimals: agree to their rounding
    assert res.statistic == pytest.approx(FREIREICH_LOGRANK_CHI2, abs=5e-4)
    assert res.df == 1 and res.n == 42 and res.n_events == 30
    assert res.pvalue == pytest.approx(4.17e-5, rel=1e-2)


def test_cox_reproduces_freireich_with_efron_ties(freireich: pd.DataFrame) -> None:
    table = cox(freireich, "weeks", "relapse", ["placebo"])
    row = table.iloc[0]
    assert row["ties"] == "efron"
    assert row["coef"] == pytest.approx(FREIREICH_COX_EFRON[0], abs=5e-4)
    assert row["se"] == pytest.approx(FREIREICH_COX_EFRON[1], abs=5e-4)
    assert row["hr"] == pytest.approx(np.exp(row["coef"]))
    assert row["ci_low"] < row["hr"] < row["ci_high"]
    # a categorical covariate gives the same model (6-MP is the first level, the reference)
    by_arm = cox(freireich, "weeks", "relapse", ["arm"])
    assert by_arm["term"].tolist() == ["arm=placebo"]
    assert by_arm["coef"].iloc[0] == pytest.approx(row["coef"], rel=1e-10)


def test_cox_per_unit_scales_the_coefficient(freireich: pd.DataFrame) -> None:
    d = freireich.assign(x=freireich["placebo"] * 10.0)
    per10 = cox(d, "weeks", "relapse", ["x"], per={"x": 10.0}).iloc[0]
    assert per10["per"] == 10.0
    assert per10["coef"] == pytest.approx(FREIREICH_COX_EFRON[0], abs=5e-4)


def test_kaplan_meier_reproduces_freireich(freireich: pd.DataFrame) -> None:
    km = kaplan_meier(freireich, "weeks", "relapse", "arm")
    six = km[km["group"] == "6-MP"]
    assert six["time"].tolist() == [0.0, 6.0, 7.0, 10.0, 13.0, 16.0, 22.0, 23.0]
    assert six["survival"].iloc[1:].round(3).tolist() == list(FREIREICH_KM_6MP)
    assert (six["ci_low"] <= six["survival"] + 1e-12).all()
    placebo = km[km["group"] == "placebo"]
    assert placebo["median"].iloc[0] == 8.0
    assert six["median"].iloc[0] == 23.0  # first time the 6-MP curve is at or below 0.5


def _harrell_reference(t: np.ndarray, e: np.ndarray, x: np.ndarray) -> float:
    """Pair-by-pair reference (higher x = longer survival)."""
    num = den = 0.0
    for i, j in itertools.permutations(range(len(t)), 2):
        if e[i] and (t[i] < t[j] or (t[i] == t[j] and not e[j])):
            den += 1
            num += 1.0 if x[i] < x[j] else 0.5 if x[i] == x[j] else 0.0
    return num / den


def test_concordance_matches_pairwise_definition_and_is_antisymmetric() -> None:
    rng = np.random.default_rng(3)
    t = rng.integers(1, 15, 40).astype(float)  # ties in time on purpose
    e = rng.random(40) < 0.7
    x = rng.integers(0, 6, 40).astype(float)  # ties in the predictor
    d = pd.DataFrame({"t": t, "e": e.astype(int), "x": x})
    c = concordance_index(d, "t", "e", "x")
    assert c == pytest.approx(_harrell_reference(t, e, x), abs=1e-12)
    assert c + concordance_index(d, "t", "e", "x", higher_is_longer=False) == pytest.approx(1.0)


def test_landmark_removes_patients_not_at_risk_and_shifts_time() -> None:
    d = pd.DataFrame({"t": [3.0, 6.0, 6.5, 20.0], "e": [1, 0, 1, 0], "dose": [1, 2, 3, 4]})
    out = landmark(d, "t", "e", 6.0)
    assert out["dose"].tolist() == [3, 4]
    assert out["t"].tolist() == [0.5, 14.0]
    assert out["e"].tolist() == [1, 0]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"t": [1.0, -2.0], "e": [1, 1], "g": [0, 1]}), "negative times"),
        (pd.DataFrame({"t": [1.0, 2.0], "e": [1, 2], "g": [0, 1]}), "0/1"),
        (pd.DataFrame({"t": [1.0, 2.0], "e": [1, 1], "g": [0, 0]}), "at least two groups"),
        (pd.DataFrame({"t": [1.0, 2.0], "e": [1, 1]}), "not in the table"),
    ],
)
def test_logrank_refuses_bad_input(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(OutcomesError, match=message):
        logrank(frame, "t", "e", "g")
