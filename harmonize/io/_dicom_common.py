"""Small DICOM helpers shared by the readers, the writers and de-identification."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pydicom.valuerep import format_number_as_ds

from harmonize.nuclides import NuclideError, get_nuclide
from harmonize.study import StudyError

__all__ = [
    "deterministic_uid",
    "ds_values",
    "format_da",
    "format_dt",
    "format_tm",
    "is_dicom_file",
    "parse_da_tm",
    "parse_dt",
    "parse_radionuclide",
]

_NUCLIDE_PATTERNS = (
    # "Lu-177", "Lu177"
    re.compile(r"\b([A-Z][a-z]?)-?(\d{1,3}m?)\b"),
    # "177Lu", "^177^Lutetium", "177-Lu"
    re.compile(r"\^?(\d{1,3}m?)\^?-?([A-Z][a-z]?)"),
)


def deterministic_uid(*parts: object) -> str:
    """A valid DICOM UID that depends only on ``parts`` (pydicom's hash-based ``generate_uid``).

    >>> deterministic_uid("P001", 1, "study") == deterministic_uid("P001", 1, "study")
    True
    """
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def ds_values(values: Iterable[float]) -> list[str]:
    """Numbers formatted as valid DS strings (≤ 16 characters, as precise as that allows)."""
    return [format_number_as_ds(float(v)) for v in values]


def format_da(when: datetime) -> str:
    """DICOM DA (``YYYYMMDD``)."""
    return when.strftime("%Y%m%d")


def format_tm(when: datetime) -> str:
    """DICOM TM with microseconds (``HHMMSS.FFFFFF``)."""
    return when.strftime("%H%M%S.%f")


def format_dt(when: datetime) -> str:
    """DICOM DT with microseconds (``YYYYMMDDHHMMSS.FFFFFF``), no time-zone offset."""
    return when.strftime("%Y%m%d%H%M%S.%f")


def _parse_tm(value: str) -> timedelta:
    text = str(value).strip().replace(":", "")
    if not text:
        raise ValueError("empty TM")
    main, _, frac = text.partition(".")
    if not main.isdigit() or len(main) not in (2, 4, 6):
        raise ValueError(f"invalid TM {value!r}")
    hours = int(main[0:2])
    minutes = int(main[2:4]) if len(main) >= 4 else 0
    seconds = int(main[4:6]) if len(main) >= 6 else 0
    micro = int((frac + "000000")[:6]) if frac else 0
    return timedelta(hours=hours, minutes=minutes, seconds=seconds, microseconds=micro)


def parse_da_tm(date: str, time: str | None) -> datetime:
    """Combine DICOM DA and TM strings into a naive datetime (TM may be absent: midnight)."""
    text = str(date).strip().replace(".", "").replace("-", "")
    day = datetime.strptime(text, "%Y%m%d")
    return day + (_parse_tm(time) if time not in (None, "") else timedelta())


def parse_dt(value: str) -> datetime:
    """Parse a DICOM DT (time-zone suffix ignored: all times of a study share one clock)."""
    text = re.split(r"[+-]", str(value).strip(), maxsplit=1)[0]
    main, _, frac = text.partition(".")
    if len(main) < 8 or not main.isdigit():
        raise ValueError(f"invalid DT {value!r}")
    day = datetime.strptime(main[:8], "%Y%m%d")
    rest = main[8:]
    return day + (_parse_tm(rest + ("." + frac if frac else "")) if rest else timedelta())


def parse_radionuclide(texts: Sequence[str], half_life_s: float | None) -> str | None:
    """Name a radionuclide from free-text descriptions and/or its half-life.

    Tries every text (``"Lu-177"``, ``"177Lu-DOTATATE"``, ``"^177^Lutetium"``); when none
    parses, matches ``half_life_s`` against common therapy/imaging nuclides within 1 %.
    Returns ``None`` when nothing identifies the nuclide.

    >>> parse_radionuclide(["[177Lu]Lu-DOTATATE"], None)
    'Lu-177'
    """
    for text in texts:
        if not text:
            continue
        for n, pattern in enumerate(_NUCLIDE_PATTERNS):
            for match in pattern.finditer(str(text)):
                symbol, mass = (match.group(1), match.group(2))
                if n == 1:
                    symbol, mass = mass, symbol
                name = f"{symbol[:2]}-{mass}"
                for candidate in (name, f"{symbol[:1]}-{mass}"):
                    try:
                        get_nuclide(candidate)
                    except (NuclideError, ValueError, KeyError):
                        continue
                    return candidate
    if half_life_s is not None and half_life_s > 0:
        for candidate in ("Lu-177", "Y-90", "I-131", "Ho-166", "Tb-161", "Tc-99m", "In-111"):
            try:
                nuclide = get_nuclide(candidate)
            except (NuclideError, ValueError, KeyError):
                continue
            if abs(nuclide.half_life_h * 3600.0 / half_life_s - 1.0) < 0.01:
                return candidate
    return None


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` starts with the DICOM Part 10 preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_header(path: Path) -> Dataset:
    """Read a DICOM header (no pixel data); a clear StudyError naming the file otherwise."""
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise StudyError(
            f"{path}: corrupt or unreadable DICOM file: {type(exc).__name__}: {exc}"
        ) from None


def pixel_array(ds: Dataset, path: Path) -> np.ndarray:
    """The stored pixel values of a dataset read from ``path`` (StudyError naming the file)."""
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # truncated pixel data, unsupported transfer syntax, ...
        raise StudyError(
            f"{path}: cannot decode the pixel data: {type(exc).__name__}: {exc}"
        ) from None


def fingerprint(*parts: object, arrays: Sequence[np.ndarray] = ()) -> str:
    """A SHA-256 hex digest of ``parts`` and the bytes of ``arrays``."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
