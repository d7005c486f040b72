"""Units, radionuclides and vendor quirks of emission DICOM, in one documented place.

Units (``Units`` (0054,1001), PS3.3 C.8.9.1.1.3 defined terms)
--------------------------------------------------------------
==============  ==========================================================================
``Units``       what harmonize does
==============  ==========================================================================
BQML            Bq/mL as they are (Siemens xSPECT Quant, GE Q.Metrix "BQML" exports,
                Mediso, PET of every vendor)
CNTS            counts: converted with the camera sensitivity ``calibration_cps_per_MBq``
                and the acquisition duration (see :func:`counts_to_bq_ml`); Philips PET
                CNTS with the private *Activity Concentration Scale Factor* (7053,1009)
                (Philips PET/CT DICOM Conformance Statements, private group "Philips PET
                Private Group") becomes Bq/mL by that factor
CPS             counts per second: as CNTS without the duration
anything else   refused, naming the unit: PROPCPS/PROPCNTS (GE: proportional to counts,
                scaled), GML (SUV), CM2ML, PCNT, NONE, ... are not activity
==============  ==========================================================================

A Real World Value Mapping (``RealWorldValueMappingSequence``, top level or shared
functional group) with units ``Bq/ml`` or ``{counts}`` (UCUM) gives the same two cases.

Acquisition duration for counts
-------------------------------
``acquisition_duration_s`` of the sidecar, else Σ ``ActualFrameDuration`` ×
``NumberOfFramesInRotation`` over the ``RotationInformationSequence`` (NM, PS3.3 C.8.4.12),
else PET ``ActualFrameDuration``, else — GE StarGuide, which writes no rotation
information — a duration written in ``ImageComments`` as ``<number> s``/``sec``/``min``
(layout **assumed** from the issue report; no public conformance statement was found).

Injected activity
-----------------
``RadionuclideTotalDose`` (0018,1074) is in MBq in the NM Isotope Module (PS3.3 C.8.4.10)
and in Bq in the PET Isotope Module (PS3.3 C.8.9.2); vendors mix them. A value ≥ 10⁶ is
read as Bq and one below 10⁵ as MBq (an administered activity lies between 1 MBq and
100 GBq, so the two readings never overlap); when the reading differs from the module's
documented unit a :class:`VendorWarning` names the tag. Values in between are refused.

Radionuclide
------------
From the code value of ``RadionuclideCodeSequence`` (DICOM PS3.16 CID 18 and CID 4020,
SNOMED CT codes), else from any text: code meaning ``^177^Lutetium``, ``Lu-177``, ``LU177``,
``177Lu``, ``Lutetium-177``, ``Tc99m``; element names from :mod:`periodictable`, nuclides
from :mod:`radioactivedecay` (every nuclide it knows). Else from ``RadionuclideHalfLife``
(1 % match among the nuclides of :data:`HALF_LIFE_CANDIDATES`).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from harmonize._warnings import HarmonizeWarning
from harmonize.study import StudyError

__all__ = [
    "HALF_LIFE_CANDIDATES",
    "NUCLIDE_CODES",
    "UNIT_TERMS",
    "VendorWarning",
    "identify_radionuclide",
    "injected_activity_mbq",
    "units_of",
]


class VendorWarning(HarmonizeWarning):
    """A vendor quirk was interpreted (e.g. a dose in MBq where the standard says Bq)."""


#: DICOM ``Units`` defined terms (PS3.3 C.8.9.1.1.3) → harmonize unit, or the reason of refusal.
UNIT_TERMS: dict[str, str] = {
    "BQML": "Bq/mL",
    "CNTS": "counts",
    "COUNTS": "counts",
    "CPS": "cps",
}
_REFUSED_UNITS = {
    "PROPCPS": "proportional to counts per second (GE, scaled by an unknown factor)",
    "PROPCNTS": "proportional to counts (scaled by an unknown factor)",
    "GML": "SUV body-weight (g/mL)",
    "CM2ML": "SUV body-surface-area",
    "PCNT": "percent",
    "NONE": "unitless",
    "CM2": "cm²",
    "MLMING": "mL/min/g",
    "MGMINML": "mg/min/mL",
    "UMOLMINML": "µmol/min/mL",
    "MLG": "mL/g",
    "1CM": "1/cm",
    "UMOLML": "µmol/mL",
    "MLMINML": "mL/min/mL",
    "MLML": "mL/mL",
    "STDDEV": "standard deviations",
}

#: Code values of ``RadionuclideCodeSequence`` (DICOM PS3.16 CID 18 "Isotopes in
#: Radiopharmaceuticals" and CID 4020 "PET Radionuclide", SNOMED CT / SRT / DCM schemes).
NUCLIDE_CODES: dict[str, str] = {
    "77004003": "F-18",
    "C-111A1": "F-18",
    "14691008": "Y-90",
    "72454006": "Tc-99m",
    "56609000": "In-111",
    "21572004": "I-123",
    "68630002": "I-125",
    "1368003": "I-131",
    "447553000": "Lu-177",
    "87401005": "Pb-212",
    "47588004": "Pb-203",
    "24853006": "Ra-223",
    "32059002": "Ac-225",
    "60057003": "Tl-201",
    "419804008": "Sm-153",
    "395865006": "Re-186",
    "423578007": "Re-188",
    "7770004": "Sr-89",
}
#: Nuclides tried by half-life when no text or code names the nuclide.
HALF_LIFE_CANDIDATES = ("Lu-177", "Y-90", "I-131", "Ho-166", "Tb-161", "Tc-99m", "In-111", "F-18")

_MBQ_BELOW = 1e5  # a RadionuclideTotalDose under this is MBq (≤ 100 GBq)
_BQ_FROM = 1e6  # and from this on Bq (≥ 1 MBq)
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|min|mins|minutes?)\b", flags=re.IGNORECASE
)


@functools.lru_cache(maxsize=1)
def _element_symbols() -> dict[str, str]:
    import periodictable

    out = {}
    for element in periodictable.elements:
        if element.number > 0:
            out[element.name.lower()] = element.symbol
            out[element.symbol.lower()] = element.symbol
    out["aluminum"] = "Al"
    out["cesium"] = "Cs"
    return out


@functools.lru_cache(maxsize=1)
def _known_nuclides() -> frozenset[str]:
    import radioactivedecay as rd

    return frozenset(str(n) for n in rd.DEFAULTDATA.nuclides)


_TEXT_PATTERNS = (
    # ^177^Lutetium, 177Lu, 177-Lu, 99mTc, 177 Lutetium
    re.compile(r"\^?(\d{1,3})(m\d?)?\^?[\s\-_]*([A-Za-z]{1,12})"),
    # Lu-177, LU177, Lutetium-177, Tc99m, Tc-99m
    re.compile(r"([A-Za-z]{1,12})[\s\-_]*(\d{1,3})(m\d?)?"),
)


def _nuclide_from_text(text: str) -> str | None:
    symbols, known = _element_symbols(), _known_nuclides()
    for n, pattern in enumerate(_TEXT_PATTERNS):
        for match in pattern.finditer(text):
            if n == 0:
                mass, meta, word = match.group(1), match.group(2) or "", match.group(3)
            else:
                word, mass, meta = match.group(1), match.group(2), match.group(3) or ""
            candidates = [word.lower()]
            # "177Lu-DOTATATE" → "lu"; "LU177m" handled by the group; also trailing letters
            candidates += [word[:k].lower() for k in (2, 1) if len(word) > k]
            for candidate in candidates:
                symbol = symbols.get(candidate)
                if symbol is None:
                    continue
                name = f"{symbol}-{int(mass)}{meta.lower()}"
                if name in known:
                    return name
    return None


def identify_radionuclide(
    codes: Sequence[str], texts: Sequence[str], half_life_s: float | None
) -> str | None:
    """Name a radionuclide from code values, texts, or its half-life (see the module docstring).

    >>> identify_radionuclide([], ["^99m^Technetium"], None)
    'Tc-99m'
    >>> identify_radionuclide(["447553000"], [], None)
    'Lu-177'
    >>> identify_radionuclide([], ["LU177"], None)
    'Lu-177'
    """
    for code in codes:
        if str(code).strip() in NUCLIDE_CODES:
            return NUCLIDE_CODES[str(code).strip()]
    for text in texts:
        if text:
            found = _nuclide_from_text(str(text))
            if found:
                return found
    if half_life_s is not None and half_life_s > 0:
        from harmonize.nuclides import NuclideError, get_nuclide

        for candidate in HALF_LIFE_CANDIDATES:
            try:
                nuclide = get_nuclide(candidate)
            except NuclideError:
                continue
            if abs(nuclide.half_life_h * 3600.0 / half_life_s - 1.0) < 0.01:
                return candidate
    return None


def injected_activity_mbq(value: object, modality: str, path: Path) -> float | None:
    """``RadionuclideTotalDose`` in MBq, with the Bq/MBq rule of the module docstring."""
    if value in (None, ""):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StudyError(
            f"{path}: RadionuclideTotalDose: expected a number, got {value!r}"
        ) from None
    if number <= 0:
        return None
    documented = "MBq" if modality == "NM" else "Bq"
    if number >= _BQ_FROM:
        read = "Bq"
    elif number < _MBQ_BELOW:
        read = "MBq"
    else:
        raise StudyError(
            f"{path}: RadionuclideTotalDose = {number:g} is neither a plausible activity in Bq "
            f"(≥ {_BQ_FROM:g}) nor in MBq (< {_MBQ_BELOW:g}); give 'injected_activity_MBq' in "
            "harmonize.json"
        )
    if read != documented:
        warnings.warn(
            f"{path}: RadionuclideTotalDose = {number:g} read as {read} (the {modality} module "
            f"documents {documented}): {number / 1e6 if read == 'Bq' else number:g} MBq",
            VendorWarning,
            stacklevel=2,
        )
    return number / 1e6 if read == "Bq" else number


def _rwvm_items(ds: Dataset) -> list[Dataset]:
    items = list(ds.get("RealWorldValueMappingSequence") or [])
    for shared in ds.get("SharedFunctionalGroupsSequence") or []:
        for frame_item in shared.get("FrameVOILUTSequence") or []:
            items += list(frame_item.get("RealWorldValueMappingSequence") or [])
        items += list(shared.get("RealWorldValueMappingSequence") or [])
    return items


def units_of(ds: Dataset, path: Path) -> tuple[str | None, tuple[float, float] | None, float]:
    """(unit, mapping, factor) of an emission header.

    ``unit`` is ``"Bq/mL"``, ``"counts"``, ``"cps"`` or None; ``mapping`` the Real World
    Value Mapping (slope, intercept) when the unit comes from one (used when the file has
    no rescale); ``factor`` multiplies the rescaled values (the Philips PET Activity
    Concentration Scale Factor (7053,1009) for CNTS, else 1).

    Raises
    ------
    harmonize.StudyError
        For a unit that is not activity (naming the file, the tag and the unit).
    """
    term = str(ds.get("Units", "") or "").strip().upper()
    if term in _REFUSED_UNITS:
        raise StudyError(
            f"{path}: Units (0054,1001) = {term} ({_REFUSED_UNITS[term]}) is not activity: export "
            "the reconstruction in BQML, or in CNTS with 'calibration_cps_per_MBq' in harmonize.json"
        )
    if term == "CNTS" and str(ds.get("Manufacturer", "")).upper().startswith("PHILIPS"):
        factor = _philips_scale(ds)
        if factor is not None:
            return "Bq/mL", None, factor
    if term in UNIT_TERMS:
        return UNIT_TERMS[term], None, 1.0
    for mapping in _rwvm_items(ds):
        codes = [
            str(c.get("CodeValue", "")) for c in mapping.get("MeasurementUnitsCodeSequence", [])
        ]
        label = str(mapping.get("LUTLabel", "")).upper()
        factors = (
            float(mapping.get("RealWorldValueSlope", 1.0)),
            float(mapping.get("RealWorldValueIntercept", 0.0)),
        )
        if any(c.lower() == "bq/ml" for c in codes) or label == "BQML":
            return "Bq/mL", factors, 1.0
        if any(c.lower() in ("{counts}", "counts", "cnts") for c in codes):
            return "counts", factors, 1.0
    if term:
        raise StudyError(f"{path}: Units (0054,1001) = {term!r} is not a known unit of activity")
    return None, None, 1.0


def _philips_scale(ds: Dataset) -> float | None:
    block = None
    for group_tag in range(0x10, 0x100):
        creator = ds.get((0x7053, group_tag))
        if creator is not None and str(creator.value).strip() == "Philips PET Private Group":
            block = group_tag
            break
    if block is None:
        return None
    element = ds.get((0x7053, (block << 8) | 0x09))
    if element is None or element.value in (None, ""):
        return None
    value = element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").strip("\x00 ")
    try:
        factor = float(value)
    except (TypeError, ValueError):
        return None
    return factor if factor > 0 else None


def acquisition_duration_s(ds: Dataset) -> float | None:
    """The acquisition duration of an emission header (see the module docstring), or None."""
    total = 0.0
    for item in ds.get("RotationInformationSequence") or []:
        if item.get("ActualFrameDuration") and item.get("NumberOfFramesInRotation"):
            total += float(item.ActualFrameDuration) / 1000.0 * float(item.NumberOfFramesInRotation)
    if total > 0:
        return total
    if ds.get("ActualFrameDuration") and str(ds.get("Modality")) == "PT":
        return float(ds.ActualFrameDuration) / 1000.0
    if "STARGUIDE" in str(ds.get("ManufacturerModelName", "")).upper().replace(" ", ""):
        match = _DURATION.search(str(ds.get("ImageComments", "") or ""))
        if match:
            value = float(match.group(1))
            return value * 60.0 if match.group(2).lower().startswith("min") else value
    return None
