"""The ``clinical`` table: import a centre's CSV, check it, pseudonymise it, write it.

A centre exports one row per patient with its hospital patient ID. The importer

1. reads the CSV as text and checks it against the ``clinical`` table of the schema
   (columns, types, units in the column names, enumerations, ranges), and across fields:
   event times not beyond ``follow_up_months``, PFS not beyond OS, one row per patient;
2. replaces the patient ID by the keyed pseudonym :func:`harmonize.deid.pseudonym` — the
   same function and key that de-identified the images, so the rows join the dosimetry —
   and refuses rows whose pseudonym has no dosimetry in the results folder;
3. writes ``RESULTS/clinical/clinical.parquet`` atomically, or nothing at all.

Every problem is reported with the file, the line (1 = header) and the field; the original
patient ID is never echoed (messages, like the table, carry only the line number and the
pseudonym). Columns that would identify a patient (name, birth date, exact age, hospital
number, dates) are refused by name.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonize.outcomes.survival import OutcomesError

__all__ = [
    "CLINICAL_REQUIRED",
    "ClinicalError",
    "clinical_columns",
    "import_clinical",
    "validate_clinical",
    "write_clinical",
]

#: Columns a clinical CSV must have.
CLINICAL_REQUIRED = (
    "patient_id",
    "pfs_months",
    "pfs_event",
    "os_months",
    "os_event",
    "follow_up_months",
)
_IDENTIFYING = re.compile(
    r"(^|_)(name|surname|first_?name|last_?name|birth|dob|date|mrn|ssn|address|phone|"
    r"email|age|hospital_?id|record|accession|uid)($|_)"
)
_DATE = re.compile(
    r"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.](?:19|20)\d\d"
)
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


class ClinicalError(OutcomesError):
    """A clinical file that cannot be imported; ``problems`` lists one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def clinical_columns() -> dict[str, dict[str, Any]]:
    """The ``clinical`` columns of the schema document, by name."""
    from harmonize.schema import load_schema_document

    cols = load_schema_document()["tables"]["clinical"]["columns"]
    return {c["name"]: c for c in cols}


def _expected(spec: dict[str, Any]) -> str:
    unit = f" ({spec['unit']})" if spec["unit"] not in ("", "1") else ""
    if "enum" in spec:
        return f"one of {spec['enum']}"
    kind = {"float64": "a number", "int32": "an integer", "bool": "true/false or 1/0"}.get(
        spec["type"], "text"
    )
    bounds = ""
    if "minimum" in spec and "maximum" in spec:
        bounds = f" in [{spec['minimum']}, {spec['maximum']}]"
    elif "minimum" in spec:
        bounds = f" ≥ {spec['minimum']}"
    return f"{kind}{bounds}{unit}"


def _parse_column(text: pd.Series, spec: dict[str, Any]) -> tuple[pd.Series, np.ndarray]:
    """Parse a column of text cells (vectorised); return the values and the bad-cell mask.

    Empty cells are null (bad only when the column is not nullable).
    """
    text = text.astype(str).str.strip()
    empty = (text == "").to_numpy()
    kind = spec["type"]
    if kind == "bool":
        low = text.str.lower()
        is_true, is_false = low.isin(_TRUE).to_numpy(), low.isin(_FALSE).to_numpy()
        ok = is_true | is_false
        values = pd.Series(np.where(ok, is_true, None), index=text.index, dtype=object)
    elif kind in ("float64", "int32", "int64"):
        x = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(x)
        if kind != "float64":
            ok &= np.where(ok, x, 0.0) == np.round(np.where(ok, x, 0.0))
        if "minimum" in spec:
            ok &= np.where(ok, x, np.inf) >= spec["minimum"]
        if "maximum" in spec:
            ok &= np.where(ok, x, -np.inf) <= spec["maximum"]
        values = pd.Series(np.where(ok, x, np.nan), index=text.index)
    else:
        ok = np.ones(len(text), dtype=bool)
        if "enum" in spec:
            ok &= text.isin(spec["enum"]).to_numpy()
        if "pattern" in spec:
            ok &= text.str.contains(spec["pattern"], regex=True).to_numpy()
        ok &= ~text.str.contains(_DATE.pattern, regex=True).to_numpy()
        values = text.where(ok, None).astype(object)
    values = values.where(~empty, None) if values.dtype == object else values.where(~empty)
    bad = (~ok & ~empty) | (empty & (not spec["nullable"]))
    return values, bad


def validate_clinical(
    raw: pd.DataFrame,
    *,
    source: str,
    key: bytes | str | None = None,
    known_patients: set[str] | None = None,
) -> pd.DataFrame:
    """Check a clinical table read as text and return the typed, pseudonymised rows.

    Parameters
    ----------
    raw : pandas.DataFrame
        The CSV read with ``dtype=str`` and ``keep_default_na=False`` (one row per line after
        the header).
    source : str
        File name used in the messages.
    key : bytes or str, optional
        Pseudonymisation key; ``patient_id`` is replaced by ``harmonize.deid.pseudonym``.
        Without a key the ids are taken as pseudonyms already (a synthetic cohort).
    known_patients : set of str, optional
        Pseudonyms that have dosimetry; rows of other patients are refused.

    Returns
    -------
    pandas.DataFrame
        Rows of the ``clinical`` table.

    Raises
    ------
    ClinicalError
        Listing every problem, one message each.
    """
    columns = clinical_columns()
    problems: list[str] = []
    header = [str(c).strip() for c in raw.columns]
    raw = raw.set_axis(header, axis=1)
    identifying = [c for c in header if c not in columns and _IDENTIFYING.search(c.lower())]
    for col in identifying:
        problems.append(
            f"{source}: column {col!r} would identify a patient and is not accepted "
            "(give age as age_band, times in months from the start of cycle 1, no dates)"
        )
    unknown = [c for c in header if c not in columns and c not in identifying]
    if unknown:
        problems.append(
            f"{source}: unknown column(s) {unknown}; the clinical table has {list(columns)}"
        )
    missing = [c for c in CLINICAL_REQUIRED if c not in header]
    if missing:
        problems.append(f"{source}: missing required column(s) {missing}")
    if raw.columns.has_duplicates:
        problems.append(
            f"{source}: duplicate column names {sorted(set(raw.columns[raw.columns.duplicated()]))}"
        )
    if problems:
        raise ClinicalError(problems)
    if raw.empty:
        raise ClinicalError([f"{source}: no data rows"])

    found: list[tuple[int, str]] = []  # (line, message), sorted by line at the end
    lines = np.arange(len(raw)) + 2
    values, failed = {}, {}
    for col in header:
        values[col], failed[col] = _parse_column(raw[col], columns[col])
        for k in np.flatnonzero(failed[col]):
            text = str(raw[col].iloc[k]).strip()
            shown = "(empty)" if text == "" else ("a value" if col == "patient_id" else repr(text))
            found.append(
                (
                    int(lines[k]),
                    f"{source}: line {lines[k]}, field {col!r}: expected "
                    f"{_expected(columns[col])}, got {shown}",
                )
            )
    frame = pd.DataFrame(values)
    found += _cross_field(frame, pd.DataFrame(failed), lines, source)

    ids = frame["patient_id"]
    if key is not None:
        from harmonize.deid import pseudonym

        ids = ids.map(lambda v: None if v is None else pseudonym(str(v), key))
    given = ids.notna().to_numpy()
    first_line = pd.Series(lines, index=ids.index).groupby(ids).transform("first")
    for k in np.flatnonzero(given & ids.duplicated(keep="first").to_numpy()):
        found.append(
            (
                int(lines[k]),
                f"{source}: line {lines[k]}, field 'patient_id': the same patient as line "
                f"{int(first_line.iloc[k])} (one row per patient)",
            )
        )
    if known_patients is not None:
        for k in np.flatnonzero(given & ~ids.isin(known_patients).to_numpy()):
            found.append(
                (
                    int(lines[k]),
                    f"{source}: line {lines[k]}, field 'patient_id': patient {ids.iloc[k]} has "
                    "no dosimetry in the results (wrong key, or a patient not in this cohort)",
                )
            )
    problems += [text for _, text in sorted(found, key=lambda item: item[0])]
    if problems:
        raise ClinicalError(problems)
    frame["patient_id"] = ids
    return frame


def _cross_field(
    frame: pd.DataFrame, failed: pd.DataFrame, lines: np.ndarray, source: str
) -> list[tuple[int, str]]:
    """Checks between fields, on rows whose fields parsed (a bad cell is reported once)."""
    problems: list[tuple[int, str]] = []
    pairs = [
        ("pfs_months", "follow_up_months", "an event time must not exceed the follow-up"),
        ("os_months", "follow_up_months", "an event time must not exceed the follow-up"),
        ("pfs_months", "os_months", "progression-free survival must not exceed overall survival"),
    ]
    for a, b, why in pairs:
        if a not in frame or b not in frame:
            continue
        x = pd.to_numeric(frame[a], errors="coerce")
        y = pd.to_numeric(frame[b], errors="coerce")
        bad = ((x > y + 1e-9) & ~failed[a] & ~failed[b]).to_numpy()
        for line, xa, yb in zip(lines[bad], x[bad], y[bad], strict=True):
            text = f"{source}: line {line}, field {a!r}: {xa:g} > {b} {yb:g} ({why})"
            problems.append((int(line), text))
    for time_col, event_col in (("pfs_months", "pfs_event"), ("os_months", "os_event")):
        if time_col in frame and event_col in frame:
            half = (frame[time_col].isna() != frame[event_col].isna()) & ~(
                failed[time_col] | failed[event_col]
            )
            for line in lines[half.to_numpy()]:
                text = f"{source}: line {line}, fields {time_col!r}/{event_col!r}: give both or neither"
                problems.append((int(line), text))
    return problems


def write_clinical(
    frame: pd.DataFrame,
    results_dir: str | os.PathLike[str],
    *,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``RESULTS/clinical/clinical.parquet`` (schema-validated, atomic).

    Raises
    ------
    FileExistsError
        If the file exists with other content and ``overwrite`` is false.
    """
    from harmonize.schema import write_table

    target = Path(results_dir) / "clinical" / "clinical.parquet"
    return write_table(frame, target, "clinical", metadata or {}, overwrite=overwrite)


def _known_patients(results_dir: Path) -> set[str]:
    from harmonize.schema import read_results

    if not results_dir.is_dir():
        raise OutcomesError(f"--out: results folder {results_dir} does not exist")
    if not (results_dir / "patient_index").is_dir():
        raise OutcomesError(
            f"--out: {results_dir} holds no patient_index table (run 'harmonize run' first)"
        )
    table = read_results(results_dir, tables=["patient_index"])["patient_index"]
    return set(table["patient_id"].astype(str))


def import_clinical(
    csv_path: str | os.PathLike[str],
    key: bytes | str,
    results_dir: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Check, pseudonymise and write a clinical CSV into a results folder (module docstring).

    Parameters
    ----------
    csv_path : path-like
        The centre's CSV (UTF-8, comma-separated, header line).
    key : bytes or str
        The secret pseudonymisation key that de-identified the images.
    results_dir : path-like
        The results folder holding the cohort's ``patient_index``.
    overwrite : bool
        Replace an existing clinical table with different content.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ClinicalError
        The file's problems, one message each; nothing is written.
    """
    path = Path(csv_path)
    results = Path(results_dir)
    if not path.is_file():
        raise ClinicalError([f"{path}: no such file"])
    data = path.read_bytes()
    try:
        from io import StringIO

        raw = pd.read_csv(
            StringIO(data.decode("utf-8-sig")),
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=True,
        )
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ClinicalError([f"{path}: not a readable UTF-8 CSV file ({exc})"]) from None
    known = _known_patients(results)
    frame = validate_clinical(raw, source=str(path), key=key, known_patients=known)
    meta = {
        "source": "harmonize clinical import",
        "pseudonym": "harmonize.deid.pseudonym (keyed HMAC-SHA256)",
        "input_sha256": hashlib.sha256(data).hexdigest(),
        "n_patients": len(frame),
    }
    return write_clinical(frame, results, metadata=meta, overwrite=overwrite)
