"""What a folder of DICOM holds, study by study, and why anything is unusable.

:func:`inspect_folder` groups the files as :func:`harmonize.open_cohort` does, then, per
patient and cycle, lists each emission series (modality, vendor, units, energy windows, time
after injection, frame of reference) with its CT and VOI source, tries to open the study
(the same reader :func:`harmonize.open_study` uses) and says whether it is usable or the
reason it is not; files no study uses are listed with their reason. It is what a physicist
runs first on new data (``harmonize inspect FOLDER [--json]``).

Privacy: patient IDs are shown only for de-identified studies (raw ones are numbered), and
frames of reference are shown as ``FoR 1``, ``FoR 2`` within a study, never as UIDs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from harmonize.study import StudyError

__all__ = ["format_inspection", "inspect_folder"]


def _series_rows(files: list[Any], injection: Any) -> list[dict[str, Any]]:
    from harmonize.io._frames import frame_stacks
    from harmonize.io.dicom_read import (
        _energy_windows,
        _group,
        _is_volume,
        _time_point_start,
        _what,
        describe_file,
    )
    from harmonize.io.vendor import units_of

    frames_of_reference: dict[str, int] = {}

    def for_label(header: Any) -> str:
        uid = str(header.get("FrameOfReferenceUID", "") or "")
        if not uid:
            return "none"
        frames_of_reference.setdefault(uid, len(frames_of_reference) + 1)
        return f"FoR {frames_of_reference[uid]}"

    rows = []
    for series in _group(files, "SeriesInstanceUID").values():
        header = series[0].header
        what, _ = describe_file(header)
        row: dict[str, Any] = {
            "modality": str(header.get("Modality", "")),
            "kind": what,
            "vendor": " ".join(
                str(header.get(k, "") or "") for k in ("Manufacturer", "ManufacturerModelName")
            ).strip(),
            "files": len(series),
            "frame_of_reference": for_label(header),
        }
        if _is_volume(header):
            try:
                row["units"] = units_of(header, series[0].path)[0] or "none (see sidecar)"
            except StudyError as exc:
                row["units"] = f"refused: {str(exc).split(': ', 1)[-1]}"
            try:
                stacks = frame_stacks(header, series[0].path, _what(header))
                row["volumes_in_file"] = len(stacks)
            except StudyError as exc:
                row["geometry"] = f"refused: {str(exc).split(': ', 1)[-1]}"
            windows = _energy_windows(header)
            if len(windows) > 1:
                row["energy_windows"] = [f"{n} {lo:g}-{hi:g} keV" for n, lo, hi in windows]
            if injection is not None:
                try:
                    start = min(_time_point_start(f.header, f.path) for f in series)
                    row["time_h"] = round((start - injection).total_seconds() / 3600.0, 3)
                except StudyError:
                    row["time_h"] = None
        rows.append(row)
    order = {"PET": 0, "SPECT": 0, "CT": 1, "RTSTRUCT": 2, "SEG": 2}
    rows.sort(key=lambda r: (order.get(r["kind"], 3), r.get("time_h") or 0.0, r["kind"]))
    return rows


def inspect_folder(root: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready description of the DICOM studies below ``root`` (see the module docstring).

    Returns
    -------
    dict
        ``{"folder", "studies": [{"patient", "cycle", "cycle_from", "status", "reason",
        "time_points_h", "voi_source", "series": [...]}, ...], "bundles": [relative paths of
        exchange bundles], "skipped": [{"file", "what",
        "reason"}, ...]}``.

    Raises
    ------
    harmonize.StudyError
        If ``root`` is not a folder.
    """
    from harmonize.io import _group_cohort, _nearest_sidecar
    from harmonize.io.dicom_read import StudyFiles, _injection
    from harmonize.io.phi import is_deidentified

    folder = Path(root)
    if not folder.is_dir():
        raise StudyError(f"{folder}: not a folder")
    groups, source, skipped = _group_cohort(folder)
    studies = []
    raw_numbers: dict[str, int] = {}
    for (patient, cycle), items in groups.items():
        deidentified = all(is_deidentified(i.header) for i in items)
        if deidentified:
            label = patient
        else:
            raw_numbers.setdefault(patient, len(raw_numbers) + 1)
            label = f"raw patient #{raw_numbers[patient]} (not de-identified)"
        paths = [i.path for i in items]
        common = Path(os.path.commonpath([p.parent for p in paths]))
        sidecar = _nearest_sidecar(common, folder)
        injection = None
        try:
            from datetime import datetime

            injection = (
                datetime.fromisoformat(sidecar["injection_time"])
                if "injection_time" in sidecar
                else next(
                    (
                        inj
                        for inj in (_injection(i.header, i.path) for i in items)
                        if inj is not None
                    ),
                    None,
                )
            )
        except StudyError:
            injection = None
        entry: dict[str, Any] = {
            "patient": label,
            "cycle": int(cycle),
            "cycle_from": source.get((patient, cycle), "sidecar"),
            "folder": str(common),
            "series": _series_rows(items, injection),
        }
        try:
            from harmonize.io import open_study_folder

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                study = open_study_folder(StudyFiles(paths, patient, cycle, folder))
            entry["status"] = "usable"
            entry["time_points_h"] = [round(float(t), 3) for t in study["time"].values]
            entry["radionuclide"] = str(study.attrs["radionuclide"])
            entry["voi_source"] = str(study.attrs.get("voi_source", ""))
            entry["vois"] = len(study["voi"])
            if caught:
                entry["warnings"] = sorted({str(w.message).split(": ", 1)[-1] for w in caught})
        except StudyError as exc:
            entry["status"] = "unusable"
            entry["reason"] = str(exc)
        studies.append(entry)
    # harmonize's own exchange bundles are not DICOM: listed, so that a cohort folder of
    # bundles does not read as empty (harmonize run opens them directly)
    bundles = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*.nc")
        if p.is_file() and not p.name.startswith(".")
    )
    return {
        "folder": str(folder),
        "studies": studies,
        "bundles": bundles,
        "skipped": [
            {"file": str(s.path.relative_to(folder)), "what": s.what, "reason": s.reason}
            for s in skipped
        ],
    }


def format_inspection(report: dict[str, Any]) -> str:
    """The text form of :func:`inspect_folder`'s result."""
    lines = [
        f"{report['folder']}: {len(report['studies'])} stud"
        f"{'y' if len(report['studies']) == 1 else 'ies'}, "
        f"{len(report['skipped'])} file(s) skipped"
    ]
    if report.get("bundles"):
        lines.append(
            f"{len(report['bundles'])} harmonize exchange bundle(s) (not DICOM; harmonize run "
            "opens them directly): " + ", ".join(report["bundles"])
        )
    for study in report["studies"]:
        head = (
            f"- {study['patient']}, cycle {study['cycle']} (from {study['cycle_from']}): "
            f"{study['status'].upper()}"
        )
        if study["status"] == "usable":
            head += (
                f", {study['radionuclide']}, times {study['time_points_h']} h, "
                f"{study['vois']} VOIs ({study['voi_source']})"
            )
        lines.append(head)
        if study.get("reason"):
            lines.append(f"    reason: {study['reason']}")
        for warning in study.get("warnings", []):
            lines.append(f"    warning: {warning}")
        for row in study["series"]:
            parts = [f"    {row['kind']:<12}", row["vendor"] or "?", f"{row['files']} file(s)"]
            if "time_h" in row:
                parts.append(f"t = {row['time_h']} h")
            if "units" in row:
                parts.append(f"units {row['units']}")
            if "energy_windows" in row:
                parts.append(f"windows {row['energy_windows']}")
            if "geometry" in row:
                parts.append(f"geometry {row['geometry']}")
            parts.append(row["frame_of_reference"])
            lines.append(", ".join(parts))
    if report["skipped"]:
        lines.append("skipped:")
        for item in report["skipped"]:
            lines.append(f"  {item['file']} ({item['what']}): {item['reason']}")
    return "\n".join(lines)
