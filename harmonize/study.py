"""The Study: one patient, one therapy cycle, as an :class:`xarray.Dataset`.

A Study is the single in-memory currency of harmonize: every loader returns one, every
workflow adapter consumes one. Its layout is fixed:

========================  ====================  ===========  =====================================
variable / coordinate     dims                  units attr   meaning
========================  ====================  ===========  =====================================
``activity``              (time, z, y, x)       ``Bq/mL``    activity concentration at acquisition
                                                             time (**not** decay corrected), float32
``ct`` (optional)         (z, y, x)             ``HU``       CT on the SPECT grid, float32
``ct_by_time`` (optional) (time, z, y, x)       ``HU``       one CT per time point (before
                                                             registration), float32
``labels``                (z, y, x)             ``1``        integer VOI map, 0 = no VOI
``labels_observer`` (opt.) (z, y, x)            ``1``        an observer's segmentation, same ids
``time``                  (time,)               ``h``        hours after injection, increasing, ≥ 0
``z``, ``y``, ``x``       (z,), (y,), (x,)      ``mm``       voxel centres, uniform spacing
``voi``                   (voi,)                ``1``        VOI ids (> 0) used in ``labels``
``voi_name``              (voi,)                             unique VOI names
``voi_kind``              (voi,)                             lesion | organ | body | background
``voi_parent``            (voi,)                             id of the enclosing VOI, 0 for none
========================  ====================  ===========  =====================================

Each voxel carries the id of the most specific VOI it belongs to; a VOI's full extent is its
own voxels plus those of its descendants (a liver lesion's voxels belong to the liver and to
the body). :func:`voi_mask` applies that rule; a workflow may choose not to count lesions in
their organ.

Dataset attrs: ``patient_id`` (a pseudonym), ``cycle`` (≥ 1), ``center``, ``radionuclide``
(e.g. ``"Lu-177"``), ``injected_activity_MBq``, ``injection_time`` (ISO 8601; a synthetic
or shifted date in de-identified data), ``direction`` (9 direction cosines, row-major, as in
SimpleITK; the physical LPS position of voxel (i, j, k) along (x, y, z) is
``origin + D @ (i·dx, j·dy, k·dz)`` with origin = (x[0], y[0], z[0])).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from harmonize.errors import HarmonizeError
from harmonize.nuclides import MAX_HALF_LIVES, NuclideError, get_nuclide

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")
    xr = lazy_module("xarray")

__all__ = [
    "SPATIAL_DIMS",
    "VOI_KINDS",
    "StudyError",
    "make_study",
    "validate_study",
    "voi_mask",
    "voi_table",
    "voxel_size_mm",
    "voxel_volume_ml",
]

#: Allowed VOI kinds.
VOI_KINDS = ("lesion", "organ", "body", "background")
#: Names of the spatial dimensions, slowest first.
SPATIAL_DIMS = ("z", "y", "x")
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
_REQUIRED_ATTRS = (
    "patient_id",
    "cycle",
    "center",
    "radionuclide",
    "injected_activity_MBq",
    "injection_time",
)


#: Largest cycle number: the results schema stores ``cycle`` as int32.
MAX_CYCLE = 2**31 - 1


class StudyError(HarmonizeError, ValueError):
    """A Study (or the file it came from) does not meet the harmonize Study layout."""


def make_study(
    activity_bq_ml: np.ndarray,
    times_h: Sequence[float] | np.ndarray,
    voxel_size_mm: Sequence[float],
    labels: np.ndarray,
    vois: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    patient_id: str,
    cycle: int,
    center: str,
    injected_activity_mbq: float,
    injection_time: str,
    radionuclide: str = "Lu-177",
    ct_hu: np.ndarray | None = None,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] = _IDENTITY,
    extra_attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build and validate a Study from plain arrays.

    Parameters
    ----------
    activity_bq_ml : ndarray, shape (time, z, y, x)
        Activity concentration in Bq/mL at each acquisition time, not decay corrected.
    times_h : sequence of float
        Acquisition times in hours after injection, strictly increasing.
    voxel_size_mm : (dz, dy, dx)
        Voxel spacing in mm.
    labels : ndarray of int, shape (z, y, x)
        VOI map; 0 means no VOI.
    vois : DataFrame or sequence of mappings
        The VOI table with columns ``voi_id`` (> 0), ``name``, ``kind`` (one of
        :data:`VOI_KINDS`) and optional ``parent_id`` (0 or missing for none).
    patient_id, cycle, center, injected_activity_mbq, injection_time, radionuclide
        Study attributes (see the module docstring). ``patient_id`` must be a pseudonym.
    ct_hu : ndarray, shape (z, y, x), optional
        CT in Hounsfield units on the same grid.
    origin_mm : (x0, y0, z0)
        Physical (LPS) position of the first voxel centre.
    direction : 9 floats
        Direction cosines, row-major (SimpleITK convention).
    extra_attrs : mapping, optional
        More dataset attributes (strings or numbers), kept as they are.

    Returns
    -------
    xarray.Dataset
        A validated Study.
    """
    activity = np.asarray(activity_bq_ml)
    if activity.ndim != 4:
        raise StudyError(
            f"activity_bq_ml: expected a 4-D array (time, z, y, x), got shape {activity.shape}"
        )
    times = np.asarray(times_h, dtype=np.float64).reshape(-1)
    spacing = tuple(float(v) for v in voxel_size_mm)
    if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
        raise StudyError(f"voxel_size_mm: expected 3 positive numbers (dz, dy, dx), got {spacing}")
    x0, y0, z0 = (float(v) for v in origin_mm)
    nz, ny, nx = activity.shape[1:]
    coords: dict[str, Any] = {
        "time": ("time", times, {"units": "h", "long_name": "time after injection"}),
        "z": ("z", z0 + spacing[0] * np.arange(nz), {"units": "mm"}),
        "y": ("y", y0 + spacing[1] * np.arange(ny), {"units": "mm"}),
        "x": ("x", x0 + spacing[2] * np.arange(nx), {"units": "mm"}),
    }
    table = _voi_frame(vois)
    coords.update(
        {
            "voi": ("voi", table["voi_id"].to_numpy(np.int32), {"units": "1"}),
            "voi_name": ("voi", table["name"].astype(str).to_numpy(dtype=object)),
            "voi_kind": ("voi", table["kind"].astype(str).to_numpy(dtype=object)),
            "voi_parent": ("voi", table["parent_id"].to_numpy(np.int32)),
        }
    )
    data_vars: dict[str, Any] = {
        "activity": (
            ("time", *SPATIAL_DIMS),
            activity.astype(np.float32, copy=False),
            {"units": "Bq/mL", "decay_corrected": 0, "long_name": "activity concentration"},
        ),
        "labels": (SPATIAL_DIMS, np.asarray(labels).astype(np.int32, copy=False), {"units": "1"}),
    }
    if ct_hu is not None:
        data_vars["ct"] = (
            SPATIAL_DIMS,
            np.asarray(ct_hu).astype(np.float32, copy=False),
            {"units": "HU"},
        )
    attrs: dict[str, Any] = {
        "patient_id": str(patient_id),
        "cycle": int(cycle),
        "center": str(center),
        "radionuclide": str(radionuclide),
        "injected_activity_MBq": float(injected_activity_mbq),
        "injection_time": str(injection_time),
        "direction": np.asarray(direction, dtype=np.float64),
        "voxel_size_mm": np.asarray(spacing, dtype=np.float64),
    }
    if extra_attrs:
        attrs.update(dict(extra_attrs))
    ds = xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)
    validate_study(ds)
    return ds


def _voi_frame(vois: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(vois).copy() if not isinstance(vois, pd.DataFrame) else vois.copy()
    missing = [c for c in ("voi_id", "name", "kind") if c not in table.columns]
    if missing:
        raise StudyError(f"vois: the VOI table lacks the column(s) {missing}")
    if "parent_id" not in table.columns:
        table["parent_id"] = 0
    table["parent_id"] = table["parent_id"].fillna(0).astype(np.int64)
    return table.reset_index(drop=True)


def _fail(where: str, problem: str) -> StudyError:
    return StudyError(f"{where}: {problem}")


def _check_units(ds: xr.Dataset, name: str, expected: str) -> None:
    units = ds[name].attrs.get("units")
    if units != expected:
        raise _fail(name, f"units attribute must be {expected!r}, got {units!r}")


def _check_uniform_axis(ds: xr.Dataset, dim: str) -> None:
    values = np.asarray(ds[dim].values, dtype=np.float64)
    _check_units(ds, dim, "mm")
    if not np.all(np.isfinite(values)):
        raise _fail(dim, "coordinate has non-finite values")
    if values.size > 1:
        steps = np.diff(values)
        if np.any(steps <= 0) or not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
            raise _fail(dim, "coordinate must be increasing with a uniform spacing (mm)")


def validate_study(ds: xr.Dataset) -> xr.Dataset:
    """Check that ``ds`` is a valid Study; return it unchanged.

    Checks dimensions, units, monotonic non-negative times in hours (no later than
    :data:`~harmonize.nuclides.MAX_HALF_LIVES` half-lives: later times are minutes or
    seconds), a non-empty uniform grid shared by all images, finite non-negative activity
    with no all-zero frame (named by its time point), integer labels whose ids are all in
    the VOI table, a non-empty VOI table without parent cycles whose every VOI labels at
    least one voxel, a known radionuclide, a cycle that fits the results' int32, numeric
    orthonormal direction cosines and the required attributes.

    This is the contract of the built-in adapters: whatever it accepts, each of them
    processes or refuses with a :class:`StudyError` or
    :class:`~harmonize.workflow.WorkflowError` (checked by
    :func:`harmonize.testing.check_fuzz`).

    Raises
    ------
    StudyError
        Naming the variable, coordinate or attribute at fault and what was expected.
    """
    if not isinstance(ds, xr.Dataset):
        raise StudyError(f"a Study must be an xarray.Dataset, got {type(ds).__name__}")
    if "activity" not in ds.data_vars:
        raise _fail("activity", "variable is missing")
    activity = ds["activity"]
    if activity.dims != ("time", *SPATIAL_DIMS):
        raise _fail("activity", f"dims must be ('time', 'z', 'y', 'x'), got {activity.dims}")
    if not np.issubdtype(activity.dtype, np.floating):
        raise _fail("activity", f"dtype must be floating point, got {activity.dtype}")
    _check_units(ds, "activity", "Bq/mL")
    if any(activity.sizes[d] == 0 for d in SPATIAL_DIMS):
        raise _fail(
            "activity",
            f"the image grid is empty: (z, y, x) = {tuple(activity.sizes[d] for d in SPATIAL_DIMS)}",
        )
    values = activity.values
    if not np.all(np.isfinite(values)):
        bad_frames = np.flatnonzero(~np.isfinite(values).reshape(values.shape[0], -1).all(axis=1))
        raise _fail(
            "activity",
            f"{int(np.size(values) - np.isfinite(values).sum())} values are NaN or infinite, "
            f"in the frame(s) at {_times_text(ds, bad_frames)}",
        )
    if np.any(values < 0):
        raise _fail(
            "activity",
            f"{int((values < 0).sum())} values are negative (min {float(values.min()):.4g} Bq/mL); "
            "activity concentration must be ≥ 0",
        )
    empty_frames = np.flatnonzero(~(values.reshape(values.shape[0], -1) > 0).any(axis=1))
    if empty_frames.size:
        raise _fail(
            "activity",
            f"the frame(s) at {_times_text(ds, empty_frames)} are all zero: an image with no "
            "activity is a failed acquisition or reconstruction, not a measurement",
        )
    if activity.attrs.get("decay_corrected", 0) not in (0, False):
        raise _fail("activity", "must not be decay corrected (attribute decay_corrected must be 0)")

    times = np.asarray(ds["time"].values, dtype=np.float64)
    _check_units(ds, "time", "h")
    if times.size == 0:
        raise _fail("time", "at least one time point is required")
    if not np.all(np.isfinite(times)):
        raise _fail("time", "has non-finite values")
    if np.any(times < 0):
        raise _fail("time", f"hours after injection must be ≥ 0, got {times.tolist()}")
    if np.any(np.diff(times) <= 0):
        raise _fail("time", f"must be strictly increasing, got {times.tolist()}")
    spacing = np.asarray(ds.attrs.get("voxel_size_mm", ()), dtype=np.float64).reshape(-1)
    if spacing.size != 3 or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise _fail(
            "attrs['voxel_size_mm']",
            f"must be 3 positive numbers (dz, dy, dx), got {spacing.tolist()}",
        )
    for dim, step in zip(SPATIAL_DIMS, spacing, strict=True):
        if dim not in ds.coords:
            raise _fail(dim, "coordinate is missing")
        _check_uniform_axis(ds, dim)
        values = np.asarray(ds[dim].values, dtype=np.float64)
        if values.size > 1 and not math.isclose(values[1] - values[0], step, rel_tol=1e-6):
            raise _fail(
                dim,
                f"coordinate spacing {values[1] - values[0]:.6g} mm disagrees with "
                f"attrs['voxel_size_mm'] ({step:.6g} mm)",
            )

    for name in ("labels", "ct"):
        if name not in ds.data_vars:
            if name == "labels":
                raise _fail("labels", "variable is missing")
            continue
        if ds[name].dims != SPATIAL_DIMS:
            raise _fail(
                name,
                f"grid does not match the activity grid: dims must be ('z', 'y', 'x'), got {ds[name].dims}",
            )
    if "ct" in ds.data_vars:
        _check_units(ds, "ct", "HU")
        if not np.all(np.isfinite(ds["ct"].values)):
            raise _fail("ct", "has NaN or infinite values")
    if "ct_by_time" in ds.data_vars:
        if ds["ct_by_time"].dims != ("time", *SPATIAL_DIMS):
            raise _fail(
                "ct_by_time",
                f"dims must be ('time', 'z', 'y', 'x') on the activity grid, got {ds['ct_by_time'].dims}",
            )
        _check_units(ds, "ct_by_time", "HU")
        if not np.all(np.isfinite(ds["ct_by_time"].values)):
            raise _fail("ct_by_time", "has NaN or infinite values")
    labels = ds["labels"]
    if not np.issubdtype(labels.dtype, np.integer):
        raise _fail("labels", f"dtype must be an integer type, got {labels.dtype}")

    table = _validate_voi_table(ds)
    present = np.unique(labels.values)
    present = present[present != 0]
    unknown = np.setdiff1d(present, table["voi_id"].to_numpy())
    if unknown.size:
        raise _fail(
            "labels", f"label ids {unknown.tolist()} are not in the VOI table (coordinate 'voi')"
        )
    _check_vois_have_voxels(ds, table)
    if "labels_observer" in ds.data_vars:  # optional: an observer's segmentation
        observer = ds["labels_observer"]
        if observer.dims != SPATIAL_DIMS or not np.issubdtype(observer.dtype, np.integer):
            raise _fail("labels_observer", "must be an integer map on the activity grid")
        extra = np.setdiff1d(np.unique(observer.values), [0, *table["voi_id"].tolist()])
        if extra.size:
            raise _fail("labels_observer", f"label ids {extra.tolist()} are not in the VOI table")

    _validate_attrs(ds)
    return ds


def _validate_voi_table(ds: xr.Dataset) -> pd.DataFrame:
    for name in ("voi", "voi_name", "voi_kind", "voi_parent"):
        if name not in ds.coords:
            raise _fail(name, "VOI table coordinate is missing")
        if ds[name].dims != ("voi",):
            raise _fail(name, f"dims must be ('voi',), got {ds[name].dims}")
    table = voi_table(ds)
    ids = table["voi_id"].to_numpy()
    if ids.size == 0:
        raise _fail("voi", "the VOI table is empty: at least one VOI is required")
    if np.any(ids <= 0):
        raise _fail(
            "voi", f"VOI ids must be > 0 (0 marks voxels outside every VOI), got {ids.tolist()}"
        )
    if len(set(ids.tolist())) != ids.size:
        raise _fail("voi", f"VOI ids must be unique, got {ids.tolist()}")
    names = table["name"].tolist()
    if any(not str(n).strip() for n in names) or len(set(names)) != len(names):
        raise _fail("voi_name", f"VOI names must be non-empty and unique, got {names}")
    bad_kinds = sorted(set(table["kind"]) - set(VOI_KINDS))
    if bad_kinds:
        raise _fail("voi_kind", f"unknown kind(s) {bad_kinds}; expected one of {list(VOI_KINDS)}")
    parents = table["parent_id"].to_numpy()
    orphan = sorted(set(parents[parents != 0].tolist()) - set(ids.tolist()))
    if orphan:
        raise _fail("voi_parent", f"parent ids {orphan} are not VOI ids")
    if np.any(parents == ids):
        raise _fail("voi_parent", "a VOI cannot be its own parent")
    _check_no_parent_cycle(table)
    return table


def _check_no_parent_cycle(table: pd.DataFrame) -> None:
    parent_of = dict(zip(table["voi_id"].tolist(), table["parent_id"].tolist(), strict=True))
    for start in parent_of:
        seen = [start]
        node = parent_of[start]
        while node:
            if node in seen:
                path = " → ".join(str(v) for v in [*seen[seen.index(node) :], node])
                raise _fail("voi_parent", f"the parent links form a cycle ({path})")
            seen.append(node)
            node = parent_of.get(node, 0)


def _check_vois_have_voxels(ds: xr.Dataset, table: pd.DataFrame) -> None:
    counts = np.bincount(
        np.clip(np.asarray(ds["labels"].values).ravel(), 0, None).astype(np.int64),
        minlength=int(table["voi_id"].max()) + 1,
    )
    empty = table.loc[counts[table["voi_id"].to_numpy()] == 0]
    if len(empty):
        names = ", ".join(f"{i} ({n})" for i, n in zip(empty["voi_id"], empty["name"], strict=True))
        raise _fail(
            "labels",
            f"VOI(s) {names} have no voxel of their own in the label map; every VOI of the "
            "table must label at least one voxel",
        )


def _times_text(ds: xr.Dataset, index: np.ndarray) -> str:
    times = np.asarray(ds["time"].values, dtype=np.float64)
    return ", ".join(f"{times[i]:g} h" if i < times.size else f"index {i}" for i in index)


def _check_time_unit(ds: xr.Dataset) -> None:
    nuclide = get_nuclide(str(ds.attrs["radionuclide"]))
    t_last = float(np.max(np.asarray(ds["time"].values, dtype=np.float64)))
    if t_last > MAX_HALF_LIVES * nuclide.half_life_h:
        raise _fail(
            "time",
            f"must be in hours after injection: the last time {t_last:g} h is "
            f"{t_last / nuclide.half_life_h:.0f} half-lives of {nuclide.name} (more than "
            f"{MAX_HALF_LIVES:g}) — were the times given in minutes or seconds?",
        )


def _validate_attrs(ds: xr.Dataset) -> None:
    attrs = ds.attrs
    for key in _REQUIRED_ATTRS:
        if key not in attrs:
            raise _fail(f"attrs['{key}']", "required attribute is missing")
    if not isinstance(attrs["patient_id"], str) or not attrs["patient_id"].strip():
        raise _fail("attrs['patient_id']", "must be a non-empty pseudonym string")
    cycle = attrs["cycle"]
    if (
        isinstance(cycle, bool)
        or not isinstance(cycle, int | np.integer)
        or not 1 <= int(cycle) <= MAX_CYCLE
    ):
        raise _fail(
            "attrs['cycle']", f"must be an integer ≥ 1 and ≤ {MAX_CYCLE} (int32), got {cycle!r}"
        )
    if not isinstance(attrs["center"], str):
        raise _fail("attrs['center']", f"must be a string, got {attrs['center']!r}")
    try:
        get_nuclide(str(attrs["radionuclide"]))
    except NuclideError as exc:
        raise _fail("attrs['radionuclide']", str(exc)) from None
    activity = attrs["injected_activity_MBq"]
    try:
        activity_value = float(activity)
    except (TypeError, ValueError):
        activity_value = float("nan")
    if not math.isfinite(activity_value) or activity_value <= 0:
        raise _fail(
            "attrs['injected_activity_MBq']", f"must be a positive number, got {activity!r}"
        )
    try:
        datetime.fromisoformat(str(attrs["injection_time"]))
    except ValueError:
        raise _fail(
            "attrs['injection_time']",
            f"must be an ISO 8601 date-time, got {attrs['injection_time']!r}",
        ) from None
    _check_time_unit(ds)
    try:
        direction = np.asarray(attrs.get("direction", _IDENTITY), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        direction = np.full(1, np.nan)
    if direction.size != 9 or not np.allclose(
        direction.reshape(3, 3) @ direction.reshape(3, 3).T, np.eye(3), atol=1e-5
    ):
        raise _fail("attrs['direction']", "must be 9 orthonormal direction cosines (row-major)")


def voi_table(ds: xr.Dataset) -> pd.DataFrame:
    """The VOI table of a Study as a DataFrame (voi_id, name, kind, parent_id)."""
    return pd.DataFrame(
        {
            "voi_id": np.asarray(ds["voi"].values, dtype=np.int64),
            "name": [str(v) for v in ds["voi_name"].values],
            "kind": [str(v) for v in ds["voi_kind"].values],
            "parent_id": np.asarray(ds["voi_parent"].values, dtype=np.int64),
        }
    )


def _descendants(table: pd.DataFrame, voi_id: int) -> list[int]:
    parents = table.set_index("voi_id")["parent_id"]
    found = [int(voi_id)]
    frontier = [int(voi_id)]
    while frontier:
        frontier = [int(c) for c in parents.index[parents.isin(frontier)] if c not in found]
        found.extend(frontier)
    return found


def voi_mask(ds: xr.Dataset, voi_id: int, *, include_children: bool = True) -> np.ndarray:
    """Boolean mask (z, y, x) of a VOI.

    Parameters
    ----------
    ds : xarray.Dataset
        A Study.
    voi_id : int
        The VOI id.
    include_children : bool, default True
        Count the voxels of the VOI's descendants (e.g. lesions inside an organ) as part of
        it. ``False`` gives the VOI's own voxels only.
    """
    table = voi_table(ds)
    if int(voi_id) not in set(table["voi_id"].tolist()):
        raise StudyError(f"voi_id {voi_id} is not in the VOI table {table['voi_id'].tolist()}")
    ids = _descendants(table, int(voi_id)) if include_children else [int(voi_id)]
    return np.isin(ds["labels"].values, ids)


def voxel_size_mm(ds: xr.Dataset) -> tuple[float, float, float]:
    """Voxel spacing (dz, dy, dx) in mm, from the ``voxel_size_mm`` attribute."""
    dz, dy, dx = (float(v) for v in np.asarray(ds.attrs["voxel_size_mm"]).reshape(-1))
    return (dz, dy, dx)


def voxel_volume_ml(ds: xr.Dataset) -> float:
    """Volume of one voxel in mL (1 mL = 1000 mm³)."""
    dz, dy, dx = voxel_size_mm(ds)
    return dz * dy * dx / 1000.0
