"""Import a centre's absorbed-dose maps (DICOM RT Dose, NIfTI) and reduce them on the shared VOIs.

Each map is matched to a study of the exercise package — by its file name
``<patient_id>_c<cycle>.<ext>`` (the name the participant README asks for, and the one
``harmonize run --save-maps`` writes), and for RT Dose also by ``PatientID`` and
``ClinicalTrialTimePointID`` when present, which must then agree — resampled onto the
study grid in patient (LPS) coordinates (linear interpolation; no interpolation when the
map already lies on the grid) and reduced with the code the built-in adapters use
(``workflows._common.VoiRegions.dose_indices`` and ``.dvh``, CT-density voxel masses from
``workflows._common.density_map_g_ml``), so every centre's mean (mass-weighted: energy over
mass), min, median, max, D2/D50/D98 and DVH are computed identically.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonize.intercomparison.package import Package, open_package
from harmonize.intercomparison.results_import import (
    ResultsImportError,
    _check_workflow,
    _time_points,
    read_method_sheet,
    run_rows,
    write_imported,
)

__all__ = ["DOSE_MAP_SUFFIXES", "import_dose_maps", "read_dose_map"]

#: File name endings read as dose maps.
DOSE_MAP_SUFFIXES = (".dcm", ".nii", ".nii.gz", ".mha", ".nrrd")
_NAME = re.compile(r"^(?P<patient>.+)_c(?P<cycle>\d{1,2})$", flags=re.IGNORECASE)
#: RT Dose DoseUnits accepted (DICOM PS3.3 C.8.8.3: GY or RELATIVE; CGY seen in exports).
_DOSE_UNITS = {"GY": 1.0, "CGY": 1e-2}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(DOSE_MAP_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_rtdose(path: Path) -> tuple[Any, dict[str, str]]:
    """An RT Dose file as a SimpleITK image in Gy, and its PatientID / time-point tags."""
    from harmonize.io._dicom_common import pixel_array
    from harmonize.io._geometry import Grid, array_to_image
    from harmonize.io.dicom_read import _direction, _geometry, read_full

    ds = read_full(path)
    if str(ds.get("Modality", "")) != "RTDOSE":
        raise ResultsImportError(
            [f"{path}: Modality is {ds.get('Modality')!r}, expected an RT Dose (RTDOSE)"]
        )
    units = str(ds.get("DoseUnits", "")).strip().upper()
    if units not in _DOSE_UNITS:
        raise ResultsImportError(
            [f"{path}: DoseUnits {units or 'empty'!r}: expected GY (absolute dose in Gy)"]
        )
    stored = pixel_array(ds, path).astype(np.float64)
    if stored.ndim == 2:
        stored = stored[None]
    scaling = float(ds.get("DoseGridScaling", 1.0) or 1.0)
    dose = stored * scaling * _DOSE_UNITS[units]
    try:
        position, orientation = _geometry(ds)
        dy, dx = (float(v) for v in ds.PixelSpacing)
    except (ValueError, AttributeError):
        raise ResultsImportError(
            [
                f"{path}: no image geometry (ImagePositionPatient, ImageOrientationPatient, "
                "PixelSpacing)"
            ]
        ) from None
    offsets = np.asarray([float(v) for v in (ds.get("GridFrameOffsetVector") or [0.0])])
    if dose.shape[0] > 1:
        steps = np.diff(offsets)
        if offsets.size != dose.shape[0] or not np.allclose(steps, steps[0], atol=1e-3):
            raise ResultsImportError(
                [f"{path}: GridFrameOffsetVector is not {dose.shape[0]} evenly spaced offsets"]
            )
        dz = float(steps[0])
    else:
        dz = float(ds.get("SliceThickness") or 1.0)
    direction = _direction(orientation)
    if dz < 0:  # frames run against the slice normal
        direction[:, 2] *= -1.0
        dz = -dz
    start = position  # the first frame's position; offsets only give the frame spacing
    grid = Grid(
        shape=(int(dose.shape[0]), int(dose.shape[1]), int(dose.shape[2])),
        spacing_mm=(dz, dy, dx),
        origin_mm=(float(start[0]), float(start[1]), float(start[2])),
        direction=tuple(float(v) for v in direction.ravel()),
    )
    tags = {
        "patient_id": str(ds.get("PatientID", "") or ""),
        "time_point": str(ds.get("ClinicalTrialTimePointID", "") or ""),
    }
    return array_to_image(dose, grid), tags


def read_dose_map(path: str | os.PathLike[str], study: Any) -> np.ndarray:
    """A dose map file (RT Dose or ITK image, in Gy) resampled onto a study's grid.

    Raises
    ------
    ResultsImportError
        Naming the file: unreadable, not an absolute dose, non-finite or negative values,
        or no overlap with the study grid.
    """
    import SimpleITK as sitk

    from harmonize.io._geometry import grid_of_study, resample_onto

    file = Path(path)
    if file.name.lower().endswith(".dcm"):
        image, _ = _read_rtdose(file)
    else:
        try:
            image = sitk.Cast(sitk.ReadImage(str(file)), sitk.sitkFloat64)
        except RuntimeError as exc:
            raise ResultsImportError([f"{file}: cannot be read as an image: {exc}"]) from None
    if image.GetDimension() != 3:
        raise ResultsImportError([f"{file}: a dose map must be a 3-D image"])
    values = sitk.GetArrayViewFromImage(image)
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ResultsImportError([f"{file}: dose values must be finite and >= 0 Gy"])
    dose = np.asarray(resample_onto(image, grid_of_study(study)), dtype=np.float64)
    if not np.any(dose > 0) and np.any(values > 0):
        raise ResultsImportError(
            [f"{file}: the map does not overlap the study grid (wrong frame of reference?)"]
        )
    return dose


def _match(files: list[Path], pkg: Package) -> tuple[dict[tuple[str, int], Path], list[str]]:
    keys = set(pkg.study_keys())
    matched: dict[tuple[str, int], Path] = {}
    problems: list[str] = []
    for file in files:
        name = _NAME.match(_stem(file))
        key = (name["patient"], int(name["cycle"])) if name else None
        if file.name.lower().endswith(".dcm"):
            from harmonize.io._dicom_common import read_header
            from harmonize.io.dicom_read import _parse_cycle

            header = read_header(file)
            pid = str(header.get("PatientID", "") or "")
            cycle = _parse_cycle(header)
            if key is None and pid and cycle:
                key = (pid, cycle)
            elif key is not None and ((pid and pid != key[0]) or (cycle and cycle != key[1])):
                problems.append(
                    f"{file}: file name says patient {key[0]} cycle {key[1]} but the header "
                    f"says PatientID {pid!r}, time point {cycle}"
                )
                continue
        if key is None:
            problems.append(
                f"{file}: cannot tell the study: name it <patient_id>_c<cycle>"
                f"{''.join(file.suffixes) or '.dcm'}"
            )
        elif key not in keys:
            problems.append(f"{file}: patient {key[0]} cycle {key[1]} is not in the package")
        elif key in matched:
            problems.append(f"{file}: a second map for patient {key[0]} cycle {key[1]}")
        else:
            matched[key] = file
    return matched, problems


def _reduce(
    dose_gy: np.ndarray, study: Any, workflow: str, method: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``voi_dose`` and ``dvh`` rows of one study, with the adapters' own reduction code."""
    from harmonize.study import voxel_volume_ml
    from workflows import _common

    regions = _common.regions(study, organ_includes_lesions=False)
    voxel_ml = voxel_volume_ml(study)
    mass_map = _common.density_map_g_ml(study, use_ct=True) * voxel_ml
    voxel_indices = regions.dose_indices(dose_gy, mass_map)
    n = regions.ids.size
    voi_dose = _common.voi_dose_frame(
        study,
        regions,
        tia_mbq_h=np.full(n, np.nan),
        mass_g=regions.sums(mass_map),
        dose_mean_gy=voxel_indices.reindex(regions.ids)["dose_mean_gy"].to_numpy(),
        tac_model=f"imported:{method['kinetic_model']}",
        n_time_points=len(_time_points(method["time_points_h"]) or []),
        voxel_indices=voxel_indices,
        flags=["imported_dose_map"] * n,
    )
    common = {
        "patient_id": str(study.attrs["patient_id"]),
        "cycle": int(study.attrs["cycle"]),
        "center": str(study.attrs.get("center", "unknown")),
        "workflow": workflow,
        "workflow_version": method["software_version"],
    }
    dvh = regions.dvh(dose_gy)
    return voi_dose.assign(**common), dvh.assign(**common)


def import_dose_maps(
    directory: str | os.PathLike[str],
    workflow: str,
    package: str | os.PathLike[str] | Package,
    out: str | os.PathLike[str],
    *,
    method_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Any:
    """Reduce a centre's dose maps on the package's VOIs and write them as results tables.

    Parameters
    ----------
    directory : path-like
        Folder of dose maps (``<patient_id>_c<cycle>.dcm`` RT Dose, or ``.nii``/``.nii.gz``/
        ``.mha``/``.nrrd`` in Gy), searched recursively.
    workflow : str
        Name of the centre's results in the dataset.
    package : path-like or Package
        The exercise package.
    out : path-like
        Results folder.
    method_sheet : path-like, optional
        The filled method sheet; default ``DIR/method_sheet.csv`` (or ``.xlsx``).
    overwrite : bool, default False
        Replace this workflow's previously imported files when they differ.

    Returns
    -------
    harmonize.intercomparison.results_import.ImportReport

    Raises
    ------
    ResultsImportError
        Naming each file that cannot be matched or read; nothing is written then.
    """
    from harmonize import indices
    from harmonize.cohort import open_cohort
    from harmonize.intercomparison.results_import import ImportReport

    _check_workflow(workflow)
    pkg = package if isinstance(package, Package) else open_package(package)
    root = Path(directory)
    if not root.is_dir():
        raise ResultsImportError([f"{root}: not a folder of dose maps"])
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith(".")
        and any(p.name.lower().endswith(s) for s in DOSE_MAP_SUFFIXES)
    )
    if not files:
        raise ResultsImportError([f"{root}: no dose map (*{', *'.join(DOSE_MAP_SUFFIXES)}) found"])
    if method_sheet is None:
        for candidate in (root / "method_sheet.csv", root / "method_sheet.xlsx"):
            if candidate.is_file():
                method_sheet = candidate
                break
        else:
            raise ResultsImportError(
                [
                    f"{root}: no method_sheet.csv: fill the package's method sheet and put it "
                    "beside the maps, or name it with --method-sheet"
                ]
            )
    method, _ = read_method_sheet(root / "maps", method_sheet)
    matched, problems = _match(files, pkg)
    if problems:
        raise ResultsImportError(problems)
    cohort = open_cohort(pkg.studies)
    voi_parts, dvh_parts, run_parts = [], [], []
    for key, file in sorted(matched.items()):  # one study at a time (memory)
        study = cohort[key]
        dose = read_dose_map(file, study)
        voi, dvh = _reduce(dose, study, workflow, method)
        sha = hashlib.sha256(file.read_bytes()).hexdigest()
        voi_parts.append(voi)
        dvh_parts.append(dvh)
        run_parts.append(
            run_rows(voi, method, sha, {"package_manifest_sha256": pkg.manifest_sha256})
        )
    voi_dose = pd.concat(voi_parts, ignore_index=True)
    tables = {
        "voi_dose": voi_dose,
        "dvh": pd.concat(dvh_parts, ignore_index=True),
        "patient_index": indices.patient_index(voi_dose, cumulative_rule=method["cumulative_rule"]),
        "run": pd.concat(run_parts, ignore_index=True),
    }
    provenance = {
        "source": "dose maps",
        "package_manifest_sha256": pkg.manifest_sha256,
        "method": method,
        "reduction": "workflows._common.VoiRegions (organ_includes_lesions=False), "
        "CT-density voxel masses",
    }
    files_written = write_imported(tables, Path(out), workflow, provenance, overwrite)
    notes = []
    absent = [k for k in pkg.study_keys() if k not in matched]
    if absent:
        notes.append(
            f"{len(absent)} of {len(pkg.study_keys())} studies have no dose map: "
            + ", ".join(f"{p} c{c}" for p, c in absent)
        )
    return ImportReport(files=files_written, n_rows=len(voi_dose), notes=notes, tables=tables)
