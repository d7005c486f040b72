"""Real-data path end to end: phantom → DICOM → workflows, and moved patients."""

from __future__ import annotations

import numpy as np
import pytest

import harmonize as hz
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.runner import run_cohort
from harmonize.schema import read_results
from workflows.montpellier import MontpellierWorkflow

SMALL = PhantomConfig(
    voxel_size_mm=6.8, fov_mm=(210.0, 258.0, 360.0), cycles=(1,), n_lesions=(2, 3)
)


def _doses(results_dir):
    voi = read_results(results_dir)["voi_dose"]
    voi = voi[voi["workflow"] != "truth"]
    return voi.set_index(["workflow", "patient_id", "voi_id"])["dose_mean_gy"].sort_index()


def test_dicom_path_gives_the_bundle_doses(tmp_path):
    bundles = write_cohort(tmp_path / "bundles", n_patients=1, seed=2, config=SMALL)
    dicom = write_cohort(tmp_path / "dicom", n_patients=1, seed=2, config=SMALL, format="dicom")
    a = hz.open_cohort(bundles)["P001", 1]
    b = hz.open_cohort(dicom)["P001", 1]
    # NM stored as 16-bit integers with a per-frame rescale slope: each voxel is within
    # half a quantisation step, frame max / 131070, of the bundle value
    step = a["activity"].max(dim=("z", "y", "x")).values / 131070.0
    err = np.abs(b["activity"].values - a["activity"].values).max(axis=(1, 2, 3))
    assert np.all(err <= step * 1.01 + 1e-3)
    np.testing.assert_array_equal(a["labels"].values, b["labels"].values)
    run_cohort(bundles, "all", tmp_path / "r_bundle")
    run_cohort(dicom, "all", tmp_path / "r_dicom")
    da, db = _doses(tmp_path / "r_bundle"), _doses(tmp_path / "r_dicom")
    assert da.index.equals(db.index) and len(da) > 20
    # VOI doses average thousands of voxels: the per-voxel quantisation (≤ 8e-6 of the frame
    # maximum) and the CT's 0.5 HU rounding move them by far less than 0.2 %
    np.testing.assert_allclose(db.to_numpy(), da.to_numpy(), rtol=2e-3)


@pytest.fixture(scope="module")
def moved_pair():
    from harmonize.phantom import make_patient, simulate_study

    still = PhantomConfig(**{**SMALL.__dict__, "noise": False})
    moved = PhantomConfig(**{**still.__dict__, "motion_mm": 12.0})
    study_still, truth = simulate_study(make_patient(0, 9, still), 1, 9, still)
    study_moved, _ = simulate_study(make_patient(0, 9, moved), 1, 9, moved)
    return study_still, study_moved, truth


def test_moved_patient_is_registered_by_the_voxel_workflow(moved_pair):
    still, moved, _truth = moved_pair
    assert "ct_by_time" in moved.data_vars
    shift = np.abs(moved["activity"].values - still["activity"].values).max()
    assert shift > 0  # the patient did move

    def lesion_doses(study, registration):
        out = MontpellierWorkflow(registration=registration).run(study).voi_dose
        return out[out["voi_kind"] == "lesion"].set_index("voi_id")["dose_mean_gy"]

    reference = lesion_doses(still, "never")
    with_reg = lesion_doses(moved, "auto")
    without = lesion_doses(moved, "never")
    err_with = np.abs(with_reg / reference - 1)
    err_without = np.abs(without / reference - 1)
    # registration within a voxel leaves lesion doses within 5 %; without it, 12 mm shifts
    # of ≥ 20 mL lesions move activity out of the VOIs and the doses are clearly worse
    assert err_with.max() < 0.05, err_with.to_dict()
    assert err_without.mean() > 2 * err_with.mean(), (err_without.to_dict(), err_with.to_dict())


def test_save_maps_writes_the_dose_map_the_tables_come_from(tmp_path):
    import SimpleITK as sitk

    cohort = write_cohort(tmp_path / "c", n_patients=1, seed=3, config=SMALL)
    report = run_cohort(
        cohort, ["montpellier"], tmp_path / "r", save_maps="nifti", include_truth=False
    )
    assert report.ok
    path = tmp_path / "r" / "dose_maps" / "montpellier" / "P001_c1.nii.gz"
    dose = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    study = hz.open_cohort(cohort)["P001", 1]
    assert dose.shape == study["labels"].shape
    voi = read_results(tmp_path / "r")["voi_dose"].set_index("voi_id")
    for voi_id in voi.index[voi["voi_kind"] == "lesion"]:
        mask = study["labels"].values == voi_id
        # the table's mean is mass-weighted (CT density varies by ±1 % in a lesion): the
        # plain voxel mean of the saved map agrees to 1 %
        assert dose[mask].mean() == pytest.approx(voi.loc[voi_id, "dose_mean_gy"], rel=0.01)


def test_moved_patient_read_from_dicom_is_registered_on_its_cts(moved_pair, tmp_path):
    """Moved phantom → one CT per time point in DICOM → read back → registered on the CTs."""
    from harmonize.io import write_study_dicom

    still, moved, _truth = moved_pair
    back = hz.open_study(write_study_dicom(moved, tmp_path / "moved"))
    assert "ct_by_time" in back.data_vars

    def lesion_doses(study, registration):
        out = MontpellierWorkflow(registration=registration).run(study).voi_dose
        return out[out["voi_kind"] == "lesion"].set_index("voi_id")["dose_mean_gy"]

    reference = lesion_doses(still, "never")
    err = np.abs(lesion_doses(back, "auto") / reference - 1)
    # as for the in-memory moved study: registration within a voxel leaves lesion doses
    # within 5 % (the DICOM storage rounding, ≤ 0.5 HU and ≤ 8e-6 of each frame maximum,
    # is far below that)
    assert err.max() < 0.05, err.to_dict()
    assert len(err) >= 2
    # the registration did the work: the same DICOM study left unregistered is clearly worse
    err_without = np.abs(lesion_doses(back, "never") / reference - 1)
    assert err_without.mean() > 2 * err.mean(), (err_without.to_dict(), err.to_dict())
