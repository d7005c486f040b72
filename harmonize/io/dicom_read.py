"""Read a SPECT/CT study (one patient, one cycle) from DICOM files into a Study.

What is read
------------
* **Emission images**: NM reconstructed volumes (``ImageType`` containing ``RECON``; raw
  projections, planar and whole-body images are skipped) as one multi-frame file or one
  file per slice, PET as single-frame slices or one enhanced multi-frame file (see
  :mod:`harmonize.io._frames` for multi-frame geometry, energy windows and gates). Each
  series is one acquisition (time point). A SPECT time point is its acquisition start
  (``AcquisitionDateTime``, else ``AcquisitionDate``/``AcquisitionTime``, else
  ``SeriesDate``/``SeriesTime``); a PET time point is its series start
  (``SeriesDate``/``SeriesTime``, the START decay reference of multi-bed PET, PS3.3
  C.8.9.1.1.2).
* **Time after injection** = time point − injection, the injection being the sidecar's
  ``injection_time`` if given, else ``RadiopharmaceuticalStartDateTime`` of the
  RadiopharmaceuticalInformationSequence, else ``RadiopharmaceuticalStartTime`` on the
  earliest series' date (the day before when that falls after the series: day-crossing
  rule). A time before the injection or after 10 half-lives is refused, naming the tags.
  The injected activity is the sidecar's ``injected_activity_MBq`` or
  ``RadionuclideTotalDose`` (MBq or Bq, see :mod:`harmonize.io.vendor`). The cycle is the
  sidecar's, else the grouping's, else ``ClinicalTrialTimePointID`` when its meaning is a
  cycle (``"C2"``, or a number described as a cycle).
* **Units**: stored values × RescaleSlope + RescaleIntercept (per frame when the file has
  per-frame pixel-value transformations, per file for single-frame series). ``Units = BQML``
  (or a Real World Value Mapping in ``Bq/ml``) gives Bq/mL directly; ``Units = CNTS`` (or the
  sidecar's ``units: counts``) is converted with the user's calibration factor::

      C [Bq/mL] = counts / (T_acq [s] · S [cps/MBq]) · 10⁶ / V_voxel [mL]

  with ``S`` = sidecar ``calibration_cps_per_MBq`` and ``T_acq`` = sidecar
  ``acquisition_duration_s`` or, from the header, the sum over the
  RotationInformationSequence of ``ActualFrameDuration × NumberOfFramesInRotation``.
  A series with neither units nor calibration is refused; so are units that are not
  activity (PROPCPS, SUV, ...). The full table of units and vendor quirks is
  :mod:`harmonize.io.vendor`.
* **Decay correction** — the Study holds activity at the acquisition (start) time:

  =========  =================================================  =========================
  state      reference time t_ref                               factor applied
  =========  =================================================  =========================
  NONE       none (values are as counted)                       1
  START      the time point (SPECT acquisition, PET series)     1
  ADMIN      injection (radiopharmaceutical start)              exp(−λ·(t_acq − t_inj))
  any        ``DecayCorrectionDateTime`` (0018,9701) if present  exp(−λ·(t_acq − t_ref))
  =========  =================================================  =========================

  λ is the physical decay constant of the radionuclide. ``NONE`` images are the mean over
  the acquisition, labelled with its start: for 177Lu and a 30-min acquisition the two
  differ by < 0.1 % (λ·T/2 = 0.0011). PET ``DecayFactor`` must equal
  exp(λ·``FrameReferenceTime``) under START (within 1 %), else the image was corrected with
  another half-life and is refused.
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
  :mod:`harmonize.io.rtstruct` for the rasterisation rule), drawn on any time point: the
  time point whose frame of reference (its own, or its CT's) they refer to becomes the
  reference (attribute ``reference_time_index``; the other time points are resampled onto
  it, and :func:`harmonize.registration.register_time_points` registers onto it). Without
  RTSTRUCT or SEG, VOIs are derived (:mod:`harmonize.io.auto_voi`); attribute
  ``voi_source`` records how. Names map to kinds by the sidecar VOI table, then
  the naming rules (:mod:`harmonize.io.naming`), then the RTSTRUCT interpreted type. A VOI
  mostly (≥ 50 % of its voxels) inside a larger VOI gets the smallest such VOI as parent;
  voxels go to the most specific VOI. VOIs with no voxel on the SPECT grid are dropped
  with a warning.

Geometry: every other time point is resampled onto the reference grid in scanner (LPS)
coordinates (identical grids are copied exactly; no registration — see
:mod:`harmonize.registration`). Positions, spacing and direction are read as GDCM/SimpleITK
read them (:mod:`harmonize.io._frames`): ``ImagePositionPatient``/``ImageOrientationPatient``
(NM: the DetectorInformationSequence; enhanced files: the functional groups),
``PixelSpacing`` and ``SpacingBetweenSlices`` (negative: the slice normal is flipped).
Messages say PET or SPECT after the modality, and name the file and the tag.
"""

from __future__ import annotations

import json
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
    pixel_array,
    read_header,
)
from harmonize.io._frames import FrameStack, frame_stacks, is_enhanced
from harmonize.io._geometry import GRID_TOL_MM, Grid, array_to_image, resample_onto
from harmonize.io.auto_voi import derive_vois
from harmonize.io.naming import classify_voi
from harmonize.io.phi import is_deidentified
from harmonize.io.rtstruct import RoiMask, read_rtstruct
from harmonize.io.seg import read_seg
from harmonize.io.vendor import (
    acquisition_duration_s,
    identify_radionuclide,
    injected_activity_mbq,
    units_of,
)
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
    """A VOI of the source files could not be kept (e.g. no voxel on the emission grid)."""


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


def scan_dicom_files(
    paths: Sequence[Path], *, corrupt: list[tuple[Path, str]] | None = None
) -> list[DicomFile]:
    """Read the headers of ``paths``; skip non-DICOM side files, refuse corrupt DICOM.

    A file is taken as DICOM when it has the Part 10 preamble, or when its suffix is
    ``.dcm``/``.ima``/``.dicom`` or empty (then it must parse); ``DICOMDIR`` is skipped.
    With a ``corrupt`` list, corrupt files are appended to it as (path, reason) instead.

    Raises
    ------
    harmonize.StudyError
        Naming the first corrupt file (without ``corrupt``).
    """
    if corrupt is not None:
        out_ok = []
        for path in sorted(Path(p) for p in paths):
            try:
                out_ok += scan_dicom_files([path])
            except StudyError as exc:
                corrupt.append((path, str(exc).split(": ", 1)[-1]))
        return out_ok
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


def _time_point_start(ds: Dataset, path: Path) -> datetime:
    """When a time point was taken: PET at its series start (the START decay reference of
    multi-bed PET, PS3.3 C.8.9.1.1.2), SPECT at its acquisition start."""
    if str(ds.get("Modality", "")) == "PT":
        start = _series_start(ds)
        if start is not None:
            return start
    return _acquisition_start(ds, path)


def _study_injection(
    series: Sequence[list[DicomFile]], starts: Sequence[datetime], where: str, what: str
) -> datetime:
    """One injection for every series of a study (see :func:`_injection`)."""
    dated: dict[datetime, Path] = {}
    timed: list[tuple[datetime, datetime, Path]] = []  # (series start, injection, file)
    for s, start in zip(series, starts, strict=True):
        for f in s:
            item = _pharma(f.header)
            inj = _injection(f.header, f.path)
            if inj is None or item is None:
                continue
            if item.get("RadiopharmaceuticalStartDateTime"):
                dated.setdefault(inj, f.path)
            else:
                timed.append((start, inj, f.path))
    if not dated and timed:
        # a time of day only: the day-crossing rule on the earliest series, whose injection
        # every later series shares (their own date may be days later)
        first = min(timed, key=lambda t: t[0])
        tods = {(t[1] - t[1].replace(hour=0, minute=0, second=0, microsecond=0)) for t in timed}
        if max(tods) - min(tods) > timedelta(seconds=60):
            raise StudyError(
                f"{where}: {what} series with different RadiopharmaceuticalStartTime "
                f"({first[2]} and others): several injections in one study folder"
            )
        return first[1]
    if not dated:
        raise StudyError(
            f"{series[0][0].path}: no injection time (RadiopharmaceuticalStartDateTime or "
            "RadiopharmaceuticalStartTime in the RadiopharmaceuticalInformationSequence); give "
            f"'injection_time' in {where}/harmonize.json"
        )
    if max(dated) - min(dated) > timedelta(seconds=60):
        a, b = dated[min(dated)], dated[max(dated)]
        raise StudyError(
            f"{where}: {what} series with different injections ({a} and {b}): several "
            "cycles in one study folder (use harmonize.open_cohort)"
        )
    return min(dated)


#: Latest plausible imaging time, in physical half-lives after the injection (0.1 % left).
MAX_HALF_LIVES = 10.0


def _check_times(
    series: Sequence[list[DicomFile]],
    times_h: np.ndarray,
    nuclide: Any,
    sidecar: dict[str, Any],
    what: str,
) -> None:
    """Refuse times before the injection or after :data:`MAX_HALF_LIVES` half-lives."""
    source = (
        "'injection_time' of harmonize.json"
        if "injection_time" in sidecar
        else "RadiopharmaceuticalStartDateTime/RadiopharmaceuticalStartTime"
    )
    tags = (
        "SeriesDate/SeriesTime" if what == "PET" else "AcquisitionDateTime or AcquisitionDate/Time"
    )
    for s, t in zip(series, times_h, strict=True):
        if t < 0:
            raise StudyError(
                f"{s[0].path}: acquired {-t:.3g} h before the injection ({tags} vs {source})"
            )
        if t > MAX_HALF_LIVES * nuclide.half_life_h:
            raise StudyError(
                f"{s[0].path}: acquired {t:.4g} h after the injection, more than "
                f"{MAX_HALF_LIVES:g} half-lives of {nuclide.name} ({nuclide.half_life_h:.4g} h): "
                f"check {tags}, {source} and the radionuclide"
            )


def _check_decay_factors(volume_files: Sequence[DicomFile], nuclide: Any, state: str) -> None:
    """PET ``DecayFactor`` must equal exp(λ·``FrameReferenceTime``) for START correction.

    A disagreement beyond 1 % (rounding of the DS values is far below) means the images
    were corrected with another half-life than the radionuclide's: refuse, naming the tags.
    """
    if state != "START":
        return
    for item in volume_files:
        factor, reference_ms = item.header.get("DecayFactor"), item.header.get("FrameReferenceTime")
        if factor in (None, "") or reference_ms in (None, ""):
            continue
        expected = math.exp(nuclide.decay_constant_per_h * float(reference_ms) / 3.6e6)
        if abs(float(factor) / expected - 1.0) > 0.01:
            raise StudyError(
                f"{item.path}: DecayFactor = {float(factor):.6g} but exp(λ·FrameReferenceTime) = "
                f"{expected:.6g} for {nuclide.name}: the image was decay-corrected with another "
                "half-life (check the radionuclide)"
            )


def describe_file(ds: Dataset) -> tuple[str, str | None]:
    """(what a file is, why it is not used as an emission volume or None).

    >>> from pydicom import Dataset
    >>> d = Dataset(); d.Modality = "NM"; d.ImageType = ["ORIGINAL", "PRIMARY", "STATIC"]
    >>> describe_file(d)
    ('NM STATIC', 'planar image (ImageType STATIC), not a reconstructed volume')
    """
    modality = str(ds.get("Modality", "") or "?")
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    if modality == "PT":
        return "PET", None
    if modality == "NM":
        if _is_volume(ds):
            return "SPECT", None
        kind = next(
            (
                v
                for v in image_type[2:]
                if v in ("STATIC", "WHOLE BODY", "DYNAMIC", "GATED", "TOMO", "GATED TOMO")
            ),
            " ".join(image_type[2:3]) or "?",
        )
        reason = {
            "TOMO": "projections (ImageType TOMO), not reconstructed",
            "GATED TOMO": "projections (ImageType GATED TOMO), not reconstructed",
            "STATIC": "planar image (ImageType STATIC), not a reconstructed volume",
            "WHOLE BODY": "whole-body planar image (ImageType WHOLE BODY), not a volume",
            "DYNAMIC": "dynamic planar image (ImageType DYNAMIC), not a volume",
            "GATED": "gated planar image (ImageType GATED), not a volume",
        }.get(kind, f"NM image of ImageType {image_type}, not a reconstructed volume")
        return f"NM {kind}", reason
    if modality in ("CT", "RTSTRUCT", "SEG"):
        return modality, None
    return modality, f"modality {modality} is not used"


def _pharma(ds: Dataset) -> Dataset | None:
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    return seq[0] if seq else None


def _series_start(ds: Dataset) -> datetime | None:
    for date_tag, time_tag in (
        ("SeriesDate", "SeriesTime"),
        ("AcquisitionDate", "AcquisitionTime"),
        ("StudyDate", "StudyTime"),
    ):
        if ds.get(date_tag) and ds.get(time_tag):
            try:
                return parse_da_tm(ds.get(date_tag), ds.get(time_tag))
            except ValueError:
                continue
    return None


def _injection(ds: Dataset, path: Path) -> datetime | None:
    """The injection: RadiopharmaceuticalStartDateTime, else RadiopharmaceuticalStartTime.

    A time of day alone (most older PET, GE PET) is put on the series date (else the
    acquisition or study date); when that would fall after the series start, the injection
    was the day before (day-crossing rule: an injection precedes its scan by less than a
    day whenever a scanner writes the time only).
    """
    item = _pharma(ds)
    if item is None:
        return None
    try:
        if item.get("RadiopharmaceuticalStartDateTime"):
            return parse_dt(item.RadiopharmaceuticalStartDateTime)
    except ValueError as exc:
        raise StudyError(f"{path}: invalid RadiopharmaceuticalStartDateTime: {exc}") from None
    tod = item.get("RadiopharmaceuticalStartTime")
    if not tod:
        return None
    start = _series_start(ds)
    if start is None:
        return None
    try:
        when = parse_da_tm(start.strftime("%Y%m%d"), str(tod))
    except ValueError as exc:
        raise StudyError(f"{path}: invalid RadiopharmaceuticalStartTime: {exc}") from None
    return when - timedelta(days=1) if when > start else when


def _injected_mbq(ds: Dataset, path: Path) -> float | None:
    item = _pharma(ds)
    if item is None:
        return None
    return injected_activity_mbq(
        item.get("RadionuclideTotalDose"), str(ds.get("Modality", "")), path
    )


def _nuclide(ds: Dataset) -> str | None:
    item = _pharma(ds)
    if item is None:
        return None
    texts = [str(item.get("Radiopharmaceutical", "") or "")]
    codes: list[str] = []
    for seq in ("RadionuclideCodeSequence", "RadiopharmaceuticalCodeSequence"):
        for code in item.get(seq, []):
            codes.append(str(code.get("CodeValue", "") or ""))
            texts.append(str(code.get("CodeMeaning", "")))
    half = item.get("RadionuclideHalfLife")
    return identify_radionuclide(codes, texts, float(half) if half not in (None, "") else None)


def _what(ds: Dataset) -> str:
    """ "PET" or "SPECT" (for messages)."""
    return "PET" if str(ds.get("Modality", "")) == "PT" else "SPECT"


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


def _units(ds: Dataset, path: Path) -> tuple[str | None, tuple[float, float] | None, float]:
    """(unit, mapping, factor) of an emission header: see :func:`harmonize.io.vendor.units_of`."""
    return units_of(ds, path)


def _energy_windows(ds: Dataset) -> list[tuple[str, float, float]]:
    """(name, lower keV, upper keV) of each EnergyWindowInformationSequence item."""
    out = []
    for n, item in enumerate(ds.get("EnergyWindowInformationSequence") or [], start=1):
        ranges = list(item.get("EnergyWindowRangeSequence") or [])
        low = min((float(r.get("EnergyWindowLowerLimit", 0) or 0) for r in ranges), default=0.0)
        high = max((float(r.get("EnergyWindowUpperLimit", 0) or 0) for r in ranges), default=0.0)
        out.append((str(item.get("EnergyWindowName", "") or f"window {n}"), low, high))
    return out


def _choose_stack(
    stacks: Sequence[FrameStack], ds: Dataset, path: Path, nuclide: str | None, chosen: Any
) -> FrameStack:
    """The volume to use: the photopeak window (sidecar ``energy_window`` or by nuclide).

    By nuclide, the window whose [lower, upper] range holds the largest summed yield of the
    nuclide's ICRP-107 photon lines (Lu-177: 208.4 keV, 11.0 %, over 113.0 keV, 6.4 %).
    """
    what = _what(ds)
    gates = {s.gate for s in stacks if s.gate is not None}
    if len(gates) > 1:
        raise StudyError(
            f"{path}: gated {what} reconstruction ({len(gates)} R-R interval/time slot "
            "combinations, RRIntervalVector/TimeSlotVector): give the ungated reconstruction"
        )
    if len(stacks) == 1:
        return stacks[0]
    windows = _energy_windows(ds)
    numbers = [s.energy_window for s in stacks]
    described = ", ".join(
        f"{n}: {windows[n - 1][0]} {windows[n - 1][1]:g}-{windows[n - 1][2]:g} keV"
        if n is not None and 0 < n <= len(windows)
        else f"{n}"
        for n in numbers
    )
    if chosen is not None:
        for stack in stacks:
            n = stack.energy_window
            name = windows[n - 1][0] if n is not None and 0 < n <= len(windows) else None
            if str(chosen) == str(n) or (name is not None and str(chosen) == name):
                return stack
        raise StudyError(
            f"{path}: energy_window {chosen!r} of harmonize.json is none of the file's "
            f"energy windows ({described})"
        )
    if nuclide is not None and windows:
        from harmonize.nuclides import get_nuclide

        data = get_nuclide(nuclide)
        energies_kev = np.asarray(data.photon_energies_mev) * 1000.0
        yields = np.asarray(data.photon_yields)
        scores = []
        for n in numbers:
            if n is None or not 0 < n <= len(windows):
                scores.append(0.0)
                continue
            _, low, high = windows[n - 1]
            scores.append(float(yields[(energies_kev >= low) & (energies_kev <= high)].sum()))
        best = int(np.argmax(scores))
        if scores[best] > 0 and scores.count(scores[best]) == 1:
            return stacks[best]
    raise StudyError(
        f"{path}: {what} reconstruction with {len(stacks)} energy windows (EnergyWindowVector; "
        f"{described}) and no photopeak of {nuclide or 'an unknown radionuclide'} in exactly "
        "one of them; give 'energy_window' (number or name) in harmonize.json"
    )


@dataclass
class _Volume:
    values: np.ndarray  # (z, y, x) float64, in `units`
    grid: Grid
    units: str | None
    header: Dataset
    path: Path
    files: list[Path] = field(default_factory=list)


def _has_rescale(ds: Dataset) -> bool:
    if ds.get("RescaleSlope") not in (None, ""):
        return True
    groups = [*(ds.get("SharedFunctionalGroupsSequence") or [])]
    groups += [*(ds.get("PerFrameFunctionalGroupsSequence") or [])]
    return any("PixelValueTransformationSequence" in g for g in groups)


def _read_multiframe(
    item: DicomFile, nuclide: str | None = None, energy_window: Any = None
) -> _Volume:
    """One volume of a multi-frame file (see :mod:`harmonize.io._frames` for the geometry)."""
    what = _what(item.header) if str(item.header.get("Modality")) != "CT" else "CT"
    stack = _choose_stack(
        frame_stacks(item.header, item.path, what), item.header, item.path, nuclide, energy_window
    )
    ds = read_full(item.path)
    stored = pixel_array(ds, item.path).astype(np.float64)
    if stored.ndim == 2:
        stored = stored[None]
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if stored.shape[0] != n_frames:
        raise StudyError(
            f"{item.path}: pixel data hold {stored.shape[0]} frames, NumberOfFrames = {n_frames}"
        )
    units, rwvm, factor = _units(ds, item.path)
    slopes, intercepts = stack.slopes, stack.intercepts
    if rwvm is not None and not _has_rescale(ds):
        slopes = np.full_like(slopes, rwvm[0])
        intercepts = np.full_like(intercepts, rwvm[1])
    values = stored[stack.frames] * slopes[:, None, None] + intercepts[:, None, None]
    return _Volume(values * factor, stack.grid, units, ds, item.path, [item.path])


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
        _, _, factor = _units(ds, item.path) if what != "CT" else (None, None, 1.0)
        slices.append((stored * slope + intercept) * factor)
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
    units = _units(header, entries[0][0].path)[0] if what != "CT" else None
    return _Volume(values, grid, units, header, entries[0][0].path, [e[0].path for e in entries])


def _read_series(
    items: Sequence[DicomFile], what: str, nuclide: str | None = None, energy_window: Any = None
) -> _Volume:
    header = items[0].header
    frames = int(header.get("NumberOfFrames", 1) or 1)
    multi = frames > 1 or str(header.get("Modality")) == "NM" or is_enhanced(header)
    if len(items) == 1 and multi:
        return _read_multiframe(items[0], nuclide, energy_window)
    if multi:
        raise StudyError(
            f"{items[0].path}: {what} series of {len(items)} multi-frame files (one series "
            "must be one multi-frame file or single-frame slices)"
        )
    return _read_slices(items, what)


def _group(items: Sequence[DicomFile], key: str) -> dict[str, list[DicomFile]]:
    groups: dict[str, list[DicomFile]] = {}
    for item in items:
        groups.setdefault(str(item.header.get(key, "")), []).append(item)
    return groups


def _parse_cycle(header: Dataset) -> int | None:
    """The therapy cycle from ``ClinicalTrialTimePointID`` only when its meaning says so.

    ``"C2"`` or ``"cycle 2"``, or a bare number whose ``ClinicalTrialTimePointDescription``
    mentions a cycle; a bare number without that (e.g. "13" described as "Days offset from
    diagnosis") is not a cycle.
    """
    text = str(header.get("ClinicalTrialTimePointID", "") or "")
    description = str(header.get("ClinicalTrialTimePointDescription", "") or "").lower()
    match = re.fullmatch(r"\s*(c|cycle)?\s*[-_ ]?(\d{1,2})\s*", text, flags=re.IGNORECASE)
    if not match or int(match.group(2)) < 1:
        return None
    if match.group(1) is None and "cycle" not in description:
        return None
    return int(match.group(2))


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
        found_kinds = sorted({describe_file(f.header)[0] for f in files})
        raise StudyError(
            f"{where}: no reconstructed SPECT or PET series found (found: "
            f"{', '.join(found_kinds)}); run 'harmonize inspect {where}' for the reasons"
        )
    what = _what(emission[0].header)
    series = list(_group(emission, "SeriesInstanceUID").values())
    starts = [min(_time_point_start(f.header, f.path) for f in s) for s in series]

    injection_time: datetime | None = None
    if "injection_time" in sidecar:
        injection_time = datetime.fromisoformat(sidecar["injection_time"])
    else:
        injection_time = _study_injection(series, starts, where, what)
    activity_mbq = sidecar.get("injected_activity_MBq")
    if activity_mbq is None:
        doses_mbq = {
            v for v in (_injected_mbq(s[0].header, s[0].path) for s in series) if v is not None
        }
        if not doses_mbq:
            raise StudyError(
                f"{series[0][0].path}: no injected activity (RadionuclideTotalDose); give "
                f"'injected_activity_MBq' in {where}/harmonize.json"
            )
        if max(doses_mbq) / min(doses_mbq) - 1.0 > 1e-6:
            raise StudyError(
                f"{where}: {what} series disagree on RadionuclideTotalDose (MBq) "
                f"{sorted(doses_mbq)}"
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
    _check_times(series, times_h, nuclide, sidecar, what)
    if np.any(np.diff(times_h) <= 0):
        k = int(np.argmin(np.diff(times_h)))
        raise StudyError(
            f"{where}: two {what} series acquired at the same time ({series[k][0].path} and "
            f"{series[k + 1][0].path}); keep one reconstruction per time point"
        )
    needed = min_time_points or int(sidecar.get("min_time_points", 2))
    if len(series) < needed:
        raise StudyError(
            f"{where}: {len(series)} {what} time point(s) found, at least {needed} needed "
            f"(files: {[str(s[0].path) for s in series]}); set min_time_points=1 (or "
            "'min_time_points': 1 in harmonize.json) for single-time-point dosimetry"
        )

    volumes = [
        _read_series(s, _what(s[0].header), nuclide_name, sidecar.get("energy_window"))
        for s in series
    ]
    ref_index = _voi_time_point(files, volumes, starts, voi_source)
    reference = volumes[ref_index].grid
    frames = []
    for t, volume in enumerate(volumes):
        values = _to_bq_ml(volume, sidecar, where)
        state = str(
            sidecar.get("decay_correction") or volume.header.get("DecayCorrection") or "NONE"
        ).upper()
        _check_decay_factors(
            [f for f in series[t] if str(f.header.get("Modality")) == "PT"], nuclide, state
        )
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

    reference_for = str(volumes[ref_index].header.get("FrameOfReferenceUID", "") or "") or None
    ct, ct_by_time = _read_cts(
        files, [v.header for v in volumes], starts, times_h, reference, ref_index
    )
    rois, kinds_from_type = _read_vois(files, reference, reference_for, voi_source, where)
    voi_record = json.dumps({"method": voi_source if rois else "derived"}, sort_keys=True)
    if not rois:
        rois, kinds_from_type, voi_record = derive_vois(
            activity[ref_index], ct, reference.spacing_mm, sidecar, where
        )
    labels, table = _label_map(rois, kinds_from_type, sidecar, voi_rules, reference, where)

    header = volumes[ref_index].header
    study_cycle = sidecar.get("cycle") or cycle or _parse_cycle(header) or 1
    extra: dict[str, Any] = {
        "source": "dicom",
        "units_original": volumes[0].units or str(sidecar.get("units", "")),
        "decay_correction_original": str(
            sidecar.get("decay_correction") or header.get("DecayCorrection") or "NONE"
        ),
        "negative_voxels_clipped": clipped,
        "voi_source": voi_record,
        "reference_time_index": int(ref_index),
    }
    if "calibration_cps_per_MBq" in sidecar:
        extra["calibration_cps_per_MBq"] = float(sidecar["calibration_cps_per_MBq"])
    if not all(is_deidentified(f.header) for f in files):
        # DICOM not de-identified (a sidecar never says otherwise, harmonize.io.phi): results
        # must not carry its identifiers (harmonize.runner pseudonymises with a key, or refuses)
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
    if units == "cps":
        calibration = sidecar.get("calibration_cps_per_MBq")
        if calibration is None:
            raise StudyError(
                f"{volume.path}: image in counts per second (Units CPS) but no "
                f"'calibration_cps_per_MBq' (give it in {where}/harmonize.json)"
            )
        dz, dy, dx = volume.grid.spacing_mm
        return volume.values / float(calibration) * 1e6 / (dz * dy * dx / 1000.0)
    if units == "counts" or (units is None and "calibration_cps_per_MBq" in sidecar):
        calibration = sidecar.get("calibration_cps_per_MBq")
        duration = sidecar.get("acquisition_duration_s") or acquisition_duration_s(volume.header)
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
        f"{volume.path}: {_what(volume.header)} series without units (no Units=BQML/CNTS, no Real World Value "
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
    ref_index: int = 0,
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
            volume = _read_series(groups[index], "CT")
            image = array_to_image(volume.values.astype(np.float32), volume.grid)
            cache[index] = np.asarray(
                resample_onto(image, grid, interpolator=sitk.sitkLinear, default_value=_AIR_HU),
                dtype=np.float32,
            )
        return cache[index]

    first = matched[ref_index]
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


def _voi_frames(files: Sequence[DicomFile], source: str) -> set[str]:
    """Frames of reference the VOI files (SEG or RTSTRUCT, as ``source`` picks) refer to."""
    segs = [f for f in files if str(f.header.get("Modality", "")) == "SEG"]
    structs = [f for f in files if str(f.header.get("Modality", "")) == "RTSTRUCT"]
    chosen = segs if source == "seg" or (source == "auto" and segs) else structs
    out = set()
    for item in chosen:
        header = item.header
        if str(header.get("Modality")) == "SEG" and header.get("FrameOfReferenceUID"):
            out.add(str(header.FrameOfReferenceUID))
        for ref in header.get("ReferencedFrameOfReferenceSequence") or []:
            if ref.get("FrameOfReferenceUID"):
                out.add(str(ref.FrameOfReferenceUID))
    return out


def _voi_time_point(
    files: Sequence[DicomFile], volumes: Sequence[_Volume], starts: Sequence[datetime], source: str
) -> int:
    """The reference time point: the one whose frame of reference the VOI file is drawn in.

    Its own emission frame of reference first, else that of the CT matched to it (the
    structure set drawn on the 24 h CT makes the 24 h time point the reference); the first
    time point when no VOI file names a frame of reference of the study.
    """
    wanted = _voi_frames(files, source)
    if not wanted:
        return 0
    for t, volume in enumerate(volumes):
        if _uid(volume.header, "FrameOfReferenceUID") in wanted:
            return t
    ct_files = [f for f in files if str(f.header.get("Modality", "")) == "CT"]
    groups = list(_group(ct_files, "SeriesInstanceUID").values())
    for t, (volume, start) in enumerate(zip(volumes, starts, strict=True)):
        index = _match_ct(groups, volume.header, start)
        if index is not None and _uid(groups[index][0].header, "FrameOfReferenceUID") in wanted:
            return t
    return 0


def _read_vois(
    files: Sequence[DicomFile], grid: Grid, reference_for: str | None, source: str, where: str
) -> tuple[list[RoiMask], dict[str, str]]:
    if source not in ("auto", "seg", "rtstruct"):
        raise ValueError(f"voi_source: expected 'auto', 'seg' or 'rtstruct', got {source!r}")
    segs = [f for f in files if str(f.header.get("Modality", "")) == "SEG"]
    structs = [f for f in files if str(f.header.get("Modality", "")) == "RTSTRUCT"]
    use_seg = source == "seg" or (source == "auto" and segs)
    chosen = segs if use_seg else structs
    if not chosen and source == "auto":
        return [], {}  # no VOI file: the caller derives VOIs (harmonize.io.auto_voi)
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
                f"{where}: VOI {roi.name!r} has no voxel centre inside it on the emission grid; dropped",
                VoiWarning,
                stacklevel=3,
            )
    if not kept:
        raise StudyError(f"{where}: no VOI covers any voxel of the emission (SPECT/PET) grid")
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
