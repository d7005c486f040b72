"""Write a Study as DICOM (NM in Bq/mL, CT, RTSTRUCT, SEG) and dose maps as RT Dose / NIfTI.

Layout of a written study folder (readable by :func:`harmonize.open_study`)::

    out_dir/
      harmonize.json          sidecar: patient_id, cycle, center, VOI table (kinds, parents)
      NM/T01.dcm ...          one NM multi-frame image (one series) per time point
      CT/CT_0001.dcm ...      CT slices of the reference (first) time point, if the Study has a
                              ``ct`` and no ``ct_by_time``
      CT/T01/CT_0001.dcm ...  one CT series per time point, if the Study has ``ct_by_time``
      RTSTRUCT.dcm            contours of every VOI (own voxels + descendants)
      SEG.dcm                 the same VOIs as a BINARY DICOM SEG (highdicom)
      truth.parquet           the phantom's truth table, when given

Every time point is its own imaging session: its own DICOM study, series and frame of
reference (as on a real SPECT/CT), acquired at ``injection_time + time_h``. A Study with
``ct_by_time`` gets one CT series per time point, in that time point's DICOM study and
frame of reference (its NM and CT share them, as one SPECT/CT acquisition); a Study with
only ``ct`` gets one CT series with the reference time point. The RTSTRUCT and SEG always
refer to the reference (first) time point's NM series and frame of reference. The NM images
carry the radiopharmaceutical module (start date-time, total dose in Bq, half-life),
``Units = BQML`` and ``DecayCorrection = NONE``.

Storage precision: activity is stored as unsigned 16-bit integers with one
``RescaleSlope = max / 65535`` per time point (intercept 0), so a read-back value differs
from the original by at most half a slope, i.e. ≤ max / 131070 of that time point's
maximum. CT is stored as signed 16-bit HU (slope 1): ≤ 0.5 HU. RT Dose uses unsigned 32-bit
integers with ``DoseGridScaling = max / (2³² − 1)``.

UIDs come from :func:`pydicom.uid.generate_uid` with an entropy source made of the patient
id, the cycle and a SHA-256 fingerprint of the study content, so the same Study always
gets the same UIDs and two different studies never share one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import xarray as xr
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    NuclearMedicineImageStorage,
    RTDoseStorage,
)

from harmonize.io._dicom_common import (
    deterministic_uid,
    ds_values,
    fingerprint,
    format_da,
    format_dt,
    format_tm,
)
from harmonize.io._geometry import Grid, array_to_image, grid_of_study
from harmonize.io.rtstruct import build_rtstruct
from harmonize.io.seg import build_seg
from harmonize.io.sidecar import SIDECAR_NAME
from harmonize.nuclides import get_nuclide
from harmonize.study import StudyError, validate_study, voi_mask, voi_table

__all__ = ["study_uids", "write_dose_map", "write_study_dicom"]

_UINT16_MAX = 65535
_UINT32_MAX = 4294967295
#: The Study's optional per-time-point CT (as :data:`harmonize.registration.CT_BY_TIME`).
_CT_BY_TIME = "ct_by_time"


def _version() -> str:
    from harmonize import __version__

    return f"harmonize {__version__}"


def _study_key(study: xr.Dataset) -> str:
    return fingerprint(
        study.attrs["patient_id"],
        int(study.attrs["cycle"]),
        study.attrs["injection_time"],
        float(study.attrs["injected_activity_MBq"]),
        arrays=[study["activity"].values, study["labels"].values],
    )[:32]


def study_uids(study: xr.Dataset) -> dict[str, Any]:
    """The deterministic UIDs :func:`write_study_dicom` gives ``study``.

    Returns a dict with ``study`` / ``frame_of_reference`` / ``nm_series`` / ``nm_instance``
    / ``ct_series_by_time`` (lists, one per time point), ``ct_series`` (the reference time
    point's CT series, ``ct_series_by_time[0]``), ``rtstruct_series``,
    ``rtstruct_instance``, ``seg_series``, ``seg_instance``, ``dose_series`` and
    ``dose_instance``. CT slice ``k`` (0-based) of a CT series gets the SOP instance UID
    ``deterministic_uid(series_uid, "instance", k)``.
    """
    pid, cycle, key = str(study.attrs["patient_id"]), int(study.attrs["cycle"]), _study_key(study)
    n = study.sizes["time"]

    def uid(*parts: object) -> str:
        return deterministic_uid("harmonize", pid, cycle, key, *parts)

    return {
        "study": [uid("study", t) for t in range(n)],
        "frame_of_reference": [uid("for", t) for t in range(n)],
        "nm_series": [uid("nm-series", t) for t in range(n)],
        "nm_instance": [uid("nm-instance", t) for t in range(n)],
        "ct_series": uid("ct-series"),
        "ct_series_by_time": [uid("ct-series"), *(uid("ct-series", t) for t in range(1, n))],
        "rtstruct_series": uid("rtstruct-series"),
        "rtstruct_instance": uid("rtstruct-instance"),
        "seg_series": uid("seg-series"),
        "seg_instance": uid("seg-instance"),
        "dose_series": uid("dose-series"),
        "dose_instance": uid("dose-instance"),
    }


def _right_handed(study: xr.Dataset) -> xr.Dataset:
    """The same Study indexed with a right-handed direction matrix (DICOM slice order)."""
    grid = grid_of_study(study)
    if np.linalg.det(grid.matrix) > 0:
        return study
    flipped = study.isel(z=slice(None, None, -1))
    direction = grid.matrix.copy()
    direction[:, 2] *= -1.0
    last = grid.index_to_physical(np.array([0.0, 0.0, grid.shape[0] - 1.0]))
    dz = grid.spacing_mm[0]
    flipped = flipped.assign_coords(
        z=("z", last[2] + dz * np.arange(grid.shape[0]), {"units": "mm"})
    )
    flipped = flipped.assign_coords(
        x=("x", last[0] + grid.spacing_mm[2] * np.arange(grid.shape[2]), {"units": "mm"}),
        y=("y", last[1] + grid.spacing_mm[1] * np.arange(grid.shape[1]), {"units": "mm"}),
    )
    flipped.attrs = dict(study.attrs)
    flipped.attrs["direction"] = direction.ravel()
    return flipped


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _base(study: xr.Dataset, uids: dict[str, Any], t: int, when: datetime) -> Dataset:
    """Patient, study, frame-of-reference and equipment modules of time point ``t``."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = f"{study.attrs['patient_id']}^"
    ds.PatientID = str(study.attrs["patient_id"])
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uids["study"][t]
    ds.StudyDate = format_da(when)
    ds.StudyTime = format_tm(when)
    ds.ReferringPhysicianName = ""
    ds.StudyID = f"C{int(study.attrs['cycle'])}T{t + 1}"
    ds.AccessionNumber = ""
    ds.FrameOfReferenceUID = uids["frame_of_reference"][t]
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "harmonize"
    ds.ManufacturerModelName = str(study.attrs.get("source", "harmonize"))
    ds.SoftwareVersions = _version()
    ds.ClinicalTrialTimePointID = f"C{int(study.attrs['cycle'])}"
    ds.ClinicalTrialTimePointDescription = "therapy cycle"
    if not study.attrs.get("identified"):
        # a pseudonymous Study (phantom, or de-identified on reading): say so in the
        # header, the only place harmonize.io.phi trusts (PS3.15 E.1.1)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "harmonize: written from a pseudonymous Study"
    return ds


def _image_pixel(ds: Dataset, rows: int, cols: int, *, signed: bool, bits: int = 16) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 1 if signed else 0


def _orientation(grid: Grid) -> list[str]:
    m = grid.matrix
    return ds_values([*m[:, 0], *m[:, 1]])


def _quantise(values: np.ndarray, maximum: int) -> tuple[np.ndarray, float]:
    """Unsigned integers and the DS-exact slope so that ``stored * slope ≈ values``."""
    top = float(np.max(values)) if values.size else 0.0
    slope = float(ds_values([top / maximum])[0]) if top > 0 else 1.0
    stored = np.clip(np.rint(values / slope), 0, maximum)
    return stored, slope


def _nm_dataset(study: xr.Dataset, uids: dict[str, Any], t: int, grid: Grid) -> Dataset:
    injection = datetime.fromisoformat(str(study.attrs["injection_time"]))
    when = injection + timedelta(hours=float(study["time"].values[t]))
    ds = _base(study, uids, t, when)
    ds.file_meta = _file_meta(NuclearMedicineImageStorage, uids["nm_instance"][t])
    ds.SOPClassUID = NuclearMedicineImageStorage
    ds.SOPInstanceUID = uids["nm_instance"][t]
    ds.Modality = "NM"
    ds.SeriesInstanceUID = uids["nm_series"][t]
    ds.SeriesNumber = t + 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = f"SPECT {float(study['time'].values[t]):g} h"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "RECON TOMO", "EMISSION"]
    for prefix in ("Series", "Acquisition", "Content"):
        setattr(ds, f"{prefix}Date", format_da(when))
        setattr(ds, f"{prefix}Time", format_tm(when))
    nz, ny, nx = grid.shape
    dz, dy, dx = grid.spacing_mm
    _image_pixel(ds, ny, nx, signed=False)
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag(0x0054, 0x0080)
    ds.SliceVector = list(range(1, nz + 1))
    ds.NumberOfSlices = nz
    ds.PixelSpacing = ds_values([dy, dx])
    ds.SliceThickness = ds_values([dz])[0]
    ds.SpacingBetweenSlices = ds_values([dz])[0]
    detector = Dataset()
    detector.ImagePositionPatient = ds_values(grid.origin_mm)
    detector.ImageOrientationPatient = _orientation(grid)
    ds.DetectorInformationSequence = DicomSequence([detector])
    ds.NumberOfDetectors = 1
    stored, slope = _quantise(
        np.asarray(study["activity"].values[t], dtype=np.float64), _UINT16_MAX
    )
    ds.RescaleSlope = ds_values([slope])[0]
    ds.RescaleIntercept = "0"
    ds.RescaleType = "BQML"
    ds.Units = "BQML"
    ds.DecayCorrection = "NONE"
    mapping = Dataset()
    mapping.RealWorldValueFirstValueMapped = 0
    mapping.RealWorldValueLastValueMapped = _UINT16_MAX
    mapping.RealWorldValueSlope = slope
    mapping.RealWorldValueIntercept = 0.0
    mapping.LUTExplanation = "Bq/ml"
    mapping.LUTLabel = "BQML"
    unit = Dataset()
    unit.CodeValue = "Bq/ml"
    unit.CodingSchemeDesignator = "UCUM"
    unit.CodeMeaning = "Becquerels/milliliter"
    mapping.MeasurementUnitsCodeSequence = DicomSequence([unit])
    ds.RealWorldValueMappingSequence = DicomSequence([mapping])
    nuclide = get_nuclide(str(study.attrs["radionuclide"]))
    pharma = Dataset()
    pharma.Radiopharmaceutical = str(
        study.attrs.get("radiopharmaceutical", f"{study.attrs['radionuclide']} radiopharmaceutical")
    )
    pharma.RadiopharmaceuticalStartDateTime = format_dt(injection)
    pharma.RadiopharmaceuticalStartTime = format_tm(injection)
    # MBq, the unit of the NM Isotope Module (PS3.3 C.8.4.10; PET's module says Bq)
    pharma.RadionuclideTotalDose = ds_values([float(study.attrs["injected_activity_MBq"])])[0]
    pharma.RadionuclideHalfLife = ds_values([nuclide.half_life_h * 3600.0])[0]
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([pharma])
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds


def _ct_datasets(
    study: xr.Dataset, uids: dict[str, Any], grid: Grid, t: int, hu_values: np.ndarray
) -> list[Dataset]:
    """The CT slices of time point ``t`` (values ``hu_values`` (z, y, x) in HU)."""
    injection = datetime.fromisoformat(str(study.attrs["injection_time"]))
    when = injection + timedelta(hours=float(study["time"].values[t]))
    hu = np.clip(np.rint(np.asarray(hu_values, dtype=np.float64)), -32768, 32767)
    series_uid = uids["ct_series_by_time"][t]
    nz, ny, nx = grid.shape
    dz, dy, dx = grid.spacing_mm
    out = []
    for k in range(nz):
        sop = deterministic_uid(series_uid, "instance", k)
        ds = _base(study, uids, t, when)
        ds.file_meta = _file_meta(CTImageStorage, sop)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 50 + t
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = f"CT {float(study['time'].values[t]):g} h" if t else "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        for prefix in ("Series", "Acquisition", "Content"):
            setattr(ds, f"{prefix}Date", format_da(when))
            setattr(ds, f"{prefix}Time", format_tm(when))
        _image_pixel(ds, ny, nx, signed=True)
        ds.ImagePositionPatient = ds_values(grid.index_to_physical(np.array([0.0, 0.0, float(k)])))
        ds.ImageOrientationPatient = _orientation(grid)
        ds.PixelSpacing = ds_values([dy, dx])
        ds.SliceThickness = ds_values([dz])[0]
        ds.KVP = "120"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = hu[k].astype("<i2").tobytes()
        out.append(ds)
    return out


def _rois(study: xr.Dataset) -> list[tuple[int, str, str, np.ndarray]]:
    table = voi_table(study)
    return [
        (int(r.voi_id), str(r.name), str(r.kind), voi_mask(study, int(r.voi_id)))
        for r in table.itertuples()
    ]


def _sidecar(study: xr.Dataset) -> dict[str, Any]:
    table = voi_table(study)
    return {
        "format": "harmonize-sidecar",
        "version": 1,
        "patient_id": str(study.attrs["patient_id"]),
        "cycle": int(study.attrs["cycle"]),
        "center": str(study.attrs["center"]),
        "min_time_points": 1,
        "vois": [
            {
                "voi_id": int(r.voi_id),
                "name": str(r.name),
                "kind": str(r.kind),
                "parent_id": int(r.parent_id),
            }
            for r in table.itertuples()
        ],
    }


class _AtomicDir:
    """Write into a temporary sibling folder; move it into place on success."""

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        if self.path.exists() and not self.overwrite:
            raise FileExistsError(
                f"{self.path} already exists; pass --overwrite (overwrite=True in Python) to "
                "replace it"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        return self.tmp

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        old = None
        if self.path.exists():
            old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
            os.replace(self.path, old)
        os.replace(self.tmp, self.path)
        if old is not None:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)


def atomic_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> _AtomicDir:
    """Context manager yielding a temporary folder renamed to ``path`` on success.

    Nothing is left behind if the block raises; an existing ``path`` is refused unless
    ``overwrite`` (then it is replaced only once the new folder is complete).
    """
    return _AtomicDir(Path(path), overwrite)


def write_study_dicom(
    study: xr.Dataset,
    out_dir: str | os.PathLike[str],
    *,
    truth: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Study as a DICOM study folder (NM, CT, RTSTRUCT, SEG and a sidecar).

    Parameters
    ----------
    study : xarray.Dataset
        A valid Study.
    out_dir : path-like
        Folder to create (it must not exist unless ``overwrite``).
    truth : DataFrame, optional
        The phantom's truth table for this study, written as ``truth.parquet``.
    overwrite : bool, default False
        Replace an existing folder (only after the new one is complete).

    Returns
    -------
    pathlib.Path
        ``out_dir``, readable with :func:`harmonize.open_study`.

    Notes
    -----
    With ``ct_by_time``, time point ``t``'s CT series holds ``ct_by_time[t]`` and the
    separate ``ct`` variable is not written: read back, ``ct`` is ``ct_by_time[0]`` (the
    CT acquired with the reference time point).
    """
    validate_study(study)
    study = _right_handed(study)
    grid = grid_of_study(study)
    uids = study_uids(study)
    out = Path(out_dir)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "NM").mkdir()
        nm_sets = []
        for t in range(study.sizes["time"]):
            ds = _nm_dataset(study, uids, t, grid)
            ds.save_as(tmp / "NM" / f"T{t + 1:02d}.dcm", enforce_file_format=True)
            nm_sets.append(ds)
        if _CT_BY_TIME in study.data_vars:
            for t in range(study.sizes["time"]):
                folder = tmp / "CT" / f"T{t + 1:02d}"
                folder.mkdir(parents=True)
                hu = study[_CT_BY_TIME].values[t]
                for k, ds in enumerate(_ct_datasets(study, uids, grid, t, hu)):
                    ds.save_as(folder / f"CT_{k + 1:04d}.dcm", enforce_file_format=True)
        elif "ct" in study.data_vars:
            (tmp / "CT").mkdir()
            for k, ds in enumerate(_ct_datasets(study, uids, grid, 0, study["ct"].values)):
                ds.save_as(tmp / "CT" / f"CT_{k + 1:04d}.dcm", enforce_file_format=True)
        rois = _rois(study)
        reference = nm_sets[0]
        base = _base(study, uids, 0, datetime.fromisoformat(str(study.attrs["injection_time"])))
        when = datetime.fromisoformat(str(study.attrs["injection_time"])) + timedelta(
            hours=float(study["time"].values[0])
        )
        rt = build_rtstruct(
            base,
            grid,
            rois,
            referenced_images=[
                (NuclearMedicineImageStorage, reference.SOPInstanceUID, k + 1)
                for k in range(grid.shape[0])
            ],
            referenced_series_uid=reference.SeriesInstanceUID,
            series_uid=uids["rtstruct_series"],
            sop_uid=uids["rtstruct_instance"],
            when=when,
        )
        rt.file_meta = _file_meta(rt.SOPClassUID, rt.SOPInstanceUID)
        rt.save_as(tmp / "RTSTRUCT.dcm", enforce_file_format=True)
        seg = build_seg(
            reference,
            grid,
            rois,
            series_uid=uids["seg_series"],
            sop_uid=uids["seg_instance"],
            software_version=_version(),
        )
        seg.save_as(tmp / "SEG.dcm", enforce_file_format=True)
        (tmp / SIDECAR_NAME).write_text(json.dumps(_sidecar(study), indent=2), encoding="utf-8")
        if truth is not None:
            table = pd.DataFrame(truth).reset_index(drop=True)
            table.attrs = {}
            table.to_parquet(tmp / "truth.parquet", index=False)
    return out


def write_dose_map(
    dose_gy: np.ndarray,
    study: xr.Dataset,
    path: str | os.PathLike[str],
    format: str = "dicom",
    *,
    overwrite: bool = False,
) -> Path:
    """Write an absorbed-dose map on the Study grid as DICOM RT Dose or NIfTI.

    Parameters
    ----------
    dose_gy : ndarray (z, y, x)
        Absorbed dose in Gy, finite and ≥ 0, on the Study grid.
    study : xarray.Dataset
        The Study the dose was computed from (grid, patient and UIDs).
    path : path-like
        Output file (``.dcm`` for DICOM; ``.nii``/``.nii.gz``/``.mha``/``.nrrd`` for
        ``format="nifti"``, any ITK-writable image).
    format : {"dicom", "nifti"}
        Output format.
    overwrite : bool, default False
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written. The RT Dose shares the frame of reference and DICOM study of the
        reference time point written by :func:`write_study_dicom` for the same Study.
    """
    from harmonize.bundle import atomic_path

    validate_study(study)
    dose = np.asarray(dose_gy, dtype=np.float64)
    expected = (study.sizes["z"], study.sizes["y"], study.sizes["x"])
    if dose.shape != expected:
        raise StudyError(f"dose_gy: shape {dose.shape} does not match the Study grid {expected}")
    if not np.all(np.isfinite(dose)) or np.any(dose < 0):
        raise StudyError("dose_gy: must be finite and ≥ 0 Gy everywhere")
    if format not in ("dicom", "nifti"):
        raise ValueError(f"format: expected 'dicom' or 'nifti', got {format!r}")
    path = Path(path)
    if format == "nifti":
        grid = grid_of_study(study)
        with atomic_path(path, overwrite=overwrite) as tmp:
            suffix = "".join(path.suffixes) or ".nii.gz"
            target = tmp.with_name(tmp.name + suffix)
            sitk.WriteImage(array_to_image(dose.astype(np.float32), grid), str(target))
            os.replace(target, tmp)
        return path
    oriented = _right_handed(study.assign(_dose=(("z", "y", "x"), dose)))
    dose = np.asarray(oriented["_dose"].values)
    oriented = oriented.drop_vars("_dose")
    grid = grid_of_study(oriented)
    uids = study_uids(study)
    injection = datetime.fromisoformat(str(study.attrs["injection_time"]))
    ds = _base(study, uids, 0, injection + timedelta(hours=float(study["time"].values[0])))
    ds.file_meta = _file_meta(RTDoseStorage, uids["dose_instance"])
    ds.SOPClassUID = RTDoseStorage
    ds.SOPInstanceUID = uids["dose_instance"]
    ds.Modality = "RTDOSE"
    ds.SeriesInstanceUID = uids["dose_series"]
    ds.SeriesNumber = 200
    ds.InstanceNumber = 1
    ds.SeriesDescription = "absorbed dose"
    nz, ny, nx = grid.shape
    dz, dy, dx = grid.spacing_mm
    _image_pixel(ds, ny, nx, signed=False, bits=32)
    ds.NumberOfFrames = nz
    ds.FrameIncrementPointer = Tag(0x3004, 0x000C)
    ds.GridFrameOffsetVector = ds_values(dz * np.arange(nz))
    ds.ImagePositionPatient = ds_values(grid.origin_mm)
    ds.ImageOrientationPatient = _orientation(grid)
    ds.PixelSpacing = ds_values([dy, dx])
    ds.SliceThickness = ds_values([dz])[0]
    ds.DoseUnits = "GY"
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseComment = "radiopharmaceutical therapy absorbed dose (harmonize)"
    stored, scaling = _quantise(dose, _UINT32_MAX)
    ds.DoseGridScaling = ds_values([scaling])[0]
    ds.PixelData = stored.astype("<u4").tobytes()
    with atomic_path(path, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
