"""De-identification of DICOM studies, cohorts and exchange bundles for exchange between centres.

DICOM (PS3.15 Annex E)
----------------------
Every attribute of the **Basic Application Level Confidentiality Profile** table (Table
E.1-1, the 2026c edition as transcribed by the maintained ``dicom-anonymizer`` package,
``dicomanonymizer.dicom_anonymization_databases.dicomfields_2026c``) gets its action:

=============  ===============================================================================
action         what harmonize does
=============  ===============================================================================
X              attribute removed
Z              emptied (zero length; a sequence becomes empty)
D              dummy value (``ANONYMIZED``, 0, empty sequence)
X/Z, X/D, ...  removed (the strictest choice)
U              UID replaced by ``2.25.<HMAC-SHA256(key, UID)>``: the same UID always maps to
               the same new UID, so references between files (RTSTRUCT → NM, SEG → NM,
               shared frames of reference) stay consistent; well-known UIDs (SOP classes,
               transfer syntaxes) are kept
=============  ===============================================================================

with these options and additions:

* **Retain Longitudinal Temporal Information with Modified Dates Option**: every date,
  time and date-time (VR DA, TM, DT, in the table or not) is *shifted* by one offset per
  patient, derived from the key (365–3650 days plus a fraction of a day, backwards), so
  intervals — hours after injection, weeks between cycles — are unchanged. Date and time
  pairs (``AcquisitionDate``/``AcquisitionTime``, ...) shift together; a lone time shifts
  modulo 24 h; a date without a time shifts by the whole days of the offset. Unparseable
  values are emptied.
* **Patient ID and Name** become a pseudonym ``ANON-<12 hex>`` = HMAC-SHA256(key, original
  PatientID): the same patient and key give the same pseudonym at every export.
* **Clean Descriptors** for VOI names (``ROIName``, ``SegmentLabel``): a name made only of
  anatomical/lesion words of a fixed vocabulary, digits and separators is kept (VOIs must
  stay matchable across workflows); any other name becomes ``<kind>_<nn>``.
* Private tags are removed; free text not covered by the table (VR LT, ST, UT, and
  ``SegmentDescription``, ``TrackingID``, ``DoseComment``) is removed; any remaining person
  name (VR PN) is emptied.
* ``PatientIdentityRemoved = YES``, ``LongitudinalTemporalInformationModified = MODIFIED``
  and ``DeidentificationMethodCodeSequence`` (DCM 113100, 113107) record what was done.

**Out of scope**: burned-in annotations in pixel data (SPECT/CT reconstructions rarely have
any; secondary captures and screenshots must not be exchanged), identifying information in
file names of the input (outputs get new names), and re-identification from the images
themselves (e.g. face rendering from CT).

Exchange bundles
----------------
Only an allow-list of attributes survives: ``patient_id`` becomes the pseudonym of the
original id, ``injection_time`` is shifted by that patient's offset, ``center`` becomes a
keyed pseudonym ``CTR-<8 hex>`` (unless ``keep_center=True``), technical attributes
(units, decay correction state, registration, phantom parameters) are kept; anything else
is dropped. VOI names are cleaned as above.

Output layout
-------------
A folder is read with :func:`harmonize.open_cohort`, the discovery ``harmonize run`` uses:
DICOM studies (any layout), image folders (NIfTI/MHA/NRRD + a ``harmonize.json`` listing
``time_points``) and ``*.nc`` bundles, in any mix. A folder holding exactly one DICOM or
image study gives one study folder, ``out/`` itself, of the same kind. Any other folder
gives one entry per study: ``out/<pseudonym>_C<cycle>/`` (DICOM study, or image folder
re-written from the Study in its input image format, ``.mhd``/``.nhdr`` as ``.mha``/
``.nrrd``: no input image header is copied, time points are given in hours after the shifted
injection) and ``out/<pseudonym>_C<cycle>.nc`` (bundle), plus ``truth.parquet`` with
pseudonymous ids for a synthetic cohort. A de-identified sidecar (``harmonize.json``) is
written in every DICOM and image study folder. All is written into a temporary folder
renamed into place at the end: an unreadable study, bundle or DICOM file (which would leave
its study incomplete), or two studies of the same patient and cycle, refuse the whole
export and nothing is written.

Whatever the folder holds that no study uses (:attr:`harmonize.cohort.Cohort.skipped`,
and files of an image folder its sidecar does not refer to) is not exported: it is listed
(path relative to the input, kind, reason) in the ``skipped`` list the caller passes, or
else in one :class:`DeidSkippedWarning`; ``harmonize deidentify`` prints it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pydicom
import xarray as xr
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID_dictionary

from harmonize._warnings import HarmonizeWarning
from harmonize.io._dicom_common import format_da, format_dt, format_tm, parse_da_tm, parse_dt
from harmonize.study import StudyError

if TYPE_CHECKING:
    from harmonize.cohort import SkippedInput

__all__ = [
    "ANNEX_E_EDITION",
    "DeidSkippedWarning",
    "date_offset",
    "deidentify",
    "deidentify_dataset",
    "deidentify_study",
    "pseudonym",
]

#: Edition of PS3.15 Table E.1-1 used (as transcribed by ``dicom-anonymizer``).
ANNEX_E_EDITION = "2026c"
_OFFSET_DAYS = (365, 3650)
_TRUTH = "truth.parquet"
_EXTRA_REMOVED = {0x00620006, 0x00620020, 0x30040006}  # SegmentDescription, TrackingID, DoseComment
_FREE_TEXT_VRS = {"LT", "ST", "UT"}
_DATE_VRS = {"DA", "DT", "TM"}
_CLEAN_NAME_TAGS = {0x30060026, 0x00620005}  # ROIName, SegmentLabel
_CLEAN_WORDS = frozenset(
    """lesion lesions les tumor tumour tumors tumours met mets metastasis metastases gtv ctv
    body external outline skin background bkg bg kidney kidneys renal cortex medulla liver
    hepatic spleen splenic marrow bone bones salivary parotid parotids submandibular gland
    glands lacrimal bladder lung lungs heart pancreas stomach bowel intestine colon thyroid
    adrenal pituitary muscle vertebra vertebrae aorta blood pool left right l r lt rt lobe
    upper lower total whole organ organs node nodes lymph sphere roi voi in of segment
    remainder rest soft tissue""".split()
)
_BUNDLE_ATTRS = {
    "cycle",
    "radionuclide",
    "injected_activity_MBq",
    "direction",
    "voxel_size_mm",
    "source",
    "psf_fwhm_mm",
    "noise",
    "imaging_profile",
    "imaging_mode",
    "units_original",
    "decay_correction_original",
    "negative_voxels_clipped",
    "calibration_cps_per_MBq",
    "registration_reference_index",
    "reference_time_index",
    "voi_source",
    "registration_on",
    "motion_shifts_mm",
    "motion_rotations_deg",
}
_NEUTRAL_CENTERS = {"phantom", "unknown", ""}
_VAR_ATTRS = {"units", "long_name", "decay_corrected"}


class DeidSkippedWarning(HarmonizeWarning):
    """A folder given to :func:`deidentify` held inputs that are not in the export.

    Emitted only when the caller passes no ``skipped`` list to receive them.
    """


# --------------------------------------------------------------------------- keys


def _key_bytes(key: bytes | str | None) -> bytes:
    if key is None:
        return os.urandom(32)
    data = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if not data:
        raise ValueError("key: must not be empty")
    return data


def _mac(key: bytes, purpose: str, value: str) -> bytes:
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def pseudonym(patient_id: str, key: bytes | str) -> str:
    """Keyed pseudonym of a patient id: ``ANON-`` + 12 hex digits of HMAC-SHA256.

    >>> pseudonym("12345", b"secret") == pseudonym("12345", b"secret")
    True
    >>> pseudonym("12345", b"secret") != pseudonym("12345", b"other")
    True
    """
    return "ANON-" + _mac(_key_bytes(key), "patient", str(patient_id)).hex()[:12].upper()


def date_offset(patient_id: str, key: bytes | str) -> timedelta:
    """The (negative) shift applied to every date and time of a patient, from the key.

    Between 365 and 3650 days back, plus a fraction of a day, to the microsecond-free second.
    """
    digest = _mac(_key_bytes(key), "date-offset", str(patient_id))
    days = _OFFSET_DAYS[0] + int.from_bytes(digest[:4], "big") % (_OFFSET_DAYS[1] - _OFFSET_DAYS[0])
    seconds = int.from_bytes(digest[4:8], "big") % 86400
    return -timedelta(days=days, seconds=seconds)


def _center_pseudonym(center: str, key: bytes) -> str:
    if center.strip().lower() in _NEUTRAL_CENTERS:
        return center
    return "CTR-" + _mac(key, "center", center).hex()[:8].upper()


def _new_uid(uid: str, key: bytes) -> str:
    return "2.25." + str(int.from_bytes(_mac(key, "uid", uid)[:16], "big"))


def _clean_name(name: str) -> bool:
    words = [w for w in re.split(r"[^a-z]+", name.lower()) if w]
    return bool(words) and all(w in _CLEAN_WORDS for w in words) and len(name) <= 64


# --------------------------------------------------------------------------- Annex E table


def _annex_e() -> tuple[dict[int, str], list[tuple[int, int, int, int, str]]]:
    from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as table

    exact: dict[int, str] = {}
    masked: list[tuple[int, int, int, int, str]] = []
    for name, action in (
        ("D_TAGS", "D"),
        ("Z_TAGS", "Z"),
        ("X_TAGS", "X"),
        ("U_TAGS", "U"),
        ("Z_D_TAGS", "Z"),
        ("X_Z_TAGS", "X"),
        ("X_D_TAGS", "X"),
        ("X_Z_D_TAGS", "X"),
        ("X_Z_U_STAR_TAGS", "XU"),
    ):
        for entry in getattr(table, name):
            if len(entry) == 2:
                exact[(int(entry[0]) << 16) | int(entry[1])] = action
            else:
                group, element, group_mask, element_mask = (int(v) for v in entry)
                masked.append((group, element, group_mask, element_mask, action))
    return exact, masked


_TABLE: tuple[dict[int, str], list[tuple[int, int, int, int, str]]] | None = None


def _action(tag: int) -> str | None:
    global _TABLE
    if _TABLE is None:
        _TABLE = _annex_e()
    exact, masked = _TABLE
    if tag in exact:
        return exact[tag]
    group, element = tag >> 16, tag & 0xFFFF
    for g, e, gm, em, action in masked:
        if (group & gm) == (g & gm) and (element & em) == (e & em):
            return action
    return None


# --------------------------------------------------------------------------- DICOM datasets


class _Shifter:
    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def datetime(self, value: str) -> str:
        text = str(value).strip()
        suffix = re.search(r"[+-]\d{4}$", text)
        return format_dt(parse_dt(text) + self.offset) + (suffix.group(0) if suffix else "")

    def date(self, value: str) -> str:
        return format_da(parse_da_tm(value, None) + timedelta(days=self.offset.days))

    def time(self, value: str) -> str:
        base = parse_da_tm("20000101", value)
        return format_tm(base + self.offset)

    def pair(self, date: str, time: str) -> tuple[str, str]:
        moved = parse_da_tm(date, time) + self.offset
        return format_da(moved), format_tm(moved)


def _shift_level(ds: Dataset, shifter: _Shifter) -> set[int]:
    """Shift the DA/TM pairs of one dataset level; return the tags handled."""
    done: set[int] = set()
    for element in list(ds):
        if element.VR != "DA" or not element.keyword.endswith("Date") or element.VM != 1:
            continue
        partner = element.keyword[:-4] + "Time"
        if partner not in ds or ds[partner].VR != "TM" or ds[partner].VM != 1:
            continue
        try:
            if element.value and ds[partner].value:
                element.value, ds[partner].value = shifter.pair(
                    str(element.value), str(ds[partner].value)
                )
            elif element.value:
                element.value = shifter.date(str(element.value))
            elif ds[partner].value:
                ds[partner].value = shifter.time(str(ds[partner].value))
        except ValueError:
            element.value, ds[partner].value = "", ""
        done |= {int(element.tag), int(ds[partner].tag)}
    return done


def _shift_value(element: DataElement, shifter: _Shifter) -> None:
    func: Callable[[str], str] = {"DA": shifter.date, "TM": shifter.time, "DT": shifter.datetime}[
        element.VR
    ]
    values = element.value if element.VM > 1 else [element.value]
    try:
        shifted = [func(str(v)) if str(v).strip() else "" for v in values]
        element.value = shifted if element.VM > 1 else shifted[0]
    except ValueError:
        element.value = ""


def _dummy(element: DataElement) -> None:
    vr = element.VR
    if vr == "SQ":
        element.value = DicomSequence()
    elif vr in ("US", "SS", "UL", "SL", "FL", "FD", "IS", "DS", "UV", "SV"):
        element.value = 0
    elif vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        element.value = b""
    elif vr == "PN":
        element.value = "ANONYMIZED"
    elif vr == "AS":
        element.value = ""
    else:
        element.value = "ANONYMIZED"


def _process_level(ds: Dataset, key: bytes, shifter: _Shifter, names: dict[str, str]) -> None:
    handled = _shift_level(ds, shifter)
    for element in list(ds):
        tag = int(element.tag)
        if element.tag.is_private:
            del ds[element.tag]
            continue
        if tag in (0x00100010, 0x00100020):  # PatientName, PatientID: set by the caller
            continue
        action = _action(tag)
        vr = element.VR
        if tag in _EXTRA_REMOVED or (action is None and vr in _FREE_TEXT_VRS):
            del ds[element.tag]
            continue
        if tag in _CLEAN_NAME_TAGS:
            if element.value:
                element.value = names.get(str(element.value), str(element.value))
            continue
        if vr in _DATE_VRS:
            if tag not in handled:
                _shift_value(element, shifter)
            continue
        if vr == "UN":
            del ds[element.tag]
            continue
        if vr == "UI":
            # every UID that is not a well-known DICOM UID is remapped, listed in the table or not
            values = element.value if element.VM > 1 else [element.value]
            mapped = [
                str(v) if str(v) in UID_dictionary or not str(v) else _new_uid(str(v), key)
                for v in values
            ]
            element.value = mapped if element.VM > 1 else mapped[0]
            continue
        if action == "X" or action == "XU":
            del ds[element.tag]
        elif action == "Z":
            element.value = (
                DicomSequence()
                if vr == "SQ"
                else ("" if vr not in ("US", "SS", "UL", "SL", "FL", "FD") else 0)
            )
        elif action == "D":
            _dummy(element)
        elif vr == "PN":
            element.value = ""
        elif vr == "SQ":
            for item in element.value:
                _process_level(item, key, shifter, names)


def _method_codes() -> DicomSequence:
    items = []
    for value, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
        ("113105", "Clean Descriptors Option"),
    ):
        code = Dataset()
        code.CodeValue = value
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = meaning
        items.append(code)
    return DicomSequence(items)


def deidentify_dataset(
    ds: Dataset,
    key: bytes | str,
    *,
    patient_id: str | None = None,
    voi_names: dict[str, str] | None = None,
) -> Dataset:
    """De-identify one DICOM dataset in place (see the module docstring) and return it.

    Parameters
    ----------
    ds : pydicom.Dataset
        The dataset (with its ``file_meta``).
    key : bytes or str
        The secret key.
    patient_id : str, optional
        Original patient id the pseudonym and date offset derive from (default: the
        dataset's ``PatientID``).
    voi_names : dict, optional
        Map of VOI names to their cleaned names (from :func:`_voi_name_map`); names not in
        it are kept.
    """
    key_bytes = _key_bytes(key)
    original = str(patient_id if patient_id is not None else ds.get("PatientID", "") or "")
    shifter = _Shifter(date_offset(original, key_bytes))
    ds.remove_private_tags()
    _process_level(ds, key_bytes, shifter, voi_names or {})
    alias = pseudonym(original, key_bytes)
    ds.PatientID = alias
    ds.PatientName = alias
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = f"harmonize: PS3.15 Annex E ({ANNEX_E_EDITION}) basic profile"
    ds.DeidentificationMethodCodeSequence = _method_codes()
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        for keyword in (
            "SourceApplicationEntityTitle",
            "SendingApplicationEntityTitle",
            "ReceivingApplicationEntityTitle",
            "PrivateInformation",
            "PrivateInformationCreatorUID",
        ):
            if keyword in meta:
                delattr(meta, keyword)
    return ds


def _voi_name_map(names: list[tuple[str, str]]) -> dict[str, str]:
    """Clean VOI names: ``(name, kind)`` → name kept if clean, else ``<kind>_<nn>``."""
    out: dict[str, str] = {}
    counters: dict[str, int] = {}
    taken = {n for n, _ in names if _clean_name(n)}
    for name, kind in names:
        if name in out:
            continue
        if _clean_name(name):
            out[name] = name
            continue
        while True:
            counters[kind] = counters.get(kind, 0) + 1
            candidate = f"{kind}_{counters[kind]:02d}"
            if candidate not in taken:
                break
        taken.add(candidate)
        out[name] = candidate
    return out


# --------------------------------------------------------------------------- Study / bundle


def deidentify_study(
    study: xr.Dataset, key: bytes | str, *, keep_center: bool = False
) -> xr.Dataset:
    """A de-identified copy of a Study (allow-listed attrs, pseudonym, shifted injection time)."""
    from harmonize.study import validate_study

    key_bytes = _key_bytes(key)
    original = str(study.attrs["patient_id"])
    out = study.copy()
    attrs = {k: v for k, v in study.attrs.items() if k in _BUNDLE_ATTRS}
    attrs["patient_id"] = pseudonym(original, key_bytes)
    injection = datetime.fromisoformat(str(study.attrs["injection_time"]))
    attrs["injection_time"] = (injection + date_offset(original, key_bytes)).isoformat()
    center = str(study.attrs.get("center", "unknown"))
    attrs["center"] = center if keep_center else _center_pseudonym(center, key_bytes)
    attrs["deidentified"] = f"harmonize.deid (PS3.15 Annex E {ANNEX_E_EDITION} principles)"
    out.attrs = attrs
    for name in list(out.variables):
        out[name].attrs = {k: v for k, v in out[name].attrs.items() if k in _VAR_ATTRS}
    names = _voi_name_map(
        [
            (str(n), str(k))
            for n, k in zip(study["voi_name"].values, study["voi_kind"].values, strict=True)
        ]
    )
    out = out.assign_coords(
        voi_name=("voi", np.array([names[str(n)] for n in study["voi_name"].values], dtype=object))
    )
    return validate_study(out)


# --------------------------------------------------------------------------- files and folders


def _deid_sidecar(
    sidecar: dict[str, Any],
    original: str,
    cycle: int,
    key: bytes,
    names: dict[str, str],
    keep_center: bool,
) -> dict[str, Any]:
    out = dict(sidecar)
    out["patient_id"] = pseudonym(original, key)
    out["cycle"] = int(cycle)
    if "injection_time" in out:
        moved = datetime.fromisoformat(out["injection_time"]) + date_offset(original, key)
        out["injection_time"] = moved.isoformat()
    if "center" in out and not keep_center:
        out["center"] = _center_pseudonym(str(out["center"]), key)
    if "vois" in out:
        out["vois"] = [
            {**v, "name": names.get(str(v["name"]), str(v["name"]))} for v in out["vois"]
        ]
    if "voi_rules" in out:
        out["voi_rules"] = [list(r) for r in out["voi_rules"]]
    for key_name in ("time_points", "labels", "ct"):
        out.pop(key_name, None)
    return out


def _roi_names(paths: list[Path], sidecar: dict[str, Any]) -> dict[str, str]:
    from harmonize.io.naming import classify_voi

    declared = {str(v["name"]): v.get("kind") for v in sidecar.get("vois", [])}
    found: list[tuple[str, str]] = []
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        labels = [str(i.get("ROIName", "")) for i in ds.get("StructureSetROISequence", [])]
        labels += [str(i.get("SegmentLabel", "")) for i in ds.get("SegmentSequence", [])]
        for label in labels:
            if not label:
                continue
            kind = declared.get(label)
            if kind is None:
                try:
                    kind = classify_voi(label, sidecar.get("voi_rules"))
                except StudyError:
                    kind = "voi"
            found.append((label, str(kind)))
    for name, kind in declared.items():
        found.append((name, str(kind or "voi")))
    return _voi_name_map(found)


def _deid_dicom_study(
    files: list[Path],
    original: str,
    cycle: int,
    sidecar: dict[str, Any],
    key: bytes,
    out: Path,
    keep_center: bool,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    names = _roi_names(files, sidecar)
    for n, path in enumerate(sorted(files)):
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:
            raise StudyError(
                f"{path}: corrupt or unreadable DICOM file: {type(exc).__name__}: {exc}"
            ) from None
        deidentify_dataset(ds, key, patient_id=original, voi_names=names)
        modality = str(ds.get("Modality", "OT")) or "OT"
        digest = hashlib.sha256(str(ds.get("SOPInstanceUID", n)).encode()).hexdigest()[:16]
        ds.save_as(out / f"{modality}_{digest}.dcm", enforce_file_format=True)
    side = _deid_sidecar(sidecar, original, cycle, key, names, keep_center)
    side.setdefault("format", "harmonize-sidecar")
    side.setdefault("version", 1)
    (out / "harmonize.json").write_text(json.dumps(side, indent=2), encoding="utf-8")


def _original_patient(files: list[Path], sidecar: dict[str, Any]) -> str:
    if sidecar.get("patient_id"):
        return str(sidecar["patient_id"])
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return str(ds.get("PatientID", "") or "")


def deidentify(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    key: bytes | str | None = None,
    overwrite: bool = False,
    keep_center: bool = False,
    skipped: list[SkippedInput] | None = None,
) -> Path:
    """De-identify a DICOM study folder, a cohort folder, or an exchange bundle.

    Parameters
    ----------
    in_path : path-like
        A study folder (DICOM, or an image folder), a cohort folder (any mix of DICOM
        studies in any layout, image folders and ``*.nc`` bundles, found by
        :func:`harmonize.open_cohort`), or one ``.nc`` bundle.
    out_path : path-like
        Output folder (or ``.nc`` file for a bundle input); readable by
        :func:`harmonize.open_study` / :func:`harmonize.open_cohort`.
    key : bytes or str, optional
        Secret key of the pseudonyms, date offsets and UIDs. The same key gives the same
        pseudonym to the same patient at every export. ``None`` draws a random key (the
        output is then not linkable to any other export).
    overwrite : bool, default False
        Replace an existing output.
    keep_center : bool, default False
        Keep the ``center`` attribute / sidecar key as it is instead of a pseudonym.
    skipped : list, optional
        Receives the :class:`harmonize.cohort.SkippedInput` entries of the input folder
        that are not in the export (see "Output layout" above). Without it they are
        reported by a :class:`DeidSkippedWarning`.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    harmonize.StudyError
        On unreadable input (naming the file); nothing is written then.
    harmonize.cohort.CohortError
        If the folder holds no study, or two studies of the same patient and cycle.
    FileExistsError
        If ``out_path`` exists and ``overwrite`` is false.
    """
    from harmonize.bundle import BUNDLE_SUFFIX, atomic_path, open_study, save_study
    from harmonize.cohort import open_cohort
    from harmonize.io.dicom_write import atomic_dir
    from harmonize.io.sidecar import SIDECAR_NAME, read_sidecar

    key_bytes = _key_bytes(key)
    source, target = Path(in_path), Path(out_path)
    if not source.exists():
        raise StudyError(f"{source}: no such file or folder")
    if source.resolve() == target.resolve() or source.resolve() in target.resolve().parents:
        raise ValueError(f"out_path: {target} must not be inside the input {source}")
    if source.is_file():
        study = open_study(source)
        clean = deidentify_study(study, key_bytes, keep_center=keep_center)
        with atomic_path(target, overwrite=overwrite) as tmp:
            save_study(clean, tmp, overwrite=True)
        return target
    if target.exists() and not overwrite:  # refused before the (slow) discovery
        raise FileExistsError(
            f"{target} already exists; pass --overwrite (overwrite=True in Python) to replace it"
        )
    # the one discovery of studies in a folder, shared with ``harmonize run``
    cohort = open_cohort(source)
    if cohort.unreadable:
        raise StudyError(
            "; ".join(str(reason) for _, reason in sorted(cohort.unreadable.items()))
            + f" ({len(cohort.unreadable)} unreadable bundle(s) in {source}: nothing written)"
        )
    corrupt = [s for s in cohort.skipped if s.kind == "unreadable"]
    if corrupt:  # the study it belongs to would be exported without it (and its CT, VOIs)
        raise StudyError(
            f"{source / corrupt[0].path}: {corrupt[0].reason}"
            + (f" (and {len(corrupt) - 1} more unreadable file(s))" if len(corrupt) > 1 else "")
            + "; nothing written"
        )
    left_out = list(cohort.skipped)
    image_folders = [s for s in cohort.paths.values() if isinstance(s, Path) and s.is_dir()]
    for folder in image_folders:
        left_out += _unreferenced_image_files(folder, source, read_sidecar)
    left_out.sort(key=lambda s: s.path)
    # one DICOM or image study: written flat (a study folder); otherwise one entry per study
    single = len(cohort.paths) == 1 and not any(
        isinstance(s, Path) and s.is_file() for s in cohort.paths.values()
    )
    mapping: dict[str, str] = {}
    with atomic_dir(target, overwrite=overwrite) as tmp:
        for (patient, cycle), study_source in cohort.paths.items():
            if isinstance(study_source, list):  # the files of one DICOM study
                files = list(study_source)
                common = Path(os.path.commonpath([p.parent for p in files]))
                sidecar = _nearest_sidecar_dict(common, source, read_sidecar, SIDECAR_NAME)
                original = _original_patient(files, sidecar) or patient
                alias = pseudonym(original, key_bytes)
                mapping[patient] = alias
                mapping[original] = alias
                out = tmp if single else tmp / f"{alias}_C{cycle}"
                _deid_dicom_study(files, original, cycle, sidecar, key_bytes, out, keep_center)
                if common != source and (common / _TRUTH).is_file():
                    _deid_truth(common / _TRUTH, out / _TRUTH, mapping, key_bytes)
                continue
            study = open_study(study_source)
            original = str(study.attrs["patient_id"])
            clean = deidentify_study(study, key_bytes, keep_center=keep_center)
            alias = str(clean.attrs["patient_id"])
            mapping[patient] = mapping[original] = alias
            name = f"{alias}_C{int(clean.attrs['cycle'])}"
            if study_source.is_dir():  # an image folder (NIfTI/MHA/NRRD + sidecar)
                _write_image_study(clean, tmp if single else tmp / name, study_source, read_sidecar)
            else:
                save_study(clean, tmp / f"{name}{BUNDLE_SUFFIX}")
        if (source / _TRUTH).is_file():
            _deid_truth(source / _TRUTH, tmp / _TRUTH, mapping, key_bytes)
    if skipped is not None:
        skipped.extend(left_out)
    elif left_out:
        warnings.warn(
            f"{source}: {len(left_out)} input(s) not de-identified (no study uses them), e.g. "
            + "; ".join(str(s) for s in left_out[:3])
            + " (pass skipped=[] to get the list)",
            DeidSkippedWarning,
            stacklevel=2,
        )
    return target


#: Image formats written for an image folder, by the suffix of its first time point.
_IMAGE_OUT_SUFFIX = {
    ".nii.gz": ".nii.gz",
    ".nii": ".nii",
    ".mha": ".mha",
    ".mhd": ".mha",
    ".nrrd": ".nrrd",
    ".nhdr": ".nrrd",
}


def _image_files(folder: Path, reader: Callable[[Path], dict[str, Any]]) -> list[str]:
    """The image file names an image folder's sidecar refers to (time points, labels, CT)."""
    sidecar = reader(folder)
    names = [str(t["file"]) for t in sidecar.get("time_points", []) if "file" in t]
    names += [str(sidecar[k]) for k in ("labels", "ct") if sidecar.get(k)]
    return names


def _write_image_study(
    clean: xr.Dataset, out: Path, folder: Path, reader: Callable[[Path], dict[str, Any]]
) -> None:
    """Write a de-identified Study as an image folder in the input folder's image format."""
    from harmonize.io.nifti import write_study_nifti

    first = next(iter(_image_files(folder, reader)), "").lower()
    suffix = next((v for k, v in _IMAGE_OUT_SUFFIX.items() if first.endswith(k)), ".nii.gz")
    write_study_nifti(clean, out, suffix=suffix, overwrite=out.exists())


def _unreferenced_image_files(
    folder: Path, root: Path, reader: Callable[[Path], dict[str, Any]]
) -> list[SkippedInput]:
    """Files of an image folder its sidecar does not refer to (the export re-writes the rest).

    A referenced header's data file (``x.mhd`` + ``x.raw``) shares its stem and belongs to it.
    """
    from harmonize.cohort import NOISE_FILES, SkippedInput

    def stem(relative: Path) -> tuple[str, str]:
        return relative.parent.as_posix(), relative.name.split(".", 1)[0]

    stems = {stem(Path(name)) for name in _image_files(folder, reader)}
    out = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (
            not path.is_file()
            or any(part.startswith(".") for part in relative.parts)
            or path.name.lower() in NOISE_FILES
            or stem(relative) in stems
        ):
            continue
        out.append(
            SkippedInput(
                path.relative_to(root).as_posix(),
                "image folder file",
                "not referred to by its folder's harmonize.json (time_points, labels, ct)",
            )
        )
    return out


def _deid_truth(source: Path, target: Path, mapping: dict[str, str], key: bytes) -> None:
    """Copy a phantom truth table with pseudonymous patient ids (other columns are numeric)."""
    table = pd.read_parquet(source)
    if "patient_id" in table.columns:
        table["patient_id"] = [
            mapping.get(str(p), pseudonym(str(p), key)) for p in table["patient_id"]
        ]
    table.attrs = {}
    table.to_parquet(target, index=False)


def _nearest_sidecar_dict(
    folder: Path, root: Path, reader: Callable[[Path], dict[str, Any]], name: str
) -> dict[str, Any]:
    folder, root = folder.resolve(), root.resolve()
    while True:
        if (folder / name).is_file():
            return reader(folder)
        if folder == root or root not in folder.parents:
            return {}
        folder = folder.parent
