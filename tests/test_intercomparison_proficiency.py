"""ISO 13528 statistics: Algorithm A against the standard's worked example, z and En."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmonize.intercomparison.proficiency import (
    ALGORITHM_A_K,
    SD_FACTOR,
    algorithm_a,
    participant_report,
    proficiency_scores,
    proficiency_summary,
)

#: ISO 13528:2015 Annex E.3, the worked example of Algorithm A: 12 participants' results
#: (laboratories 1, 2, 6, 8, 9, 12, 13, 14, 19, 20, 22, 25), as transcribed with the
#: standard's intermediate values by S. Subramanian, "The Algorithm A in Detail" (2025).
ISO_E3 = [1.69, 0.74, 2.05, 1.14, 2.19, 1.39, 1.52, 1.50, 1.58, 0.80, 1.21, 1.63]
#: The published (x*, s*) at the start and after iterations 1 and 2, to the digits printed.
ISO_E3_TRACE = [(1.510, 0.3559), (1.475, 0.4072), (1.460, 0.4486)]


def test_algorithm_a_reproduces_the_iso_13528_worked_example():
    out = algorithm_a(ISO_E3)
    for step, (x_pub, s_pub) in enumerate(ISO_E3_TRACE):
        x, s = (float(v[0]) for v in out.trace[step])
        # the published figures are rounded to 4 significant digits
        assert x == pytest.approx(x_pub, abs=5e-4), step
        assert s == pytest.approx(s_pub, abs=5e-5), step
    # converged: one more step of the algorithm leaves x*, s* unchanged (fixed point)
    x, s = float(out.x_star[0]), float(out.s_star[0])
    clipped = np.clip(ISO_E3, x - ALGORITHM_A_K * s, x + ALGORITHM_A_K * s)
    assert clipped.mean() == pytest.approx(x, rel=1e-12)
    assert SD_FACTOR * clipped.std(ddof=1) == pytest.approx(s, rel=1e-12)
    # the outliers pull it less than the plain mean/SD: s* < 1.134 x SD of the raw data
    assert out.n_iter < 50


def test_algorithm_a_without_outliers_is_mean_and_1134_sd():
    """{9, 10, 11}: start 10 and 1.483; nothing is ever winsorised → 10 and 1.134 exactly."""
    out = algorithm_a([9.0, 10.0, 11.0])
    assert float(out.x_star[0]) == pytest.approx(10.0, rel=1e-15)
    assert float(out.s_star[0]) == pytest.approx(SD_FACTOR * 1.0, rel=1e-15)


def test_algorithm_a_is_vectorised_equivariant_and_resists_outliers():
    rng = np.random.default_rng(7)
    sets = rng.normal(50.0, 5.0, size=(40, 9))
    sets[::3, -1] = np.nan  # sets of different sizes
    sets[::5, 0] = 500.0  # gross outliers
    together = algorithm_a(sets)
    for i in range(0, 40, 7):
        alone = algorithm_a(sets[i][np.isfinite(sets[i])])
        assert together.x_star[i] == pytest.approx(alone.x_star[0], rel=1e-12)
        assert together.s_star[i] == pytest.approx(alone.s_star[0], rel=1e-12)
    moved = algorithm_a(-3.0 * sets + 7.0)
    np.testing.assert_allclose(moved.x_star, -3.0 * together.x_star + 7.0, rtol=1e-9)
    np.testing.assert_allclose(moved.s_star, 3.0 * together.s_star, rtol=1e-9)
    # an outlier of 500 among values near 50 moves x* by far less than it moves the mean
    hit = sets[0][np.isfinite(sets[0])]
    assert abs(together.x_star[0] - np.median(hit)) < abs(hit.mean() - np.median(hit)) / 5


def _voi(values: dict[str, float], u: float | None = None) -> pd.DataFrame:
    rows = pd.DataFrame(
        {
            "patient_id": "P1",
            "cycle": 1,
            "voi_id": 5,
            "voi_name": "lesion_01",
            "voi_kind": "lesion",
            "workflow": list(values),
            "dose_mean_gy": list(values.values()),
        }
    )
    if u is not None:
        rows["dose_mean_u_gy"] = np.where(rows["workflow"] == "truth", np.nan, u)
    return rows


def test_z_scores_against_the_truth_and_the_consensus():
    voi = _voi({"a": 9.0, "b": 10.0, "c": 11.0, "truth": 10.5})
    s_star = SD_FACTOR * 1.0  # see the {9, 10, 11} test
    scores = proficiency_scores(voi).set_index("workflow")
    assert (scores["assigned_source"] == "reference").all()
    np.testing.assert_allclose(scores["z"], (np.array([9.0, 10.0, 11.0]) - 10.5) / s_star)
    assert (scores["u_assigned"] == 0).all()
    np.testing.assert_allclose(scores["z_prime"], scores["z"])  # u(x_pt) = 0
    consensus = proficiency_scores(voi, reference=None).set_index("workflow")
    assert "truth" in consensus.index  # without a reference the truth is a participant
    robust = algorithm_a([9.0, 10.0, 11.0, 10.5])
    x_pt, s_pt = float(robust.x_star[0]), float(robust.s_star[0])
    u_pt = 1.25 * s_pt / 2.0  # ISO 13528 eq. 7, p = 4
    assert consensus.loc["a", "assigned_value"] == pytest.approx(x_pt)
    assert consensus.loc["a", "u_assigned"] == pytest.approx(u_pt)
    assert consensus.loc["a", "z_prime"] == pytest.approx((9.0 - x_pt) / np.hypot(s_pt, u_pt))


def test_en_numbers_use_expanded_uncertainties():
    voi = _voi({"a": 9.0, "b": 10.0, "c": 11.0, "truth": 10.5}, u=0.5)
    scores = proficiency_scores(voi).set_index("workflow")
    # En = (x − x_pt) / (k·sqrt(u_x² + u_pt²)), k = 2, u_pt = 0 for the truth
    np.testing.assert_allclose(scores["en"], (np.array([9.0, 10.0, 11.0]) - 10.5) / 1.0)
    no_u = proficiency_scores(_voi({"a": 9.0, "b": 10.0, "truth": 10.5}))
    assert no_u["en"].isna().all()


def test_summary_and_participant_report():
    voi = pd.concat(
        [
            _voi({"a": 9.0, "b": 10.0, "c": 11.0, "truth": 10.0}),
            _voi({"a": 20.0, "b": 20.0, "c": 26.0, "truth": 20.0}).assign(voi_id=6),
        ]
    )
    scores = proficiency_scores(voi)
    c = scores[scores["workflow"] == "c"].set_index("voi_id")
    # item 6: {20, 20, 26} → MAD 0 → s* = 0 at the start... Algorithm A keeps s* = 0 there,
    # so z is undefined, not infinite
    assert c.loc[6, "z_class"] == "undefined" and np.isnan(c.loc[6, "z"])
    assert c.loc[5, "z_class"] == "satisfactory"
    summary = proficiency_summary(scores).set_index(["workflow_a", "statistic"])
    assert summary.loc[("c", "z_satisfactory_fraction"), "estimate"] == 1.0
    assert summary.loc[("c", "z_satisfactory_fraction"), "n_pairs"] == 1
    assert summary.loc[("c", "z_satisfactory_fraction"), "workflow_b"] == "truth"
    text = participant_report(scores, "c")
    assert "# Intercomparison — participant report: c" in text
    assert "| satisfactory | 1 |" in text and "| undefined | 1 |" in text
    assert "poorly determined" not in text  # 3 participants per item
    two = proficiency_scores(_voi({"a": 9.0, "b": 10.0, "truth": 10.0}))
    assert "as few as 2 participants" in participant_report(two, "a")
    with pytest.raises(ValueError, match="no scores for workflow 'zz'"):
        participant_report(scores, "zz")
