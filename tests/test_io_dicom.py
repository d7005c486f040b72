"""DICOM import/export: phantom → DICOM → Study round trip, geometry, units, bad input."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import harmonize as hz
import harmonize.phantom as phantom
from harmonize.io import (
    find_dicom_studies,
    find_study_folders,
    open_study_folder,
    write_dose_map,
    write_study_dicom,
)
from harmonize.nuclides import get_nuclide

CONFIG = phantom.PhantomConfig(
    voxel_size_mm=9.28,
    fov_mm=(150.0, 170.0, 220.0),
    times_h=(4.0, 24.0, 72.0),
    cycles=(1, 2),
    noise=False,
)


def _cheap_dose(tia_mbq_h, voxel_size_mm, density_g_ml, nuclide="Lu-177"):
    # the truth dose is irrelevant to I/O; avoid depending on the dose engine here
    return np.zeros_like(np.asarray(tia_mbq_h, dtype=np.float64))


@pytest.fixture(scope="module")
def phantom_studies():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom, "reference_dose_gy", _cheap_dose)
        out = {}
        for index in (0, 1):
            patient = phantom.make_patient(index, 7, CONFIG)
            for cycle in CONFIG.cycles:
                out[(patient.patient_id, cycle)] = phantom.simulate_study(patient, cycle, 7, CONFIG)
    return out


@pytest.fixture(scope="module")
def study(phantom_studies):
    return phantom_studies[("P001", 1)][0]


@pytest.fixture(scope="module")
def written(study, phantom_studies, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom") / "P001_C1"
    return write_study_dicom(study, folder, truth=phantom_studies[("P001", 1)][1])


@pytest.fixture
def copy(written, tmp_path):
    """A scratch copy of the written study folder."""
    return Path(shutil.copytree(written, tmp_path / "study"))


def _frame_tolerance(study):
    # uint16 storage with RescaleSlope = frame max / 65535: rounding error ≤ slope / 2, plus
    # float32 rounding of the Study (relative 2^-24 of the value)
    top = study["activity"].max(dim=("z", "y", "x")).values.astype(np.float64)
    return top / 65535.0 / 2.0 + top * 2.0**-23


def _named(study):
    """The label map as VOI names ("" outside every VOI)."""
    table = hz.voi_table(study)
    lut = np.full(int(table["voi_id"].max()) + 1, "", dtype=object)
    lut[table["voi_id"].to_numpy()] = table["name"].to_numpy()
    return lut[study["labels"].values]


def _assert_same_study(a, b, *, exact_labels=True):
    tol = _frame_tolerance(a)
    diff = np.abs(a["activity"].values.astype(np.float64) - b["activity"].values)
    assert np.all(diff.max(axis=(1, 2, 3)) <= tol)
    if exact_labels:
        np.testing.assert_array_equal(a["labels"].values, b["labels"].values)
        assert hz.voi_table(a).equals(hz.voi_table(b))
    # DICOM TM keeps microseconds: 1 µs = 2.8e-10 h
    np.testing.assert_allclose(b["time"].values, a["time"].values, atol=1e-9)
    for dim in ("z", "y", "x"):
        # DS strings keep ≥ 10 significant digits of positions of at most a few hundred mm
        np.testing.assert_allclose(b[dim].values, a[dim].values, atol=1e-6)
    np.testing.assert_allclose(b.attrs["direction"], a.attrs["direction"], atol=1e-9)
    # RadionuclideTotalDose in MBq (NM module) as a 16-character DS: ≥ 12 significant digits
    assert math.isclose(
        b.attrs["injected_activity_MBq"], a.attrs["injected_activity_MBq"], rel_tol=1e-9
    )
    assert b.attrs["injection_time"].startswith(str(a.attrs["injection_time"])[:19])


def test_round_trip_arrays_labels_ct(study, written):
    back = hz.open_study(written)
    _assert_same_study(study, back)
    # CT stored as int16 HU with slope 1: rounding ≤ 0.5 HU
    assert np.abs(back["ct"].values - study["ct"].values).max() <= 0.5 + 1e-3
    assert back.attrs["patient_id"] == "P001"
    assert back.attrs["cycle"] == 1
    assert back.attrs["center"] == "phantom"
    assert back.attrs["radionuclide"] == "Lu-177"


def test_rtstruct_without_sidecar_table_gives_same_labels(study, copy):
    """RTSTRUCT path: ids from ROINumber, kinds from the naming rules, parents by containment."""
    next(copy.glob("SEG.dcm")).unlink()
    sidecar = json.loads((copy / "harmonize.json").read_text())
    del sidecar["vois"]
    (copy / "harmonize.json").write_text(json.dumps(sidecar))
    back = hz.open_study(copy)
    np.testing.assert_array_equal(back["labels"].values, study["labels"].values)
    assert hz.voi_table(back).equals(hz.voi_table(study))


def test_seg_and_rtstruct_agree(copy):
    from_seg = open_study_folder(copy, voi_source="seg")
    from_rt = open_study_folder(copy, voi_source="rtstruct")
    np.testing.assert_array_equal(from_seg["labels"].values, from_rt["labels"].values)


def test_uids_valid_and_deterministic(study, written, tmp_path):
    again = write_study_dicom(study, tmp_path / "again")
    uids = {}
    for folder in (written, again):
        found = []
        for path in sorted(folder.rglob("*.dcm")):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
                uid = pydicom.uid.UID(str(ds.get(keyword)))
                assert uid.is_valid, (path, keyword, uid)
                found.append(str(uid))
        uids[folder] = found
    assert uids[written] == uids[again]
    nm = pydicom.dcmread(next((written / "NM").glob("*.dcm")), stop_before_pixels=True)
    assert nm.Units == "BQML"
    assert float(nm.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose) > 0


def test_overwrite_refused(study, written):
    with pytest.raises(FileExistsError):
        write_study_dicom(study, written)


@pytest.mark.parametrize("handed", ["right", "left"])
def test_geometry_exact_for_rotated_grids(make_tiny_study, tmp_path, handed):
    angle = np.deg2rad(30.0)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    if handed == "left":
        matrix[:, 2] *= -1.0
    tiny = make_tiny_study(
        direction=tuple(matrix.ravel()), origin_mm=(-12.5, 40.25, 301.0), ct_hu=None
    )
    back = hz.open_study(write_study_dicom(tiny, tmp_path / "tiny"))
    if handed == "left":
        # the writer re-indexes a left-handed grid along z (DICOM slices run along row × column)
        matrix_back = np.asarray(back.attrs["direction"]).reshape(3, 3)
        np.testing.assert_allclose(matrix_back[:, 2], -matrix[:, 2], atol=1e-9)
        back = back.isel(z=slice(None, None, -1))
        nz = tiny.sizes["z"]
        last = np.array([tiny.x.values[0], tiny.y.values[0], tiny.z.values[0]]) + matrix @ (
            np.array([0.0, 0.0, (nz - 1) * 4.0])
        )
        np.testing.assert_allclose(
            [back.x.values[0], back.y.values[0], back.z.values[-1]], last, atol=1e-6
        )
        np.testing.assert_array_equal(back["labels"].values, tiny["labels"].values)
        return
    _assert_same_study(tiny, back)


def _edit(path: Path, **changes):
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return ds


def test_counts_with_calibration(study, copy):
    duration_s, calibration = 1200.0, 9.87
    voxel_ml = 9.28**3 / 1000.0
    factor = duration_s * calibration * voxel_ml / 1e6  # counts per (Bq/mL)
    for path in sorted((copy / "NM").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        _edit(
            path,
            Units="CNTS",
            RealWorldValueMappingSequence=None,
            RescaleSlope=pydicom.valuerep.format_number_as_ds(float(ds.RescaleSlope) * factor),
        )
    sidecar = json.loads((copy / "harmonize.json").read_text())
    sidecar.update(calibration_cps_per_MBq=calibration, acquisition_duration_s=duration_s)
    (copy / "harmonize.json").write_text(json.dumps(sidecar))
    back = hz.open_study(copy)
    # the DS slope keeps ≥ 10 significant digits: relative error ≤ 1e-9 on top of storage
    tol = _frame_tolerance(study) * (1 + 1e-6)
    diff = np.abs(back["activity"].values - study["activity"].values).max(axis=(1, 2, 3))
    assert np.all(diff <= tol)


def test_decay_correction_admin_is_undone(study, copy):
    lam = get_nuclide("Lu-177").decay_constant_per_h
    for t, path in enumerate(sorted((copy / "NM").glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        # an image decay-corrected to the injection is brighter by exp(λ t)
        boost = math.exp(lam * float(study["time"].values[t]))
        _edit(
            path,
            DecayCorrection="ADMIN",
            RescaleSlope=pydicom.valuerep.format_number_as_ds(float(ds.RescaleSlope) * boost),
        )
    back = hz.open_study(copy)
    diff = np.abs(back["activity"].values - study["activity"].values).max(axis=(1, 2, 3))
    assert np.all(diff <= _frame_tolerance(study) * (1 + 1e-6))
    assert back.attrs["decay_correction_original"] == "ADMIN"


# --------------------------------------------------------------------------- bad input


def _nm(copy: Path, n: int = 0) -> Path:
    return sorted((copy / "NM").glob("*.dcm"))[n]


def test_mixed_patients_refused(copy):
    stranger = copy / "NM" / "stranger.dcm"
    shutil.copy(_nm(copy, 1), stranger)
    _edit(stranger, PatientID="SOMEONE-ELSE", SeriesInstanceUID=pydicom.uid.generate_uid())
    with pytest.raises(hz.StudyError, match="different patients") as err:
        hz.open_study(copy)
    assert "stranger.dcm" in str(err.value) or str(_nm(copy, 0)) in str(err.value)


def test_single_time_point_refused_unless_allowed(copy):
    for path in sorted((copy / "NM").glob("*.dcm"))[1:]:
        path.unlink()
    sidecar = json.loads((copy / "harmonize.json").read_text())
    del sidecar["min_time_points"]
    (copy / "harmonize.json").write_text(json.dumps(sidecar))
    with pytest.raises(hz.StudyError, match=r"1 SPECT time point\(s\) found") as err:
        hz.open_study(copy)
    assert str(_nm(copy, 0)) in str(err.value)
    assert open_study_folder(copy, min_time_points=1).sizes["time"] == 1


def test_nm_without_units_refused(copy):
    target = _nm(copy, 1)
    _edit(target, Units=None, RealWorldValueMappingSequence=None, RescaleType=None)
    with pytest.raises(hz.StudyError, match="without units") as err:
        hz.open_study(copy)
    assert str(target) in str(err.value)


def test_counts_without_calibration_refused(copy):
    target = _nm(copy, 2)
    _edit(target, Units="CNTS", RealWorldValueMappingSequence=None)
    with pytest.raises(hz.StudyError, match="calibration_cps_per_MBq") as err:
        hz.open_study(copy)
    assert str(target) in str(err.value)


def test_rtstruct_in_another_frame_of_reference_refused(copy):
    (copy / "SEG.dcm").unlink()
    ds = pydicom.dcmread(copy / "RTSTRUCT.dcm")
    other = pydicom.uid.generate_uid()
    ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other
    for item in ds.StructureSetROISequence:
        item.ReferencedFrameOfReferenceUID = other
    ds.save_as(copy / "RTSTRUCT.dcm")
    with pytest.raises(hz.StudyError, match="frame of reference") as err:
        hz.open_study(copy)
    assert "RTSTRUCT.dcm" in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_file_refused(copy, damage):
    target = _nm(copy, 1)
    data = target.read_bytes()
    if damage == "garbage":
        target.write_bytes(b"not a dicom file at all" * 10)
    else:
        target.write_bytes(data[: len(data) // 2])
    with pytest.raises(hz.StudyError) as err:
        hz.open_study(copy)
    assert str(target) in str(err.value)


def test_failed_deidentify_writes_nothing(copy, tmp_path):
    from harmonize.deid import deidentify

    _nm(copy, 1).write_bytes(b"garbage" * 40)
    out = tmp_path / "out"
    with pytest.raises(hz.StudyError):
        deidentify(copy, out, key=b"k")
    assert not out.exists()
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


# --------------------------------------------------------------------------- cohorts


@pytest.fixture(scope="module")
def cohort_dir(phantom_studies, tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    for (pid, cycle), (study, _) in phantom_studies.items():
        write_study_dicom(study, root / "per_study" / f"{pid}_C{cycle}")
    return root / "per_study"


def test_open_cohort_of_dicom_folders(phantom_studies, cohort_dir):
    cohort = hz.open_cohort(cohort_dir)
    assert sorted(cohort) == sorted(phantom_studies)
    back = cohort[("P002", 2)]
    _assert_same_study(phantom_studies[("P002", 2)][0], back)


def test_tag_grouping_whatever_the_layout(phantom_studies, cohort_dir, tmp_path):
    """Files of all studies shuffled into two flat folders, no sidecars: grouped by tags."""
    flat = tmp_path / "flat"
    for n, path in enumerate(sorted(cohort_dir.rglob("*.dcm"))):
        target = flat / ("a" if n % 2 else "b")
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / f"{n:05d}.dcm")
    groups = find_dicom_studies(flat)
    assert sorted(groups) == sorted(phantom_studies)
    reference = phantom_studies[("P001", 2)][0]
    # without the sidecar the kinds come from the naming rules and parents from containment;
    # RTSTRUCT keeps the ids (ROINumber), SEG numbers its segments 1..n: compare by name
    _assert_same_study(reference, open_study_folder(groups[("P001", 2)], voi_source="rtstruct"))
    study = open_study_folder(groups[("P001", 2)])
    _assert_same_study(reference, study, exact_labels=False)
    np.testing.assert_array_equal(_named(study), _named(reference))
    kinds = dict(zip(study["voi_name"].values, study["voi_kind"].values, strict=True))
    assert kinds == dict(
        zip(reference["voi_name"].values, reference["voi_kind"].values, strict=True)
    )
    with pytest.raises(hz.StudyError, match="several studies"):
        find_study_folders(flat)


def test_cycle_from_injection_order_when_untagged(phantom_studies, cohort_dir, tmp_path):
    root = tmp_path / "untagged"
    shutil.copytree(cohort_dir / "P001_C1", root / "x")
    shutil.copytree(cohort_dir / "P001_C2", root / "y")
    for path in root.rglob("*"):
        if path.name == "harmonize.json":
            path.unlink()
        elif path.suffix == ".dcm":
            _edit(path, ClinicalTrialTimePointID=None)
    groups = find_dicom_studies(root)
    assert sorted(groups) == [("P001", 1), ("P001", 2)]
    assert all(p.relative_to(root).parts[0] == "y" for p in groups[("P001", 2)])


# --------------------------------------------------------------------------- dose maps


def test_write_dose_map_dicom_and_nifti(study, tmp_path):
    rng = np.random.default_rng(3)
    dose = rng.uniform(0.0, 40.0, size=study["labels"].shape)
    path = write_dose_map(dose, study, tmp_path / "dose.dcm")
    ds = pydicom.dcmread(path)
    back = ds.pixel_array * float(ds.DoseGridScaling)
    # uint32 with DoseGridScaling = max / (2^32 − 1): error ≤ scaling / 2
    assert np.abs(back - dose).max() <= float(ds.DoseGridScaling) / 2 * (1 + 1e-6)
    assert ds.DoseUnits == "GY"
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient],
        [study.x.values[0], study.y.values[0], study.z.values[0]],
        atol=1e-6,
    )
    nifti = write_dose_map(dose, study, tmp_path / "dose.nii.gz", format="nifti")
    image = sitk.ReadImage(str(nifti))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), dose.astype(np.float32))
    np.testing.assert_allclose(
        image.GetOrigin(), (study.x.values[0], study.y.values[0], study.z.values[0]), atol=1e-4
    )
    with pytest.raises(hz.StudyError, match="dose_gy"):
        write_dose_map(dose[:-1], study, tmp_path / "bad.dcm")


# --------------------------------------------------------------------------- one CT per time point

MOVED = phantom.PhantomConfig(
    voxel_size_mm=6.8,
    fov_mm=(210.0, 258.0, 360.0),
    cycles=(1,),
    n_lesions=(2, 3),
    noise=False,
    motion_mm=12.0,
)


@pytest.fixture(scope="module")
def moved():
    """A phantom whose patient moves between time points (one CT per time point)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom, "reference_dose_gy", _cheap_dose)
        study, _ = phantom.simulate_study(phantom.make_patient(0, 9, MOVED), 1, 9, MOVED)
    return study


@pytest.fixture(scope="module")
def moved_written(moved, tmp_path_factory):
    return write_study_dicom(moved, tmp_path_factory.mktemp("moved") / "P001_C1")


@pytest.fixture(scope="module")
def moved_back(moved_written):
    return hz.open_study(moved_written)


@pytest.fixture
def moved_copy(moved_written, tmp_path):
    return Path(shutil.copytree(moved_written, tmp_path / "moved"))


def _ct_series(folder: Path, t: int) -> list[Path]:
    return sorted((folder / "CT" / f"T{t + 1:02d}").glob("*.dcm"))


def test_ct_by_time_round_trip(moved, moved_back):
    assert "ct_by_time" in moved.data_vars
    assert moved.sizes["time"] >= 3
    _assert_same_study(moved, moved_back)
    assert moved_back["ct_by_time"].dtype == np.float32
    assert moved_back["ct_by_time"].attrs["units"] == "HU"
    # CT stored as int16 HU with slope 1: rounding ≤ 0.5 HU (plus float32 rounding)
    err = np.abs(moved_back["ct_by_time"].values - moved["ct_by_time"].values)
    assert err.max() <= 0.5 + 1e-3
    # the reference time point's CT is the ct of the read Study
    np.testing.assert_array_equal(moved_back["ct"].values, moved_back["ct_by_time"].values[0])
    # the patient moved: the CTs of the time points differ by far more than rounding
    assert np.abs(np.diff(moved_back["ct_by_time"].values, axis=0)).max(axis=(1, 2, 3)).min() > 100


def test_each_ct_shares_its_time_point_frame_of_reference(moved, moved_written):
    n = moved.sizes["time"]
    nm = [pydicom.dcmread(_nm(moved_written, t), stop_before_pixels=True) for t in range(n)]
    series = set()
    for t in range(n):
        paths = _ct_series(moved_written, t)
        assert len(paths) == moved.sizes["z"]
        for path in paths:
            ct = pydicom.dcmread(path, stop_before_pixels=True)
            assert ct.FrameOfReferenceUID == nm[t].FrameOfReferenceUID
            assert ct.StudyInstanceUID == nm[t].StudyInstanceUID
            series.add(str(ct.SeriesInstanceUID))
    assert len(series) == n
    assert len({str(ds.FrameOfReferenceUID) for ds in nm}) == n
    rt = pydicom.dcmread(moved_written / "RTSTRUCT.dcm", stop_before_pixels=True)
    seg = pydicom.dcmread(moved_written / "SEG.dcm", stop_before_pixels=True)
    assert rt.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID == nm[0].FrameOfReferenceUID
    assert seg.FrameOfReferenceUID == nm[0].FrameOfReferenceUID


def test_time_point_without_ct_gets_the_nearest_ct(moved_back, moved_copy):
    times = moved_back["time"].values
    missing = 2
    shutil.rmtree(moved_copy / "CT" / f"T{missing + 1:02d}")
    back = hz.open_study(moved_copy)
    others = [t for t in range(times.size) if t != missing]
    nearest = min(others, key=lambda t: (abs(times[t] - times[missing]), t))
    np.testing.assert_array_equal(
        back["ct_by_time"].values[missing], moved_back["ct_by_time"].values[nearest]
    )
    np.testing.assert_array_equal(
        back["ct_by_time"].values[others], moved_back["ct_by_time"].values[others]
    )


def test_ct_in_another_frame_of_reference_matched_by_its_study(moved_back, moved_copy):
    """A CT of the same DICOM study with its own frame of reference is still that time point's."""
    t = 1
    for path in _ct_series(moved_copy, t):
        _edit(path, FrameOfReferenceUID=pydicom.uid.generate_uid(entropy_srcs=["other-for"]))
    back = hz.open_study(moved_copy)
    np.testing.assert_array_equal(back["ct_by_time"].values, moved_back["ct_by_time"].values)
    # in another DICOM study too, it belongs to no time point: the nearest time point's CT
    for path in _ct_series(moved_copy, t):
        _edit(path, StudyInstanceUID=pydicom.uid.generate_uid(entropy_srcs=["other-study"]))
    back = hz.open_study(moved_copy)
    times = moved_back["time"].values
    nearest = min((s for s in range(times.size) if s != t), key=lambda s: abs(times[s] - times[t]))
    np.testing.assert_array_equal(
        back["ct_by_time"].values[t], moved_back["ct_by_time"].values[nearest]
    )


def test_single_ct_gives_no_ct_by_time(written, moved_back, moved_copy):
    assert "ct" in hz.open_study(written).data_vars
    assert "ct_by_time" not in hz.open_study(written).data_vars
    for t in range(1, moved_back.sizes["time"]):
        shutil.rmtree(moved_copy / "CT" / f"T{t + 1:02d}")
    back = hz.open_study(moved_copy)
    assert "ct_by_time" not in back.data_vars
    np.testing.assert_array_equal(back["ct"].values, moved_back["ct"].values)
