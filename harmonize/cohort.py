"""A cohort: many Studies keyed by (patient_id, cycle), read lazily from a folder.

A cohort folder holds, in any sub-folder layout, any mix of

* exchange bundles (``*.nc``);
* image folders (NIfTI/MHA/NRRD + ``harmonize.json`` sidecar listing ``time_points``);
* DICOM files, grouped into studies by their tags (:func:`harmonize.io.find_dicom_studies`),

and, for a synthetic cohort, the ground truth table ``truth.parquet``. Studies are opened
only when asked for, so a cohort of hundreds of patient-cycles costs nothing to list.

Skipped entries
---------------
Everything else below the folder is listed in :attr:`Cohort.skipped` (path relative to the
folder and a one-line reason, never a patient identifier), so that a user who drops twelve
studies and gets results for eleven can see why: DICOM files no study uses (planar or
whole-body images, projections, other modalities, orphan CTs, another patient's files,
unreadable or corrupt DICOM, no cycle to tell), image files outside an image folder, any
other file, and empty folders. Not listed, as noise: hidden files and folders (a name
starting with ``.``: ``.DS_Store``, ``._*`` AppleDouble files, harmonize's own temporaries),
``Thumbs.db``, ``desktop.ini``, ``DICOMDIR``, ``__MACOSX/``, and harmonize's own sidecars
(``harmonize.json``; ``truth.parquet``, which :func:`harmonize.io.write_study_dicom` writes
beside a phantom's DICOM). Files below an image folder belong to that study. Bundles that
cannot be read are not skipped entries but failures (:attr:`Cohort.unreadable`).
"""

from __future__ import annotations

import copy
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from harmonize.bundle import BUNDLE_SUFFIX, open_study
from harmonize.errors import HarmonizeError
from harmonize.study import StudyError

__all__ = [
    "TRUTH_FILE",
    "Cohort",
    "CohortError",
    "SkippedInput",
    "bundle_attrs",
    "open_cohort",
    "open_source",
]

#: File name of the ground-truth table in a synthetic cohort folder.
TRUTH_FILE = "truth.parquet"

StudyKey = tuple[str, int]


class CohortError(HarmonizeError, ValueError):
    """A cohort folder that cannot be read as a cohort."""


@dataclass(frozen=True)
class SkippedInput:
    """An entry of a cohort folder that no study uses (see the module docstring).

    Attributes
    ----------
    path : str
        Relative to the cohort folder, ``/``-separated; a folder ends with ``/``.
    kind : str
        A short category (``"NM STATIC"``, ``"CT"``, ``"unreadable"``, ``"other file"``,
        ``"image file"``, ``"empty folder"``): the run manifest counts entries by it.
    reason : str
        One line: why it is not used. Never a patient identifier.
    """

    path: str
    kind: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.kind}): {self.reason}"


#: File names (lower case) that are noise, never listed as skipped (see the module docstring).
NOISE_FILES = frozenset({"thumbs.db", "desktop.ini", "dicomdir", "harmonize.json", TRUTH_FILE})
#: Folder names that are noise with everything below them.
NOISE_FOLDERS = frozenset({"__macosx"})


def _is_noise(rel: Path) -> bool:
    parts = rel.parts
    return (
        any(part.startswith(".") or part.lower() in NOISE_FOLDERS for part in parts)
        or rel.name.lower() in NOISE_FILES
    )


def _skipped_entries(
    root: Path, used: Iterable[Path], study_folders: Iterable[Path], dicom_skipped: Iterable[Any]
) -> list[SkippedInput]:
    """Every entry below ``root`` that is neither used, nor below a study folder, nor noise."""
    from harmonize.io.nifti import IMAGE_SUFFIXES

    resolved = root.resolve()

    def rel(path: Path) -> Path:
        path = Path(path)
        try:
            return path.relative_to(root)
        except ValueError:
            return path.resolve().relative_to(resolved)

    taken = {rel(p) for p in used}
    folders = {rel(f) for f in study_folders}
    out = [
        SkippedInput(rel(s.path).as_posix(), s.what, s.reason)
        for s in dicom_skipped
        if not _is_noise(rel(s.path))
    ]
    taken |= {rel(s.path) for s in dicom_skipped}
    occupied: set[Path] = set()  # folders with a file that is not noise below them
    dirs: list[Path] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if _is_noise(relative):
            continue
        if path.is_dir():
            dirs.append(relative)
            continue
        occupied.update(relative.parents)
        if relative in taken or any(parent in folders for parent in relative.parents):
            continue
        if path.name.lower().endswith(IMAGE_SUFFIXES):
            out.append(
                SkippedInput(
                    relative.as_posix(),
                    "image file",
                    "image outside an image study folder (no harmonize.json listing "
                    "'time_points' in its folder)",
                )
            )
        else:
            out.append(
                SkippedInput(
                    relative.as_posix(),
                    "other file",
                    "not a study file (not DICOM, not an exchange bundle *.nc, not in an "
                    "image study folder)",
                )
            )
    for folder in dirs:  # the top-most folders with nothing but noise below them
        if folder not in occupied and (folder.parent == Path(".") or folder.parent in occupied):
            out.append(SkippedInput(folder.as_posix() + "/", "empty folder", "holds no file"))
    return sorted(out, key=lambda s: s.path)


def _where(source: Any) -> str:
    if isinstance(source, list):
        return f"{getattr(source, 'root', '')} ({len(source)} DICOM files)"
    return str(source)


def bundle_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The global attributes of an exchange bundle, read without opening its variables.

    The attributes are decoded as :func:`xarray.open_dataset` (engine ``h5netcdf``)
    decodes them (bytes → UTF-8 text; the CF ``coordinates`` attribute, which xarray moves
    into its encoding, is kept), at a fraction of the cost: no variable, coordinate
    or index is read (8 ms instead of 0.2 s for a 64×72×96×4 study), which keeps listing a
    cohort and the PHI gate off the serial path of a parallel run.

    A run asks for the same bundle's attributes three times before its first study starts
    (cohort listing, PHI gate, expected calibration tables): they are read once per
    version of the file — the cache key is the file's device, inode, size and modification
    time, so a bundle replaced or rewritten in place is read again — and each caller gets
    its own copy.
    """
    stat = os.stat(path)
    key = (os.fspath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    attrs = _ATTRS_CACHE.get(key)
    if attrs is None:
        attrs = _read_bundle_attrs(path)
        if len(_ATTRS_CACHE) >= _ATTRS_CACHE_SIZE:
            _ATTRS_CACHE.pop(next(iter(_ATTRS_CACHE)))  # the oldest entry
        _ATTRS_CACHE[key] = attrs
    return copy.deepcopy(attrs)


#: Attributes read by :func:`bundle_attrs`, by (path, device, inode, size, mtime).
_ATTRS_CACHE: dict[tuple[str, int, int, int, int], dict[str, Any]] = {}
_ATTRS_CACHE_SIZE = 4096


def _read_bundle_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    import h5netcdf

    with h5netcdf.File(path, "r") as handle:
        return {
            k: v.decode("utf-8") if isinstance(v, bytes) else v for k, v in handle.attrs.items()
        }


def _read_key(path: Path) -> StudyKey:
    try:
        attrs = bundle_attrs(path)
        return str(attrs["patient_id"]), int(attrs["cycle"])
    except Exception as exc:  # unreadable or foreign file
        raise StudyError(
            f"{path}: cannot be read as a harmonize exchange bundle: {type(exc).__name__}: {exc}"
        ) from None


def open_source(source: Any) -> xr.Dataset:
    """Open one study source of a cohort: a bundle file, a study folder, or a list of DICOM files."""
    if isinstance(source, list):
        from harmonize.io import open_study_folder

        return open_study_folder(source)
    return open_study(source)


class Cohort(Mapping[StudyKey, xr.Dataset]):
    """Studies of a cohort folder, keyed by ``(patient_id, cycle)`` and sorted.

    Iterating yields keys; indexing opens (and validates) the Study. ``paths`` maps keys to
    their source (a bundle file, a study folder, or the list of a DICOM study's files);
    ``truth`` is the ground-truth table of a synthetic cohort (``None`` otherwise).
    """

    def __init__(
        self,
        root: Path,
        paths: Mapping[StudyKey, Any],
        truth: pd.DataFrame | None,
        unreadable: Mapping[Path, str] | None = None,
        skipped: Iterable[SkippedInput] = (),
    ):
        self.root = root
        self.paths: dict[StudyKey, Any] = dict(sorted(paths.items()))
        self.truth = truth
        #: Bundles that could not be read (path → reason): reported, not fatal to the cohort.
        self.unreadable: dict[Path, str] = dict(unreadable or {})
        #: Entries of the folder no study uses, with the reason (module docstring).
        self.skipped: list[SkippedInput] = list(skipped)

    def skipped_counts(self) -> dict[str, int]:
        """Number of skipped entries per kind (no path: what a manifest may record)."""
        return dict(sorted(Counter(s.kind for s in self.skipped).items()))

    def __getitem__(self, key: StudyKey) -> xr.Dataset:
        try:
            source = self.paths[key]
        except KeyError:
            raise KeyError(f"no study {key!r} in cohort {self.root}") from None
        return open_source(source)

    def __iter__(self) -> Iterator[StudyKey]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        patients = sorted({p for p, _ in self.paths})
        return (
            f"<Cohort {self.root}: {len(self)} studies, {len(patients)} patients, "
            f"truth={'yes' if self.truth is not None else 'no'}"
            + (f", {len(self.skipped)} skipped (see .skipped)" if self.skipped else "")
            + ">"
        )


def open_cohort(path: str | os.PathLike[str]) -> Cohort:
    """Open a folder of studies (a phantom cohort or any folder of exchange bundles).

    Raises
    ------
    CohortError
        If the folder does not exist, holds no study, or holds two studies with the same
        (patient_id, cycle).
    """
    root = Path(path)
    if not root.is_dir():
        raise CohortError(f"{root}: not a folder")
    from harmonize.io import _dicom_studies, find_image_folders

    paths: dict[StudyKey, Any] = {}

    def add(key: StudyKey, source: Any, where: object) -> None:
        if key in paths:
            raise CohortError(
                # no patient id in the message: it may be an original (not yet de-identified) one
                f"{root}: two studies for the same patient and cycle {key[1]}: "
                f"{_where(paths[key])} and {where}"
            )
        paths[key] = source

    unreadable: dict[Path, str] = {}
    used: list[Path] = []
    for file in sorted(root.rglob(f"*{BUNDLE_SUFFIX}")):
        if not file.name.startswith("."):
            used.append(file)
            try:
                key = _read_key(file)
            except StudyError as exc:  # one corrupt bundle fails itself, not the cohort
                unreadable[file] = str(exc)
                continue
            add(key, file, file)
    image_folders = find_image_folders(root)
    for folder in image_folders:
        study = open_study(folder)
        add((str(study.attrs["patient_id"]), int(study.attrs["cycle"])), folder, folder)
    dicom, dicom_skipped = _dicom_studies(root)
    for key, files in dicom.items():
        used += files
        add(key, files, _where(files))
    if not paths and not unreadable:
        raise CohortError(
            f"{root}: no study found (expected *{BUNDLE_SUFFIX} exchange bundles, DICOM files "
            "or image folders with a harmonize.json sidecar)"
        )
    truth_path = root / TRUTH_FILE
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    skipped = _skipped_entries(root, used, image_folders, dicom_skipped)
    return Cohort(root, paths, truth, unreadable, skipped)
