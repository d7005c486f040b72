"""Observer segmentations: what a centre's contouring gives instead of the true labels.

Segmentation is the largest source of inter-site variability in the SNMMI Lu-177 dosimetry
challenge (BroschLenz2024), so the phantom writes, beside the true label map, an observer's
one (``labels_observer``, same VOI ids) and each adapter's ``segmentation`` parameter
chooses which it uses ("given": the true labels; "observer": this map):

* **organs** — contoured on CT: the true organ (with the lesions inside it) is re-drawn
  with a boundary displaced by a smooth random field, ``inside ⇔ d(x) + δ(x) > 0`` with
  d the signed distance to the true boundary and δ Gaussian-correlated (FWHM 40 mm) with
  a standard deviation of ``organ_boundary_sd_mm`` (default 3 mm [assumed]: about one
  voxel of the SPECT grid, the order of inter-observer CT contour differences);
* **lesions** — SPECT threshold: inside a margin of ``lesion_margin_mm`` (default 10 mm
  [assumed]) around the true lesion, the voxels of the first time point's image above
  ``lesion_threshold`` (default 40 % [assumed], a common fixed threshold) of the lesion's
  maximum;
* the body outline is kept (the CT shows it unambiguously), every other voxel stays
  as in the true map.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from harmonize.imaging.fast import correlated_unit_noise

__all__ = [
    "DEFAULT_LESION_MARGIN_MM",
    "DEFAULT_LESION_THRESHOLD",
    "DEFAULT_ORGAN_BOUNDARY_SD_MM",
    "observer_labels",
]

#: SD of the organ boundary displacement, mm [assumed].
DEFAULT_ORGAN_BOUNDARY_SD_MM = 3.0
#: Fixed SPECT threshold for lesions, fraction of the lesion maximum [assumed].
DEFAULT_LESION_THRESHOLD = 0.40
#: Search margin around the true lesion, mm [assumed].
DEFAULT_LESION_MARGIN_MM = 10.0
_BOUNDARY_CORRELATION_FWHM_MM = 40.0


def _signed_distance_mm(mask: np.ndarray, voxel_mm: float) -> np.ndarray:
    inside = ndimage.distance_transform_edt(mask, sampling=voxel_mm)
    outside = ndimage.distance_transform_edt(~mask, sampling=voxel_mm)
    return np.where(mask, inside - 0.5 * voxel_mm, -(outside - 0.5 * voxel_mm))


def observer_labels(
    labels: np.ndarray,
    vois: pd.DataFrame,
    image_bq_ml: np.ndarray,
    voxel_size_mm: float,
    rng: np.random.Generator,
    *,
    organ_boundary_sd_mm: float = DEFAULT_ORGAN_BOUNDARY_SD_MM,
    lesion_threshold: float = DEFAULT_LESION_THRESHOLD,
    lesion_margin_mm: float = DEFAULT_LESION_MARGIN_MM,
) -> np.ndarray:
    """An observer's label map (same ids as ``labels``; see the module docstring).

    Parameters
    ----------
    labels : ndarray (z, y, x) of int
        True label map.
    vois : DataFrame
        VOI table with ``voi_id``, ``kind`` and ``parent_id``.
    image_bq_ml : ndarray (z, y, x)
        The SPECT image lesions are thresholded on.
    voxel_size_mm : float
        Isotropic voxel size.
    rng : numpy.random.Generator
        Seeded generator (boundary fields).
    """
    if not 0.0 < lesion_threshold < 1.0:
        raise ValueError(f"lesion_threshold must lie in (0, 1), got {lesion_threshold}")
    v = float(voxel_size_mm)
    body = labels > 0
    out = np.where(body, labels, 0).astype(np.int32)
    kind = dict(zip(vois["voi_id"], vois["kind"], strict=True))
    parent = dict(zip(vois["voi_id"], vois["parent_id"], strict=True))
    body_ids = [i for i, k in kind.items() if k == "body"]
    out[body] = body_ids[0] if body_ids else out[body]
    for voi_id in [i for i, k in kind.items() if k == "organ"]:  # four organs
        children = [i for i, p in parent.items() if p == voi_id and kind[i] == "lesion"]
        true_organ = np.isin(labels, [voi_id, *children])
        if not true_organ.any():
            continue
        delta = organ_boundary_sd_mm * correlated_unit_noise(
            labels.shape, _BOUNDARY_CORRELATION_FWHM_MM / v, rng
        )
        drawn = (_signed_distance_mm(true_organ, v) + delta > 0) & body
        out[drawn] = voi_id
    image = np.asarray(image_bq_ml, dtype=np.float64)
    margin = max(1, round(lesion_margin_mm / v))
    for voi_id in [i for i, k in kind.items() if k == "lesion"]:  # 2-8 lesions
        true_lesion = labels == voi_id
        if not true_lesion.any():
            continue
        region = ndimage.binary_dilation(true_lesion, iterations=margin) & body
        peak = float(image[region].max())
        drawn = region & (image >= lesion_threshold * peak) if peak > 0 else true_lesion
        # the connected component that holds the lesion's hottest voxel
        comp, _ = ndimage.label(drawn)
        hottest = np.unravel_index(np.argmax(np.where(region, image, -np.inf)), image.shape)
        keep = comp == comp[hottest] if comp[hottest] > 0 else true_lesion
        out[keep] = voi_id
    # every VOI keeps at least one voxel (a workflow needs it): fall back to the true one
    for voi_id in kind:
        if not (out == voi_id).any():
            out[labels == voi_id] = voi_id
    return out
