"""Vendor-quirk DICOM corpus: each file is built here from a documented header layout and
must load with SimpleITK's geometry and pydicom's rescaled values.

Layouts and their sources
-------------------------
* NM reconstructions: DICOM PS3.3 C.8.4.8 (NM Image Module: ImageType RECON TOMO),
  C.8.4.9 (NM Multi-frame Module: FrameIncrementPointer, EnergyWindowVector, SliceVector,
  NumberOfSlices), C.8.4.10 (NM Isotope Module: EnergyWindowInformationSequence,
  RadiopharmaceuticalInformationSequence, RadionuclideTotalDose in MBq), C.8.4.11 (NM
  Detector Module: ImagePositionPatient/ImageOrientationPatient in the
  DetectorInformationSequence), C.8.4.12 (NM TOMO Acquisition Module:
  RotationInformationSequence), C.8.9.1 (PET Series Module: Units, DecayCorrection —
  also used by NM reconstructions in Bq/mL).
* Siemens xSPECT Quant / Symbia: NM RECON TOMO, ``Units = BQML``, RescaleSlope, and
  RadionuclideTotalDose written in Bq (the quirk the reader warns about).
* GE Xeleris / Q.Metrix (Discovery NM/CT 670): ``Units = CNTS`` with the
  RotationInformationSequence; the camera sensitivity comes from the user.
* GE StarGuide: counts without rotation information, duration in ImageComments
  (**assumed** layout, see :mod:`harmonize.io.vendor`).
* Mediso AnyScan: a negative SpacingBetweenSlices (the slices run along −row×column).
* Philips PET (Vereos/Gemini): single-frame PT slices, ``Units = CNTS`` with the private
  Activity Concentration Scale Factor (7053,1009) of the "Philips PET Private Group"
  (Philips PET/CT DICOM conformance statements).
* Enhanced multi-frame (PS3.3 C.7.6.16, A.56 Enhanced PET Image IOD): per-frame
  PlanePositionSequence and PixelValueTransformationSequence, shared PlaneOrientation and
  PixelMeasures.
* JPEG Lossless (PS3.5 A.4.1, transfer syntax 1.2.840.10008.1.2.4.70): the Siemens file
  compressed with GDCM (``gdcm.ImageChangeTransferSyntax``).

Real public files: pydicom's own test files (``pydicom.data.get_testdata_file``, shipped in
the pydicom wheel, MIT licence; provenance in pydicom/data/test_files/README.txt):
``CT_small.dcm`` (a GE CT slice) and ``MR_small.dcm`` with its RLE, JPEG-LS lossless and
JPEG 2000 lossless encodings; and three NEMA WG04 compressed samples (a GE whole-body NM in
JPEG Lossless and JPEG 2000, a JPEG Lossless CT) in ``tests/data/nema_wg04`` (see its README).
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import harmonize as hz
from harmonize.io._geometry import grid_of_study
from harmonize.io.vendor import VendorWarning

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
PET_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
ENHANCED_PET_STORAGE = "1.2.840.10008.5.1.4.1.1.130"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
INJECTION = datetime(2024, 3, 5, 9, 30, 0)
SHAPE = (6, 8, 10)  # frames, rows, columns
#: Geometry must equal SimpleITK's to this (mm); DS strings keep > 10 significant digits.
GEOMETRY_TOL_MM = 1e-4
#: Activity is stored as float32 in the Study: relative rounding ≤ 6e-8.
VALUE_RTOL = 1e-6
OBLIQUE = [0.8660254037844387, 0.5, 0.0, -0.5, 0.8660254037844387, 0.0]


def _stored(seed: int, n_frames: int = SHAPE[0]) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 4000, size=(n_frames, *SHAPE[1:]), dtype=np.uint16
    )


def _base(modality: str, sop_class: str, manufacturer: str, model: str, when: datetime) -> Dataset:
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.Manufacturer = manufacturer
    ds.ManufacturerModelName = model
    ds.PatientID = "ANON-CORPUS"
    ds.PatientName = "ANON^CORPUS"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "synthetic test corpus"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.2"
    for tag in ("Study", "Series", "Acquisition"):
        setattr(ds, f"{tag}Date", when.strftime("%Y%m%d"))
        setattr(ds, f"{tag}Time", when.strftime("%H%M%S"))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _pharma(
    nuclide_text: str,
    dose: float,
    *,
    code: tuple[str, str, str] | None = None,
    injection: datetime = INJECTION,
) -> DicomSequence:
    item = Dataset()
    item.Radiopharmaceutical = nuclide_text
    item.RadiopharmaceuticalStartDateTime = injection.strftime("%Y%m%d%H%M%S")
    item.RadiopharmaceuticalStartTime = injection.strftime("%H%M%S")
    item.RadionuclideTotalDose = dose
    if code is not None:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = code
        item.RadionuclideCodeSequence = [c]
    return DicomSequence([item])


def _nm(
    path: Path,
    stored: np.ndarray,
    *,
    manufacturer: str,
    model: str,
    units: str,
    slope: float,
    spacing_z: float,
    orientation: list[float],
    pharma: DicomSequence,
    when: datetime,
    extra: dict[str, object] | None = None,
) -> Path:
    """An NM RECON TOMO multi-frame file (PS3.3 C.8.4.8-C.8.4.11)."""
    ds = _base("NM", NM_STORAGE, manufacturer, model, when)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.PixelSpacing = [4.7952, 4.4]
    ds.SpacingBetweenSlices = spacing_z
    ds.SliceThickness = abs(spacing_z)
    ds.FrameIncrementPointer = pydicom.tag.Tag("SliceVector")
    ds.SliceVector = list(range(1, stored.shape[0] + 1))
    ds.NumberOfSlices = stored.shape[0]
    detector = Dataset()
    detector.ImagePositionPatient = [-120.25, -80.5, 33.125]
    detector.ImageOrientationPatient = orientation
    ds.DetectorInformationSequence = [detector]
    ds.Units = units
    ds.DecayCorrection = "NONE"
    ds.RescaleSlope = slope
    ds.RescaleIntercept = 0
    ds.RadiopharmaceuticalInformationSequence = pharma
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _ct(
    folder: Path, when: datetime, frame_of_reference: str = "1.2.826.0.1.3680043.8.498.2"
) -> None:
    """An axial CT series around the emission volume: water (0 HU) in a box, air outside."""
    series = generate_uid()
    (folder / "CT").mkdir(parents=True, exist_ok=True)
    for k in range(30):
        ds = _base("CT", CT_STORAGE, "SIEMENS", "Symbia Intevo", when)
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.Rows, ds.Columns = 64, 64
        ds.PixelSpacing = [5.0, 5.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-200.0, -200.0, -60.0 + 5.0 * k]
        ds.SliceThickness = 5.0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        hu = np.full((64, 64), -1000, dtype=np.int32)
        hu[2:62, 2:62] = 0
        ds.PixelData = (hu + 1024).astype("<u2").tobytes()
        ds.save_as(folder / "CT" / f"ct_{k:02d}.dcm", enforce_file_format=True)


def _study_folder(tmp_path: Path, name: str, sidecar: dict[str, object] | None = None) -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True)
    (folder / "harmonize.json").write_text(json.dumps({"min_time_points": 1, **(sidecar or {})}))
    return folder


def _assert_geometry_like_sitk(study, image: sitk.Image, *, check_size: bool = True) -> None:
    grid = grid_of_study(study)
    dz, dy, dx = grid.spacing_mm
    np.testing.assert_allclose(grid.origin_mm, image.GetOrigin(), atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose((dx, dy, dz), image.GetSpacing(), atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose(grid.direction, image.GetDirection(), atol=1e-6)
    if check_size:
        assert grid.shape[::-1] == image.GetSize()


def _rescaled(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


# --------------------------------------------------------------------------- the corpus


def test_siemens_bqml_with_dose_in_bq(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "siemens")
    nm = _nm(
        folder / "NM" / "spect.dcm",
        _stored(1),
        manufacturer="SIEMENS NM",
        model="Symbia Intevo Bold",
        units="BQML",
        slope=12.5,
        spacing_z=4.7952,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("Lu177 DOTATATE", 7.4e9, code=("447553000", "SCT", "^177^Lutetium")),
    )
    _ct(folder, when)
    with pytest.warns(VendorWarning, match="RadionuclideTotalDose"):
        study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(nm)))
    np.testing.assert_allclose(study["activity"].values[0], _rescaled(nm), rtol=VALUE_RTOL)
    assert study.attrs["radionuclide"] == "Lu-177"
    assert study.attrs["injected_activity_MBq"] == pytest.approx(7400.0)
    assert study["time"].values[0] == pytest.approx(24.0)


def test_ge_qmetrix_counts_with_calibration(tmp_path):
    when = INJECTION + timedelta(hours=96)
    calibration = 9.87  # cps/MBq (Marin 2017, a plausible Lu-177 sensitivity)
    folder = _study_folder(tmp_path, "ge", {"calibration_cps_per_MBq": calibration})
    rotation = Dataset()
    rotation.ActualFrameDuration = 20000  # ms per view
    rotation.NumberOfFramesInRotation = 60
    nm = _nm(
        folder / "spect.dcm",
        _stored(2),
        manufacturer="GE MEDICAL SYSTEMS",
        model="Discovery NM/CT 670",
        units="CNTS",
        slope=1.0,
        spacing_z=4.7952,
        orientation=OBLIQUE,
        when=when,
        pharma=_pharma("LU177", 7400.0),
        extra={"RotationInformationSequence": [rotation]},
    )
    _ct(folder, when)
    study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(nm)))
    voxel_ml = 4.7952 * 4.7952 * 4.4 / 1000.0
    duration_s = 20.0 * 60
    expected = _rescaled(nm) / (duration_s * calibration) * 1e6 / voxel_ml
    np.testing.assert_allclose(study["activity"].values[0], expected, rtol=VALUE_RTOL)
    assert study.attrs["injected_activity_MBq"] == pytest.approx(7400.0)  # NM module: MBq


def test_ge_starguide_duration_from_image_comments(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "starguide", {"calibration_cps_per_MBq": 40.0})
    nm = _nm(
        folder / "spect.dcm",
        _stored(3),
        manufacturer="GE MEDICAL SYSTEMS",
        model="StarGuide",
        units="CNTS",
        slope=1.0,
        spacing_z=2.46,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
        extra={"ImageComments": "Acquisition duration 900 s"},
    )
    _ct(folder, when)
    study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(nm)))
    voxel_ml = 2.46 * 4.7952 * 4.4 / 1000.0
    expected = _rescaled(nm) / (900.0 * 40.0) * 1e6 / voxel_ml
    np.testing.assert_allclose(study["activity"].values[0], expected, rtol=VALUE_RTOL)


def test_mediso_negative_spacing_like_gdcm(tmp_path):
    when = INJECTION + timedelta(hours=4)
    folder = _study_folder(tmp_path, "mediso")
    nm = _nm(
        folder / "spect.dcm",
        _stored(4),
        manufacturer="MEDISO",
        model="AnyScan SC",
        units="BQML",
        slope=0.25,
        spacing_z=-4.13,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
    )
    _ct(folder, when)
    study = hz.open_study(folder)
    image = sitk.ReadImage(str(nm))
    assert image.GetDirection()[8] == -1.0  # GDCM flips the normal
    _assert_geometry_like_sitk(study, image)
    np.testing.assert_allclose(study["activity"].values[0], _rescaled(nm), rtol=VALUE_RTOL)
    # the CT (resampled in scanner coordinates) is there, and no negative spacing crashed
    assert "ct" in study and study.attrs["voxel_size_mm"][0] == pytest.approx(4.13)


def _philips_pet(
    folder: Path, stored: np.ndarray, when: datetime, factor: float, injection: datetime = INJECTION
) -> list[Path]:
    series = generate_uid()
    paths = []
    for k in range(stored.shape[0]):
        ds = _base("PT", PET_STORAGE, "Philips Medical Systems", "Vereos PET/CT", when)
        ds.SeriesInstanceUID = series
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.PixelSpacing = [4.0, 4.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -80.0, -50.0 + 4.0 * k]
        ds.SliceThickness = 4.0
        ds.Units = "CNTS"
        ds.DecayCorrection = "START"
        ds.RescaleSlope, ds.RescaleIntercept = 2.0, 0
        ds.RadiopharmaceuticalInformationSequence = _pharma(
            "FDG", 3.5e8, code=("C-111A1", "SRT", "^18^Fluorine"), injection=injection
        )
        block = ds.private_block(0x7053, "Philips PET Private Group", create=True)
        block.add_new(0x09, "FD", factor)
        ds.PixelData = stored[k].astype("<u2").tobytes()
        path = folder / "PT" / f"pt_{k:02d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def test_philips_pet_counts_with_private_scale_factor(tmp_path):
    when = INJECTION + timedelta(minutes=65)
    folder = _study_folder(tmp_path, "philips")
    factor = 0.0375
    paths = _philips_pet(folder, _stored(5), when, factor)
    _ct(folder, when)
    study = hz.open_study(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "PT")))
    _assert_geometry_like_sitk(study, reader.Execute())
    expected = np.stack([_rescaled(p) for p in paths]) * factor
    np.testing.assert_allclose(study["activity"].values[0], expected, rtol=VALUE_RTOL)
    assert study.attrs["radionuclide"] == "F-18"
    assert study.attrs["injected_activity_MBq"] == pytest.approx(350.0)  # PET module: Bq


def _enhanced(
    path: Path, stored: np.ndarray, modality: str, sop_class: str, when: datetime
) -> Path:
    """Functional groups (PS3.3 C.7.6.16): per-frame position and rescale, shared the rest."""
    ds = _base(modality, sop_class, "SIEMENS", "Biograph Vision", when)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    ds.NumberOfFrames = stored.shape[0]
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.Units = "BQML"
    ds.DecayCorrection = "START" if modality == "PT" else "NONE"
    ds.RadiopharmaceuticalInformationSequence = _pharma(
        "^177^Lutetium", 7.4e9 if modality == "PT" else 7400.0
    )
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = OBLIQUE
    measures = Dataset()
    measures.PixelSpacing = [3.3, 3.1]
    measures.SliceThickness = 3.5
    measures.SpacingBetweenSlices = 3.5
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    normal = np.cross(OBLIQUE[:3], OBLIQUE[3:])
    frames = []
    for k in range(stored.shape[0]):
        item = Dataset()
        position = Dataset()
        position.ImagePositionPatient = [
            float(v) for v in np.array([10.0, -20.0, 5.0]) + 3.5 * k * normal
        ]
        pvt = Dataset()
        pvt.RescaleSlope = 0.5 + 0.25 * k
        pvt.RescaleIntercept = 0
        pvt.RescaleType = "BQML"
        item.PlanePositionSequence = [position]
        item.PixelValueTransformationSequence = [pvt]
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = frames
    if modality == "NM":
        # the NM Image IOD requires the NM Detector Module (PS3.3 A.5): the first frame's
        # plane, which is what GDCM reads for NM (it ignores NM functional groups)
        detector = Dataset()
        detector.ImagePositionPatient = frames[0].PlanePositionSequence[0].ImagePositionPatient
        detector.ImageOrientationPatient = OBLIQUE
        ds.DetectorInformationSequence = [detector]
        ds.SpacingBetweenSlices = 3.5
        ds.PixelSpacing = [3.3, 3.1]
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize(
    ("modality", "sop_class"), [("PT", ENHANCED_PET_STORAGE), ("NM", NM_STORAGE)]
)
def test_enhanced_multiframe_pet_and_nm(tmp_path, modality, sop_class):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, f"enhanced_{modality}")
    stored = _stored(6)
    path = _enhanced(folder / "image.dcm", stored, modality, sop_class, when)
    _ct(folder, when)
    study = hz.open_study(folder)  # 7.4e9 Bq (PT) and 7400 MBq (NM): no warning
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(path)))
    slopes = 0.5 + 0.25 * np.arange(stored.shape[0])
    expected = pydicom.dcmread(path).pixel_array * slopes[:, None, None]
    np.testing.assert_allclose(study["activity"].values[0], expected, rtol=VALUE_RTOL)


def _jpeg_lossless(source: Path, target: Path) -> Path:
    import gdcm  # a declared dependency (the JPEG Lossless plugin): never skipped
    reader = gdcm.ImageReader()
    reader.SetFileName(str(source))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(target))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return target


def test_jpeg_lossless_compressed_spect(tmp_path):
    when = INJECTION + timedelta(hours=24)
    plain = _nm(
        tmp_path / "plain.dcm",
        _stored(7),
        manufacturer="MEDISO",
        model="AnyScan SC",
        units="BQML",
        slope=3.0,
        spacing_z=-4.13,
        orientation=OBLIQUE,
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
    )
    folder = _study_folder(tmp_path, "jpeg")
    compressed = _jpeg_lossless(plain, folder / "spect.dcm")
    assert pydicom.dcmread(compressed).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    _ct(folder, when)
    study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(compressed)))
    np.testing.assert_allclose(study["activity"].values[0], _rescaled(plain), rtol=VALUE_RTOL)


def _two_windows(path: Path, when: datetime) -> tuple[Path, np.ndarray]:
    """Lu-177 with a 113 keV and a 208 keV window (±10 %), frames indexed by window × slice."""
    stored = _stored(8, 2 * SHAPE[0])
    windows = []
    for name, centre in (("EM1 113", 113.0), ("EM2 208", 208.0)):
        window = Dataset()
        window.EnergyWindowName = name
        limits = Dataset()
        limits.EnergyWindowLowerLimit = round(centre * 0.9, 1)
        limits.EnergyWindowUpperLimit = round(centre * 1.1, 1)
        window.EnergyWindowRangeSequence = [limits]
        windows.append(window)
    _nm(
        path,
        stored,
        manufacturer="SIEMENS NM",
        model="Symbia T2",
        units="BQML",
        slope=1.5,
        spacing_z=4.7952,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
        extra={
            "FrameIncrementPointer": [
                pydicom.tag.Tag("EnergyWindowVector"),
                pydicom.tag.Tag("SliceVector"),
            ],
            "EnergyWindowVector": [1] * SHAPE[0] + [2] * SHAPE[0],
            "SliceVector": list(range(1, SHAPE[0] + 1)) * 2,
            "NumberOfEnergyWindows": 2,
            "NumberOfSlices": SHAPE[0],
            "EnergyWindowInformationSequence": windows,
        },
    )
    return path, stored


@pytest.mark.parametrize(("chosen", "window"), [(None, 2), (1, 1), ("EM2 208", 2)])
def test_multi_energy_window_photopeak(tmp_path, chosen, window):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "windows", {} if chosen is None else {"energy_window": chosen})
    path, stored = _two_windows(folder / "spect.dcm", when)
    _ct(folder, when)
    study = hz.open_study(folder)
    # SimpleITK stacks all 12 frames as slices: its origin, spacing and direction still apply
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(path)), check_size=False)
    assert study.sizes["z"] == SHAPE[0]
    expected = stored[(window - 1) * SHAPE[0] : window * SHAPE[0]] * 1.5
    np.testing.assert_allclose(study["activity"].values[0], expected, rtol=VALUE_RTOL)


def test_frame_count_is_checked(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "count")
    path, _ = _two_windows(folder / "spect.dcm", when)
    ds = pydicom.dcmread(path)
    ds.NumberOfSlices = 5
    ds.save_as(path)
    with pytest.raises(hz.StudyError, match="NumberOfSlices"):
        hz.open_study(folder)


# --------------------------------------------------------------------------- VOIs


def test_rtstruct_drawn_on_the_24h_ct(make_tiny_study, tmp_path):
    study = make_tiny_study(times_h=[4.0, 24.0, 72.0])
    study["ct_by_time"] = (
        ("time", "z", "y", "x"),
        np.repeat(study["ct"].values[None], 3, axis=0),
        {"units": "HU"},
    )
    folder = hz.io.write_study_dicom(study, tmp_path / "s")
    (folder / "SEG.dcm").unlink()
    nm24 = pydicom.dcmread(folder / "NM" / "T02.dcm", stop_before_pixels=True)
    nm4 = pydicom.dcmread(folder / "NM" / "T01.dcm", stop_before_pixels=True)
    rt = pydicom.dcmread(folder / "RTSTRUCT.dcm")
    for item in rt.ReferencedFrameOfReferenceSequence:
        item.FrameOfReferenceUID = nm24.FrameOfReferenceUID
    for roi in rt.StructureSetROISequence:
        roi.ReferencedFrameOfReferenceUID = nm24.FrameOfReferenceUID
    rt.save_as(folder / "RTSTRUCT.dcm")
    assert nm24.FrameOfReferenceUID != nm4.FrameOfReferenceUID
    loaded = hz.open_study(folder)
    assert loaded.attrs["reference_time_index"] == 1
    # the reference grid is the 24 h SPECT's, as SimpleITK reads it; its values are pydicom's
    _assert_geometry_like_sitk(loaded, sitk.ReadImage(str(folder / "NM" / "T02.dcm")))
    np.testing.assert_allclose(
        loaded["activity"].values[1], _rescaled(folder / "NM" / "T02.dcm"), rtol=VALUE_RTOL
    )
    # no motion between time points: the labels are the original ones
    np.testing.assert_array_equal(loaded["labels"].values, study["labels"].values)


def test_no_voi_file_gives_the_body_and_threshold_lesions(make_tiny_study, tmp_path):
    labels = np.zeros((6, 7, 8), dtype=np.int32)
    labels[1:5, 1:6, 1:7] = 1
    activity = np.where(labels > 0, 1.0e4, 0.0)
    activity[2:4, 2:4, 3:5] = 1.0e5  # one hot lesion (8 voxels = 0.72 mL)
    study = make_tiny_study(
        labels=labels,
        vois=[{"voi_id": 1, "name": "body", "kind": "body"}],
        activity_bq_ml=np.stack([activity * f for f in (1.0, 0.8, 0.5)]),
        ct_hu=np.where(labels > 0, 40.0, -1000.0),
    )
    folder = hz.io.write_study_dicom(study, tmp_path / "s")
    (folder / "SEG.dcm").unlink()
    (folder / "RTSTRUCT.dcm").unlink()
    side = json.loads((folder / "harmonize.json").read_text())
    side.pop("vois", None)
    (folder / "harmonize.json").write_text(json.dumps(side))
    body_only = hz.open_study(folder)
    _assert_geometry_like_sitk(body_only, sitk.ReadImage(str(folder / "NM" / "T01.dcm")))
    np.testing.assert_allclose(
        body_only["activity"].values[0], _rescaled(folder / "NM" / "T01.dcm"), rtol=VALUE_RTOL
    )
    np.testing.assert_array_equal(body_only["labels"].values > 0, labels > 0)
    assert json.loads(body_only.attrs["voi_source"])["method"] == "derived"
    side["auto_lesions"] = {"threshold_fraction": 0.4, "min_volume_ml": 0.5}
    (folder / "harmonize.json").write_text(json.dumps(side))
    with_lesions = hz.open_study(folder)
    table = hz.voi_table(with_lesions)
    lesion = table[table["kind"] == "lesion"]
    assert list(lesion["name"]) == ["auto_lesion_01"]
    lesion_id = int(lesion["voi_id"].iloc[0])
    np.testing.assert_array_equal(
        with_lesions["labels"].values == lesion_id, activity == activity.max()
    )
    record = json.loads(with_lesions.attrs["voi_source"])
    assert record["lesions"]["threshold_fraction"] == 0.4


# --------------------------------------------------------------------------- real public files


def test_real_ct_small_geometry_like_sitk(tmp_path):
    from pydicom.data import get_testdata_file

    from harmonize.io.dicom_read import _read_series, scan_dicom_files

    source = Path(get_testdata_file("CT_small.dcm"))
    items = scan_dicom_files([source])
    volume = _read_series(items, "CT")
    image = sitk.ReadImage(str(source))
    np.testing.assert_allclose(volume.grid.origin_mm, image.GetOrigin(), atol=GEOMETRY_TOL_MM)
    _, dy, dx = volume.grid.spacing_mm  # one slice: no slice spacing to compare
    np.testing.assert_allclose((dx, dy), image.GetSpacing()[:2], atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose(volume.grid.direction, image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(volume.values[0], sitk.GetArrayFromImage(image)[0], atol=1e-9)


@pytest.mark.parametrize(
    "name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"]
)
def test_real_compressed_files_decode_like_the_uncompressed_one(name):
    from pydicom.data import get_testdata_file

    from harmonize.io._dicom_common import pixel_array

    reference = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array
    path = Path(get_testdata_file(name))
    np.testing.assert_array_equal(pixel_array(pydicom.dcmread(path), path), reference)


# --------------------------------------------------------------------------- tags and units


def test_radionuclide_spellings_and_codes():
    from harmonize.io.vendor import identify_radionuclide

    cases = {
        "^99m^Technetium": "Tc-99m",
        "^177^Lutetium": "Lu-177",
        "^161^Terbium": "Tb-161",
        "^212^Lead": "Pb-212",
        "^64^Copper": "Cu-64",
        "LU177": "Lu-177",
        "Lu-177-PSMA-617": "Lu-177",
        "[177Lu]Lu-DOTATATE": "Lu-177",
        "Tc99m MDP": "Tc-99m",
        "Iodine-131": "I-131",
        "Y90 microspheres": "Y-90",
    }
    for text, expected in cases.items():
        assert identify_radionuclide([], [text], None) == expected, text
    assert identify_radionuclide(["72454006"], [], None) == "Tc-99m"  # SNOMED CT, CID 18
    assert identify_radionuclide([], ["DOTATATE"], 574380.0) == "Lu-177"  # 6.647 d
    assert identify_radionuclide([], ["DOTATATE"], None) is None


def test_refused_units_name_the_unit(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "propcps")
    _nm(
        folder / "spect.dcm",
        _stored(9),
        manufacturer="GE MEDICAL SYSTEMS",
        model="Discovery",
        units="PROPCPS",
        slope=1.0,
        spacing_z=4.0,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
    )
    with pytest.raises(hz.StudyError, match=r"spect\.dcm: Units \(0054,1001\) = PROPCPS"):
        hz.open_study(folder)


def test_time_only_injection_crosses_midnight(tmp_path):
    """GE PET: RadiopharmaceuticalStartTime only, 23:10; series at 00:20 the next day."""
    injection = datetime(2024, 3, 5, 23, 10, 0)
    when = injection + timedelta(minutes=70)
    folder = _study_folder(tmp_path, "ge_pet")
    paths = _philips_pet(folder, _stored(10), when, 1.0, injection)
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.Units = "BQML"
        del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
        ds.AcquisitionTime = (when + timedelta(minutes=3)).strftime("%H%M%S")
        ds.save_as(path)
    _ct(folder, when)
    study = hz.open_study(folder)
    # the time point is the series start (PET START reference), 70 min after 23:10
    assert study["time"].values[0] == pytest.approx(70.0 / 60.0)


def test_implausible_time_after_injection_names_the_tags(tmp_path):
    when = INJECTION + timedelta(hours=793)
    folder = _study_folder(tmp_path, "late")
    _philips_pet(folder, _stored(11), when, 1.0)
    with pytest.raises(hz.StudyError, match="half-lives of F-18.*SeriesDate/SeriesTime"):
        hz.open_study(folder)


def test_cycle_tag_used_only_when_it_means_a_cycle():
    from harmonize.io.dicom_read import _parse_cycle

    ds = Dataset()
    ds.ClinicalTrialTimePointID = "13"
    ds.ClinicalTrialTimePointDescription = "Days offset from diagnosis"
    assert _parse_cycle(ds) is None
    ds.ClinicalTrialTimePointDescription = "therapy cycle"
    assert _parse_cycle(ds) == 13
    ds.ClinicalTrialTimePointID = "C2"
    del ds.ClinicalTrialTimePointDescription
    assert _parse_cycle(ds) == 2


# --------------------------------------------------------------------------- NEMA WG04 (real)

NEMA = Path(__file__).parent / "data" / "nema_wg04"


def test_real_nema_jpeg_lossless_and_jpeg2000_nm_decode_identically():
    """A GE whole-body NM image in two lossless syntaxes, decoded by two different codecs."""
    from harmonize.io._dicom_common import pixel_array

    jpll, j2kr = NEMA / "nema-nm1_jpll.dcm", NEMA / "nema-nm1_j2kr.dcm"
    a = pixel_array(pydicom.dcmread(jpll), jpll)
    b = pixel_array(pydicom.dcmread(j2kr), j2kr)
    assert a.shape == (1024, 256) and a.max() > 0
    np.testing.assert_array_equal(a, b)


def test_real_nema_whole_body_nm_is_skipped_with_its_reason(tmp_path):
    from harmonize.io.inspect import inspect_folder

    shutil.copy(NEMA / "nema-nm1_jpll.dcm", tmp_path / "wb.dcm")
    report = inspect_folder(tmp_path)
    assert report["studies"] == []
    assert report["skipped"] == [
        {
            "file": "wb.dcm",
            "what": "NM WHOLE BODY",
            "reason": "whole-body planar image (ImageType WHOLE BODY), not a volume",
        }
    ]


def test_real_nema_jpeg_lossless_ct_like_sitk():
    from harmonize.io.dicom_read import _read_series, scan_dicom_files

    path = NEMA / "nema-ct1_jpll.dcm"
    volume = _read_series(scan_dicom_files([path]), "CT")
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(volume.grid.origin_mm, image.GetOrigin(), atol=GEOMETRY_TOL_MM)
    _, dy, dx = volume.grid.spacing_mm
    np.testing.assert_allclose((dx, dy), image.GetSpacing()[:2], atol=GEOMETRY_TOL_MM)
    np.testing.assert_allclose(volume.grid.direction, image.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(volume.values[0], sitk.GetArrayFromImage(image)[0], atol=1e-9)


# --------------------------------------------------------------------------- refusals


def test_gated_reconstruction_is_refused_naming_the_vectors(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "gated")
    _nm(
        folder / "spect.dcm",
        _stored(12, 2 * SHAPE[0]),
        manufacturer="SIEMENS NM",
        model="Symbia",
        units="BQML",
        slope=1.0,
        spacing_z=4.0,
        orientation=[1, 0, 0, 0, 1, 0],
        when=when,
        pharma=_pharma("^177^Lutetium", 7400.0),
        extra={
            "ImageType": ["ORIGINAL", "PRIMARY", "RECON GATED TOMO", "EMISSION"],
            "FrameIncrementPointer": [
                pydicom.tag.Tag("TimeSlotVector"),
                pydicom.tag.Tag("SliceVector"),
            ],
            "TimeSlotVector": [1] * SHAPE[0] + [2] * SHAPE[0],
            "SliceVector": list(range(1, SHAPE[0] + 1)) * 2,
            "NumberOfSlices": SHAPE[0],
        },
    )
    _ct(folder, when)
    with pytest.raises(hz.StudyError, match="gated SPECT.*TimeSlotVector"):
        hz.open_study(folder)


def test_no_photopeak_in_exactly_one_window_asks_for_the_sidecar(tmp_path):
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "tc", {"radionuclide": "Tc-99m"})
    _two_windows(folder / "spect.dcm", when)  # 113 and 208 keV: no 140.5 keV window
    _ct(folder, when)
    with pytest.raises(hz.StudyError, match="2 energy windows.*'energy_window'"):
        hz.open_study(folder)


def test_decay_factor_must_match_the_half_life(tmp_path):
    when = INJECTION + timedelta(minutes=65)
    folder = _study_folder(tmp_path, "decay")
    for path in _philips_pet(folder, _stored(13), when, 1.0):
        ds = pydicom.dcmread(path)
        ds.FrameReferenceTime = 600000.0  # 10 min after the series start
        ds.DecayFactor = 1.2  # F-18 gives 2**(10/109.77) = 1.065
        ds.save_as(path)
    _ct(folder, when)
    with pytest.raises(hz.StudyError, match="DecayFactor = 1.2 but exp"):
        hz.open_study(folder)


@pytest.mark.parametrize(
    ("value", "modality", "expected_mbq", "warns"),
    [
        (7400.0, "NM", 7400.0, False),
        (7.4e9, "NM", 7400.0, True),
        (3.5e8, "PT", 350.0, False),
        (350.0, "PT", 350.0, True),
    ],
)
def test_radionuclide_total_dose_bq_or_mbq(value, modality, expected_mbq, warns):
    from harmonize.io.vendor import injected_activity_mbq

    if warns:
        with pytest.warns(VendorWarning, match="RadionuclideTotalDose"):
            got = injected_activity_mbq(value, modality, Path("f.dcm"))
    else:
        got = injected_activity_mbq(value, modality, Path("f.dcm"))
    assert got == pytest.approx(expected_mbq)
    with pytest.raises(hz.StudyError, match="neither a plausible activity"):
        injected_activity_mbq(5e5, modality, Path("f.dcm"))


def test_energy_windows_without_slice_vector_keep_the_origin(tmp_path):
    """FrameIncrementPointer = EnergyWindowVector only: each window's frames are its slices."""
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "no_slice_vector")
    path, stored = _two_windows(folder / "spect.dcm", when)
    ds = pydicom.dcmread(path)
    ds.FrameIncrementPointer = pydicom.tag.Tag("EnergyWindowVector")
    del ds.SliceVector
    ds.save_as(path)
    _ct(folder, when)
    study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(path)), check_size=False)
    np.testing.assert_allclose(
        study["activity"].values[0], stored[SHAPE[0] :] * 1.5, rtol=VALUE_RTOL
    )


def test_enhanced_ct_is_read_from_its_functional_groups(tmp_path):
    """An Enhanced CT (PS3.3 A.38) on the same grid as an enhanced PET: copied exactly."""
    when = INJECTION + timedelta(hours=24)
    folder = _study_folder(tmp_path, "enhanced_ct")
    _enhanced(folder / "pet.dcm", _stored(14), "PT", ENHANCED_PET_STORAGE, when)
    ct = _enhanced(folder / "ct.dcm", _stored(15), "CT", "1.2.840.10008.5.1.4.1.1.2.1", when)
    ds = pydicom.dcmread(ct)
    ds.SeriesInstanceUID = generate_uid()
    del ds.Units, ds.RadiopharmaceuticalInformationSequence, ds.DecayCorrection
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.save_as(ct)
    study = hz.open_study(folder)
    _assert_geometry_like_sitk(study, sitk.ReadImage(str(ct)))
    slopes = 0.5 + 0.25 * np.arange(SHAPE[0])
    expected = pydicom.dcmread(ct).pixel_array * slopes[:, None, None]
    np.testing.assert_allclose(study["ct"].values, expected, rtol=VALUE_RTOL)
    assert (study["labels"].values > 0).all()  # every CT voxel ≥ 0 HU > −500 HU: all body
