"""VOIs for a study that has no RTSTRUCT and no DICOM SEG: derived, and recorded as such.

* **body**: CT voxels above :data:`BODY_HU` (−500 HU: soft tissue and bone, not air;
  lungs, −900 to −700 HU, are enclosed by the body and filled back in by hole filling),
  enclosed cavities filled (:func:`scipy.ndimage.binary_fill_holes`), largest connected
  component kept. Needs the reference time point's CT.
* **lesions** (optional, sidecar ``auto_lesions``): a fixed-threshold segmentation of the
  reference emission image, ``{"threshold_fraction": f, "min_volume_ml": v}``: voxels of the
  body at or above ``f`` × the maximum activity in the body, split into connected
  components (face connectivity), those of at least ``v`` mL kept as ``auto_lesion_01``, ...
  (by decreasing peak activity). Defaults 0.4 and 1.0 mL **[assumed]**: a common fixed
  threshold for SPECT lesion delineation, not a validated one — its parameters are
  recorded in the Study attribute ``voi_source`` so they travel with every result.
* **external segmenters** (sidecar ``segmenter``): a callable registered under the
  entry-point group :data:`SEGMENTER_GROUP` (e.g. a wrapper of TotalSegmentator, which is
  not a dependency), called as ``segmenter(activity_bq_ml, ct_hu, spacing_mm)`` with
  (z, y, x) arrays on the reference grid and returning ``[(name, kind, mask), ...]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import numpy as np
from scipy import ndimage

from harmonize.io.rtstruct import RoiMask
from harmonize.study import StudyError

__all__ = ["BODY_HU", "SEGMENTER_GROUP", "derive_vois"]

#: CT threshold of the body outline, HU.
BODY_HU = -500.0
#: Entry-point group of external segmenters.
SEGMENTER_GROUP = "harmonize.segmenters"
_DEFAULT_LESIONS = {"threshold_fraction": 0.4, "min_volume_ml": 1.0}


def _body(ct_hu: np.ndarray) -> np.ndarray:
    mask = ndimage.binary_fill_holes(ct_hu > BODY_HU)
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.zeros(ct_hu.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return np.asarray(labels == int(np.argmax(sizes)) + 1)


def _lesions(
    activity: np.ndarray, body: np.ndarray, voxel_ml: float, fraction: float, min_ml: float
) -> list[RoiMask]:
    inside = np.where(body, activity, 0.0)
    peak = float(inside.max()) if inside.size else 0.0
    if peak <= 0:
        return []
    labels, n = ndimage.label(inside >= fraction * peak)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = np.asarray(ndimage.maximum(inside, labels, index))
    kept = [i for i in np.argsort(-peaks, kind="stable") if sizes[i] * voxel_ml >= min_ml]
    return [
        RoiMask(100 + k, f"auto_lesion_{k:02d}", labels == index[i], "GTV")
        for k, i in enumerate(kept, start=1)
    ]


def _plugin(name: str) -> Callable[..., Any]:
    found = [e for e in entry_points(group=SEGMENTER_GROUP) if e.name == name]
    if not found:
        installed = sorted(e.name for e in entry_points(group=SEGMENTER_GROUP))
        raise StudyError(
            f"segmenter {name!r} (harmonize.json) is not installed; installed segmenters "
            f"(entry-point group {SEGMENTER_GROUP}): {installed or 'none'}"
        )
    return found[0].load()


def derive_vois(
    activity_bq_ml: np.ndarray,
    ct_hu: np.ndarray | None,
    spacing_mm: tuple[float, float, float],
    sidecar: dict[str, Any],
    where: str,
) -> tuple[list[RoiMask], dict[str, str], str]:
    """(masks, kinds by name, provenance JSON) of the derived VOIs; see the module docstring.

    Raises
    ------
    harmonize.StudyError
        Without a CT (no body can be derived), naming ``where``.
    """
    if ct_hu is None:
        raise StudyError(
            f"{where}: no RTSTRUCT or DICOM SEG with the VOIs, and no CT to derive the body "
            "from; add a structure set, a SEG, or the CT of the reference time point"
        )
    body = _body(ct_hu)
    if not body.any():
        raise StudyError(f"{where}: no CT voxel above {BODY_HU:g} HU: cannot derive the body")
    rois = [RoiMask(1, "body", body, "EXTERNAL")]
    kinds = {"body": "body"}
    record: dict[str, Any] = {"method": "derived", "body": {"ct_threshold_hu": BODY_HU}}
    if "auto_lesions" in sidecar:
        params = {**_DEFAULT_LESIONS, **dict(sidecar["auto_lesions"])}
        voxel_ml = float(np.prod(spacing_mm)) / 1000.0
        lesions = _lesions(
            activity_bq_ml,
            body,
            voxel_ml,
            float(params["threshold_fraction"]),
            float(params["min_volume_ml"]),
        )
        rois += lesions
        kinds.update({r.name: "lesion" for r in lesions})
        record["lesions"] = {"method": "fixed_threshold_of_max", **params}
    if "segmenter" in sidecar:
        name = str(sidecar["segmenter"])
        for roi_name, kind, mask in _plugin(name)(activity_bq_ml, ct_hu, spacing_mm):
            rois.append(RoiMask(200 + len(rois), str(roi_name), np.asarray(mask, bool), ""))
            kinds[str(roi_name)] = str(kind)
        record["segmenter"] = name
    return rois, kinds, json.dumps(record, sort_keys=True)
