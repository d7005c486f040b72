"""Readers and writers of images (exchange bundles are in :mod:`harmonize.bundle`).

* :func:`open_study_folder` — a study folder, DICOM (NM/PT + CT + RTSTRUCT/SEG, see
  :mod:`harmonize.io.dicom_read`) or NIfTI/MHA/NRRD with a sidecar (see
  :mod:`harmonize.io.nifti`), detected automatically; also a :class:`StudyFiles` list from
  :func:`find_dicom_studies`. :func:`harmonize.open_study` calls it for folders.
* :func:`find_dicom_studies` — every DICOM study below a folder, grouped by patient and
  cycle from the tags, whatever the sub-folder layout; :func:`find_study_folders` — the
  folders that each hold exactly one study.
* :func:`write_study_dicom`, :func:`write_study_nifti`, :func:`write_dose_map` — writers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import xarray as xr

from harmonize.io.dicom_read import (
    DicomFile,
    StudyFiles,
    _injection,
    _is_volume,
    _parse_cycle,
    describe_file,
    load_dicom_study,
    scan_dicom_files,
)
from harmonize.io.dicom_write import write_dose_map, write_study_dicom
from harmonize.io.naming import DEFAULT_VOI_RULES, classify_voi
from harmonize.io.nifti import IMAGE_SUFFIXES, read_image_folder, write_study_nifti
from harmonize.io.sidecar import SIDECAR_NAME, read_sidecar
from harmonize.study import StudyError

__all__ = [
    "DEFAULT_VOI_RULES",
    "SIDECAR_NAME",
    "SkippedFile",
    "StudyFiles",
    "classify_voi",
    "find_dicom_studies",
    "find_image_folders",
    "find_study_folders",
    "open_study_folder",
    "skipped_files",
    "write_dose_map",
    "write_study_dicom",
    "write_study_nifti",
]


def _files_below(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def _nearest_sidecar(folder: Path, root: Path) -> dict[str, Any]:
    """The sidecar of ``folder`` or of its nearest ancestor up to ``root``."""
    folder, root = folder.resolve(), root.resolve()
    while True:
        if (folder / SIDECAR_NAME).is_file():
            return read_sidecar(folder)
        if folder == root or folder.parent == folder or root not in folder.parents:
            return {}
        folder = folder.parent


def _is_image_folder(sidecar: dict[str, Any]) -> bool:
    return "time_points" in sidecar


def find_image_folders(root: str | os.PathLike[str]) -> list[Path]:
    """Folders below ``root`` holding a NIfTI/MHA/NRRD study (a sidecar listing ``time_points``)."""
    return sorted(
        p.parent
        for p in Path(root).rglob(SIDECAR_NAME)
        if not any(part.startswith(".") for part in p.relative_to(root).parts)
        and _is_image_folder(read_sidecar(p.parent))
    )


def open_study_folder(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    voi_rules: Sequence[tuple[str, str]] | None = None,
    voi_source: str = "auto",
    min_time_points: int | None = None,
) -> xr.Dataset:
    """Open a study stored as a folder (DICOM, or NIfTI/MHA/NRRD + ``harmonize.json``).

    Parameters
    ----------
    path : path-like, or a list of DICOM files
        A study folder, or the files of one study (e.g. a :class:`StudyFiles` value of
        :func:`find_dicom_studies`, which also carries the cycle it was grouped under).
    voi_rules : sequence of (pattern, kind), optional
        VOI naming rules tried before the sidecar's and the defaults.
    voi_source : {"auto", "seg", "rtstruct"}
        DICOM only: take VOIs from SEG (preferred by ``"auto"``) or RTSTRUCT.
    min_time_points : int, optional
        Fewest time points accepted (default: sidecar ``min_time_points`` or 2).

    Returns
    -------
    xarray.Dataset
        A validated Study.

    Raises
    ------
    harmonize.StudyError
        Naming the file or folder at fault.
    """
    if isinstance(path, str | os.PathLike):
        folder = Path(path)
        if not folder.is_dir():
            raise StudyError(f"{folder}: not a folder")
        sidecar = read_sidecar(folder)
        if _is_image_folder(sidecar):
            return read_image_folder(
                folder, sidecar, voi_rules=list(voi_rules or ()), min_time_points=min_time_points
            )
        files = _files_below(folder)
        scanned = scan_dicom_files(files)
        if not scanned:
            images = [f for f in files if f.name.lower().endswith(IMAGE_SUFFIXES)]
            if images:
                raise StudyError(
                    f"{folder}: holds images ({images[0].name}, ...) but no {SIDECAR_NAME} with "
                    "'time_points' (see harmonize.io.nifti for the sidecar format)"
                )
            raise StudyError(f"{folder}: no DICOM study and no {SIDECAR_NAME} found")
        return load_dicom_study(
            scanned,
            sidecar,
            where=str(folder),
            voi_rules=voi_rules,
            voi_source=voi_source,
            min_time_points=min_time_points,
        )
    paths = [Path(p) for p in path]
    if not paths:
        raise StudyError("path: an empty list of files")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    if isinstance(path, StudyFiles):
        sidecar = _nearest_sidecar(root, path.root)
        cycle = path.cycle
    else:
        sidecar = _nearest_sidecar(root, root)
        cycle = None
    scanned = scan_dicom_files(paths)
    return load_dicom_study(
        scanned,
        sidecar,
        where=str(root),
        cycle=cycle,
        voi_rules=voi_rules,
        voi_source=voi_source,
        min_time_points=min_time_points,
    )


@dataclass(frozen=True)
class SkippedFile:
    """A DICOM file of a cohort folder that is not used, and why."""

    path: Path
    what: str
    reason: str


def _group_cohort(
    root: Path,
) -> tuple[dict[tuple[str, int], list[DicomFile]], dict[tuple[str, int], str], list[SkippedFile]]:
    """Group every DICOM file below ``root`` by (patient, cycle); also say how the cycle was
    found, and list the files that are not used with the reason (never raises for one file).
    """
    corrupt: list[tuple[Path, str]] = []
    scanned = scan_dicom_files(_files_below(root), corrupt=corrupt)
    skipped = [SkippedFile(p, "unreadable", r) for p, r in corrupt]
    sidecars: dict[Path, dict[str, Any]] = {}

    def sidecar_of(item: DicomFile) -> dict[str, Any]:
        folder = item.path.parent
        if folder not in sidecars:
            sidecars[folder] = _nearest_sidecar(folder, root)
        return sidecars[folder]

    def patient_of(item: DicomFile) -> str:
        return str(sidecar_of(item).get("patient_id") or item.header.get("PatientID", "") or "")

    def dicom_patient(item: DicomFile) -> str:
        return str(item.header.get("PatientID", "") or "")

    # 1. emission files decide the cycle of their DICOM study and frame of reference
    keyed: dict[int, tuple[str, int]] = {}
    source: dict[tuple[str, int], str] = {}
    injections: dict[str, dict[datetime, list[DicomFile]]] = {}
    explicit: list[tuple[DicomFile, int, str]] = []
    for item in scanned:
        what, reason = describe_file(item.header)
        if reason is not None and str(item.header.get("Modality", "")) not in (
            "CT",
            "RTSTRUCT",
            "SEG",
        ):
            skipped.append(SkippedFile(item.path, what, reason))
            continue
        if not _is_volume(item.header):
            continue
        side = sidecar_of(item)
        cycle = side.get("cycle") or _parse_cycle(item.header)
        if cycle:
            explicit.append((item, int(cycle), "sidecar" if side.get("cycle") else "tag"))
            continue
        try:
            when = (
                datetime.fromisoformat(side["injection_time"])
                if "injection_time" in side
                else _injection(item.header, item.path)
            )
        except StudyError as exc:
            # "invalid RadiopharmaceuticalStartDateTime": the value itself (a date) is left out
            field = re.search(r"invalid \w+", str(exc))
            reason = field.group(0) if field else "invalid injection date/time"
            skipped.append(SkippedFile(item.path, what, reason))
            continue
        if when is None:
            skipped.append(
                SkippedFile(
                    item.path,
                    what,
                    f"cannot tell the cycle (no cycle in {SIDECAR_NAME}, no ClinicalTrialTimePointID "
                    "meaning a cycle, no RadiopharmaceuticalStartDateTime/StartTime)",
                )
            )
            continue
        bucket = injections.setdefault(patient_of(item), {})
        near = next((k for k in bucket if abs(k - when) <= timedelta(seconds=60)), when)
        bucket.setdefault(near, []).append(item)
    for item, cycle, how in explicit:
        key = (patient_of(item), cycle)
        keyed[id(item)] = key
        source.setdefault(key, how)
    for patient, bucket in injections.items():
        for rank, when in enumerate(sorted(bucket), start=1):
            for item in bucket[when]:
                keyed[id(item)] = (patient, rank)
                source.setdefault((patient, rank), "injection order")
    by_study: dict[str, tuple[str, int]] = {}
    by_for: dict[str, tuple[str, int]] = {}
    by_folder: dict[Path, set[tuple[str, int]]] = {}
    patient_of_key: dict[tuple[str, int], str] = {}
    for item in scanned:
        if id(item) in keyed:
            key = keyed[id(item)]
            patient_of_key.setdefault(key, dicom_patient(item))
            # an empty UID is no key: it would join unrelated files
            if _uid(item.header, "StudyInstanceUID"):
                by_study.setdefault(_uid(item.header, "StudyInstanceUID"), key)
            if _uid(item.header, "FrameOfReferenceUID"):
                by_for.setdefault(_uid(item.header, "FrameOfReferenceUID"), key)
            by_folder.setdefault(item.path.parent, set()).add(key)
    # 2. other files (CT, RTSTRUCT, SEG) join through their study, frame of reference or folder
    for item in scanned:
        if id(item) in keyed:
            continue
        header = item.header
        modality = str(header.get("Modality", ""))
        if modality not in ("CT", "RTSTRUCT", "SEG"):
            continue
        refs = [_uid(header, "FrameOfReferenceUID")]
        refs += [
            str(r.get("FrameOfReferenceUID", "") or "")
            for r in header.get("ReferencedFrameOfReferenceSequence", []) or []
        ]
        study_uid = _uid(header, "StudyInstanceUID")
        joined = by_study.get(study_uid) if study_uid else None
        joined = joined or next((by_for[r] for r in refs if r and r in by_for), None)
        if joined is None:
            keys = by_folder.get(item.path.parent, set())
            joined = next(iter(keys)) if len(keys) == 1 else None
        if joined is None:
            skipped.append(
                SkippedFile(
                    item.path,
                    modality,
                    "belongs to no SPECT/PET study found (no shared StudyInstanceUID, "
                    "FrameOfReferenceUID or folder)",
                )
            )
            continue
        if dicom_patient(item) != patient_of_key.get(joined, dicom_patient(item)):
            skipped.append(
                SkippedFile(
                    item.path, modality, "another patient (PatientID differs from the study's)"
                )
            )
            continue
        keyed[id(item)] = joined
    groups: dict[tuple[str, int], list[DicomFile]] = {}
    for item in scanned:
        if id(item) in keyed:
            groups.setdefault(keyed[id(item)], []).append(item)
    skipped.sort(key=lambda s: str(s.path))
    return dict(sorted(groups.items())), source, skipped


def _uid(ds: Any, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def skipped_files(root: str | os.PathLike[str]) -> list[SkippedFile]:
    """The DICOM files below ``root`` that no study uses, each with the reason."""
    return _group_cohort(Path(root))[2]


def find_dicom_studies(root: str | os.PathLike[str]) -> dict[tuple[str, int], StudyFiles]:
    """Every DICOM study below ``root``, keyed by ``(patient_id, cycle)``, whatever the layout.

    The patient is the sidecar's ``patient_id`` or the ``PatientID`` tag. The cycle is the
    sidecar's ``cycle``, else ``ClinicalTrialTimePointID`` (``"C2"``, ``"cycle 2"``, ``"2"``),
    else the rank of the injection (RadiopharmaceuticalStartDateTime) among that patient's
    injections. CT, RTSTRUCT and SEG files join the SPECT study sharing their DICOM study,
    frame of reference or folder.

    Returns
    -------
    dict
        ``(patient_id, cycle) -> StudyFiles`` (a list of paths), to pass to
        :func:`open_study_folder`.
    """
    return _dicom_studies(root)[0]


def _dicom_studies(
    root: str | os.PathLike[str],
) -> tuple[dict[tuple[str, int], StudyFiles], list[SkippedFile]]:
    """:func:`find_dicom_studies` and :func:`skipped_files` from one scan of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise StudyError(f"{root}: not a folder")
    groups, _, skipped = _group_cohort(root)
    out = {}
    for key, items in groups.items():
        paths = [i.path for i in items]
        common = Path(os.path.commonpath([p.parent for p in paths]))
        out[key] = StudyFiles(
            paths, key[0], key[1], root if root in common.parents or common == root else common
        )
    return out, skipped


def find_study_folders(root: str | os.PathLike[str]) -> list[Path]:
    """Folders below ``root`` (or ``root`` itself) that each hold exactly one study.

    Image folders are those whose ``harmonize.json`` lists ``time_points``. DICOM studies
    are grouped by tags (:func:`find_dicom_studies`); each must sit alone in a folder
    (with its sub-folders) so that ``open_study(folder)`` gives the same patient and cycle.

    Raises
    ------
    harmonize.StudyError
        When studies are interleaved in one folder, or a folder's cycle can only be told
        from its neighbours (injection order); use :func:`find_dicom_studies` then.
    """
    root = Path(root)
    if not root.is_dir():
        raise StudyError(f"{root}: not a folder")
    image_folders = sorted(
        p.parent for p in root.rglob(SIDECAR_NAME) if _is_image_folder(read_sidecar(p.parent))
    )
    groups, source, _ = _group_cohort(root)
    folders: list[Path] = []
    commons = {
        key: Path(os.path.commonpath([i.path.parent for i in items]))
        for key, items in groups.items()
    }
    for key, common in commons.items():
        for other, other_common in commons.items():
            if other != key and (other_common == common or common in other_common.parents):
                raise StudyError(
                    f"{common}: holds files of several studies ({key} and {other}); use "
                    "harmonize.io.find_dicom_studies to group them by tags"
                )
        if source.get(key) == "injection order" and key[1] != 1:
            raise StudyError(
                f"{common}: its cycle ({key[1]}) is known only from the injection order of "
                f"patient {key[0]!r}; give 'cycle' in {common / SIDECAR_NAME} or use "
                "harmonize.io.find_dicom_studies"
            )
        folders.append(common)
    return sorted({*folders, *image_folders})
