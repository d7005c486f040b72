"""The PHI gate: which DICOM counts as de-identified, and refusing raw studies before any work.

A study counts as de-identified only when **its DICOM says so**: every file carries
``PatientIdentityRemoved`` (0012,0062) = ``YES`` *and* a de-identification method
(``DeidentificationMethod`` (0012,0063) or ``DeidentificationMethodCodeSequence``
(0012,0064)), as PS3.15 E.1.1 asks of a de-identifier (what :func:`harmonize.deid.deidentify`
writes). A ``harmonize.json`` sidecar never opens the gate: its ``patient_id`` is a label,
not a proof that the files were de-identified.

:func:`require_deidentified` is called by the runner before any computation: without a
pseudonymisation key, raw studies are refused once each with a message that names the
folder and no identifier (no patient ID, name, date or UID). The Python API keeps the same
rule: the DICOM reader flags such a study (attribute ``identified``) and
:meth:`harmonize.workflow.WorkflowAdapter.run` refuses it with :class:`IdentifiedStudyError`
until it is pseudonymised with :func:`harmonize.deid.deidentify_study` (what the runner
does with a key); :func:`harmonize.save_study` refuses it unless ``allow_identified``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from harmonize.study import StudyError

__all__ = ["IdentifiedStudyError", "identified_sources", "is_deidentified", "require_deidentified"]


class IdentifiedStudyError(StudyError):
    """Studies that still carry patient identifiers were given without a pseudonymisation key."""


def is_deidentified(header: Dataset) -> bool:
    """True when a DICOM header declares itself de-identified (YES and a method)."""
    removed = str(header.get("PatientIdentityRemoved", "") or "").strip().upper() == "YES"
    method = bool(str(header.get("DeidentificationMethod", "") or "").strip()) or bool(
        header.get("DeidentificationMethodCodeSequence")
    )
    return removed and method


def _folder_of(files: Iterable[Path]) -> Path:
    paths = [Path(p) for p in files]
    return Path(os.path.commonpath([p.parent for p in paths])) if paths else Path(".")


def identified_sources(sources: Mapping[Any, Any]) -> list[tuple[Any, Path]]:
    """(key, folder) of every DICOM study among ``sources`` with a file not de-identified.

    ``sources`` maps study keys to what :class:`harmonize.Cohort` holds: a list of DICOM
    files, a study folder, or a bundle file. Bundles are checked by their ``identified``
    attribute; folders and file lists by their DICOM headers (no pixel data read).
    """
    from harmonize.io._dicom_common import is_dicom_file, read_header

    out = []
    for key, source in sources.items():
        if isinstance(source, list):
            files = [Path(p) for p in source]
        elif Path(source).is_dir():
            files = [p for p in sorted(Path(source).rglob("*")) if p.is_file()]
        else:
            if _bundle_identified(Path(source)):
                out.append((key, Path(source)))
            continue
        dicom = [p for p in files if is_dicom_file(p)]
        if any(not is_deidentified(read_header(p)) for p in dicom):
            out.append((key, _folder_of(dicom)))
    return out


def _bundle_identified(path: Path) -> bool:
    from harmonize.cohort import bundle_attrs

    try:
        return bool(bundle_attrs(path).get("identified"))
    except Exception:  # an unreadable bundle fails later with its own message
        return False


def require_deidentified(sources: Mapping[Any, Any], key: bytes | None) -> list[Any]:
    """Refuse raw studies when no key is given; return the keys of the raw ones.

    Raises
    ------
    IdentifiedStudyError
        Without ``key`` when any study is not de-identified: one line per such study,
        naming its folder only.
    """
    raw = identified_sources(sources)
    if raw and key is None:
        folders = sorted({str(folder) for _, folder in raw})
        lines = "\n".join(f"  {folder}: DICOM not de-identified" for folder in folders)
        raise IdentifiedStudyError(
            f"{len(raw)} stud{'y' if len(raw) == 1 else 'ies'} still carr"
            f"{'ies' if len(raw) == 1 else 'y'} patient identifiers (no PatientIdentityRemoved "
            "= YES with a de-identification method); nothing was computed. Run 'harmonize "
            "deidentify' first, or pass a pseudonymisation key (--key KEYFILE):\n" + lines
        )
    return [k for k, _ in raw]
