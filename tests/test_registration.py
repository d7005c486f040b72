"""Rigid registration of time points recovers known motions."""

from __future__ import annotations

import numpy as np
import pytest

import harmonize as hz
import harmonize.phantom as phantom
from harmonize.registration import CT_BY_TIME, move_study, register_time_points

VOXEL_MM = 9.28
SHIFTS_MM = np.array([[0.0, 0.0, 0.0], [12.0, -8.0, 6.0], [-5.0, 10.0, -14.0], [20.0, 3.0, -3.0]])
ROTATIONS_DEG = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 4.0]])


def _cheap_dose(tia_mbq_h, voxel_size_mm, density_g_ml, nuclide="Lu-177"):
    return np.zeros_like(np.asarray(tia_mbq_h, dtype=np.float64))


@pytest.fixture(scope="module")
def study():
    # the body (semi-axes 115 × 170 mm) lies inside this field of view, so the CT outline
    # pins every axis
    config = phantom.PhantomConfig(
        voxel_size_mm=VOXEL_MM,
        fov_mm=(150.0, 260.0, 360.0),
        times_h=(4.0, 24.0, 72.0, 168.0),
        cycles=(1,),
        noise=False,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom, "reference_dose_gy", _cheap_dose)
        return phantom.simulate_study(phantom.make_patient(0, 11, config), 1, 11, config)[0]


@pytest.fixture(scope="module")
def moved(study):
    return move_study(study, SHIFTS_MM, ROTATIONS_DEG)


def test_move_study_without_motion_is_identity(study):
    same = move_study(study, np.zeros((study.sizes["time"], 3)))
    # linear interpolation at the grid points themselves: weights of 1 ± float rounding
    top = float(study["activity"].max())
    np.testing.assert_allclose(
        same["activity"].values, study["activity"].values, rtol=1e-5, atol=1e-6 * top
    )
    np.testing.assert_allclose(same[CT_BY_TIME].values[0], study["ct"].values, atol=1e-3)


@pytest.mark.parametrize("on", ["activity", "ct"])
def test_registration_recovers_known_shift_within_one_voxel(study, moved, on):
    registered, transforms, quality = register_time_points(moved, on=on)
    assert registered.attrs["registration_on"] == on
    found = quality[["translation_x_mm", "translation_y_mm", "translation_z_mm"]].to_numpy()
    # Euler transforms map reference points to the moved image: their translation is the
    # patient's displacement (rotations are about the grid centre, as in move_study)
    assert np.all(np.abs(found - SHIFTS_MM) < VOXEL_MM)
    rotation_z = quality["rotation_z_deg"].to_numpy()
    assert abs(rotation_z[3] - 4.0) < 1.0
    assert len(transforms) == study.sizes["time"]
    # the alignment improves the similarity of every moved time point
    moved_rows = quality.iloc[1:]
    assert np.all(moved_rows["mattes_mi_after"] < moved_rows["mattes_mi_before"])
    # registered frames are closer to the unmoved ones than the moved frames were
    for t in range(1, study.sizes["time"]):
        before = np.abs(moved["activity"].values[t] - study["activity"].values[t]).sum()
        after = np.abs(registered["activity"].values[t] - study["activity"].values[t]).sum()
        assert after < 0.5 * before


def test_ct_registration_needs_ct_per_time_point(study):
    with pytest.raises(hz.StudyError, match=CT_BY_TIME):
        register_time_points(study, on="ct")
    with pytest.raises(hz.StudyError, match="reference_index"):
        register_time_points(study, reference_index=9)


def test_move_study_checks_shapes(study):
    with pytest.raises(hz.StudyError, match="shifts_mm"):
        move_study(study, np.zeros((2, 3)))
