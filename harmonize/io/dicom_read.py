"""Read a SPECT/CT study (one patient, one cycle) from DICOM files into a Study.

What is read
------------
* **Emission images**: NM reconstructed volumes (``ImageType`` containing ``RECON``; raw
  projections, planar and whole-body images are skipped) as one multi-frame file or one
  file per slice, and PT-like single-frame series. Each series is one acquisition (time
  point); time points are ordered by acquisition start (``AcquisitionDateTime``, else
  ``AcquisitionDate``/``AcquisitionTime``, else ``SeriesDate``/``SeriesTime``).
* **Time after injection** = acquisition start − injection, the injection being the
  sidecar's ``injection_time`` if given, else ``RadiopharmaceuticalStartDateTime`` of the
  RadiopharmaceuticalInformationSequence. The injected activity is the sidecar's
  ``injected_activity_MBq`` or ``RadionuclideTotalDose`` (Bq).
* **Units**: stored values × RescaleSlope + RescaleIntercept (per frame when the file has
  per-frame pixel-value transformations, per file for single-frame series). ``Units = BQML``
  (or a Real World Value Mapping in ``Bq/ml``) gives Bq/mL directly; ``Units = CNTS`` (or the
  sidecar's ``units: counts``) is converted with the user's calibration factor::

      C [Bq/mL] = counts / (T_acq [s] · S [cps/MBq]) · 10⁶ / V_voxel [mL]

  with ``S`` = sidecar ``calibration_cps_per_MBq`` and ``T_acq`` = sidecar
  ``acquisition_duration_s`` or, from the header, the sum over the
  RotationInformationSequence of ``ActualFrameDuration × NumberOfFramesInRotation``.
  A series with neither units nor calibration is refused.
* **Decay correction** — the Study holds activity at the acquisition (start) time:

  =========  =================================================  =========================
  state      reference time t_ref                               factor applied
  =========  =================================================  =========================
  NONE       none (values are as counted)                       1
  START      acquisition start (= the Study time)               1
  ADMIN      injection (radiopharmaceutical start)              exp(−λ·(t_acq − t_inj))
  any        ``DecayCorrectionDateTime`` (0018,9701) if present  exp(−λ·(t_acq − t_ref))
  =========  =================================================  =========================

  λ is the physical decay constant of the radionuclide. ``NONE`` images are the mean over
  the acquisition, labelled with its start: for 177Lu and a 30-min acquisition the two
  differ by < 0.1 % (λ·T/2 = 0.0011).
* **CT**: each SPECT time point's CT is the CT series sharing its frame of reference
  (``FrameOfReferenceUID``), else a CT series of its DICOM study (``StudyInstanceUID``),
  else — only when the emission series has no frame of reference — any CT series; among
  several candidates, the one acquired nearest in time. CTs are resampled onto the
  reference SPECT grid in scanner (LPS) coordinates with SimpleITK (linear interpolation in
  HU, −1000 HU outside the CT; identical grids are copied exactly). ``ct`` is the reference
  (first) time point's CT (absent when that time point has none). When at least two time
  points have their own, distinct CT series, ``ct_by_time(time, z, y, x)`` (float32, HU)
  holds one CT per time point, not registered; a time point without a CT of its own gets
  the CT of the time point nearest to it in time (the earlier one on a tie). A single CT
  series gives no ``ct_by_time``.
* **VOIs**: DICOM SEG files if any (highdicom), else RTSTRUCT files (see
  :mod:`harmonize.io.rtstruct` for the rasterisation rule); both must refer to the frame of
  reference of the reference time point. Names map to kinds by the sidecar VOI table, then
  the naming rules (:mod:`harmonize.io.naming`), then the RTSTRUCT interpreted type. A VOI
  mostly (≥ 50 % of its voxels) inside a larger VOI gets the smallest such VOI as parent;
  voxels go to the most specific VOI. VOIs with no voxel on the SPECT grid are dropped
  with a warning.

Geometry: every later time point is resampled onto the reference grid in scanner (LPS)
coordinates (identical grids are copied exactly; no registration — see
:mod:`harmonize.registration`). Positions, spacing and direction come from
``ImagePositionPatient``/``ImageOrientationPatient`` (NM: the DetectorInformationSequence),
``PixelSpacing`` and ``SpacingBetweenSlices``; NM frames run along the slice normal
``row × column``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import xarray as xr
from pydicom.dataset import Dataset

from harmonize._warnings import HarmonizeWarning
from harmonize.io._dicom_common import (
    is_dicom_file,
    parse_da_tm,
    parse_dt,
    parse_radionuclide,
    pixel_array,
    read_header,
)
from harmonize.io._geometry import GRID_TOL_MM, Grid, array_to_image, resample_onto
from harmonize.io.naming import classify_voi
from harmonize.io.rtstruct import RoiMask, read_rtstruct
from harmonize.io.seg import read_seg
from harmonize.nuclides import get_nuclide
from harmonize.study import StudyError, make_study, validate_study

__all__ = ["DicomFile", "StudyFiles", "load_dicom_study", "scan_dicom_files"]

#: File suffixes that are never DICOM (skipped when scanning a folder).
NON_DICOM_SUFFIXES = frozenset(
    {
        ".json",
        ".txt",
        ".md",
        ".csv",
        ".parquet",
        ".nc",
        ".nii",
        ".gz",
        ".mha",
        ".mhd",
        ".nrrd",
        ".raw",
        ".png",
        ".jpg",
        ".pdf",
        ".html",
        ".xml",
        ".zip",
        ".py",
        ".log",
    }
)
#: The Study's optional per-time-point CT (as :data:`harmonize.registration.CT_BY_TIME`).
CT_BY_TIME = "ct_by_time"
#: CT value outside the CT's field of view (air), HU.
_AIR_HU = -1000.0
#: Fraction of a VOI's voxels another VOI must hold to be its parent.
PARENT_FRACTION = 0.5
_INTERPRETED_KIND = {
    "EXTERNAL": "body",
    "ORGAN": "organ",
    "AVOIDANCE": "organ",
    "GTV": "lesion",
    "CTV": "lesion",
    "PTV": "lesion",
}


class VoiWarning(HarmonizeWarning):
    """A VOI of the source files could not be kept (e.g. no voxel on the SPECT grid)."""


@dataclass
class DicomFile:
    """A DICOM file and its header (no pixel data)."""

    path: Path
    header: Dataset


class StudyFiles(list[Path]):
    """The DICOM files of one study (a ``list`` of paths) with the key they were grouped by."""

    def __init__(self, paths: Sequence[Path], patient_id: str, cycle: int, root: Path) -> None:
        super().__init__(sorted(Path(p) for p in paths))
        self.patient_id = patient_id
        self.cycle = int(cycle)
        self.root = Path(root)


def scan_dicom_files(paths: Sequence[Path]) -> list[DicomFile]:
    """Read the headers of ``paths``; skip non-DICOM side files, refuse corrupt DICOM.

    A file is taken as DICOM when it has the Part 10 preamble, or when its suffix is
    ``.dcm``/``.ima``/``.dicom`` or empty (then it must parse); ``DICOMDIR`` is skipped.

    Raises
    ------
    harmonize.StudyError
        Naming the first corrupt file.
    """
    out = []
    for path in sorted(Path(p) for p in paths):
        if path.name.upper() == "DICOMDIR" or path.name.startswith("."):
            continue
        if not is_dicom_file(path):
            if path.suffix.lower() in NON_DICOM_SUFFIXES or path.suffix.lower() not in (
                "",
                ".dcm",
                ".ima",
                ".dicom",
            ):
                continue
            raise StudyError(f"{path}: corrupt or unreadable DICOM file (no DICM preamble)")
        header = read_header(path)
        if "SOPClassUID" not in header:
            raise StudyError(f"{path}: corrupt DICOM file (no SOPClassUID)")
        out.append(DicomFile(path, header))
    return out


# --------------------------------------------------------------------------- helpers


def _acquisition_start(ds: Dataset, path: Path) -> datetime:
    try:
        if ds.get("AcquisitionDateTime"):
            return parse_dt(ds.AcquisitionDateTime)
        if ds.get("AcquisitionDate") and ds.get("AcquisitionTime"):
            return parse_da_tm(ds.AcquisitionDate, ds.AcquisitionTime)
        if ds.get("SeriesDate") and ds.get("SeriesTime"):
            return parse_da_tm(ds.SeriesDate, ds.SeriesTime)
    except ValueError as exc:
        raise StudyError(f"{path}: invalid acquisition date/time: {exc}") from None
    raise StudyError(
        f"{path}: no acquisition date and time (AcquisitionDateTime, AcquisitionDate/Time "
        "or SeriesDate/Time)"
    )


def _pharma(ds: Dataset) -> Dataset | None:
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else None


def _injection(ds: Dataset, path: Path) -> datetime | None:
    item = _pharma(ds)
    if item is None:
        return None
    try:
        if item.get("RadiopharmaceuticalStartDateTime"):
            return parse_dt(item.RadiopharmaceuticalStartDateTime)
    except ValueError as exc:
        raise StudyError(f"{path}: invalid RadiopharmaceuticalStartDateTime: {exc}") from None
    return None


def _injected_mbq(ds: Dataset) -> float | None:
    item = _pharma(ds)
    if item is None or not item.get("RadionuclideTotalDose"):
        return None
    value = float(item.RadionuclideTotalDose) / 1e6
    return value if value > 0 else None


def _nuclide(ds: Dataset) -> str | None:
    item = _pharma(ds)
    if item is None:
        return None
    texts = [str(item.get("Radiopharmaceutical", "") or "")]
    for seq in ("RadionuclideCodeSequence", "RadiopharmaceuticalCodeSequence"):
        texts += [str(code.get("CodeMeaning", "")) for code in item.get(seq, [])]
    half = item.get("RadionuclideHalfLife")
    return parse_radionuclide(texts, float(half) if half not in (None, "") else None)


def _is_volume(ds: Dataset) -> bool:
    modality = str(ds.get("Modality", ""))
    if modality == "PT":
        return True
    if modality != "NM":
        return False
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return not image_type or any("RECON" in v for v in image_type)


def _geometry(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(position, orientation) of a header: top level, or the NM DetectorInformationSequence."""
    for source in (ds, *(ds.get("DetectorInformationSequence") or [])):
        if source.get("ImagePositionPatient") and source.get("ImageOrientationPatient"):
            return (
                np.asarray([float(v) for v in source.ImagePositionPatient]),
                np.asarray([float(v) for v in source.ImageOrientationPatient]),
            )
    raise ValueError("no ImagePositionPatient/ImageOrientationPatient")


def _direction(orientation: np.ndarray) -> np.ndarray:
    row, col = orientation[:3], orientation[3:]
    normal = np.cross(row, col)
    return np.column_stack([row, col, normal])


def _rescale(ds: Dataset, frame: int | None = None) -> tuple[float, float]:
    if frame is not None and "PerFrameFunctionalGroupsSequence" in ds:
        item = ds.PerFrameFunctionalGroupsSequence[frame]
        if "PixelValueTransformationSequence" in item:
            pvt = item.PixelValueTransformationSequence[0]
            return float(pvt.get("RescaleSlope", 1.0)), float(pvt.get("RescaleIntercept", 0.0))
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    return (
        float(slope) if slope not in (None, "") else 1.0,
        float(intercept) if intercept not in (None, "") else 0.0,
    )


def _units(ds: Dataset) -> tuple[str | None, tuple[float, float] | None]:
    """("Bq/mL" | "counts" | None, RWVM (slope, intercept) when the units come from it)."""
    units = str(ds.get("Units", "") or "").strip().upper()
    if units == "BQML":
        return "Bq/mL", None
    if units in ("CNTS", "COUNTS"):
        return "counts", None
    for mapping in ds.get("RealWorldValueMappingSequence") or []:
        codes = [
            str(c.get("CodeValue", "")) for c in mapping.get("MeasurementUnitsCodeSequence", [])
        ]
        label = str(mapping.get("LUTLabel", "")).upper()
        if any(c.lower() == "bq/ml" for c in codes) or label == "BQML":
            return "Bq/mL", (
                float(mapping.get("RealWorldValueSlope", 1.0)),
                float(mapping.get("RealWorldValueIntercept", 0.0)),
            )
        if any(c.lower() in ("{counts}", "counts", "cnts") for c in codes):
            return "counts", (
                float(mapping.get("RealWorldValueSlope", 1.0)),
                float(mapping.get("RealWorldValueIntercept", 0.0)),
            )
    return None, None


def _acquisition_duration_s(ds: Dataset) -> float | None:
    total = 0.0
    for item in ds.get("RotationInformationSequence") or []:
        if item.get("ActualFrameDuration") and item.get("NumberOfFramesInRotation"):
            total += float(item.ActualFrameDuration) / 1000.0 * float(item.NumberOfFramesInRotation)
    if total > 0:
        return total
    if ds.get("ActualFrameDuration") and str(ds.get("Modality")) == "PT":
        return float(ds.ActualFrameDuration) / 1000.0
    return None


@dataclass
class _Volume:
    values: np.ndarray  # (z, y, x) float64, in `units`
    grid: Grid
    units: str | None
    header: Dataset
    path: Path
    files: list[Path] = field(default_factory=list)


def _read_multiframe(item: DicomFile) -> _Volume:
    ds = read_full(item.path)
    stored = pixel_array(ds, item.path).astype(np.float64)
    if stored.ndim == 2:
        stored = stored[None]
    try:
        position, orientation = _geometry(ds)
        spacing_xy = [float(v) for v in ds.PixelSpacing]
    except (ValueError, AttributeError):
        raise StudyError(
            f"{item.path}: no image geometry (ImagePositionPatient, ImageOrientationPatient, "
            "PixelSpacing)"
        ) from None
    dz = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if stored.shape[0] > 1 and not dz:
        raise StudyError(f"{item.path}: multi-frame volume without SpacingBetweenSlices")
    units, rwvm = _units(ds)
    if "PerFrameFunctionalGroupsSequence" in ds:
        factors = np.array([_rescale(ds, f) for f in range(stored.shape[0])])
    else:
        factors = np.tile(_rescale(ds), (stored.shape[0], 1))
    has_rescale = (
        ds.get("RescaleSlope") not in (None, "") or "PerFrameFunctionalGroupsSequence" in ds
    )
    if rwvm is not None and not has_rescale:
        factors = np.tile(rwvm, (stored.shape[0], 1))
    values = stored * factors[:, 0, None, None] + factors[:, 1, None, None]
    direction = _direction(orientation)
    grid = Grid(
        shape=(int(values.shape[0]), int(values.shape[1]), int(values.shape[2])),
        spacing_mm=(float(dz or 1.0), spacing_xy[0], spacing_xy[1]),
        origin_mm=tuple(float(v) for v in position),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
    )
    return _Volume(values, grid, units, ds, item.path, [item.path])


def read_full(path: Path) -> Dataset:
    """Read a whole DICOM file (with pixel data); StudyError naming the file on failure."""
    import pydicom

    try:
        return pydicom.dcmread(path)
    except Exception as exc:
        raise StudyError(
            f"{path}: corrupt or unreadable DICOM file: {type(exc).__name__}: {exc}"
        ) from None


def _read_slices(items: Sequence[DicomFile], what: str) -> _Volume:
    """A volume from single-frame files (one slice each), sorted along the slice normal."""
    entries = []
    for item in items:
        try:
            position, orientation = _geometry(item.header)
        except ValueError:
            raise StudyError(f"{item.path}: {what} slice without ImagePositionPatient") from None
        entries.append((item, position, orientation))
    orientation = entries[0][2]
    for item, _, other in entries:
        if not np.allclose(other, orientation, atol=1e-4):
            raise StudyError(
                f"{item.path}: {what} slices with different orientations in one series"
            )
    direction = _direction(orientation)
    depth = np.array([float(pos @ direction[:, 2]) for _, pos, _ in entries])
    order = np.argsort(depth)
    entries = [entries[i] for i in order]
    depth = depth[order]
    steps = np.diff(depth)
    if steps.size and (
        np.any(steps <= GRID_TOL_MM) or np.ptp(steps) > max(1e-2, 0.01 * steps.mean())
    ):
        raise StudyError(
            f"{entries[0][0].path.parent}: {what} series has missing, duplicated or unevenly "
            f"spaced slices (slice steps {np.round(steps, 3).tolist()} mm)"
        )
    slices = []
    for item, _, _ in entries:
        ds = read_full(item.path)
        stored = pixel_array(ds, item.path).astype(np.float64)
        slope, intercept = _rescale(ds)
        slices.append(stored * slope + intercept)
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise StudyError(f"{entries[0][0].path}: {what} slices of different sizes {sorted(shapes)}")
    header = entries[0][0].header
    spacing_xy = [float(v) for v in header.PixelSpacing]
    dz = float(steps.mean()) if steps.size else float(header.get("SliceThickness") or 1.0)
    values = np.stack(slices)
    grid = Grid(
        shape=(int(values.shape[0]), int(values.shape[1]), int(values.shape[2])),
        spacing_mm=(dz, spacing_xy[0], spacing_xy[1]),
        origin_mm=tuple(float(v) for v in entries[0][1]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
    )
    units, _ = _units(header)
    return _Volume(values, grid, units, header, entries[0][0].path, [e[0].path for e in entries])


def _read_series(items: Sequence[DicomFile], what: str) -> _Volume:
    header = items[0].header
    frames = int(header.get("NumberOfFrames", 1) or 1)
    if len(items) == 1 and (frames > 1 or str(header.get("Modality")) == "NM"):
        return _read_multiframe(items[0])
    return _read_slices(items, what)


def _group(items: Sequence[DicomFile], key: str) -> dict[str, list[DicomFile]]:
    groups: dict[str, list[DicomFile]] = {}
    for item in items:
        groups.setdefault(str(item.header.get(key, "")), []).append(item)
    return groups


def _parse_cycle(text: str) -> int | None:
    match = re.fullmatch(r"\s*(?:c|cycle)?\s*[-_ ]?(\d{1,2})\s*", str(text), flags=re.IGNORECASE)
    return int(match.group(1)) if match and int(match.group(1)) >= 1 else None


# --------------------------------------------------------------------------- main entry


def load_dicom_study(
    files: Sequence[DicomFile],
    sidecar: dict[str, Any],
    *,
    where: str,
    cycle: int | None = None,
    voi_rules: Sequence[tuple[str, str]] | None = None,
    voi_source: str = "auto",
    min_time_points: int | None = None,
) -> xr.Dataset:
    """Assemble a Study from the scanned DICOM files of one patient and one cycle.

    Parameters
    ----------
    files : sequence of DicomFile
        Headers from :func:`scan_dicom_files`.
    sidecar : dict
        Validated sidecar (may be empty); its values win over the DICOM header.
    where : str
        Folder name for messages.
    cycle : int, optional
        Cycle to record when neither the sidecar nor ``ClinicalTrialTimePointID`` gives it
        (default 1).
    voi_rules : sequence of (pattern, kind), optional
        Naming rules tried before the sidecar's and the default rules.
    voi_source : {"auto", "seg", "rtstruct"}
        Where VOIs come from; ``"auto"`` prefers SEG when present.
    min_time_points : int, optional
        Fewest SPECT time points accepted (default: sidecar's ``min_time_points`` or 2).

    Raises
    ------
    harmonize.StudyError
        Naming the file or folder at fault: mixed patients or injections, missing
        time information, units or calibration, geometry problems, VOIs in another frame
        of reference, corrupt pixel data.
    """
    if not files:
        raise StudyError(f"{where}: no DICOM file found")
    patients: dict[str, Path] = {}
    for item in files:
        patients.setdefault(str(item.header.get("PatientID", "") or ""), item.path)
    if len(patients) > 1:
        first, second = list(patients.values())[:2]
        raise StudyError(
            f"{where}: files of {len(patients)} different patients (different PatientID), e.g. "
            f"{first} and {second}; a study folder must hold one patient and one cycle "
            "(use harmonize.open_cohort for a folder of several studies)"
        )
    emission = [f for f in files if _is_volume(f.header)]
    if not emission:
        raise StudyError(f"{where}: no reconstructed SPECT (NM/PT) series found")
    series = list(_group(emission, "SeriesInstanceUID").values())
    starts = [min(_acquisition_start(f.header, f.path) for f in s) for s in series]

    injection_time: datetime | None = None
    if "injection_time" in sidecar:
        injection_time = datetime.fromisoformat(sidecar["injection_time"])
    else:
        found: dict[datetime, Path] = {}
        for s in series:
            for f in s:
                inj = _injection(f.header, f.path)
                if inj is not None:
                    found.setdefault(inj, f.path)
        if not found:
            raise StudyError(
                f"{series[0][0].path}: no injection date-time (RadiopharmaceuticalStartDateTime); "
                f"give 'injection_time' in {where}/harmonize.json"
            )
        if max(found) - min(found) > timedelta(seconds=60):
            a, b = found[min(found)], found[max(found)]
            raise StudyError(
                f"{where}: SPECT series with different injections ({a} and {b}): several "
                "cycles in one study folder (use harmonize.open_cohort)"
            )
        injection_time = min(found)
    activity_mbq = sidecar.get("injected_activity_MBq")
    if activity_mbq is None:
        doses_mbq = {
            v for v in (_injected_mbq(f.header) for s in series for f in s) if v is not None
        }
        if not doses_mbq:
            raise StudyError(
                f"{series[0][0].path}: no injected activity (RadionuclideTotalDose); give "
                f"'injected_activity_MBq' in {where}/harmonize.json"
            )
        if max(doses_mbq) / min(doses_mbq) - 1.0 > 1e-6:
            raise StudyError(
                f"{where}: SPECT series disagree on RadionuclideTotalDose {sorted(doses_mbq)}"
            )
        activity_mbq = max(doses_mbq)
    nuclide_name = sidecar.get("radionuclide")
    if nuclide_name is None:
        names = {n for n in (_nuclide(s[0].header) for s in series) if n}
        if len(names) != 1:
            raise StudyError(
                f"{series[0][0].path}: radionuclide not identified from the "
                f"RadiopharmaceuticalInformationSequence ({sorted(names) or 'none'}); give "
                f"'radionuclide' in {where}/harmonize.json"
            )
        nuclide_name = names.pop()
    nuclide = get_nuclide(nuclide_name)

    order = np.argsort(np.array([s.timestamp() for s in starts]))
    series = [series[i] for i in order]
    starts = [starts[i] for i in order]
    times_h = np.array([(s - injection_time).total_seconds() / 3600.0 for s in starts])
    if np.any(times_h < 0):
        bad = series[int(np.argmin(times_h))][0].path
        raise StudyError(f"{bad}: acquired {-times_h.min():.3g} h before the injection")
    if np.any(np.diff(times_h) <= 0):
        k = int(np.argmin(np.diff(times_h)))
        raise StudyError(
            f"{where}: two SPECT series acquired at the same time ({series[k][0].path} and "
            f"{series[k + 1][0].path}); keep one reconstruction per time point"
        )
    needed = min_time_points or int(sidecar.get("min_time_points", 2))
    if len(series) < needed:
        raise StudyError(
            f"{where}: {len(series)} SPECT time point(s) found, at least {needed} needed "
            f"(files: {[str(s[0].path) for s in series]}); set min_time_points=1 (or "
            "'min_time_points': 1 in harmonize.json) for single-time-point dosimetry"
        )

    volumes = [_read_series(s, "SPECT") for s in series]
    reference = volumes[0].grid
    frames = []
    for t, volume in enumerate(volumes):
        values = _to_bq_ml(volume, sidecar, where)
        state = str(
            sidecar.get("decay_correction") or volume.header.get("DecayCorrection") or "NONE"
        ).upper()
        ref_time = _decay_reference(volume, state, injection_time, starts[t])
        if ref_time is not None:
            dt_h = (starts[t] - ref_time).total_seconds() / 3600.0
            values = values * math.exp(-nuclide.decay_constant_per_h * dt_h)
        if not volume.grid.same_as(reference):
            values = resample_onto(
                array_to_image(values.astype(np.float32), volume.grid), reference
            )
        frames.append(np.asarray(values, dtype=np.float64))
    activity = np.stack(frames)
    clipped = int((activity < 0).sum())
    activity = np.clip(activity, 0.0, None)

    reference_for = str(volumes[0].header.get("FrameOfReferenceUID", "") or "") or None
    ct, ct_by_time = _read_cts(files, [v.header for v in volumes], starts, times_h, reference)
    rois, kinds_from_type = _read_vois(files, reference, reference_for, voi_source, where)
    labels, table = _label_map(rois, kinds_from_type, sidecar, voi_rules, reference, where)

    header = volumes[0].header
    study_cycle = (
        sidecar.get("cycle")
        or _parse_cycle(str(header.get("ClinicalTrialTimePointID", "") or ""))
        or cycle
        or 1
    )
    extra: dict[str, Any] = {
        "source": "dicom",
        "units_original": volumes[0].units or str(sidecar.get("units", "")),
        "decay_correction_original": str(
            sidecar.get("decay_correction") or header.get("DecayCorrection") or "NONE"
        ),
        "negative_voxels_clipped": clipped,
    }
    if "calibration_cps_per_MBq" in sidecar:
        extra["calibration_cps_per_MBq"] = float(sidecar["calibration_cps_per_MBq"])
    if not sidecar.get("patient_id") and str(header.get("PatientIdentityRemoved", "")) != "YES":
        # the id is the original PatientID: results must not carry it (harmonize.runner
        # pseudonymises it with a key, or refuses the study)
        extra["identified"] = 1
    dz, dy, dx = reference.spacing_mm
    study = make_study(
        activity.astype(np.float32),
        times_h,
        (dz, dy, dx),
        labels,
        table,
        patient_id=str(sidecar.get("patient_id") or header.get("PatientID") or "unknown"),
        cycle=int(study_cycle),
        center=str(sidecar.get("center", "unknown")),
        injected_activity_mbq=float(activity_mbq),
        injection_time=injection_time.isoformat(),
        radionuclide=nuclide_name,
        ct_hu=ct,
        origin_mm=reference.origin_mm,
        direction=reference.direction,
        extra_attrs=extra,
    )
    if ct_by_time is None:
        return study
    study[CT_BY_TIME] = (("time", "z", "y", "x"), ct_by_time, {"units": "HU"})
    return validate_study(study)


def _to_bq_ml(volume: _Volume, sidecar: dict[str, Any], where: str) -> np.ndarray:
    units = volume.units or sidecar.get("units")
    if units == "Bq/mL":
        return volume.values
    if units == "counts" or (units is None and "calibration_cps_per_MBq" in sidecar):
        calibration = sidecar.get("calibration_cps_per_MBq")
        duration = sidecar.get("acquisition_duration_s") or _acquisition_duration_s(volume.header)
        if calibration is None or duration is None:
            missing = "calibration_cps_per_MBq" if calibration is None else "acquisition_duration_s"
            raise StudyError(
                f"{volume.path}: image in counts but no {missing!r} (give it in "
                f"{where}/harmonize.json)"
            )
        dz, dy, dx = volume.grid.spacing_mm
        voxel_ml = dz * dy * dx / 1000.0
        return volume.values / (float(duration) * float(calibration)) * 1e6 / voxel_ml
    raise StudyError(
        f"{volume.path}: SPECT series without units (no Units=BQML/CNTS, no Real World Value "
        f"Mapping) and no calibration; give 'units' and, for counts, "
        f"'calibration_cps_per_MBq' in {where}/harmonize.json"
    )


def _decay_reference(
    volume: _Volume, state: str, injection: datetime, start: datetime
) -> datetime | None:
    header = volume.header
    if state == "NONE":
        return None
    if header.get("DecayCorrectionDateTime"):
        try:
            return parse_dt(header.DecayCorrectionDateTime)
        except ValueError:
            raise StudyError(f"{volume.path}: invalid DecayCorrectionDateTime") from None
    if state == "ADMIN":
        return injection
    if state == "START":
        return start
    raise StudyError(
        f"{volume.path}: unknown DecayCorrection {state!r} (expected NONE, START or ADMIN)"
    )


def _uid(ds: Dataset, keyword: str) -> str:
    return str(ds.get(keyword, "") or "")


def _match_ct(groups: Sequence[list[DicomFile]], emission: Dataset, start: datetime) -> int | None:
    """Index in ``groups`` (CT series) of the CT of an emission series started at ``start``.

    Candidates, by priority: the CT series sharing the emission series' frame of
    reference; else those of its DICOM study; else, only when the emission series has no
    frame of reference, every CT series. The candidate acquired nearest to ``start`` wins.
    """
    frame, study_uid = _uid(emission, "FrameOfReferenceUID"), _uid(emission, "StudyInstanceUID")
    tiers = (
        [
            i
            for i, s in enumerate(groups)
            if frame and _uid(s[0].header, "FrameOfReferenceUID") == frame
        ],
        [
            i
            for i, s in enumerate(groups)
            if study_uid and _uid(s[0].header, "StudyInstanceUID") == study_uid
        ],
        [] if frame else list(range(len(groups))),
    )

    def distance(i: int) -> float:
        first = groups[i][0]
        try:
            return abs((_acquisition_start(first.header, first.path) - start).total_seconds())
        except StudyError:
            return math.inf

    for candidates in tiers:
        if candidates:
            return min(candidates, key=distance)
    return None


def _read_cts(
    files: Sequence[DicomFile],
    emission: Sequence[Dataset],
    starts: Sequence[datetime],
    times_h: np.ndarray,
    grid: Grid,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(``ct`` of the reference time point, ``ct_by_time`` or None), on ``grid`` in HU.

    ``emission`` and ``starts`` hold each time point's emission header and acquisition
    start, in time order; see the module docstring for the matching rules.
    """
    ct_files = [f for f in files if str(f.header.get("Modality", "")) == "CT"]
    groups = list(_group(ct_files, "SeriesInstanceUID").values())
    matched = [
        _match_ct(groups, header, start) for header, start in zip(emission, starts, strict=True)
    ]
    own = [t for t, m in enumerate(matched) if m is not None]
    if not own:
        return None, None
    cache: dict[int, np.ndarray] = {}

    def resampled(index: int) -> np.ndarray:
        if index not in cache:
            volume = _read_slices(groups[index], "CT")
            image = array_to_image(volume.values.astype(np.float32), volume.grid)
            cache[index] = np.asarray(
                resample_onto(image, grid, interpolator=sitk.sitkLinear, default_value=_AIR_HU),
                dtype=np.float32,
            )
        return cache[index]

    first = matched[0]
    ct = resampled(first) if first is not None else None
    if len({matched[t] for t in own}) < 2:
        return ct, None
    frames = []
    for t, index in enumerate(matched):
        if index is None:
            # no CT of its own: the CT of the nearest time point (the earlier one on a tie)
            index = matched[min(own, key=lambda s: (abs(times_h[s] - times_h[t]), s))]
        assert index is not None
        frames.append(resampled(index))
    return ct, np.stack(frames)


def _read_vois(
    files: Sequence[DicomFile], grid: Grid, reference_for: str | None, source: str, where: str
) -> tuple[list[RoiMask], dict[str, str]]:
    if source not in ("auto", "seg", "rtstruct"):
        raise ValueError(f"voi_source: expected 'auto', 'seg' or 'rtstruct', got {source!r}")
    segs = [f for f in files if str(f.header.get("Modality", "")) == "SEG"]
    structs = [f for f in files if str(f.header.get("Modality", "")) == "RTSTRUCT"]
    use_seg = source == "seg" or (source == "auto" and segs)
    chosen = segs if use_seg else structs
    if not chosen:
        raise StudyError(
            f"{where}: no {'DICOM SEG' if source == 'seg' else 'RTSTRUCT' if source == 'rtstruct' else 'RTSTRUCT or DICOM SEG'} "
            "file with the VOIs"
        )
    rois: list[RoiMask] = []
    for item in chosen:
        ds = read_full(item.path)
        if use_seg:
            rois += read_seg(ds, grid, reference_for, item.path)
        else:
            rois += read_rtstruct(ds, grid, reference_for, item.path)
    names = [r.name for r in rois]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise StudyError(
            f"{where}: VOI name(s) {duplicated} defined more than once in {[str(c.path) for c in chosen]}"
        )
    kinds = {
        r.name: _INTERPRETED_KIND[r.interpreted_type.upper()]
        for r in rois
        if r.interpreted_type.upper() in _INTERPRETED_KIND
    }
    return rois, kinds


def _label_map(
    rois: list[RoiMask],
    interpreted: dict[str, str],
    sidecar: dict[str, Any],
    voi_rules: Sequence[tuple[str, str]] | None,
    grid: Grid,
    where: str,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    declared = {str(v["name"]): v for v in sidecar.get("vois", [])}
    rules = [*(voi_rules or ()), *sidecar.get("voi_rules", [])]
    kept = []
    for roi in rois:
        if roi.mask.any():
            kept.append(roi)
        else:
            warnings.warn(
                f"{where}: VOI {roi.name!r} has no voxel centre inside it on the SPECT grid; dropped",
                VoiWarning,
                stacklevel=3,
            )
    if not kept:
        raise StudyError(f"{where}: no VOI covers any voxel of the SPECT grid")
    ids: list[int] = []
    used: set[int] = {int(v["voi_id"]) for v in declared.values() if "voi_id" in v}
    for roi in kept:
        spec = declared.get(roi.name, {})
        if "voi_id" in spec:
            ids.append(int(spec["voi_id"]))
            continue
        candidate = (
            roi.number
            if roi.number > 0 and roi.number not in used and roi.number not in ids
            else None
        )
        if candidate is None:
            candidate = max([*used, *ids, 0]) + 1
        ids.append(candidate)
    kinds = []
    for roi in kept:
        spec = declared.get(roi.name, {})
        if "kind" in spec:
            kinds.append(str(spec["kind"]))
            continue
        try:
            kinds.append(classify_voi(roi.name, rules))
        except StudyError:
            if roi.name in interpreted:
                kinds.append(interpreted[roi.name])
            else:
                raise StudyError(
                    f"{where}: VOI name {roi.name!r} matches no naming rule; give its kind in the "
                    "sidecar 'vois' table or add a rule (voi_rules=[(pattern, kind)])"
                ) from None
    sizes = np.array([int(r.mask.sum()) for r in kept])
    flat = np.stack([r.mask.ravel() for r in kept]).astype(np.float32)
    overlap = flat @ flat.T  # voxels shared by each pair
    parents = []
    for n, roi in enumerate(kept):
        spec = declared.get(roi.name, {})
        if "parent_id" in spec:
            parents.append(int(spec["parent_id"]))
            continue
        holders = [
            m
            for m in range(len(kept))
            if m != n and sizes[m] > sizes[n] and overlap[n, m] >= PARENT_FRACTION * sizes[n]
        ]
        parents.append(ids[min(holders, key=lambda m: sizes[m])] if holders else 0)
    parents = [p if p in ids else 0 for p in parents]
    by_id = dict(zip(ids, parents, strict=True))

    def depth(voi: int) -> int:
        level, seen = 0, {voi}
        while by_id.get(voi, 0) and by_id[voi] not in seen:
            voi = by_id[voi]
            seen.add(voi)
            level += 1
        return level

    order = sorted(range(len(kept)), key=lambda n: (depth(ids[n]), -sizes[n]))
    labels = np.zeros(grid.shape, dtype=np.int32)
    for n in order:
        labels[kept[n].mask] = ids[n]
    table: list[dict[str, Any]] = [
        {"voi_id": ids[n], "name": kept[n].name, "kind": kinds[n], "parent_id": parents[n]}
        for n in range(len(kept))
    ]
    table.sort(key=lambda row: row["voi_id"])
    return labels, table
