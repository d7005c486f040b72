"""The exercise package: what the organiser sends every participating centre.

``pack(cohort, out)`` writes, into a new folder (built in a temporary folder and renamed
into place, so nothing half-written is ever left)::

    PKG/
      README.md                 for the participants: what to do, what to send back
      studies/                  the de-identified studies (harmonize.deid: bundles and/or DICOM)
      vois.csv                  the shared VOIs: one row per patient x cycle x VOI
      results_template.csv      the results template (see harmonize.intercomparison.template)
      method_sheet.csv          the method sheet (EANM reporting items)
      results_template.xlsx     the same two, as the sheets "results" and "method"
      manifest.json             SHA-256 and size of every other file; planned cycles

The phantom's truth (when the cohort has one) is never part of the package: with
``truth_out`` it is written, under the package's pseudonyms, as an ordinary results dataset
of the workflow ``truth`` (the organiser's assigned values, ISO 13528 §7.4/7.5).

:func:`open_package` reads a package back and checks every file against the manifest, so
results are only ever imported against the package that was sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonize._fs import write_bytes_atomic

__all__ = ["MANIFEST", "Package", "PackageError", "open_package", "pack", "study_voi_rows"]

#: File name of the manifest inside a package.
MANIFEST = "manifest.json"
STUDIES = "studies"
VOIS = "vois.csv"
#: Version of the package layout (bumped when a file's meaning changes).
PACKAGE_FORMAT = "1"

_VOI_COLUMNS = (
    "patient_id",
    "cycle",
    "center",
    "voi_id",
    "voi_name",
    "voi_kind",
    "parent_voi_id",
    "n_voxels",
    "volume_ml",
    "mass_g",
    "injected_activity_mbq",
    "study_path",
)


class PackageError(ValueError):
    """An exercise package that is incomplete, altered or not a package."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def study_voi_rows(study: Any, study_path: str) -> pd.DataFrame:
    """The shared VOIs of one study, with volumes and masses from the adapters' own code.

    Volumes are voxel counts × voxel volume and masses the sum of CT density × voxel
    volume (ICRU-44 soft tissue, 1.04 g/mL, without CT), exactly as
    ``workflows._common`` computes them for the built-in adapters.
    """
    from harmonize.study import voxel_volume_ml
    from workflows import _common

    regions = _common.regions(study, organ_includes_lesions=False)
    voxel_ml = voxel_volume_ml(study)
    density = _common.density_map_g_ml(study, use_ct=True)
    table = regions.table
    counts = regions.voxel_counts()
    return pd.DataFrame(
        {
            "patient_id": str(study.attrs["patient_id"]),
            "cycle": int(study.attrs["cycle"]),
            "center": str(study.attrs.get("center", "unknown")),
            "voi_id": table["voi_id"].to_numpy(np.int64),
            "voi_name": table["name"].astype(str).to_numpy(),
            "voi_kind": table["kind"].astype(str).to_numpy(),
            "parent_voi_id": table["parent_id"].to_numpy(np.int64),
            "n_voxels": counts.astype(np.int64),
            "volume_ml": counts * voxel_ml,
            "mass_g": regions.sums(density * voxel_ml),
            "injected_activity_mbq": float(study.attrs["injected_activity_MBq"]),
            "study_path": study_path,
        }
    )[list(_VOI_COLUMNS)]


def _relative_source(source: Any, root: Path) -> str:
    if isinstance(source, list):  # a DICOM study: its files' common folder
        common = Path(os.path.commonpath([str(Path(p).parent) for p in source]))
        return common.relative_to(root).as_posix()
    return Path(source).relative_to(root).as_posix()


def _readme(n_studies: int, n_patients: int, n_vois: int) -> str:
    from harmonize.intercomparison.template import METHOD_ITEMS, TEMPLATE_COLUMNS, UNITS

    columns = "\n".join(
        f"| `{c.name}` | {'yes' if c.required else 'no'} | {c.unit or '—'} | {c.description} |"
        for c in TEMPLATE_COLUMNS
    )
    units = "; ".join(f"{kind}: {', '.join(spellings)}" for kind, spellings in UNITS.items())
    items = "\n".join(
        f"* `{m.item}` ({'required' if m.required else 'optional'}): {m.description}"
        for m in METHOD_ITEMS
    )
    return f"""# Dosimetry intercomparison — participant package

This package holds {n_studies} de-identified studies ({n_patients} patients) and
{n_vois} shared volumes of interest (VOIs). Process every study with **your own clinical
dosimetry software and your usual method**, on the VOIs given (`vois.csv`; the label map
is inside each study), and send back your results. Do not re-segment unless you say so in
the method sheet.

## What is here

* `studies/` — the images: SPECT activity at each time point, CT, and the label map of the
  VOIs. Exchange bundles (`*.nc`, NetCDF-4: open with netCDF-C, h5py, MATLAB, R, or
  `harmonize.open_study`) and/or DICOM folders. Patient ids are pseudonyms; dates are
  shifted; intervals after injection are kept.
* `vois.csv` — one row per patient × cycle × VOI: id, name, kind, voxel count, volume (mL),
  mass (g, from the CT).
* `results_template.csv` + `method_sheet.csv`, or `results_template.xlsx` (sheets
  `results` and `method`) — fill one of the two.
* `manifest.json` — SHA-256 of every file; results are imported against it.

## The results template

Row 1: column names; row 2: units (change a unit cell only to another accepted unit, the
values are then converted); results from row 3, one row per patient × cycle × VOI. Leave
optional cells empty when your software does not give them. Every VOI of a study you report
must be there exactly once.

| column | required | unit | meaning |
|---|---|---|---|
{columns}

Accepted units — {units}.

## The method sheet

{items}

## Dose maps instead of numbers

You may also send your absorbed-dose maps (DICOM RT Dose or NIfTI, in Gy), one file per
study named `<patient_id>_c<cycle>.dcm` or `<patient_id>_c<cycle>.nii.gz`. They are
resampled onto the study grid and reduced on the shared VOIs with the same code for every
centre.

## What to send back

The filled template (CSV + method sheet, or XLSX) and/or the dose maps. Nothing else: no
patient data leaves your centre other than these numbers.
"""


def pack(
    cohort: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    key: bytes | str | None = None,
    truth_out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the exercise package of a cohort.

    Parameters
    ----------
    cohort : path-like
        Cohort folder (exchange bundles and/or DICOM studies, optional ``truth.parquet``).
    out : path-like
        Package folder to create (must not exist unless ``overwrite``).
    key : bytes or str, optional
        Pseudonymisation key (:func:`harmonize.deid.deidentify`); ``None`` draws a random
        one, so the package's pseudonyms link to no other export.
    truth_out : path-like, optional
        Where to write the cohort's truth as a results dataset (workflow ``truth``) under
        the package's pseudonyms. The truth never goes into the package.
    overwrite : bool, default False
        Replace an existing package folder.

    Returns
    -------
    pathlib.Path
        The package folder.

    Raises
    ------
    harmonize.CohortError, harmonize.StudyError
        On an unreadable cohort; nothing is written then.
    FileExistsError
        If ``out`` exists and ``overwrite`` is false.
    """
    from harmonize.cohort import TRUTH_FILE, open_cohort
    from harmonize.deid import deidentify
    from harmonize.intercomparison.template import (
        method_sheet_frame,
        template_frame,
        write_template_csv,
        write_template_xlsx,
    )
    from harmonize.io.dicom_write import atomic_dir

    source, target = Path(cohort), Path(out)
    open_cohort(source)  # a clear error for a folder that is no cohort, before any work
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
    if truth_out is not None and Path(truth_out).exists() and not overwrite:
        raise FileExistsError(f"{truth_out} exists; pass --overwrite to replace it")
    truth: pd.DataFrame | None = None
    with atomic_dir(target, overwrite=overwrite) as tmp:
        studies = tmp / STUDIES
        deidentify(source, studies, key=key)  # one key for studies and truth alike
        if (studies / TRUTH_FILE).is_file():  # the organiser's, not the participants'
            truth = pd.read_parquet(studies / TRUTH_FILE)
            (studies / TRUTH_FILE).unlink()
        for extra in studies.rglob(TRUTH_FILE):  # per-study copies of a DICOM cohort
            extra.unlink()
        deid = open_cohort(studies)
        rows = [
            study_voi_rows(deid[key_], _relative_source(src, tmp))
            for key_, src in deid.paths.items()
        ]
        vois = pd.concat(rows, ignore_index=True)
        write_bytes_atomic(tmp / VOIS, vois.to_csv(index=False).encode("utf-8"), False)
        template, method = template_frame(vois), method_sheet_frame()
        write_template_csv(template, method, tmp)
        write_template_xlsx(template, method, tmp / "results_template.xlsx")
        readme = _readme(len(deid), vois["patient_id"].nunique(), len(vois))
        write_bytes_atomic(tmp / "README.md", readme.encode("utf-8"), False)
        highest = int(vois["cycle"].max())
        planned = int(truth["cycle"].max()) if truth is not None else max(4, highest)
        _write_manifest(tmp, planned_cycles=max(planned, highest))
    if truth is not None and truth_out is not None:
        _write_truth(truth, Path(truth_out), overwrite)
    return target


def _write_manifest(root: Path, planned_cycles: int) -> Path:
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST and not p.is_symlink()
    )
    entries = [
        {"path": p.relative_to(root).as_posix(), "sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in files
    ]
    document = {
        "harmonize_package": PACKAGE_FORMAT,
        "planned_cycles": planned_cycles,
        "files": entries,
    }
    text = json.dumps(document, indent=1, sort_keys=True) + "\n"
    return write_bytes_atomic(root / MANIFEST, text.encode("utf-8"), False)


def _write_truth(truth: pd.DataFrame, out: Path, overwrite: bool) -> None:
    """The truth as a results dataset (``voi_dose`` + ``patient_index``), runner layout."""
    from harmonize import indices, schema
    from harmonize.cohort import Cohort
    from harmonize.runner import TRUTH_WORKFLOW, truth_tables

    if out.exists() and overwrite:
        shutil.rmtree(out)
    voi = truth_tables(Cohort(out, {}, truth))
    index = indices.patient_index(voi, cumulative_rule="sum")
    meta = {"workflow": {"name": TRUTH_WORKFLOW, "definition": "phantom ground truth"}}
    for patient_id, rows in voi.groupby("patient_id", sort=True):
        schema.write_results(
            {"voi_dose": rows, "patient_index": index[index["patient_id"] == patient_id]},
            out,
            metadata=meta,
            basename=str(patient_id),
        )


@dataclass(frozen=True)
class Package:
    """An exercise package read back: its folder, VOIs and manifest."""

    root: Path
    vois: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def studies(self) -> Path:
        """The folder of the de-identified studies (a cohort folder)."""
        return self.root / STUDIES

    @property
    def manifest_sha256(self) -> str:
        """SHA-256 of the manifest: identifies the package in provenance."""
        return _sha256(self.root / MANIFEST)

    @property
    def planned_cycles(self) -> int:
        """Planned cycles of the treatment (the phantom truth's, else 4 or the highest cycle)."""
        highest = int(self.vois["cycle"].max())
        return int(self.manifest.get("planned_cycles", max(4, highest)))

    def study_keys(self) -> list[tuple[str, int]]:
        """(patient_id, cycle) of every study, sorted."""
        keys = self.vois[["patient_id", "cycle"]].drop_duplicates()
        return sorted((str(p), int(c)) for p, c in keys.itertuples(index=False))


def open_package(path: str | os.PathLike[str], *, verify: bool = True) -> Package:
    """Read an exercise package; with ``verify`` check every file against the manifest.

    Raises
    ------
    PackageError
        Naming the file: no manifest, a listed file missing or changed (SHA-256 differs),
        or an unreadable ``vois.csv``.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise PackageError(
            f"{root}: not an exercise package (no {MANIFEST}; make one with "
            "'harmonize intercomparison pack')"
        )
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        entries = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{manifest_path}: unreadable manifest: {exc}") from None
    if verify:
        for entry in entries:
            file = root / entry["path"]
            if not file.is_file():
                raise PackageError(f"{file}: listed in {MANIFEST} but missing")
            if _sha256(file) != entry["sha256"]:
                raise PackageError(
                    f"{file}: content differs from {MANIFEST} (SHA-256 changed): the package "
                    "was altered after it was made"
                )
    vois_path = root / VOIS
    try:
        vois = pd.read_csv(
            vois_path,
            dtype={"patient_id": str, "voi_name": str, "voi_kind": str, "center": str},
            keep_default_na=False,
        )
    except (OSError, ValueError) as exc:
        raise PackageError(f"{vois_path}: unreadable: {exc}") from None
    missing = [c for c in _VOI_COLUMNS if c not in vois.columns]
    if missing:
        raise PackageError(f"{vois_path}: lacks column(s) {missing}")
    return Package(root=root, vois=vois, manifest=manifest)
