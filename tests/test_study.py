"""Study model: construction, validation messages, VOI masks."""

from __future__ import annotations

import numpy as np
import pytest

import harmonize as hz
from harmonize.study import voxel_size_mm, voxel_volume_ml


def test_valid_study_layout(study):
    assert study["activity"].dims == ("time", "z", "y", "x")
    assert study["activity"].attrs["units"] == "Bq/mL"
    assert study["activity"].dtype == np.float32
    assert study["time"].attrs["units"] == "h"
    assert voxel_size_mm(study) == (4.0, 4.5, 5.0)
    assert voxel_volume_ml(study) == pytest.approx(4.0 * 4.5 * 5.0 / 1000.0)
    np.testing.assert_allclose(study["x"].values[:3], [0.0, 5.0, 10.0])
    assert hz.validate_study(study) is study


def test_voi_mask_includes_descendants(study):
    labels = study["labels"].values
    liver_all = hz.voi_mask(study, 2)
    liver_own = hz.voi_mask(study, 2, include_children=False)
    assert liver_all.sum() == ((labels == 2) | (labels == 3)).sum()
    assert liver_own.sum() == (labels == 2).sum()
    assert hz.voi_mask(study, 1).sum() == (labels > 0).sum()
    with pytest.raises(hz.StudyError, match="voi_id 9"):
        hz.voi_mask(study, 9)


def _broken(study, mutate):
    ds = study.copy(deep=True)
    mutate(ds)
    return ds


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda ds: ds["activity"].values.__setitem__((0, 0, 0, 0), np.nan),
            "activity: 1 values are NaN",
        ),
        (
            lambda ds: ds["activity"].values.__setitem__((0, 0, 0, 0), -1.0),
            "activity: 1 values are negative",
        ),
        (
            lambda ds: ds["activity"].attrs.__setitem__("units", "kBq/mL"),
            "activity: units attribute must be 'Bq/mL'",
        ),
        (
            lambda ds: ds["activity"].attrs.__setitem__("decay_corrected", 1),
            "must not be decay corrected",
        ),
        (
            lambda ds: ds.attrs.__setitem__("radionuclide", "Xx-999"),
            "radionuclide.*unknown radionuclide 'Xx-999'",
        ),
        (lambda ds: ds.attrs.__setitem__("cycle", 0), r"attrs\['cycle'\]: must be an integer ≥ 1"),
        (
            lambda ds: ds.attrs.__setitem__("injected_activity_MBq", -5.0),
            "injected_activity_MBq.*positive",
        ),
        (
            lambda ds: ds.attrs.__setitem__("injection_time", "yesterday"),
            "injection_time.*ISO 8601",
        ),
        (
            lambda ds: ds.attrs.pop("patient_id"),
            r"attrs\['patient_id'\]: required attribute is missing",
        ),
        (
            lambda ds: ds["labels"].values.__setitem__((0, 0, 0), 7),
            r"labels: label ids \[7\] are not in the VOI table",
        ),
        (lambda ds: ds.attrs.__setitem__("direction", np.ones(9)), "direction.*orthonormal"),
    ],
)
def test_validation_names_the_problem(study, mutate, message):
    with pytest.raises(hz.StudyError, match=message):
        hz.validate_study(_broken(study, mutate))


def test_non_increasing_and_negative_times(make_tiny_study):
    tiny_study = make_tiny_study
    with pytest.raises(hz.StudyError, match="time: must be strictly increasing"):
        tiny_study(times_h=[4.0, 24.0, 24.0])
    with pytest.raises(hz.StudyError, match="time: hours after injection must be ≥ 0"):
        tiny_study(times_h=[-1.0, 24.0, 72.0])


def test_wrong_dims_and_grid_mismatch(study, make_tiny_study):
    tiny_study = make_tiny_study
    with pytest.raises(hz.StudyError, match="activity_bq_ml: expected a 4-D array"):
        tiny_study(activity_bq_ml=np.zeros((6, 7, 8)))
    bad = study.drop_vars("ct").assign(
        ct=(("cz", "cy", "cx"), np.zeros((2, 2, 2), np.float32), {"units": "HU"})
    )
    with pytest.raises(hz.StudyError, match="ct: grid does not match the activity grid"):
        hz.validate_study(bad)
    wrong_spacing = study.assign_coords(x=study["x"] * 2)
    wrong_spacing["x"].attrs["units"] = "mm"
    with pytest.raises(hz.StudyError, match="x: coordinate spacing 10 mm disagrees"):
        hz.validate_study(wrong_spacing)


def test_voi_table_problems(make_tiny_study):
    tiny_study = make_tiny_study
    with pytest.raises(hz.StudyError, match="voi_kind: unknown kind"):
        tiny_study(
            vois=[
                {"voi_id": 1, "name": "body", "kind": "tumour"},
                {"voi_id": 2, "name": "a", "kind": "organ"},
                {"voi_id": 3, "name": "b", "kind": "lesion"},
            ]
        )
    with pytest.raises(hz.StudyError, match="voi_parent: parent ids \\[9\\]"):
        tiny_study(
            vois=[
                {"voi_id": 1, "name": "body", "kind": "body"},
                {"voi_id": 2, "name": "a", "kind": "organ", "parent_id": 9},
                {"voi_id": 3, "name": "b", "kind": "lesion"},
            ]
        )
    with pytest.raises(hz.StudyError, match="voi_name: VOI names must be non-empty and unique"):
        tiny_study(
            vois=[
                {"voi_id": 1, "name": "x", "kind": "body"},
                {"voi_id": 2, "name": "x", "kind": "organ"},
                {"voi_id": 3, "name": "b", "kind": "lesion"},
            ]
        )


def test_not_a_dataset():
    with pytest.raises(hz.StudyError, match="must be an xarray.Dataset"):
        hz.validate_study(np.zeros(3))  # type: ignore[arg-type]
