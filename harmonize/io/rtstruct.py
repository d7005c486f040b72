"""RTSTRUCT ↔ voxel masks on the SPECT grid.

Rasterisation rule (reading)
----------------------------
A voxel belongs to an ROI when its **centre** lies inside the ROI's contour(s) on the
contour plane **nearest** to that centre, provided that plane is within half the ROI's
contour-plane spacing (or half a voxel for an ROI drawn on one plane). Several contours on
one plane combine by the even–odd rule (a contour inside another is a hole), as in most
treatment-planning systems. Partial voxels are therefore all-or-nothing: a voxel whose
centre falls outside the polygon is not counted, however much of it the polygon covers.
Contours must be parallel to the SPECT slices (an oblique structure set is refused).

Contour export (writing)
------------------------
Each VOI mask (its own voxels and its descendants') is written slice by slice as polygons
that follow iso-level 0.5 of the mask (marching squares, ``contourpy``): every contour
passes half-way between a voxel inside and a voxel outside, so rasterising the written
contours with the rule above gives back exactly the same voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import contourpy
import numpy as np
from matplotlib.path import Path as MplPath
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import RTStructureSetStorage

from harmonize.io._dicom_common import ds_values, format_da, format_tm
from harmonize.io._geometry import Grid
from harmonize.study import StudyError

__all__ = ["RoiMask", "build_rtstruct", "mask_contours", "read_rtstruct"]

#: Largest out-of-plane spread (in slices) of one contour's points before it counts as oblique.
PLANE_TOL_SLICES = 1e-3
_INTERPRETED_TYPE = {"lesion": "GTV", "organ": "ORGAN", "body": "EXTERNAL", "background": "CONTROL"}


@dataclass(frozen=True)
class RoiMask:
    """One ROI read from a structure set or segmentation."""

    number: int
    name: str
    mask: np.ndarray
    interpreted_type: str = ""


def mask_contours(mask_2d: np.ndarray) -> list[np.ndarray]:
    """Closed polygons (n, 2) in (column, row) index units around the ``True`` pixels.

    The polygons follow the 0.5 iso-line of the mask padded with zeros; with the even–odd
    rule they contain exactly the centres of the ``True`` pixels.
    """
    padded = np.pad(np.asarray(mask_2d, dtype=np.float64), 1)
    if not padded.any():
        return []
    rows = np.arange(padded.shape[0], dtype=np.float64) - 1.0
    cols = np.arange(padded.shape[1], dtype=np.float64) - 1.0
    generator = contourpy.contour_generator(
        x=cols, y=rows, z=padded, line_type=contourpy.LineType.Separate
    )
    lines = generator.lines(0.5)
    return [np.asarray(line, dtype=np.float64) for line in lines if len(line) >= 3]


def _rasterise_plane(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Even–odd fill of polygons (column, row coordinates) sampled at pixel centres."""
    out = np.zeros(shape, dtype=bool)
    for poly in polygons:
        c0, r0 = np.floor(poly.min(axis=0)).astype(int)
        c1, r1 = np.ceil(poly.max(axis=0)).astype(int)
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, shape[1] - 1), min(r1, shape[0] - 1)
        if c1 < c0 or r1 < r0:
            continue
        rr, cc = np.mgrid[r0 : r1 + 1, c0 : c1 + 1]
        points = np.column_stack([cc.ravel(), rr.ravel()]).astype(np.float64)
        inside = MplPath(poly, closed=True).contains_points(points).reshape(rr.shape)
        out[r0 : r1 + 1, c0 : c1 + 1] ^= inside
    return out


def _ref_frame_uids(ds: Dataset) -> set[str]:
    uids = {
        str(item.FrameOfReferenceUID)
        for item in ds.get("ReferencedFrameOfReferenceSequence", [])
        if "FrameOfReferenceUID" in item
    }
    uids |= {
        str(item.ReferencedFrameOfReferenceUID)
        for item in ds.get("StructureSetROISequence", [])
        if "ReferencedFrameOfReferenceUID" in item
    }
    return uids


def read_rtstruct(
    ds: Dataset, grid: Grid, frame_of_reference_uid: str | None, path: Path
) -> list[RoiMask]:
    """Rasterise every ROI of an RTSTRUCT dataset onto ``grid``.

    Parameters
    ----------
    ds : pydicom.Dataset
        The structure set.
    grid : Grid
        The SPECT grid (reference time point).
    frame_of_reference_uid : str or None
        Frame of reference of the grid; an RTSTRUCT referring to another one is refused.
    path : Path
        File name, for messages.

    Raises
    ------
    harmonize.StudyError
        Naming ``path``: wrong frame of reference, oblique contours, malformed contour data.
    """
    refs = _ref_frame_uids(ds)
    if frame_of_reference_uid is not None and refs and frame_of_reference_uid not in refs:
        raise StudyError(
            f"{path}: RTSTRUCT refers (ReferencedFrameOfReferenceSequence) to a frame of "
            "reference of none of the study's time points (neither an emission series nor its "
            "CT): it was drawn on a series that is not in this study, or register it to one "
            "of its time points"
        )
    names = {
        int(item.ROINumber): str(item.get("ROIName", f"roi_{int(item.ROINumber)}")).strip()
        for item in ds.get("StructureSetROISequence", [])
    }
    types = {
        int(item.ReferencedROINumber): str(item.get("RTROIInterpretedType", "") or "")
        for item in ds.get("RTROIObservationsSequence", [])
        if "ReferencedROINumber" in item
    }
    nz, ny, nx = grid.shape
    out: list[RoiMask] = []
    for roi in ds.get("ROIContourSequence", []):
        number = int(roi.ReferencedROINumber)
        planes: dict[float, list[np.ndarray]] = {}
        for contour in roi.get("ContourSequence", []):
            kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR"))
            if kind == "POINT" or "ContourData" not in contour:
                continue
            data = np.asarray([float(v) for v in contour.ContourData], dtype=np.float64)
            if data.size % 3 or data.size < 9:
                raise StudyError(
                    f"{path}: ROI {names.get(number, number)!r} has a contour with "
                    f"{data.size} coordinates (expected ≥ 3 points of 3 coordinates)"
                )
            ijk = grid.physical_to_index(data.reshape(-1, 3))
            k = ijk[:, 2]
            if np.ptp(k) > PLANE_TOL_SLICES:
                raise StudyError(
                    f"{path}: ROI {names.get(number, number)!r} has contours that are not "
                    "parallel to the SPECT slices (oblique structure sets are not supported)"
                )
            planes.setdefault(round(float(k.mean()), 3), []).append(ijk[:, :2])
        mask = np.zeros(grid.shape, dtype=bool)
        if planes:
            levels = np.array(sorted(planes))
            half = 0.5 * (float(np.min(np.diff(levels))) if levels.size > 1 else 1.0)
            slices = np.arange(nz, dtype=np.float64)
            nearest = np.abs(slices[:, None] - levels[None, :]).argmin(axis=1)
            close = np.abs(slices - levels[nearest]) <= half + 1e-6
            for kk in np.flatnonzero(close):
                mask[kk] = _rasterise_plane(planes[float(levels[nearest[kk]])], (ny, nx))
        out.append(RoiMask(number, names.get(number, f"roi_{number}"), mask, types.get(number, "")))
    return out


def build_rtstruct(
    base: Dataset,
    grid: Grid,
    rois: Sequence[tuple[int, str, str, np.ndarray]],
    *,
    referenced_images: Sequence[tuple[str, str, int | None]],
    referenced_series_uid: str,
    series_uid: str,
    sop_uid: str,
    when: datetime,
) -> Dataset:
    """Build an RTSTRUCT dataset.

    Parameters
    ----------
    base : Dataset
        Patient, study, frame-of-reference and equipment attributes to copy.
    grid : Grid
        Grid of the masks.
    rois : sequence of (number, name, kind, mask)
        One entry per ROI; ``mask`` is a boolean (z, y, x) array on ``grid``.
    referenced_images : sequence of (sop_class_uid, sop_instance_uid, frame_number or None)
        The images the contours were drawn on (the reference SPECT frames).
    referenced_series_uid : str
        Series of those images.
    series_uid, sop_uid : str
        UIDs of the new series and instance.
    when : datetime
        Structure set date/time.
    """
    ds = Dataset()
    for element in base:
        ds.add(element)
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 100
    ds.InstanceNumber = 1
    ds.SeriesDescription = "harmonize VOIs"
    ds.StructureSetLabel = "VOIs"
    ds.StructureSetDate = format_da(when)
    ds.StructureSetTime = format_tm(when)
    for_uid = str(base.FrameOfReferenceUID)
    contour_images = DicomSequence()
    for sop_class, sop_instance, frame in referenced_images:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        if frame is not None:
            item.ReferencedFrameNumber = frame
        contour_images.append(item)
    series_item = Dataset()
    series_item.SeriesInstanceUID = referenced_series_uid
    series_item.ContourImageSequence = contour_images
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study_item.ReferencedSOPInstanceUID = str(base.StudyInstanceUID)
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    for_item = Dataset()
    for_item.FrameOfReferenceUID = for_uid
    for_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([for_item])
    roi_items, contour_items, observation_items = [], [], []
    rng = np.random.default_rng(0)
    for number, name, kind, mask in rois:
        roi = Dataset()
        roi.ROINumber = int(number)
        roi.ReferencedFrameOfReferenceUID = for_uid
        roi.ROIName = str(name)
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_items.append(roi)
        contours = DicomSequence()
        for k in np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1)):
            for poly in mask_contours(mask[k]):
                ijk = np.column_stack([poly, np.full(len(poly), float(k))])
                xyz = grid.index_to_physical(ijk)
                item = Dataset()
                item.ContourGeometricType = "CLOSED_PLANAR"
                item.NumberOfContourPoints = len(xyz)
                item.ContourData = ds_values(xyz.ravel())
                contours.append(item)
        roi_contour = Dataset()
        roi_contour.ReferencedROINumber = int(number)
        roi_contour.ROIDisplayColor = [int(v) for v in rng.integers(40, 255, size=3)]
        roi_contour.ContourSequence = contours
        contour_items.append(roi_contour)
        observation = Dataset()
        observation.ObservationNumber = int(number)
        observation.ReferencedROINumber = int(number)
        observation.RTROIInterpretedType = _INTERPRETED_TYPE.get(kind, "")
        observation.ROIInterpreter = ""
        observation_items.append(observation)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.RTROIObservationsSequence = DicomSequence(observation_items)
    return ds
