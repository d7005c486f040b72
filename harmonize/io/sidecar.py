"""The ``harmonize.json`` sidecar: what an image folder's files do not say themselves.

A sidecar is a JSON object in a file called ``harmonize.json`` in a study folder (DICOM or
NIfTI/MHA/NRRD). Every key is optional for a DICOM folder (the DICOM header is used when a
key is absent, the sidecar wins when both are given); a NIfTI/MHA/NRRD folder needs
``time_points``, ``labels``, ``patient_id``, ``cycle``, ``injected_activity_MBq`` and
``injection_time``. Unknown keys are refused (a typo must not be silently ignored).

=========================  ==========================================================
key                        meaning
=========================  ==========================================================
``format``                 ``"harmonize-sidecar"`` (optional marker)
``version``                ``1``
``patient_id``             pseudonymous patient id (str)
``cycle``                  therapy cycle, integer ≥ 1
``center``                 centre name (str; default ``"unknown"``)
``radionuclide``           e.g. ``"Lu-177"``
``injected_activity_MBq``  injected activity, MBq
``injection_time``         ISO 8601 date-time of the injection
``units``                  ``"Bq/mL"`` (also ``"BQML"``) or ``"counts"``
``calibration_cps_per_MBq``  camera sensitivity for images in counts
``acquisition_duration_s``   acquisition duration for images in counts (DICOM: read from
                           the header when absent)
``decay_correction``       ``"NONE"``, ``"START"`` or ``"ADMIN"`` (state of the images)
``time_points``            list of ``{"file": name, "time_h": h}`` or
                           ``{"file": name, "acquisition_time": ISO 8601}`` (image folders)
``labels``                 file name of the integer label map (image folders)
``ct``                     file name of the CT in HU (image folders, optional)
``vois``                   list of ``{"voi_id", "name", "kind"?, "parent_id"?}``
``voi_rules``              list of ``[pattern, kind]`` naming rules (see :mod:`.naming`)
``min_time_points``        fewest time points accepted (default 2; 1 for single-time-point
                           dosimetry)
``energy_window``          DICOM: the energy window to use (1-based number or
                           ``EnergyWindowName``) when a file holds several (default: the
                           window holding the radionuclide's main photopeak)
``auto_lesions``           DICOM without RTSTRUCT/SEG: ``{"threshold_fraction": f,
                           "min_volume_ml": v}`` threshold lesions (:mod:`.auto_voi`)
``segmenter``              DICOM without RTSTRUCT/SEG: name of an external segmenter
                           (entry-point group ``harmonize.segmenters``, :mod:`.auto_voi`)
=========================  ==========================================================
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from harmonize.study import VOI_KINDS, StudyError

__all__ = ["SIDECAR_KEYS", "SIDECAR_NAME", "read_sidecar", "validate_sidecar"]

#: File name of the sidecar.
SIDECAR_NAME = "harmonize.json"
#: Keys a sidecar may hold.
SIDECAR_KEYS = (
    "format",
    "version",
    "patient_id",
    "cycle",
    "center",
    "radionuclide",
    "injected_activity_MBq",
    "injection_time",
    "units",
    "calibration_cps_per_MBq",
    "acquisition_duration_s",
    "decay_correction",
    "time_points",
    "labels",
    "ct",
    "vois",
    "voi_rules",
    "min_time_points",
    "energy_window",
    "auto_lesions",
    "segmenter",
)
_UNITS = {"bq/ml": "Bq/mL", "bqml": "Bq/mL", "counts": "counts", "cnts": "counts"}


def _positive(where: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0:
        raise StudyError(f"{where}: must be a positive number, got {value!r}")
    return number


def _iso(where: str, value: Any) -> str:
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        raise StudyError(f"{where}: must be an ISO 8601 date-time, got {value!r}") from None
    return str(value)


def validate_sidecar(data: Any, source: str = SIDECAR_NAME) -> dict[str, Any]:
    """Check a sidecar mapping and return it normalised (units spelled ``Bq/mL``/``counts``).

    Raises
    ------
    harmonize.StudyError
        Naming ``source`` and the key at fault.
    """
    if not isinstance(data, dict):
        raise StudyError(f"{source}: the sidecar must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise StudyError(
            f"{source}: unknown key(s) {unknown}; allowed keys are {list(SIDECAR_KEYS)}"
        )
    out = dict(data)
    where = f"{source}: "
    if "cycle" in out:
        cycle = out["cycle"]
        if isinstance(cycle, bool) or not isinstance(cycle, int) or cycle < 1:
            raise StudyError(f"{where}'cycle' must be an integer ≥ 1, got {cycle!r}")
    for key in ("patient_id", "center", "radionuclide", "labels", "ct"):
        if key in out and (not isinstance(out[key], str) or not out[key].strip()):
            raise StudyError(f"{where}'{key}' must be a non-empty string, got {out[key]!r}")
    for key in ("injected_activity_MBq", "calibration_cps_per_MBq", "acquisition_duration_s"):
        if key in out:
            out[key] = _positive(f"{where}'{key}'", out[key])
    if "injection_time" in out:
        out["injection_time"] = _iso(f"{where}'injection_time'", out["injection_time"])
    if "units" in out:
        units = _UNITS.get(str(out["units"]).strip().lower())
        if units is None:
            raise StudyError(f"{where}'units' must be 'Bq/mL' or 'counts', got {out['units']!r}")
        out["units"] = units
    if "decay_correction" in out:
        value = str(out["decay_correction"]).upper()
        if value not in ("NONE", "START", "ADMIN"):
            raise StudyError(
                f"{where}'decay_correction' must be NONE, START or ADMIN, got {out['decay_correction']!r}"
            )
        out["decay_correction"] = value
    if "energy_window" in out and (
        isinstance(out["energy_window"], bool)
        or not isinstance(out["energy_window"], int | str)
        or str(out["energy_window"]).strip() == ""
    ):
        raise StudyError(
            f"{where}'energy_window' must be a window number or name, got {out['energy_window']!r}"
        )
    if "auto_lesions" in out:
        params = out["auto_lesions"]
        if not isinstance(params, dict) or set(params) - {"threshold_fraction", "min_volume_ml"}:
            raise StudyError(
                f"{where}'auto_lesions' must be an object with 'threshold_fraction' and/or "
                f"'min_volume_ml', got {params!r}"
            )
        fraction = float(params.get("threshold_fraction", 0.4))
        if not 0 < fraction < 1:
            raise StudyError(f"{where}auto_lesions 'threshold_fraction' must be in (0, 1)")
        _positive(f"{where}auto_lesions 'min_volume_ml'", params.get("min_volume_ml", 1.0))
    if "segmenter" in out and (not isinstance(out["segmenter"], str) or not out["segmenter"]):
        raise StudyError(f"{where}'segmenter' must be a non-empty string")
    if "min_time_points" in out:
        value = out["min_time_points"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise StudyError(f"{where}'min_time_points' must be an integer ≥ 1, got {value!r}")
    if "time_points" in out:
        points = out["time_points"]
        if not isinstance(points, list) or not points:
            raise StudyError(f"{where}'time_points' must be a non-empty list")
        for n, point in enumerate(points):
            if not isinstance(point, dict) or "file" not in point:
                raise StudyError(f"{where}time_points[{n}] must be an object with a 'file'")
            if ("time_h" in point) == ("acquisition_time" in point):
                raise StudyError(
                    f"{where}time_points[{n}] needs exactly one of 'time_h' or 'acquisition_time'"
                )
            if "acquisition_time" in point:
                _iso(f"{where}time_points[{n}]['acquisition_time']", point["acquisition_time"])
            else:
                value = point["time_h"]
                if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                    raise StudyError(
                        f"{where}time_points[{n}]['time_h'] must be a number ≥ 0, got {value!r}"
                    )
    if "vois" in out:
        vois = out["vois"]
        if not isinstance(vois, list):
            raise StudyError(f"{where}'vois' must be a list of objects")
        for n, voi in enumerate(vois):
            if not isinstance(voi, dict) or "name" not in voi:
                raise StudyError(f"{where}vois[{n}] must be an object with at least a 'name'")
            if "kind" in voi and voi["kind"] not in VOI_KINDS:
                raise StudyError(
                    f"{where}vois[{n}]['kind'] must be one of {list(VOI_KINDS)}, got {voi['kind']!r}"
                )
    if "voi_rules" in out:
        rules = out["voi_rules"]
        if not isinstance(rules, list) or not all(
            isinstance(r, list | tuple) and len(r) == 2 for r in rules
        ):
            raise StudyError(f"{where}'voi_rules' must be a list of [pattern, kind] pairs")
        out["voi_rules"] = [(str(p), str(k)) for p, k in rules]
    return out


def read_sidecar(folder: Path) -> dict[str, Any]:
    """The validated sidecar of ``folder`` (an empty dict when there is none).

    Raises
    ------
    harmonize.StudyError
        If the file is not valid JSON or holds an invalid key; the message names the file.
    """
    path = Path(folder) / SIDECAR_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyError(f"{path}: cannot be read as JSON: {exc}") from None
    return validate_sidecar(data, str(path))
