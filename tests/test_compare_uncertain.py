"""Comparisons that read the uncertainty columns: En numbers, cutoff probabilities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harmonize.compare.uncertain import (
    cutoff_probabilities,
    normalised_differences,
    uncertain_discordance,
)


def _voi(workflow, doses, u):
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P1", "P2"],
            "cycle": 1,
            "workflow": workflow,
            "voi_id": [10, 11, 10],
            "voi_kind": "lesion",
            "dose_mean_gy": doses,
            "dose_mean_u_gy": u,
        }
    )


def test_en_numbers_by_hand():
    table = pd.concat(
        [
            _voi("a", [10.0, 20.0, 30.0], [1.0, 1.0, 3.0]),
            _voi("b", [12.0, 20.0, 20.0], [0.0, 2.0, 4.0]),
        ]
    )
    nd = normalised_differences(table, "dose_mean_gy", "lesion")
    # En = (x_a − x_b)/(2·√(u_a² + u_b²)): −2/2, 0/(2√5), 10/(2·5)
    np.testing.assert_allclose(nd.pairs["en"], [-1.0, 0.0, 1.0])
    assert nd.summary.loc[0, "share_en_within_1"] == 1.0
    # against a reference without uncertainty the share of |En| <= 1 is the k = 2 coverage
    truth = _voi("truth", [12.5, 20.0, 38.0], [math.nan] * 3).drop(columns="dose_mean_u_gy")
    cov = normalised_differences(pd.concat([table, truth]), reference="truth").summary
    cov = cov.set_index("workflow_a")["share_en_within_1"]
    # a: |−2.5|/2 > 1, 0, |−8|/6 > 1 → 1/3; b: P1 has u = 0 on both sides, En undefined (not counted)
    assert cov["a"] == pytest.approx(1 / 3)
    assert cov["b"] == pytest.approx(1 / 2)  # rows 2 and 3: 0 and |−18|/8


def _index(workflow, values, u):
    return pd.DataFrame(
        {
            "patient_id": ["P1", "P2", "P3"],
            "cycle": 1,
            "workflow": workflow,
            "lesion_dose_min_gy": values,
            "lesion_dose_min_u_gy": u,
        }
    )


CUT = pd.DataFrame(
    {"key": ["k35"], "index": ["lesion_dose_min_gy"], "cycle": ["1"], "operator": [">="],
     "cutoff_gy": [35.0]}
)  # fmt: skip


def test_probability_above_and_the_uncertain_class():
    pi = pd.concat([_index("a", [40.0, 50.0, 20.0], [5.0, 5.0, 5.0])])
    p = cutoff_probabilities(pi, CUT).set_index("patient_id")
    # Φ(1), Φ(3), Φ(−3) from a normal table to 10 decimals (rtol 1e-7 for the rounding of the smallest): uncertain, above, below
    np.testing.assert_allclose(p["p_above"], [0.8413447461, 0.9986501020, 0.0013498980], rtol=1e-7)
    assert p["class"].tolist() == ["uncertain", "above", "below"]


def test_discordance_beyond_uncertainty_counts_only_sure_disagreements():
    pi = pd.concat(
        [
            _index("a", [40.0, 50.0, 20.0], [5.0, 5.0, 5.0]),
            # P1: below vs uncertain (discordant, not beyond); P2: above vs below (beyond);
            # P3: below in both
            _index("b", [20.0, 20.0, 10.0], [5.0, 5.0, 5.0]),
        ]
    )
    out = uncertain_discordance(cutoff_probabilities(pi, CUT)).iloc[0]
    assert (out["n_patients"], out["n_discordant"], out["n_discordant_beyond_uncertainty"]) == (
        3,
        2,
        1,
    )
    assert (out["n_uncertain_a"], out["n_uncertain_b"]) == (1, 0)


def test_budget_shares_add_to_one_per_voi():
    from harmonize.compare.uncertain import budget_shares
    from harmonize.schema import example_frames

    frames = example_frames()
    out = budget_shares(frames["uncertainty"], frames["voi_dose"]).set_index("component")
    # lesion 10: 1, 4, 3, 10 % → shares of 126 (%²); lesion 11: 2, 5, 3, 5, 16 % → of 319
    expected_volume = (100 / 126 + 256 / 319) / 2
    assert out.loc["volume", "mean_share"] == pytest.approx(expected_volume)
    assert out.loc["volume", "n_vois"] == 2 and out.loc["fit", "n_vois"] == 1
    assert out.loc["fit", "mean_share"] == pytest.approx(16 / 126 / 2)  # 0 in lesion 11
    # over both lesions the mean shares add to one (each lesion's shares do)
    assert out["mean_share"].sum() == pytest.approx(1.0)
