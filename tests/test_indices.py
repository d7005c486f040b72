"""Tests of harmonize.indices: VOI dose indices, DVH, patient-level lesion aggregates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harmonize.indices import (
    DVH_VOLUME_PCT,
    DX_PERCENTS,
    dvh,
    dvh_table,
    fill_cumulative_basis,
    patient_index,
    voi_dose_indices,
)

# --------------------------------------------------------------------------------------------
# voi_dose_indices
# --------------------------------------------------------------------------------------------


def test_hand_computed_hundred_voxels():
    # 100 voxels with doses 1..100 Gy. Step DVH: D_x is the k-th hottest voxel with
    # k = ceil(x n / 100): D2 -> 2nd hottest = 99, D50 -> 50th hottest = 51,
    # D98 -> 98th hottest = 3. Median averages voxels 50 and 51 -> 50.5; mean 50.5.
    rng = np.random.default_rng(0)
    dose = rng.permutation(np.arange(1.0, 101.0)).reshape(4, 5, 5)
    row = voi_dose_indices(dose, np.full(dose.shape, 7)).loc[7]
    assert row["dose_d2_gy"] == 99.0
    assert row["dose_d50_gy"] == 51.0
    assert row["dose_d98_gy"] == 3.0
    assert row["dose_median_gy"] == 50.5
    assert row["dose_mean_gy"] == 50.5  # sum 5050 / 100, exact in binary floating point
    assert (row["dose_min_gy"], row["dose_max_gy"]) == (1.0, 100.0)
    assert row["n_voxels"] == 100


def test_hand_computed_small_voi_and_even_median():
    # 10 voxels 0.5, 1.0, ..., 5.0 Gy: D2 (k = ceil(0.2) = 1) is the maximum, D98
    # (k = ceil(9.8) = 10) the minimum, D50 (k = 5) the 5th hottest = 3.0; the median
    # averages 2.5 and 3.0 -> 2.75 (D50 and median differ by the stated convention).
    dose = np.arange(1, 11) * 0.5
    out = voi_dose_indices(dose, np.ones(10, dtype=np.int16))
    assert out.loc[1, "dose_d2_gy"] == 5.0
    assert out.loc[1, "dose_d98_gy"] == 0.5
    assert out.loc[1, "dose_d50_gy"] == 3.0
    assert out.loc[1, "dose_median_gy"] == 2.75


def test_several_vois_interleaved_and_order_of_voi_ids():
    dose = np.array([[5.0, 1.0, 9.0], [2.0, 8.0, 3.0], [7.0, 4.0, 6.0]])
    labels = np.array([[2, 1, 2], [1, 0, 1], [2, 0, 3]])
    out = voi_dose_indices(dose, labels, voi_ids=[3, 1, 2])
    assert out.index.tolist() == [3, 1, 2]
    # VOI 1 = {1, 2, 3}: mean 2, median 2; VOI 2 = {5, 7, 9}; VOI 3 = {6}.
    assert out.loc[
        1, ["dose_mean_gy", "dose_median_gy", "dose_min_gy", "dose_max_gy"]
    ].tolist() == [
        2.0,
        2.0,
        1.0,
        3.0,
    ]
    assert out.loc[2, ["dose_min_gy", "dose_median_gy", "dose_max_gy"]].tolist() == [5.0, 7.0, 9.0]
    assert out.loc[3].drop("n_voxels").tolist() == [6.0] * 7
    assert out["n_voxels"].tolist() == [1, 3, 3]
    # label 0 is not a VOI by default
    assert voi_dose_indices(dose, labels).index.tolist() == [1, 2, 3]


def test_uniform_dose_gives_equal_indices():
    dose = np.full((6, 7, 8), 3.7)
    labels = np.zeros(dose.shape, dtype=np.int32)
    labels[:3] = 1
    labels[3:] = 2
    out = voi_dose_indices(dose, labels, voxel_mass_g=np.full(dose.shape, 0.125))
    order_stats = out.drop(columns=["n_voxels", "dose_mean_gy"]).to_numpy()
    assert np.all(order_stats == 3.7)  # picked voxel values: exact
    # the mean is a float64 sum of 168 equal terms divided back: a few ulps at most
    np.testing.assert_allclose(out["dose_mean_gy"], 3.7, rtol=1e-13)


def test_mass_weighted_mean():
    dose = np.array([1.0, 3.0, 10.0])
    labels = np.array([1, 1, 2])
    mass = np.array([1.0, 3.0, 0.5])
    out = voi_dose_indices(dose, labels, voxel_mass_g=mass)
    # (1*1 + 3*3) / (1 + 3) = 2.5, whereas the voxel mean is 2.0
    assert out.loc[1, "dose_mean_gy"] == 2.5
    assert voi_dose_indices(dose, labels).loc[1, "dose_mean_gy"] == 2.0
    # a scalar mass weights every voxel equally: the voxel mean
    assert voi_dose_indices(dose, labels, voxel_mass_g=0.2).loc[1, "dose_mean_gy"] == 2.0


def _reference_dx(values: np.ndarray, percent: int) -> float:
    """Largest dose D with at least percent % of the voxels receiving >= D (brute force)."""
    fraction_at_least = np.array([(values >= d).mean() for d in values])
    return float(values[fraction_at_least >= percent / 100].max())


@settings(max_examples=60, deadline=None)
@given(
    dose=hnp.arrays(
        np.float64,
        st.integers(1, 60),
        elements=st.floats(0, 1e3, allow_nan=False, allow_subnormal=False),
    ),
    data=st.data(),
)
def test_matches_brute_force_definition(dose, data):
    labels = data.draw(hnp.arrays(np.int64, dose.shape, elements=st.integers(0, 3)))
    if not (labels > 0).any():
        labels[0] = 1
    out = voi_dose_indices(dose, labels)
    for voi, row in out.iterrows():
        values = dose[labels == voi]
        for percent in DX_PERCENTS:
            assert row[f"dose_d{percent}_gy"] == _reference_dx(values, percent)
        assert row["dose_median_gy"] == np.median(values)
        assert row["dose_min_gy"] == values.min() and row["dose_max_gy"] == values.max()
        # mean: different summation order than numpy's pairwise sum -> relative 1e-12
        np.testing.assert_allclose(row["dose_mean_gy"], values.mean(), rtol=1e-12, atol=1e-12)
        assert row["dose_min_gy"] <= row["dose_d98_gy"] <= row["dose_d50_gy"]
        assert row["dose_d50_gy"] <= row["dose_d2_gy"] <= row["dose_max_gy"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": np.ones((3, 3), dtype=int)}, "shape"),
        ({"labels": np.ones(4, dtype=float)}, "integer"),
        ({"dose_gy": np.array([1.0, np.nan, 2.0, 3.0])}, "non-finite"),
        ({"dose_gy": np.array(["a", "b", "c", "d"])}, "numeric"),
        ({"voi_ids": [1, 5]}, r"\[5\] have no voxel"),
        ({"voi_ids": [1, 1]}, "unique"),
        ({"voxel_mass_g": np.array([1.0, 0.0, 1.0, 1.0])}, "voxel_mass_g"),
        ({"voxel_mass_g": -1.0}, "voxel_mass_g"),
        ({"labels": np.zeros(4, dtype=int)}, "no non-zero label"),
    ],
)
def test_bad_input(kwargs, message):
    args = {"dose_gy": np.array([1.0, 2.0, 3.0, 4.0]), "labels": np.array([1, 1, 2, 2])}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        voi_dose_indices(**args)


def test_nan_outside_reported_vois_is_ignored():
    out = voi_dose_indices(np.array([np.nan, 2.0, 4.0]), np.array([0, 1, 1]))
    assert out.loc[1, "dose_mean_gy"] == 3.0


# --------------------------------------------------------------------------------------------
# dvh
# --------------------------------------------------------------------------------------------


def test_dvh_endpoints_monotone_and_consistent_with_dx():
    rng = np.random.default_rng(3)
    dose = rng.gamma(2.0, 5.0, size=(20, 20, 20))
    mask = np.zeros(dose.shape, bool)
    mask[2:15, 3:18, 5:12] = True
    curve = dvh(dose, mask, bins=300)
    assert curve.dose_gy[0] == 0.0 and curve.volume_fraction[0] == 1.0
    assert curve.dose_gy[-1] == dose[mask].max()
    assert curve.volume_fraction[-1] == 1 / mask.sum()  # only the hottest voxel is >= max
    assert np.all(np.diff(curve.volume_fraction) <= 0)
    labels = mask.astype(np.int8)
    row = voi_dose_indices(dose, labels).loc[1]
    values = dose[mask]
    for percent in DX_PERCENTS:
        dx = row[f"dose_d{percent}_gy"]
        at = dvh(dose, mask, bins=[dx, np.nextafter(dx, np.inf)]).volume_fraction
        assert at[0] >= percent / 100 > at[1]  # D_x is where the step DVH crosses x %
    beyond = dvh(dose, mask, bins=[values.max() + 1.0]).volume_fraction
    assert beyond.tolist() == [0.0]


def test_dvh_bad_input():
    dose = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="boolean"):
        dvh(dose, np.array([1, 1]))
    with pytest.raises(ValueError, match="no voxel"):
        dvh(dose, np.zeros(2, bool))
    with pytest.raises(ValueError, match="strictly increasing"):
        dvh(dose, np.ones(2, bool), bins=[2.0, 1.0])
    with pytest.raises(ValueError, match="bins"):
        dvh(dose, np.ones(2, bool), bins=1)
    with pytest.raises(ValueError, match="shape"):
        dvh(dose, np.ones(3, bool))


# --------------------------------------------------------------------------------------------
# dvh_table
# --------------------------------------------------------------------------------------------


def test_dvh_table_hand_computed_four_voxels():
    # 4 voxels, hottest first 4, 3, 2, 1 Gy: k = max(1, ceil(4 x / 100)) is 1 for
    # x <= 25, 2 for 25 < x <= 50, 3 for 50 < x <= 75 and 4 above, so D_x steps
    # 4 -> 3 -> 2 -> 1 just after 25, 50 and 75 %; D_0 is the maximum, D_100 the minimum.
    dose = np.array([[4.0, 1.0], [3.0, 2.0]])
    out = dvh_table(dose, np.ones((2, 2), dtype=np.int32))
    assert out.columns.tolist() == ["voi_id", "volume_pct", "dose_gy"]
    assert out["voi_id"].tolist() == [1] * 101
    assert out["volume_pct"].tolist() == list(range(101))
    expected = [4.0] * 26 + [3.0] * 25 + [2.0] * 25 + [1.0] * 25
    assert out["dose_gy"].tolist() == expected
    assert out.dtypes.tolist() == [np.int64, np.float64, np.float64]


def test_dvh_table_hand_computed_hundred_voxels():
    # doses 1..100 Gy: the x hottest voxels are x % of the volume, so D_x = 101 - x
    # (the x-th hottest) for x >= 1 and D_0 = the maximum, 100 Gy.
    dose = np.random.default_rng(1).permutation(np.arange(1.0, 101.0))
    out = dvh_table(dose, np.full(100, 3))
    x = np.arange(101)
    np.testing.assert_array_equal(out["dose_gy"], 101.0 - np.maximum(x, 1))


def test_dvh_table_fractional_percentages():
    # 375 voxels 1..375 Gy: 8.8 % is exactly 33 voxels (8.8 x 375 / 100 = 33, which binary
    # floating point computes as 33.00000000000001; a naive ceil would take 34 voxels):
    # D_8.8 = 33rd hottest = 343 Gy. 0.1 % is 0.375 voxel -> 1 voxel -> the maximum;
    # 12.35 % is 46.3125 voxels -> 47 -> 329 Gy.
    dose = np.arange(1.0, 376.0)
    out = dvh_table(dose, np.ones(375, dtype=int), volume_pct=[8.8, 0.1, 12.35])
    assert out["volume_pct"].tolist() == [8.8, 0.1, 12.35]  # the order asked for
    assert out["dose_gy"].tolist() == [343.0, 375.0, 329.0]


def test_dvh_table_rows_are_the_dose_indices():
    # the D2/D50/D98 of voi_dose_indices are rows of the DVH, D0 the maximum and D100 the
    # minimum, exactly (same sort, same index arithmetic), for VOIs of 1 to ~1000 voxels
    rng = np.random.default_rng(11)
    dose = rng.lognormal(2.0, 0.7, size=(12, 14, 16))
    labels = rng.choice([0, 1, 2, 5, 9], size=dose.shape, p=[0.3, 0.4, 0.2, 0.1, 0.0])
    labels[0, 0, 0] = 9  # a one-voxel VOI
    mass = rng.uniform(0.5, 1.5, size=dose.shape)
    ids = [5, 1, 9, 2]  # any order
    table = voi_dose_indices(dose, labels, voi_ids=ids, voxel_mass_g=mass)
    curve = dvh_table(dose, labels, voi_ids=ids)
    assert curve["voi_id"].unique().tolist() == ids
    wide = curve.pivot(index="voi_id", columns="volume_pct", values="dose_gy").loc[ids]
    for percent in DX_PERCENTS:
        np.testing.assert_array_equal(wide[float(percent)], table[f"dose_d{percent}_gy"])
    np.testing.assert_array_equal(wide[0.0], table["dose_max_gy"])
    np.testing.assert_array_equal(wide[100.0], table["dose_min_gy"])
    assert (np.diff(wide.to_numpy(), axis=1) <= 0).all()  # non-increasing in volume
    assert (wide.loc[9] == dose[labels == 9][0]).all()


@settings(max_examples=60, deadline=None)
@given(
    dose=hnp.arrays(
        np.float64,
        st.integers(1, 60),
        elements=st.floats(0, 1e3, allow_nan=False, allow_subnormal=False),
    ),
    data=st.data(),
)
def test_dvh_table_matches_brute_force_definition(dose, data):
    labels = data.draw(hnp.arrays(np.int64, dose.shape, elements=st.integers(0, 3)))
    if not (labels > 0).any():
        labels[0] = 1
    out = dvh_table(dose, labels)
    assert len(out) == DVH_VOLUME_PCT.size * np.unique(labels[labels > 0]).size
    for (voi, percent), value in out.set_index(["voi_id", "volume_pct"])["dose_gy"].items():
        assert value == _reference_dx(dose[labels == voi], percent)


@pytest.mark.parametrize(
    ("volume_pct", "message"),
    [
        ([], "non-empty"),
        ([[1, 2]], "1-D"),
        ([-1, 50], r"\[0, 100\]"),
        ([50, 100.5], r"\[0, 100\]"),
        ([np.nan], "finite"),
        ([2, 2], "repeat"),
        (["2"], "numeric"),
    ],
)
def test_dvh_table_bad_volume_pct(volume_pct, message):
    with pytest.raises(ValueError, match=message):
        dvh_table(np.array([1.0, 2.0]), np.array([1, 1]), volume_pct=volume_pct)


def test_dvh_table_bad_voxels_refused_like_voi_dose_indices():
    with pytest.raises(ValueError, match=r"\[4\] have no voxel"):
        dvh_table(np.array([1.0, 2.0]), np.array([1, 1]), voi_ids=[1, 4])
    with pytest.raises(ValueError, match="non-finite"):
        dvh_table(np.array([1.0, np.inf]), np.array([1, 1]))


# --------------------------------------------------------------------------------------------
# patient_index
# --------------------------------------------------------------------------------------------


def _rows(patient, workflow, cycle, vois, center="C1"):
    return pd.DataFrame(
        [
            {
                "patient_id": patient,
                "cycle": cycle,
                "center": center,
                "workflow": workflow,
                "workflow_version": "1",
                "voi_id": voi,
                "voi_kind": kind,
                "dose_mean_gy": d,
                "mass_g": m,
            }
            for voi, kind, d, m in vois
        ]
    )


@pytest.fixture
def voi_dose():
    # P1 / "w": cycles 1, 2 and 4 measured (3 missing); lesion 11 absent in cycle 2;
    # an organ row that must not enter the lesion indices.
    p1 = pd.concat(
        [
            _rows(
                "P1",
                "w",
                1,
                [(1, "organ", 5.0, 1000.0), (10, "lesion", 10.0, 2.0), (11, "lesion", 20.0, 1.0)],
            ),
            _rows("P1", "w", 2, [(1, "organ", 4.0, 1000.0), (10, "lesion", 8.0, 2.0)]),
            _rows("P1", "w", 4, [(10, "lesion", 6.0, 2.0), (11, "lesion", 12.0, 1.0)]),
        ]
    )
    p2 = _rows("P2", "w", 4, [(3, "lesion", 7.0, 1.0)])  # cycle 1 missing
    p3 = _rows("P3", "w", 1, [(1, "organ", 3.0, 900.0)])  # no lesion
    return pd.concat([p1, p2, p3], ignore_index=True)


def test_per_cycle_indices(voi_dose):
    out = patient_index(voi_dose).set_index(["patient_id", "cycle"])
    # P1 cycle 1: lesions 10 Gy (2 g) and 20 Gy (1 g): GMD = (20 + 20) / 3 = 40/3
    row = out.loc[("P1", 1)]
    assert row["n_lesions"] == 2
    assert row[
        ["lesion_dose_min_gy", "lesion_dose_median_gy", "lesion_dose_mean_gy", "lesion_dose_max_gy"]
    ].tolist() == [10.0, 15.0, 15.0, 20.0]
    assert row["global_mean_dose_gy"] == pytest.approx(40 / 3, rel=1e-15)  # one rounding
    # P1 cycle 4: (6*2 + 12*1) / 3 = 8
    assert out.loc[("P1", 4), "global_mean_dose_gy"] == 8.0
    # P3 has no lesion: n_lesions 0 and null lesion doses, the row still exists
    assert out.loc[("P3", 1), "n_lesions"] == 0
    assert np.isnan(out.loc[("P3", 1), "global_mean_dose_gy"])
    assert out.loc[("P3", 1), "center"] == "C1"


_CUM_LESION = [
    "cum_lesion_dose_min_gy",
    "cum_lesion_dose_median_gy",
    "cum_lesion_dose_mean_gy",
    "cum_lesion_dose_max_gy",
]


def _four_cycles(pid="P4"):
    # every planned cycle measured: lesion 1 (2 g) and lesion 2 (1 g)
    doses = {1: (10.0, 40.0), 2: (9.0, 36.0), 3: (8.0, 32.0), 4: (7.0, 28.0)}
    return pd.concat(
        [
            _rows(pid, "w", c, [(1, "lesion", d1, 2.0), (2, "lesion", d2, 1.0)])
            for c, (d1, d2) in doses.items()
        ]
    )


def test_cumulative_is_the_total_over_the_planned_treatment(voi_dose):
    rows = pd.concat([voi_dose, _four_cycles()], ignore_index=True)
    out = patient_index(rows, cumulative_rule="sum").set_index(["patient_id", "cycle"])
    # P4 measured 1..4: lesion 1 = 10 + 9 + 8 + 7 = 34, lesion 2 = 136; GMD per cycle
    # (2 d1 + d2) / 3 = 2 d1, total 2 * 34 = 68; the same on every row of the patient
    for c in (1, 2, 3, 4):
        row = out.loc[("P4", c)]
        assert row[_CUM_LESION].tolist() == [34.0, 85.0, 85.0, 136.0]
        assert row["cum_global_mean_dose_gy"] == pytest.approx(68.0, rel=1e-15)
        assert row["cum_basis"] == "measured_sum"
        assert (row["cum_cycles_planned"], row["cum_cycles_measured"]) == (4, 4)
    # P1 misses cycle 3, P2 cycles 1-3: the strict sum rule gives no total, and says why
    for pid, cycle, measured in (("P1", 4, "1,2,4"), ("P2", 4, "4")):
        row = out.loc[(pid, cycle)]
        assert row["cum_basis"] == "incomplete" and row["cum_n_cycles"] == 0
        assert np.isnan(row["cum_global_mean_dose_gy"]) and np.isnan(row["cum_lesion_dose_mean_gy"])
        assert row["cum_rule"] == f"sum: incomplete, cycles {measured} measured of 1-4 planned"
    # P3 has no lesion: no total either, and the reason says so
    assert "has no lesion dose" in out.loc[("P3", 1), "cum_rule"]


def test_cumulative_sum_interpolated_and_extrapolated(voi_dose):
    out = patient_index(voi_dose, cumulative_rule="sum_interpolated").set_index(
        ["patient_id", "cycle"]
    )
    # P1: GMD 40/3, 8, (8), 8 with cycle 3 interpolated between cycles 2 and 4 -> 112/3;
    # lesion 10: 10 + 8 + 7 + 6 = 31; lesion 11 is absent from measured cycle 2: left out
    p1 = out.loc[("P1", 1)]
    assert p1["cum_global_mean_dose_gy"] == pytest.approx(112 / 3, rel=1e-15)
    assert p1[_CUM_LESION].tolist() == [31.0] * 4
    assert (p1["cum_basis"], p1["cum_cycles_measured"], p1["cum_n_cycles"]) == (
        "interpolated",
        3,
        4,
    )
    # P2 lacks cycle 1: interpolation cannot reach it
    assert out.loc[("P2", 4), "cum_basis"] == "incomplete"
    ext = patient_index(voi_dose, cumulative_rule="sum_extrapolated").set_index(
        ["patient_id", "cycle"]
    )
    # P2: cycle 4 carried back to cycles 1-3: 4 x 7 Gy
    assert ext.loc[("P2", 4), "cum_global_mean_dose_gy"] == 28.0
    assert ext.loc[("P2", 4), "cum_basis"] == "extrapolated"
    assert ext.loc[("P1", 4), "cum_basis"] == "interpolated"


@pytest.mark.parametrize("n_cycles", [1, 2, 3, 4, 6])
def test_row_fills_are_pandas_interpolate_and_fill_bit_for_bit(n_cycles):
    # the treatment totals fill missing cycles with one vectorised numpy.interp over all
    # rows; pandas' interpolate(axis=1, method="index", limit_area="inside") (one
    # numpy.interp per row) and ffill/bfill, which the totals used before, are the reference:
    # the same bits, including values spanning 1e-300..1e300, signs and infinities
    from harmonize.indices import _fill_inside, _fill_nearest

    rng = np.random.default_rng(n_cycles)
    rows = 3000
    values = rng.lognormal(2.0, 2.0, (rows, n_cycles))
    values *= rng.choice([1.0, -1.0, 1e-300, 1e300], (rows, n_cycles))
    values[rng.random((rows, n_cycles)) < 0.45] = np.nan
    columns = pd.RangeIndex(1, n_cycles + 1, name="cycle")
    frame = pd.DataFrame(values, columns=columns)
    expected = frame.interpolate(axis=1, method="index", limit_area="inside")
    inside = _fill_inside(values, columns.to_numpy(np.float64))
    assert (np.isnan(inside) < np.isnan(values)).any() or n_cycles < 3  # something filled
    nearest = _fill_nearest(inside)
    for got, want in (
        (inside, expected.to_numpy()),
        (nearest, expected.ffill(axis=1).bfill(axis=1).to_numpy()),
    ):
        assert np.array_equal(np.isnan(got), np.isnan(want))
        shown = ~np.isnan(want)
        assert np.array_equal(got[shown].view(np.uint64), want[shown].view(np.uint64))


def test_cumulative_milan_interpolated(voi_dose):
    out = patient_index(voi_dose, cumulative_rule="milan_interpolated").set_index(
        ["patient_id", "cycle"]
    )
    # P1: GTD_TOT = 4 (GTD1 + GTD4) / 2 = 2 (40/3 + 8) = 128/3, whatever cycle 2 measured;
    # lesion 10: 4 (10 + 6) / 2 = 32 (lesion 11 is absent from measured cycle 2)
    row = out.loc[("P1", 2)]
    assert row["cum_global_mean_dose_gy"] == pytest.approx(128 / 3, rel=1e-15)
    assert row[_CUM_LESION].tolist() == [32.0] * 4
    assert (row["cum_basis"], row["cum_cycles_measured"]) == ("interpolated", 3)
    # P2 lacks cycle 1: incomplete, said so
    p2 = out.loc[("P2", 4)]
    assert np.isnan(p2["cum_global_mean_dose_gy"]) and p2["cum_n_cycles"] == 0
    assert p2["cum_rule"].startswith("milan_interpolated: incomplete")


def test_milan_formula_is_the_sum_of_the_linear_interpolation():
    # LUTADOSE: GTD_TOT = 4 x (GTD1 + GTD4) / 2 with cycles 2-3 interpolated; the same total
    # as sum_interpolated (linear interpolation of cycles 2-3, then the sum)
    rows = pd.concat(
        [
            _rows("P", "milan", 1, [(1, "lesion", 12.0, 4.0), (2, "lesion", 30.0, 2.0)]),
            _rows("P", "milan", 4, [(1, "lesion", 9.0, 4.0), (2, "lesion", 15.0, 2.0)]),
        ]
    )
    out = patient_index(rows, cumulative_rule="milan_interpolated", planned_cycles=4)
    gtd1 = (12 * 4 + 30 * 2) / 6  # 18
    gtd4 = (9 * 4 + 15 * 2) / 6  # 11
    assert out["global_mean_dose_gy"].tolist() == [gtd1, gtd4]
    assert out["cum_global_mean_dose_gy"].tolist() == [4 * (gtd1 + gtd4) / 2] * 2
    same = patient_index(rows, cumulative_rule="sum_interpolated", planned_cycles=4)
    np.testing.assert_allclose(
        same["cum_global_mean_dose_gy"], out["cum_global_mean_dose_gy"], rtol=1e-14
    )
    with pytest.raises(ValueError, match="planned_cycles"):
        patient_index(rows, cumulative_rule="milan_interpolated", planned_cycles=3)


def test_fill_cumulative_basis_derives_old_files():
    # a schema-1.1.0 table: cumulative of row c over cycles 1..c, no basis columns
    old = pd.DataFrame(
        {
            "patient_id": ["P", "P", "Q"],
            "cycle": [1, 4, 4],
            "cum_n_cycles": [1, 2, 4],
            "cum_rule": ["sum", "sum", "milan_interpolated"],
            "cum_global_mean_dose_gy": [10.0, 18.0, 40.0],
        }
    )
    out = fill_cumulative_basis(old)
    assert out["cum_cycles_planned"].tolist() == [1, 4, 4]
    assert out["cum_basis"].tolist() == ["measured_sum", "incomplete", "interpolated"]
    # a partial sum is not a treatment total
    assert np.isnan(out.loc[1, "cum_global_mean_dose_gy"])
    assert out.loc[2, "cum_global_mean_dose_gy"] == 40.0


def test_workflows_are_separate_and_output_is_schema_valid(voi_dose):
    from harmonize.schema import to_arrow_table

    other = voi_dose.assign(workflow="v", dose_mean_gy=voi_dose["dose_mean_gy"] * 2)
    both = pd.concat([voi_dose, other], ignore_index=True)
    out = patient_index(both)
    assert len(out) == 2 * len(patient_index(voi_dose))
    w = out[out.workflow == "w"].reset_index(drop=True)
    v = out[out.workflow == "v"].reset_index(drop=True)
    np.testing.assert_array_equal(v["global_mean_dose_gy"], 2 * w["global_mean_dose_gy"])
    for rule in ("sum", "sum_interpolated", "sum_extrapolated", "milan_interpolated"):
        table = to_arrow_table(patient_index(both, cumulative_rule=rule), "patient_index")
        assert table.num_rows == len(out)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="mass_g"), "lacks column"),
        (lambda df: pd.concat([df, df.iloc[[1]]]), "duplicated"),
        (lambda df: df.assign(dose_mean_gy=df["dose_mean_gy"].where(df.voi_id != 10)), "finite"),
        (lambda df: df.assign(mass_g=df["mass_g"].where(df.voi_id != 11, 0.0)), "mass_g"),
        (lambda df: df.assign(voi_kind=df["voi_kind"].replace("organ", "tumour")), "voi_kind"),
        (lambda df: df.assign(cycle=df["cycle"] * 1.5), "integer"),
        (lambda df: df.assign(center=np.where(df.voi_id == 11, "X", "C1")), "center"),
    ],
)
def test_patient_index_bad_input(voi_dose, change, message):
    with pytest.raises(ValueError, match=message):
        patient_index(change(voi_dose))


def test_patient_index_bad_rule(voi_dose):
    with pytest.raises(ValueError, match="cumulative_rule"):
        patient_index(voi_dose, cumulative_rule="mean")
    with pytest.raises(ValueError, match="planned_cycles"):
        patient_index(voi_dose, planned_cycles=0)
