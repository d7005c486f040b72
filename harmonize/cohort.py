"""A cohort: many Studies keyed by (patient_id, cycle), read lazily from a folder.

A cohort folder holds exchange bundles (``*.nc``, in any sub-folder) and, for a synthetic
cohort, the ground truth table ``truth.parquet``. Studies are opened only when asked for,
so a cohort of hundreds of patient-cycles costs nothing to list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import xarray as xr

from harmonize.bundle import BUNDLE_SUFFIX, open_study
from harmonize.study import StudyError

__all__ = ["TRUTH_FILE", "Cohort", "CohortError", "open_cohort"]

#: File name of the ground-truth table in a synthetic cohort folder.
TRUTH_FILE = "truth.parquet"

StudyKey = tuple[str, int]


class CohortError(ValueError):
    """A cohort folder that cannot be read as a cohort."""


def _read_key(path: Path) -> StudyKey:
    try:
        with xr.open_dataset(path, engine="h5netcdf") as handle:
            return str(handle.attrs["patient_id"]), int(handle.attrs["cycle"])
    except Exception as exc:  # unreadable or foreign file
        raise StudyError(
            f"{path}: cannot be read as a harmonize exchange bundle: {type(exc).__name__}: {exc}"
        ) from None


class Cohort(Mapping[StudyKey, xr.Dataset]):
    """Studies of a cohort folder, keyed by ``(patient_id, cycle)`` and sorted.

    Iterating yields keys; indexing opens (and validates) the Study. ``paths`` maps keys to
    files; ``truth`` is the ground-truth table of a synthetic cohort (``None`` otherwise).
    """

    def __init__(self, root: Path, paths: Mapping[StudyKey, Path], truth: pd.DataFrame | None):
        self.root = root
        self.paths: dict[StudyKey, Path] = dict(sorted(paths.items()))
        self.truth = truth

    def __getitem__(self, key: StudyKey) -> xr.Dataset:
        try:
            path = self.paths[key]
        except KeyError:
            raise KeyError(f"no study {key!r} in cohort {self.root}") from None
        return open_study(path)

    def __iter__(self) -> Iterator[StudyKey]:
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        patients = sorted({p for p, _ in self.paths})
        return (
            f"<Cohort {self.root}: {len(self)} studies, {len(patients)} patients, "
            f"truth={'yes' if self.truth is not None else 'no'}>"
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
    paths: dict[StudyKey, Path] = {}
    for file in sorted(root.rglob(f"*{BUNDLE_SUFFIX}")):
        if file.name.startswith("."):
            continue
        key = _read_key(file)
        if key in paths:
            raise CohortError(
                f"{root}: two studies for patient {key[0]!r} cycle {key[1]}: {paths[key]} and {file}"
            )
        paths[key] = file
    if not paths:
        from harmonize.io import find_study_folders

        for folder in find_study_folders(root):
            study = open_study(folder)
            key = (str(study.attrs["patient_id"]), int(study.attrs["cycle"]))
            if key in paths:
                raise CohortError(
                    f"{root}: two studies for patient {key[0]!r} cycle {key[1]}: {paths[key]} and {folder}"
                )
            paths[key] = folder
    if not paths:
        raise CohortError(f"{root}: no study found (expected *{BUNDLE_SUFFIX} exchange bundles)")
    truth_path = root / TRUTH_FILE
    truth = pd.read_parquet(truth_path) if truth_path.exists() else None
    return Cohort(root, paths, truth)
