"""DICOM Segmentation (SEG) ↔ voxel masks, through highdicom.

Segments are read as binary masks (a FRACTIONAL segmentation is thresholded at 0.5) and
resampled onto the SPECT grid by nearest neighbour when the SEG frames do not lie exactly
on the SPECT slices. Written SEGs are BINARY, one segment per VOI (its own voxels and its
descendants'), with frames on the reference SPECT grid, so reading them back is exact.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from harmonize.io._geometry import Grid, array_to_image, resample_onto
from harmonize.io.rtstruct import RoiMask
from harmonize.study import StudyError

__all__ = ["build_seg", "read_seg"]

_CATEGORY = {
    "lesion": codes.SCT.MorphologicallyAbnormalStructure,
    "organ": codes.SCT.AnatomicalStructure,
    "body": codes.SCT.AnatomicalStructure,
    "background": codes.SCT.PhysicalObject,
}


def _property_type(name: str, kind: str) -> Code:
    lowered = name.lower()
    for word, code in (
        ("kidney", codes.SCT.Kidney),
        ("liver", codes.SCT.Liver),
        ("spleen", codes.SCT.Spleen),
    ):
        if word in lowered:
            return code
    return {
        "lesion": codes.SCT.Lesion,
        "body": codes.SCT.EntireBody,
        "organ": codes.SCT.Organ,
    }.get(kind, codes.SCT.PhysicalObject)


def build_seg(
    source: Dataset,
    grid: Grid,
    rois: Sequence[tuple[int, str, str, np.ndarray]],
    *,
    series_uid: str,
    sop_uid: str,
    software_version: str,
) -> Dataset:
    """A BINARY SEG of ``rois`` (number, name, kind, mask) on the frames of ``source``.

    ``source`` is the reference NM multi-frame image whose frames lie on ``grid``; the
    segment numbers are 1..n in the order of ``rois``.
    """
    nz, ny, nx = grid.shape
    pixels = np.zeros((nz, ny, nx, len(rois)), dtype=np.uint8)
    descriptions = []
    for n, (_, name, kind, mask) in enumerate(rois):
        pixels[..., n] = mask.astype(np.uint8)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n + 1,
                segment_label=str(name),
                segmented_property_category=_CATEGORY.get(kind, codes.SCT.PhysicalObject),
                segmented_property_type=_property_type(str(name), kind),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        )
    dz, dy, dx = grid.spacing_mm
    matrix = grid.matrix
    positions = [
        hd.PlanePositionSequence(
            hd.CoordinateSystemNames.PATIENT,
            [float(v) for v in grid.index_to_physical(np.array([0.0, 0.0, float(k)]))],
        )
        for k in range(nz)
    ]
    # highdicom reads the geometry of a multi-frame source from its functional groups, which
    # a legacy NM image lacks: describe the NM frames that way on a copy of its header
    reference = copy.copy(source)
    if "PixelData" in reference:
        del reference.PixelData
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=(float(dy), float(dx)),
        slice_thickness=float(dz),
        spacing_between_slices=float(dz),
    )
    orientation = hd.PlaneOrientationSequence(
        hd.CoordinateSystemNames.PATIENT,
        [float(v) for v in (*matrix[:, 0], *matrix[:, 1])],
    )
    shared = Dataset()
    shared.PixelMeasuresSequence = measures
    shared.PlaneOrientationSequence = orientation
    reference.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for position in positions:
        item = Dataset()
        item.PlanePositionSequence = position
        per_frame.append(item)
    reference.PerFrameFunctionalGroupsSequence = per_frame
    seg = hd.seg.Segmentation(
        source_images=[reference],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid,
        series_number=101,
        sop_instance_uid=sop_uid,
        instance_number=1,
        manufacturer="harmonize",
        manufacturer_model_name="harmonize",
        software_versions=software_version,
        device_serial_number="0",
        pixel_measures=measures,
        plane_orientation=orientation,
        plane_positions=positions,
        omit_empty_frames=True,
        content_label="VOIS",
    )
    return seg


def read_seg(
    ds: Dataset, grid: Grid, frame_of_reference_uid: str | None, path: Path
) -> list[RoiMask]:
    """Masks of every segment of a SEG dataset on ``grid`` (segment number as ROI number).

    Raises
    ------
    harmonize.StudyError
        Naming ``path`` if the SEG refers to another frame of reference or cannot be decoded.
    """
    seg_for = str(ds.get("FrameOfReferenceUID", "") or "")
    if frame_of_reference_uid is not None and seg_for and seg_for != frame_of_reference_uid:
        raise StudyError(
            f"{path}: SEG refers (FrameOfReferenceUID) to a frame of reference of none of "
            "the study's time points (neither an emission series nor its CT): it was drawn on "
            "a series that is not in this study, or register it to one of its time points"
        )
    try:
        seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
        numbers = list(seg.segment_numbers)
        volume = seg.get_volume(combine_segments=False, dtype=np.float32)
    except Exception as exc:  # highdicom raises ValueError/AttributeError/... on bad SEGs
        raise StudyError(
            f"{path}: cannot decode the DICOM SEG: {type(exc).__name__}: {exc}"
        ) from None
    array = np.asarray(volume.array)  # (slice, row, column, segment)
    if array.ndim == 3:
        array = array[..., None]
    affine = np.asarray(volume.affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)  # slice, row, column steps
    columns = affine[:3, :3] / spacing
    seg_grid = Grid(
        shape=(int(array.shape[0]), int(array.shape[1]), int(array.shape[2])),
        spacing_mm=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin_mm=tuple(float(v) for v in affine[:3, 3]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in columns[:, [2, 1, 0]].ravel()),
    )
    out = []
    for n, number in enumerate(numbers):
        image = array_to_image((array[..., n] >= 0.5).astype(np.uint8), seg_grid)
        mask = resample_onto(image, grid, interpolator=sitk.sitkNearestNeighbor) > 0
        label = str(seg.get_segment_description(number).segment_label).strip()
        out.append(RoiMask(int(number), label, mask, ""))
    return out
