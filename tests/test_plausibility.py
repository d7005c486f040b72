"""Plausibility guards: each reproducer of issue 12 as a test asserting the message or flag."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import harmonize as hz
from harmonize import plausibility
from harmonize.kinetics import KineticsError, fit_tac, fit_voxels
from harmonize.kinetics.voxel import VoxelFlag
from harmonize.registry import get_workflow

ADAPTERS = ("bordet", "milan", "montpellier")
#: The time points every built-in adapter finds (phantom protocol, harmonize.phantom).
TIMES_H = (4.0, 24.0, 48.0, 72.0, 96.0, 168.0, 192.0)


def lesion_study(lesion_hu: float = 40.0, frame_zero_h: float | None = None) -> xr.Dataset:
    """12³ grid of 4 mm voxels: body, liver, and a 6³-voxel lesion (13.8 mL) in the liver.

    Mono-exponential kinetics (effective half-lives 60 h in the lesion, 40 h elsewhere).
    """
    labels = np.ones((12, 12, 12), dtype=np.int32)
    labels[1:11, 1:11, 1:11] = 2
    labels[3:9, 3:9, 3:9] = 3
    t = np.asarray(TIMES_H)
    conc = np.where(labels == 3, 2e5, 2e4)[None] * np.exp(
        -np.log(2) / np.where(labels == 3, 60.0, 40.0)[None] * t[:, None, None, None]
    )
    if frame_zero_h is not None:
        conc[TIMES_H.index(frame_zero_h)] = 0.0
    ct = np.where(labels == 3, lesion_hu, 40.0)
    return hz.make_study(
        activity_bq_ml=conc,
        times_h=t,
        voxel_size_mm=(4.0, 4.0, 4.0),
        labels=labels,
        vois=[
            {"voi_id": 1, "name": "body", "kind": "body"},
            {"voi_id": 2, "name": "liver", "kind": "organ", "parent_id": 1},
            {"voi_id": 3, "name": "lesion_01", "kind": "lesion", "parent_id": 2},
        ],
        patient_id="P001",
        cycle=1,
        center="test",
        injected_activity_mbq=7400.0,
        injection_time="2000-01-03T09:00:00",
        ct_hu=ct,
    )


# -- CT of −1000 HU inside a 15 mL lesion ------------------------------------------------
@pytest.mark.parametrize("name", ADAPTERS)
def test_air_in_a_lesion_is_flagged_and_gets_the_nominal_density(name):
    normal = get_workflow(name)().run(lesion_study(40.0)).voi_dose.set_index("voi_name")
    air = get_workflow(name)().run(lesion_study(-1000.0)).voi_dose.set_index("voi_name")
    lesion = air.loc["lesion_01"]
    assert "implausible_density" in lesion["flags"].split(";")
    # fallback: nominal density × volume, not 0.018 g (the reproducer's mass)
    assert lesion["mass_g"] == pytest.approx(
        plausibility.NOMINAL_DENSITY_G_ML * lesion["volume_ml"], rel=1e-9
    )
    # the dose is that of tissue: within 10 % of the +40 HU study (40 HU is 1.04–1.05 g/mL)
    assert lesion["dose_mean_gy"] == pytest.approx(normal.loc["lesion_01", "dose_mean_gy"], rel=0.1)
    assert "implausible_density" not in normal.loc["lesion_01", "flags"]
    assert "implausible_density" not in air.loc["liver", "flags"]


def test_density_guard_leaves_tissue_and_body_alone():
    labels = np.array([[[1, 1, 2, 2, 3, 3]]])
    rho = np.array([[[0.001, 0.001, 1.05, 1.05, 2.5, 2.5]]])
    out, flags = plausibility.density_with_fallback(
        rho, labels, [1, 2, 3], ["body", "organ", "lesion"]
    )
    assert flags == ["", "", "implausible_density"]  # air in the body is legitimate
    np.testing.assert_array_equal(out.ravel(), [0.001, 0.001, 1.05, 1.05, 1.04, 1.04])


# -- Bordet with the 24 h frame all zero ---------------------------------------------------
def test_all_zero_frame_is_refused_naming_the_time_point():
    with pytest.raises(hz.StudyError, match=r"activity: the frame\(s\) at 24 h are all zero"):
        lesion_study(frame_zero_h=24.0)


def test_non_finite_frame_names_the_time_point(make_tiny_study):
    activity = np.full((3, 6, 7, 8), 1e4)
    activity[2, 0, 0, 0] = np.nan
    with pytest.raises(hz.StudyError, match=r"NaN or infinite, in the frame\(s\) at 72 h"):
        make_tiny_study(activity_bq_ml=activity)


# -- times in seconds ------------------------------------------------------------------------
T = np.array([4.0, 24.0, 72.0, 192.0])
Y = 50.0 * np.exp(-0.02 * T)


@pytest.mark.parametrize("model", ["monoexp", "trapezoid", "auto"])
def test_times_in_seconds_are_refused_naming_hours(model):
    with pytest.raises(KineticsError, match="must be in hours.*minutes or seconds"):
        fit_tac(T * 3600, Y, model)


def test_times_in_minutes_are_refused_in_fit_voxels():
    with pytest.raises(KineticsError, match="must be in hours"):
        fit_voxels(T * 60, np.ones((4, 1, 1, 2)) * Y[:, None, None, None])


def test_study_times_in_seconds_are_refused(make_tiny_study):
    with pytest.raises(hz.StudyError, match=r"time: must be in hours after injection"):
        make_tiny_study(times_h=[4 * 3600.0, 24 * 3600.0, 72 * 3600.0])


def test_the_20_half_life_bound_is_not_hit_by_a_long_protocol():
    # 177Lu: 20 × 159.5 h ≈ 3190 h; a 30-day late image (720 h) is fine
    fit = fit_tac([4.0, 24.0, 168.0, 720.0], 50.0 * np.exp(-0.02 * np.array([4, 24, 168, 720])))
    assert np.isfinite(fit.tia) and fit.tia > 0


def test_trapezoid_tail_does_not_overflow_at_large_lambda_times_t():
    # λ·t_last = 0.9 · 3000 = 2700 > 709: the old form exp(λ·t_last) overflowed
    t = np.array([100.0, 2000.0, 2999.0, 3000.0])
    y = np.array([1.0, 1e-3, 4e-4, 1.6e-4])
    fit = fit_tac(t, y, "trapezoid")
    assert np.isfinite(fit.tia) and fit.tia > 0


# -- negative integral, overflow -----------------------------------------------------------------
def test_negative_trapezoid_integral_is_refused():
    with pytest.raises(KineticsError, match=r"time-integrated activity is -791.85 ≤ 0"):
        fit_tac([4, 24, 72, 192], [-100, 1, 1, 1], "trapezoid")


@pytest.mark.parametrize("model", ["trapezoid", "monoexp", "auto"])
def test_activities_of_1e308_are_refused(model):
    with pytest.raises(KineticsError, match=r"magnitude 1e\+308, beyond 1e\+30"):
        fit_tac(T, [1e308] * 4, model)


def test_voxel_negative_integral_is_zero_and_flagged():
    a = np.array([-5.0, -4.0, 0.5, 0.1])[:, None, None, None] * np.ones((4, 1, 1, 1))
    res = fit_voxels(T, a, "trapezoid", return_details=True)
    assert res.tia[0, 0, 0] == 0.0
    assert res.flags[0, 0, 0] & VoxelFlag.NEGATIVE_INTEGRAL


# -- implausible dose, TIA, poor fit -----------------------------------------------------------
def test_flags_for_implausible_dose_tia_and_poor_fit():
    import pandas as pd

    rows = pd.DataFrame(
        {
            "voi_id": [1, 2, 3],
            "voi_name": ["a", "b", "c"],
            "tia_mbq_h": [100.0, 7400.0 / (np.log(2) / 159.5) * 1.01, 50.0],
            "dose_mean_gy": [1001.0, 5.0, 5.0],
            "fit_r2": [0.99, np.nan, 0.5],
            "flags": ["", "no_washout", ""],
        }
    )
    out = plausibility.flag_voi_results(rows, 7400.0, "Lu-177")
    assert out["flags"].tolist() == ["implausible_dose", "no_washout;implausible_tia", "poor_fit"]


def test_non_physical_results_are_refused_naming_the_voi():
    import pandas as pd

    rows = pd.DataFrame(
        {
            "voi_id": [1, 7],
            "voi_name": ["a", "lesion_07"],
            "tia_mbq_h": [100.0, 100.0],
            "mass_g": [1.0, 1.0],
            "dose_mean_gy": [1.0, np.nan],
        }
    )
    with pytest.raises(hz.WorkflowError, match=r"VOI 7 \(lesion_07\): dose_mean_gy = nan"):
        plausibility.check_voi_results(rows, "here")
