"""Readers and writers of images: exchange bundles are in :mod:`harmonize.bundle`.

DICOM and NIfTI folder readers are added by the real-data work (issue 6); until then a
folder given to :func:`harmonize.open_study` is refused with a clear message.
"""

from __future__ import annotations

from pathlib import Path

from harmonize.study import StudyError

__all__ = ["find_study_folders", "open_study_folder"]


def open_study_folder(path: Path) -> object:
    """Open a study stored as a folder (DICOM or NIfTI + sidecar)."""
    raise StudyError(
        f"{path}: is a folder; this version of harmonize reads exchange bundles (*.nc files) "
        "only — DICOM and NIfTI folders are not supported yet"
    )


def find_study_folders(root: Path) -> list[Path]:
    """Folders below ``root`` that hold a DICOM or NIfTI study (none are recognised yet)."""
    del root
    return []
