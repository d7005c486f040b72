"""Organ-level dose from a user-supplied S-value table: ``D(target) = Σ_source TIA·S``.

Published organ S-value tables (OLINDA, OpenDose, ICRP 133) are not redistributable here,
so the table is a CSV the user provides, one row per (source, target) pair::

    source,target,s_value,unit
    Kidneys,Kidneys,1.37e-4,mGy/(MBq·s)
    Liver,Kidneys,3.1e-15,Gy/(Bq·s)

Accepted units (spaces ignored; "·", "*" and "." all mean a product; "mGy/MBq/s" also works):
mGy/(MBq·s), Gy/(Bq·s), mGy/(MBq·h), Gy/(Bq·h), µGy/(MBq·s) (or uGy), and the MIRD 11 unit
rad/(µCi·h). Values are converted to mGy/(MBq·s) in the column ``s_mgy_per_mbq_s``.

Examples
--------
>>> import io
>>> from harmonize import dose
>>> csv = "source,target,s_value,unit\\nKidneys,Kidneys,1e-4,mGy/(MBq·s)\\n"
>>> s = dose.read_organ_s_table(io.StringIO(csv))
>>> round(dose.organ_dose({"Kidneys": 1000.0}, s, target="Kidneys"), 3)   # Gy
0.36
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Literal

import numpy as np

from harmonize.dose._common import SECONDS_PER_HOUR, DoseInputError

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = ["OrganSTableError", "organ_dose", "organ_doses", "read_organ_s_table"]

_REQUIRED = ("source", "target", "s_value", "unit")
#: 1 rad = 10 mGy; 1 µCi = 0.037 MBq (exact definitions).
_RAD_TO_MGY = 10.0
_UCI_TO_MBQ = 0.037
#: unit (normalised) -> factor to mGy/(MBq·s)
_UNIT_FACTORS: dict[str, float] = {
    "mgy/(mbq·s)": 1.0,
    "mgy/mbq/s": 1.0,
    "gy/(bq·s)": 1e3 * 1e6,
    "gy/bq/s": 1e3 * 1e6,
    "mgy/(mbq·h)": 1.0 / SECONDS_PER_HOUR,
    "mgy/mbq/h": 1.0 / SECONDS_PER_HOUR,
    "gy/(bq·h)": 1e9 / SECONDS_PER_HOUR,
    "gy/bq/h": 1e9 / SECONDS_PER_HOUR,
    "µgy/(mbq·s)": 1e-3,
    "ugy/(mbq·s)": 1e-3,
    "rad/(µci·h)": _RAD_TO_MGY / (_UCI_TO_MBQ * SECONDS_PER_HOUR),
    "rad/(uci·h)": _RAD_TO_MGY / (_UCI_TO_MBQ * SECONDS_PER_HOUR),
}


class OrganSTableError(DoseInputError):
    """An organ S-value table is malformed (message names the file, row and column)."""


def _normalise_unit(unit: str) -> str:
    u = re.sub(r"\s+", "", str(unit)).lower()
    u = u.replace("μ", "µ").replace("*", "·").replace("⋅", "·").replace(".", "·")
    return u


def read_organ_s_table(path: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """Read and validate an organ S-value CSV.

    Parameters
    ----------
    path : path or text buffer
        CSV with columns ``source, target, s_value, unit`` (extra columns are kept).

    Returns
    -------
    pandas.DataFrame
        The table plus ``s_mgy_per_mbq_s`` (float), one row per (source, target).

    Raises
    ------
    OrganSTableError
        Missing columns, empty names, non-numeric or negative values, unknown units or
        duplicate (source, target) pairs — naming the file, the CSV line and the column.
    FileNotFoundError
        If the file does not exist.
    """
    label = getattr(path, "name", None) or (
        str(path) if isinstance(path, (str, os.PathLike)) else "<buffer>"
    )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError as exc:
        raise OrganSTableError(f"{label}: the file is empty") from exc
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise OrganSTableError(
            f"{label}: missing column(s) {missing}; expected {list(_REQUIRED)}, "
            f"found {list(table.columns)}"
        )
    if table.empty:
        raise OrganSTableError(f"{label}: the table has no rows")
    line = np.arange(len(table)) + 2  # CSV line numbers (header is line 1)
    for col in ("source", "target"):
        table[col] = table[col].str.strip()
        bad = table[col] == ""
        if bad.any():
            raise OrganSTableError(f"{label}: line {line[bad.to_numpy()][0]}: empty '{col}'")
    values = pd.to_numeric(table["s_value"].str.strip(), errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise OrganSTableError(
            f"{label}: line {line[i]}, column 's_value': expected a number >= 0, "
            f"got {table['s_value'].iloc[i]!r}"
        )
    units = table["unit"].map(_normalise_unit)
    factor = units.map(_UNIT_FACTORS).to_numpy(dtype=float)
    if np.isnan(factor).any():
        i = int(np.flatnonzero(np.isnan(factor))[0])
        raise OrganSTableError(
            f"{label}: line {line[i]}, column 'unit': unknown unit {table['unit'].iloc[i]!r}; "
            f"accepted: mGy/(MBq·s), Gy/(Bq·s), mGy/(MBq·h), Gy/(Bq·h), µGy/(MBq·s), rad/(µCi·h)"
        )
    dup = table.duplicated(["source", "target"], keep=False).to_numpy()
    if dup.any():
        raise OrganSTableError(
            f"{label}: duplicate (source, target) pairs on lines {line[dup].tolist()}"
        )
    table["s_value"] = values
    table["s_mgy_per_mbq_s"] = values * factor
    table.attrs["source_file"] = label
    return table


def _tia_series(tia_by_source_mbq_h: Mapping[str, float] | pd.Series) -> pd.Series:
    tia = pd.Series(tia_by_source_mbq_h, dtype=float)
    if tia.empty:
        raise DoseInputError("tia_by_source_mbq_h is empty")
    if not np.all(np.isfinite(tia.to_numpy())) or (tia < 0).any():
        raise DoseInputError(f"tia_by_source_mbq_h must be finite and >= 0, got {tia.to_dict()}")
    return tia


def _check_table(s_table: pd.DataFrame) -> None:
    if not isinstance(s_table, pd.DataFrame) or "s_mgy_per_mbq_s" not in s_table.columns:
        raise DoseInputError("s_table must be a DataFrame from read_organ_s_table")


def _doses(tia: pd.Series, s_table: pd.DataFrame, targets: list[str], missing: str) -> pd.Series:
    if missing not in ("raise", "zero"):
        raise DoseInputError(f"missing must be 'raise' or 'zero', got {missing!r}")
    unknown = sorted(set(tia.index) - set(s_table["source"]))
    if unknown:
        raise DoseInputError(
            f"sources {unknown} are not in the S table; its sources are "
            f"{sorted(set(s_table['source']))}"
        )
    matrix = s_table.pivot(index="target", columns="source", values="s_mgy_per_mbq_s")
    matrix = matrix.reindex(index=targets, columns=tia.index)
    if missing == "raise" and matrix.isna().to_numpy().any():
        rows, cols = np.nonzero(matrix.isna().to_numpy())
        pairs = [f"{matrix.columns[c]}->{matrix.index[r]}" for r, c in zip(rows, cols, strict=True)]
        raise DoseInputError(
            f"S table lacks (source->target) pairs {pairs[:10]}; add them or pass missing='zero'"
        )
    mgy = matrix.fillna(0.0).to_numpy() @ tia.to_numpy() * SECONDS_PER_HOUR
    return pd.Series(mgy * 1e-3, index=matrix.index, name="dose_gy")


def organ_doses(
    tia_by_source_mbq_h: Mapping[str, float] | pd.Series,
    s_table: pd.DataFrame,
    *,
    missing: Literal["raise", "zero"] = "raise",
) -> pd.Series:
    """Dose (Gy) to every target of the table: ``D(t) = Σ_s TIA(s)·S(s→t)``.

    Parameters
    ----------
    tia_by_source_mbq_h : mapping or Series
        Time-integrated activity per source region, MBq·h.
    s_table : DataFrame
        From :func:`read_organ_s_table`.
    missing : {"raise", "zero"}
        What to do when the table lacks a (source, target) pair for a source with TIA:
        raise (default) or count it as zero cross-dose.

    Returns
    -------
    pandas.Series
        Dose in Gy indexed by target.
    """
    _check_table(s_table)
    tia = _tia_series(tia_by_source_mbq_h)
    return _doses(tia, s_table, sorted(set(s_table["target"])), missing)


def organ_dose(
    tia_by_source_mbq_h: Mapping[str, float] | pd.Series,
    s_table: pd.DataFrame,
    target: str,
    *,
    missing: Literal["raise", "zero"] = "raise",
) -> float:
    """Dose (Gy) to one target region: ``Σ_s TIA(s)·S(s→target)`` (see :func:`organ_doses`)."""
    _check_table(s_table)
    if target not in set(s_table["target"]):
        raise DoseInputError(
            f"target {target!r} is not in the S table; targets are {sorted(set(s_table['target']))}"
        )
    tia = _tia_series(tia_by_source_mbq_h)
    return float(_doses(tia, s_table, [target], missing).iloc[0])
