"""Read and write a Study as a folder of NIfTI / MHA / NRRD images plus a JSON sidecar.

Folder layout (any image format SimpleITK reads: ``.nii``, ``.nii.gz``, ``.mha``,
``.mhd``, ``.nrrd``)::

    study/
      harmonize.json
      spect_t01.nii.gz   one 3-D image per time point (activity)
      spect_t02.nii.gz
      labels.nii.gz      integer label map (0 = no VOI)
      ct.nii.gz          CT in HU (optional)

Sidecar (``harmonize.json``; see :mod:`harmonize.io.sidecar` for every key)::

    {
      "format": "harmonize-sidecar", "version": 1,
      "patient_id": "P001", "cycle": 1, "center": "my centre",
      "radionuclide": "Lu-177",
      "injected_activity_MBq": 7400.0,
      "injection_time": "2024-03-04T09:30:00",
      "units": "Bq/mL",                      # or "counts" + calibration_cps_per_MBq
      "decay_correction": "NONE",            # NONE (default) | START | ADMIN
      "time_points": [{"file": "spect_t01.nii.gz", "time_h": 4.0},
                      {"file": "spect_t02.nii.gz", "acquisition_time": "2024-03-05T09:10:00"}],
      "labels": "labels.nii.gz",
      "ct": "ct.nii.gz",
      "vois": [{"voi_id": 1, "name": "body", "kind": "body", "parent_id": 0},
               {"voi_id": 2, "name": "liver"},
               {"voi_id": 10, "name": "lesion_01", "parent_id": 2}]
    }

Required: ``patient_id``, ``cycle``, ``injected_activity_MBq``, ``injection_time``,
``units``, ``time_points``, ``labels``, ``vois`` (every label value present in the map must
be listed with its ``voi_id``). A missing ``kind`` comes from the naming rules
(:mod:`harmonize.io.naming`); a missing ``parent_id`` is inferred: the VOI whose voxels
make up at least half of the one-voxel shell around this VOI (e.g. the liver around a
liver lesion), else none. Images are in ITK's LPS physical space (NIfTI's RAS is converted
by ITK); time points and CT on other grids are resampled onto the first time point's grid
(linear; labels by nearest neighbour). Decay correction and counts are handled as for
DICOM (:mod:`harmonize.io.dicom_read`).
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import xarray as xr
from scipy import ndimage

from harmonize.io._geometry import Grid, grid_of_image, grid_of_study, image_to_array, resample_onto
from harmonize.io.naming import classify_voi
from harmonize.io.sidecar import SIDECAR_NAME
from harmonize.nuclides import get_nuclide
from harmonize.study import StudyError, make_study, validate_study, voi_table

__all__ = ["IMAGE_SUFFIXES", "read_image_folder", "write_study_nifti"]

#: File suffixes recognised as images of an image folder.
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
_REQUIRED = (
    "patient_id",
    "cycle",
    "injected_activity_MBq",
    "injection_time",
    "units",
    "time_points",
    "labels",
    "vois",
)


def _read(folder: Path, name: str) -> sitk.Image:
    path = folder / name
    if not path.is_file():
        raise StudyError(f"{path}: file named in {folder / SIDECAR_NAME} does not exist")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise StudyError(
            f"{path}: cannot be read as an image: {str(exc).strip().splitlines()[-1]}"
        ) from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise StudyError(
            f"{path}: expected a 3-D scalar image, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)"
        )
    return image


def _parents_from_shell(labels: np.ndarray, ids: list[int]) -> dict[int, int]:
    """Parent of each VOI: the label filling ≥ half of its one-voxel outer shell."""
    parents = {}
    structure = ndimage.generate_binary_structure(3, 1)
    for voi in ids:
        mask = labels == voi
        if not mask.any():
            parents[voi] = 0
            continue
        shell = ndimage.binary_dilation(mask, structure) & ~mask
        around = labels[shell]
        if around.size == 0:
            parents[voi] = 0
            continue
        values, counts = np.unique(around, return_counts=True)
        best = int(values[np.argmax(counts)])
        parents[voi] = best if best != 0 and counts.max() >= 0.5 * around.size else 0
    return parents


def read_image_folder(
    folder: Path,
    sidecar: dict[str, Any],
    *,
    voi_rules: list[tuple[str, str]] | None = None,
    min_time_points: int | None = None,
) -> xr.Dataset:
    """Read a NIfTI/MHA/NRRD study folder described by its (validated) sidecar.

    Raises
    ------
    harmonize.StudyError
        Naming the sidecar key or image file at fault.
    """
    where = folder / SIDECAR_NAME
    missing = [k for k in _REQUIRED if k not in sidecar]
    if missing:
        raise StudyError(f"{where}: required key(s) {missing} missing for an image folder")
    injection = datetime.fromisoformat(sidecar["injection_time"])
    points = sidecar["time_points"]
    times = []
    for point in points:
        if "time_h" in point:
            times.append(float(point["time_h"]))
        else:
            when = datetime.fromisoformat(point["acquisition_time"])
            times.append((when - injection).total_seconds() / 3600.0)
    order = np.argsort(times)
    times_h = np.asarray(times)[order]
    if np.any(times_h < 0):
        raise StudyError(f"{where}: a time point lies before the injection ({times_h.tolist()} h)")
    if np.any(np.diff(times_h) <= 0):
        raise StudyError(f"{where}: two time points at the same time ({times_h.tolist()} h)")
    needed = min_time_points or int(sidecar.get("min_time_points", 2))
    if len(points) < needed:
        raise StudyError(
            f"{where}: {len(points)} time point(s) listed, at least {needed} needed; set "
            "'min_time_points': 1 for single-time-point dosimetry"
        )
    nuclide_name = str(sidecar.get("radionuclide", "Lu-177"))
    nuclide = get_nuclide(nuclide_name)
    images = [_read(folder, str(points[i]["file"])) for i in order]
    grid = grid_of_image(images[0])
    state = str(sidecar.get("decay_correction", "NONE"))
    frames = []
    for t, image in enumerate(images):
        values = resample_onto(sitk.Cast(image, sitk.sitkFloat64), grid).astype(np.float64)
        if sidecar["units"] == "counts":
            calibration = sidecar.get("calibration_cps_per_MBq")
            duration = sidecar.get("acquisition_duration_s")
            if calibration is None or duration is None:
                raise StudyError(
                    f"{where}: images in counts need 'calibration_cps_per_MBq' and "
                    "'acquisition_duration_s'"
                )
            dz, dy, dx = grid_of_image(image).spacing_mm
            values = values / (duration * calibration) * 1e6 / (dz * dy * dx / 1000.0)
        if state == "ADMIN":
            values = values * math.exp(-nuclide.decay_constant_per_h * times_h[t])
        if not np.all(np.isfinite(values)):
            raise StudyError(
                f"{folder / points[order[t]]['file']}: image has NaN or infinite values"
            )
        frames.append(values)
    activity = np.clip(np.stack(frames), 0.0, None)
    label_image = _read(folder, sidecar["labels"])
    if not np.issubdtype(sitk.GetArrayViewFromImage(label_image).dtype, np.integer):
        raw = image_to_array(label_image)
        if not np.all(raw == np.round(raw)):
            raise StudyError(f"{folder / sidecar['labels']}: label map has non-integer values")
        label_image = sitk.Cast(label_image, sitk.sitkInt32)
    labels = resample_onto(label_image, grid, interpolator=sitk.sitkNearestNeighbor).astype(
        np.int32
    )
    ct = None
    if "ct" in sidecar:
        ct = resample_onto(
            sitk.Cast(_read(folder, sidecar["ct"]), sitk.sitkFloat32), grid, default_value=-1000.0
        )
    rules = [*(voi_rules or ()), *sidecar.get("voi_rules", [])]
    declared = sidecar["vois"]
    for n, voi in enumerate(declared):
        if "voi_id" not in voi:
            raise StudyError(f"{where}: vois[{n}] ({voi.get('name')!r}) needs a 'voi_id'")
    ids = [int(v["voi_id"]) for v in declared]
    inferred = _parents_from_shell(labels, ids)
    table = [
        {
            "voi_id": int(v["voi_id"]),
            "name": str(v["name"]),
            "kind": str(v["kind"]) if "kind" in v else classify_voi(str(v["name"]), rules),
            "parent_id": int(v["parent_id"]) if "parent_id" in v else inferred[int(v["voi_id"])],
        }
        for v in declared
    ]
    unknown = sorted(set(np.unique(labels).tolist()) - {0} - set(ids))
    if unknown:
        raise StudyError(
            f"{folder / sidecar['labels']}: label values {unknown} are not listed in the sidecar 'vois'"
        )
    dz, dy, dx = grid.spacing_mm
    return make_study(
        activity.astype(np.float32),
        times_h,
        (dz, dy, dx),
        labels,
        table,
        patient_id=str(sidecar["patient_id"]),
        cycle=int(sidecar["cycle"]),
        center=str(sidecar.get("center", "unknown")),
        injected_activity_mbq=float(sidecar["injected_activity_MBq"]),
        injection_time=injection.isoformat(),
        radionuclide=nuclide_name,
        ct_hu=ct,
        origin_mm=grid.origin_mm,
        direction=grid.direction,
        extra_attrs={"source": "images", "decay_correction_original": state},
    )


def write_study_nifti(
    study: xr.Dataset,
    out_dir: str | os.PathLike[str],
    *,
    suffix: str = ".nii.gz",
    overwrite: bool = False,
) -> Path:
    """Write a Study as an image folder (one image per time point, labels, CT, sidecar).

    Parameters
    ----------
    study : xarray.Dataset
        A valid Study.
    out_dir : path-like
        Folder to create (refused if it exists, unless ``overwrite``).
    suffix : str
        Image format: ``".nii.gz"``, ``".nii"``, ``".mha"`` or ``".nrrd"``.
    overwrite : bool
        Replace an existing folder.

    Returns
    -------
    pathlib.Path
        ``out_dir``, readable with :func:`harmonize.open_study`. Values are stored as
        float32, so the round trip is exact.
    """
    from harmonize.io._geometry import array_to_image
    from harmonize.io.dicom_write import atomic_dir

    if suffix not in (".nii.gz", ".nii", ".mha", ".nrrd"):
        raise ValueError(f"suffix: expected .nii.gz, .nii, .mha or .nrrd, got {suffix!r}")
    validate_study(study)
    grid: Grid = grid_of_study(study)
    table = voi_table(study)
    sidecar: dict[str, Any] = {
        "format": "harmonize-sidecar",
        "version": 1,
        "patient_id": str(study.attrs["patient_id"]),
        "cycle": int(study.attrs["cycle"]),
        "center": str(study.attrs["center"]),
        "radionuclide": str(study.attrs["radionuclide"]),
        "injected_activity_MBq": float(study.attrs["injected_activity_MBq"]),
        "injection_time": str(study.attrs["injection_time"]),
        "units": "Bq/mL",
        "decay_correction": "NONE",
        "min_time_points": 1,
        "time_points": [],
        "labels": f"labels{suffix}",
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
    with atomic_dir(Path(out_dir), overwrite=overwrite) as tmp:
        for t, hours in enumerate(study["time"].values):
            name = f"spect_t{t + 1:02d}{suffix}"
            image = array_to_image(np.asarray(study["activity"].values[t], dtype=np.float32), grid)
            sitk.WriteImage(image, str(tmp / name), useCompression=suffix != ".nii")
            sidecar["time_points"].append({"file": name, "time_h": float(hours)})
        labels = array_to_image(np.asarray(study["labels"].values, dtype=np.int32), grid)
        sitk.WriteImage(labels, str(tmp / f"labels{suffix}"), useCompression=suffix != ".nii")
        if "ct" in study.data_vars:
            ct = array_to_image(np.asarray(study["ct"].values, dtype=np.float32), grid)
            sitk.WriteImage(ct, str(tmp / f"ct{suffix}"), useCompression=suffix != ".nii")
            sidecar["ct"] = f"ct{suffix}"
        (tmp / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return Path(out_dir)
