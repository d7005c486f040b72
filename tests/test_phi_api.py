"""The PHI gate of the Python API: ``WorkflowAdapter.run`` refuses a study not de-identified.

``harmonize run`` refuses raw DICOM without a key (tests/test_deid.py); these tests show the
same rule holds for a physicist who opens the study and runs an adapter by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

import harmonize as hz
import harmonize.phantom as phantom
from harmonize.deid import deidentify_study, pseudonym
from harmonize.io import write_study_dicom
from harmonize.io.phi import IdentifiedStudyError
from harmonize.study import StudyError
from workflows.bordet import BordetWorkflow

PATIENT_ID = "HOSP-4711-ORIGINAL"
KEY = b"phi-api-test-key"
TIMES_H = (4.0, 24.0, 72.0)


def _adapter() -> BordetWorkflow:
    return BordetWorkflow(time_points_h=TIMES_H)


def _cheap_dose(tia_mbq_h, voxel_size_mm, density_g_ml, nuclide="Lu-177"):
    return np.zeros_like(np.asarray(tia_mbq_h, dtype=np.float64))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A phantom study written as raw DICOM (original ID, not de-identified) and as the
    de-identified DICOM harmonize writes for a pseudonymous study."""
    config = phantom.PhantomConfig(
        voxel_size_mm=9.28, fov_mm=(150.0, 170.0, 220.0), times_h=TIMES_H, cycles=(1,), noise=False
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom, "reference_dose_gy", _cheap_dose)  # the truth is not used here
        study, _ = phantom.simulate_study(phantom.make_patient(0, 5, config), 1, 5, config)
    root = tmp_path_factory.mktemp("phi_api")
    deidentified = write_study_dicom(study, root / "deidentified")
    raw = study.copy()
    # a clinical export: the original PatientID, and no PatientIdentityRemoved = YES (the
    # writer marks only pseudonymous studies de-identified)
    raw.attrs.update(patient_id=PATIENT_ID, identified=1)
    return study, write_study_dicom(raw, root / "raw"), deidentified


def test_raw_dicom_study_is_flagged_by_the_reader(folders):
    _, raw, deidentified = folders
    assert hz.open_study(raw).attrs.get("identified")
    assert not hz.open_study(deidentified).attrs.get("identified")


def test_adapter_run_refuses_raw_dicom_without_naming_the_patient(folders):
    _, raw, _ = folders
    study = hz.open_study(raw)
    assert study.attrs["patient_id"] == PATIENT_ID  # what would reach the tables
    with pytest.raises(IdentifiedStudyError) as caught:
        _adapter().run(study)
    message = str(caught.value)
    assert "'identified'" in message and "deidentify_study" in message
    assert PATIENT_ID not in message and "4711" not in message
    assert isinstance(caught.value, StudyError)  # the documented contract of run()


def test_identified_bundle_is_refused_too(folders, tmp_path):
    """A bundle kept for local use with ``allow_identified`` counts as raw, as in the runner."""
    _, raw, _ = folders
    bundle = hz.save_study(hz.open_study(raw), tmp_path / "raw.nc", allow_identified=True)
    with pytest.raises(IdentifiedStudyError):
        _adapter().run(hz.open_study(bundle))


def test_pseudonymised_study_runs_and_parquet_holds_no_original_id(folders, tmp_path):
    _, raw, _ = folders
    study = deidentify_study(hz.open_study(raw), KEY)
    result = _adapter().run(study)
    assert set(result.voi_dose["patient_id"]) == {pseudonym(PATIENT_ID, KEY)}
    files = hz.schema.write_results(
        {"voi_dose": result.voi_dose, "tac": result.tac}, tmp_path / "out"
    )
    assert files
    for path in files:
        assert PATIENT_ID.encode() not in path.read_bytes(), path
        assert PATIENT_ID not in str(path)
    back = hz.schema.read_results(tmp_path / "out")["voi_dose"]
    assert set(back["patient_id"]) == {pseudonym(PATIENT_ID, KEY)}


def test_deidentified_dicom_phantom_and_bundle_run_unchanged(folders, tmp_path):
    """Studies that are not identified run as before, with the same numbers."""
    study, _, deidentified = folders
    bundle = hz.save_study(study, tmp_path / "p.nc")
    doses = {}
    for name, opened in (
        ("phantom", study),
        ("bundle", hz.open_study(bundle)),
        ("dicom", hz.open_study(deidentified)),
    ):
        voi = _adapter().run(opened).voi_dose
        assert set(voi["patient_id"]) == {study.attrs["patient_id"]}, name
        doses[name] = voi.set_index("voi_id")["dose_mean_gy"]
    # the bundle holds the phantom's numbers exactly
    np.testing.assert_array_equal(doses["bundle"].to_numpy(), doses["phantom"].to_numpy())
    # DICOM stores 16-bit NM with a rescale slope; VOI means average over many voxels, so
    # the quantisation (≤ 8e-6 of each frame's maximum) moves them by far less than 0.5 %
    np.testing.assert_allclose(doses["dicom"].to_numpy(), doses["phantom"].to_numpy(), rtol=5e-3)
