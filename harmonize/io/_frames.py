"""The frames of a multi-frame emission or CT file as volumes with their grids (header only).

Rules, as GDCM (and so ITK/SimpleITK) read the same files:

* **NM Image** (DICOM PS3.3 C.8.4.8 NM Image Module, C.8.4.9 NM Multi-frame Module,
  C.8.4.11 NM Detector Module): the position and orientation of a reconstruction are the
  ``ImagePositionPatient``/``ImageOrientationPatient`` of the first item of the
  ``DetectorInformationSequence`` (or of the top level when a vendor writes them there).
  Frames step by ``SpacingBetweenSlices`` along the slice normal ``row × column``; a
  **negative** ``SpacingBetweenSlices`` (Mediso, GE Xeleris) means the frames run along
  ``−(row × column)``: the normal is flipped and the spacing made positive, as GDCM does.
* ``FrameIncrementPointer`` (0028,0009) names the vectors indexing the frames
  (PS3.3 C.8.4.9.1.1): ``EnergyWindowVector`` (0054,0010), ``RRIntervalVector``
  (0054,0060), ``TimeSlotVector`` (0054,0070) and ``SliceVector`` (0054,0080), each frame's
  1-based window, R-R interval, time slot and slice. The frames split into one volume per
  (energy window, R-R interval, time slot), ordered by ``SliceVector``; each volume must hold
  ``NumberOfSlices`` frames and the vectors ``NumberOfFrames`` values.
* **Enhanced multi-frame** (PS3.3 C.7.6.16 Multi-frame Functional Groups): position from
  ``PlanePositionSequence``, orientation from ``PlaneOrientationSequence``, pixel spacing
  from ``PixelMeasuresSequence`` and rescale from ``PixelValueTransformationSequence``,
  each per frame or shared. Frames are ordered along the slice normal and must be evenly
  spaced; the origin is the first frame along the normal.
* Any other multi-frame file: the top-level attributes, frames along ``row × column``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from harmonize.io._geometry import GRID_TOL_MM, Grid
from harmonize.study import StudyError

__all__ = ["FrameStack", "direction_of", "frame_stacks", "is_enhanced"]

_ENERGY_WINDOW = Tag("EnergyWindowVector")
_RR_INTERVAL = Tag("RRIntervalVector")
_TIME_SLOT = Tag("TimeSlotVector")
_SLICE = Tag("SliceVector")
_NM_VECTORS = {
    _ENERGY_WINDOW: "EnergyWindowVector",
    _RR_INTERVAL: "RRIntervalVector",
    _TIME_SLOT: "TimeSlotVector",
    _SLICE: "SliceVector",
}


@dataclass(frozen=True)
class FrameStack:
    """One volume of a multi-frame file: which frames, in slice order, on which grid."""

    frames: np.ndarray  # int indices into the file's frames, slice order
    grid: Grid
    slopes: np.ndarray  # per frame of ``frames``
    intercepts: np.ndarray
    energy_window: int | None = None  # 1-based EnergyWindowVector value
    gate: tuple[int, int] | None = None  # (R-R interval, time slot), 1-based


def direction_of(orientation: np.ndarray, flip_normal: bool = False) -> np.ndarray:
    """Direction matrix (columns row, column, normal) of an ``ImageOrientationPatient``."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row, col)
    return np.column_stack([row, col, -normal if flip_normal else normal])


def is_enhanced(ds: Dataset) -> bool:
    """True when the geometry is held in functional groups (enhanced multi-frame)."""
    return "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds


def _floats(value: object) -> np.ndarray:
    return np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[attr-defined]


def _rescale_top(ds: Dataset) -> tuple[float, float]:
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    return (
        float(slope) if slope not in (None, "") else 1.0,
        float(intercept) if intercept not in (None, "") else 0.0,
    )


def _group_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The functional-group item ``sequence`` of ``frame`` (per-frame first, then shared)."""
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and frame < len(per) and per[frame].get(sequence):
        return per[frame].get(sequence)[0]
    for shared in ds.get("SharedFunctionalGroupsSequence") or []:
        if shared.get(sequence):
            return shared.get(sequence)[0]
    return None


def _spacing_xy(pixel_spacing: object, path: Path) -> tuple[float, float]:
    try:
        dy, dx = (float(v) for v in pixel_spacing)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise StudyError(
            f"{path}: PixelSpacing: expected 2 numbers, got {pixel_spacing!r}"
        ) from None
    if dy <= 0 or dx <= 0:
        raise StudyError(f"{path}: PixelSpacing: expected 2 positive numbers, got {[dy, dx]}")
    return dy, dx


def _stack_from_positions(
    frames: np.ndarray,
    positions: np.ndarray,
    orientation: np.ndarray,
    spacing_xy: tuple[float, float],
    shape_yx: tuple[int, int],
    rescale: np.ndarray,
    path: Path,
    what: str,
) -> FrameStack:
    direction = direction_of(orientation)
    depth = positions @ direction[:, 2]
    order = np.argsort(depth, kind="stable")
    depth = depth[order]
    steps = np.diff(depth)
    if steps.size and (
        np.any(steps <= GRID_TOL_MM) or np.ptp(steps) > max(1e-2, 0.01 * float(steps.mean()))
    ):
        raise StudyError(
            f"{path}: {what} frames are missing, duplicated or unevenly spaced along the slice "
            f"normal (PlanePositionSequence; steps {np.round(steps, 3).tolist()} mm)"
        )
    dz = float(steps.mean()) if steps.size else 1.0
    grid = Grid(
        shape=(len(frames), shape_yx[0], shape_yx[1]),
        spacing_mm=(dz, spacing_xy[0], spacing_xy[1]),
        origin_mm=tuple(float(v) for v in positions[order[0]]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
    )
    return FrameStack(frames[order], grid, rescale[order, 0], rescale[order, 1])


def _enhanced_stacks(ds: Dataset, n_frames: int, path: Path, what: str) -> list[FrameStack]:
    positions, orientations, spacings, rescale = [], [], [], []
    for frame in range(n_frames):
        position = _group_item(ds, frame, "PlanePositionSequence")
        orientation = _group_item(ds, frame, "PlaneOrientationSequence")
        measures = _group_item(ds, frame, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            missing = [
                name
                for name, item in (
                    ("PlanePositionSequence", position),
                    ("PlaneOrientationSequence", orientation),
                    ("PixelMeasuresSequence", measures),
                )
                if item is None
            ]
            raise StudyError(
                f"{path}: enhanced multi-frame {what} frame {frame + 1} without {missing[0]} "
                "(per-frame or shared functional group)"
            )
        positions.append(_floats(position.ImagePositionPatient))
        orientations.append(_floats(orientation.ImageOrientationPatient))
        spacings.append(_spacing_xy(measures.get("PixelSpacing"), path))
        pvt = _group_item(ds, frame, "PixelValueTransformationSequence")
        rescale.append(_rescale_top(pvt) if pvt is not None else _rescale_top(ds))
    orient = np.asarray(orientations)
    if np.ptp(orient, axis=0).max() > 1e-4 or np.ptp(np.asarray(spacings), axis=0).max() > 1e-4:
        raise StudyError(
            f"{path}: enhanced multi-frame {what} frames with different orientations or pixel "
            "spacings (PlaneOrientationSequence/PixelMeasuresSequence)"
        )
    return [
        _stack_from_positions(
            np.arange(n_frames),
            np.asarray(positions),
            orient[0],
            spacings[0],
            (int(ds.Rows), int(ds.Columns)),
            np.asarray(rescale, dtype=np.float64),
            path,
            what,
        )
    ]


def _nm_vectors(ds: Dataset, n_frames: int, path: Path) -> dict[int, np.ndarray]:
    pointers = ds.get("FrameIncrementPointer")
    if pointers is None:
        return {}
    many = isinstance(pointers, MultiValue | list | tuple)
    tags = [Tag(p) for p in pointers] if many else [Tag(pointers)]
    out: dict[int, np.ndarray] = {}
    for tag in tags:
        if tag not in _NM_VECTORS:
            continue
        name = _NM_VECTORS[tag]
        values = ds.get(name)
        if values is None:
            raise StudyError(
                f"{path}: FrameIncrementPointer names {name} but the file has no {name}"
            )
        vector = np.atleast_1d(np.asarray(values, dtype=np.int64))
        if vector.size != n_frames:
            raise StudyError(
                f"{path}: {name} has {vector.size} values for NumberOfFrames = {n_frames}"
            )
        out[tag] = vector
    return out


def _nm_stacks(ds: Dataset, n_frames: int, path: Path, what: str) -> list[FrameStack]:
    position = orientation = None
    for source in (*(ds.get("DetectorInformationSequence") or []), ds):
        if source.get("ImagePositionPatient") and source.get("ImageOrientationPatient"):
            position = _floats(source.ImagePositionPatient)
            orientation = _floats(source.ImageOrientationPatient)
            break
    if position is None or orientation is None:
        raise StudyError(
            f"{path}: {what} volume without ImagePositionPatient/ImageOrientationPatient (top "
            "level or DetectorInformationSequence)"
        )
    spacing_xy = _spacing_xy(ds.get("PixelSpacing"), path)
    raw_dz = ds.get("SpacingBetweenSlices")
    if raw_dz in (None, ""):
        raw_dz = ds.get("SliceThickness")
    if n_frames > 1 and raw_dz in (None, ""):
        raise StudyError(f"{path}: multi-frame {what} volume without SpacingBetweenSlices")
    dz = float(raw_dz) if raw_dz not in (None, "") else 1.0
    if dz == 0:
        raise StudyError(f"{path}: SpacingBetweenSlices = 0")
    direction = direction_of(orientation, flip_normal=dz < 0)
    vectors = _nm_vectors(ds, n_frames, path)
    slices = vectors.get(_SLICE, np.arange(1, n_frames + 1))  # used only with a SliceVector
    windows = vectors.get(_ENERGY_WINDOW, np.ones(n_frames, dtype=np.int64))
    rr = vectors.get(_RR_INTERVAL, np.ones(n_frames, dtype=np.int64))
    slots = vectors.get(_TIME_SLOT, np.ones(n_frames, dtype=np.int64))
    keys = np.stack([windows, rr, slots], axis=1)
    slope, intercept = _rescale_top(ds)
    per_frame = "PerFrameFunctionalGroupsSequence" in ds
    stacks = []
    expected = ds.get("NumberOfSlices")
    for key in np.unique(keys, axis=0):
        members = np.flatnonzero((keys == key).all(axis=1))
        if _SLICE in vectors:
            order = members[np.argsort(slices[members], kind="stable")]
            numbers = slices[order]
        else:  # no SliceVector: the frames of a window are its slices in file order
            order, numbers = members, np.arange(1, len(members) + 1)
        if np.any(np.diff(numbers) != 1):
            raise StudyError(
                f"{path}: SliceVector of energy window {key[0]} is not 1, 2, 3, ... "
                f"(got {numbers.tolist()[:10]}...)"
            )
        if expected not in (None, "") and len(order) != int(expected):
            raise StudyError(
                f"{path}: energy window {key[0]} has {len(order)} frames, NumberOfSlices = "
                f"{int(expected)} (NumberOfFrames = {n_frames})"
            )
        first = int(numbers[0]) - 1  # the position is that of slice 1
        origin = position + first * abs(dz) * direction[:, 2]
        if per_frame:
            rescale = np.array([_frame_rescale(ds, int(f)) for f in order])
        else:
            rescale = np.tile([slope, intercept], (len(order), 1))
        grid = Grid(
            shape=(len(order), int(ds.Rows), int(ds.Columns)),
            spacing_mm=(abs(dz), spacing_xy[0], spacing_xy[1]),
            origin_mm=tuple(float(v) for v in origin),  # type: ignore[arg-type]
            direction=tuple(float(v) for v in direction.ravel()),
        )
        gate = (
            (int(key[1]), int(key[2]))
            if (_RR_INTERVAL in vectors or _TIME_SLOT in vectors)
            else None
        )
        stacks.append(
            FrameStack(
                order,
                grid,
                rescale[:, 0],
                rescale[:, 1],
                int(key[0]) if _ENERGY_WINDOW in vectors else None,
                gate,
            )
        )
    return stacks


def _frame_rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    pvt = _group_item(ds, frame, "PixelValueTransformationSequence")
    return _rescale_top(pvt) if pvt is not None else _rescale_top(ds)


def frame_stacks(ds: Dataset, path: Path, what: str) -> list[FrameStack]:
    """The volumes held by one (multi-)frame file, from its header alone.

    Parameters
    ----------
    ds : pydicom.Dataset
        The header (pixel data not needed).
    path : pathlib.Path
        The file, for messages.
    what : str
        ``"SPECT"``, ``"PET"`` or ``"CT"``, for messages.

    Returns
    -------
    list of FrameStack
        One per energy window and gate (NM), else one.

    Raises
    ------
    harmonize.StudyError
        Naming the file and the attribute at fault.
    """
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if is_enhanced(ds) and _group_item(ds, 0, "PlanePositionSequence") is not None:
        return _enhanced_stacks(ds, n_frames, path, what)
    return _nm_stacks(ds, n_frames, path, what)
