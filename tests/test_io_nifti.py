"""NIfTI / MHA / NRRD study folders with a JSON sidecar."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

import harmonize as hz
from harmonize.io import write_study_nifti
from harmonize.nuclides import get_nuclide


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".nrrd"])
def test_round_trip_is_exact(make_tiny_study, tmp_path, suffix):
    angle = np.deg2rad(20.0)
    c, s = math.cos(angle), math.sin(angle)
    study = make_tiny_study(
        direction=(c, 0.0, s, 0.0, 1.0, 0.0, -s, 0.0, c), origin_mm=(3.5, -7.25, 120.0)
    )
    back = hz.open_study(write_study_nifti(study, tmp_path / "s", suffix=suffix))
    # float32 images: the values come back bit for bit
    np.testing.assert_array_equal(back["activity"].values, study["activity"].values)
    np.testing.assert_array_equal(back["labels"].values, study["labels"].values)
    np.testing.assert_array_equal(back["ct"].values, study["ct"].values)
    assert hz.voi_table(back).equals(hz.voi_table(study))
    # NIfTI stores the affine in float32 (qform/sform): ≤ 1e-4 mm; MHA/NRRD print doubles
    for dim in ("x", "y", "z"):
        np.testing.assert_allclose(back[dim].values, study[dim].values, atol=1e-4)
    np.testing.assert_allclose(back.attrs["direction"], study.attrs["direction"], atol=1e-6)
    np.testing.assert_allclose(back["time"].values, study["time"].values)


def _rewrite(folder, **changes):
    sidecar = json.loads((folder / "harmonize.json").read_text())
    for key, value in changes.items():
        if value is None:
            sidecar.pop(key, None)
        else:
            sidecar[key] = value
    (folder / "harmonize.json").write_text(json.dumps(sidecar))
    return sidecar


def test_kinds_and_parents_inferred(make_tiny_study, tmp_path):
    study = make_tiny_study()
    folder = write_study_nifti(study, tmp_path / "s")
    sidecar = json.loads((folder / "harmonize.json").read_text())
    _rewrite(folder, vois=[{"voi_id": v["voi_id"], "name": v["name"]} for v in sidecar["vois"]])
    back = hz.open_study(folder)
    # body → organ (liver) → lesion: kinds by the naming rules, parents from the shells
    assert hz.voi_table(back).equals(hz.voi_table(study))


def test_counts_and_admin_decay_correction(make_tiny_study, tmp_path):
    study = make_tiny_study()
    folder = write_study_nifti(study, tmp_path / "s")
    duration_s, calibration = 900.0, 12.5
    voxel_ml = 4.0 * 4.5 * 5.0 / 1000.0
    lam = get_nuclide("Lu-177").decay_constant_per_h
    for t, hours in enumerate(study["time"].values):
        path = folder / f"spect_t{t + 1:02d}.nii.gz"
        image = sitk.ReadImage(str(path))
        values = sitk.GetArrayFromImage(image).astype(np.float64)
        # counts of an image decay-corrected to the injection
        counts = values * math.exp(lam * hours) * duration_s * calibration * voxel_ml / 1e6
        out = sitk.GetImageFromArray(counts)
        out.CopyInformation(image)
        sitk.WriteImage(out, str(path))
    _rewrite(
        folder,
        units="counts",
        calibration_cps_per_MBq=calibration,
        acquisition_duration_s=duration_s,
        decay_correction="ADMIN",
    )
    back = hz.open_study(folder)
    # float64 arithmetic, float32 Study: relative error ~1e-7
    np.testing.assert_allclose(back["activity"].values, study["activity"].values, rtol=1e-6)


def test_bad_sidecars(make_tiny_study, tmp_path):
    folder = write_study_nifti(make_tiny_study(), tmp_path / "s")
    broken = tmp_path / "b1"
    shutil.copytree(folder, broken)
    (broken / "spect_t02.nii.gz").unlink()
    with pytest.raises(hz.StudyError, match="spect_t02.nii.gz"):
        hz.open_study(broken)
    typo = tmp_path / "b2"
    shutil.copytree(folder, typo)
    _rewrite(typo, injected_activity=7400.0)
    with pytest.raises(hz.StudyError, match="unknown key"):
        hz.open_study(typo)
    missing_voi = tmp_path / "b3"
    shutil.copytree(folder, missing_voi)
    sidecar = json.loads((missing_voi / "harmonize.json").read_text())
    _rewrite(missing_voi, vois=[v for v in sidecar["vois"] if v["voi_id"] != 3])
    with pytest.raises(hz.StudyError, match=r"label values \[3\]"):
        hz.open_study(missing_voi)
    one = tmp_path / "b4"
    shutil.copytree(folder, one)
    _rewrite(one, time_points=sidecar["time_points"][:1], min_time_points=None)
    with pytest.raises(hz.StudyError, match="1 time point"):
        hz.open_study(one)
    no_sidecar = tmp_path / "b5"
    shutil.copytree(folder, no_sidecar)
    (no_sidecar / "harmonize.json").unlink()
    with pytest.raises(hz.StudyError, match="harmonize.json"):
        hz.open_study(no_sidecar)
