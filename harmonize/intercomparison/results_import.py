"""Import a filled results template (CSV or XLSX) into the results schema.

:func:`import_results` reads the template and its method sheet, checks every cell against
the exercise package — identifiers known, every VOI of a reported study present exactly
once, VOI names matching, units converted or refused, numbers finite and in range — and
only then writes ``voi_dose``, ``patient_index`` (from :func:`harmonize.indices.
patient_index` with the cumulative rule the method sheet declares) and ``run`` (the method
sheet as provenance). A template with problems raises :class:`ResultsImportError` listing
every problem as ``FILE: row R, column C: what is wrong`` (spreadsheet row numbers) and
nothing is written.

Quantities the centre did not report are taken from the package where they are properties
of the shared VOI (volume; mass when ``mass_g`` is empty, flagged ``mass_from_package``),
and left null where they are the centre's own result (TIA, min/median/max, Dx).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonize.intercomparison.package import Package, open_package
from harmonize.intercomparison.template import (
    FIRST_DATA_ROW,
    METHOD_ITEMS,
    METHOD_SHEET,
    RESULTS_SHEET,
    TEMPLATE_COLUMNS,
    UNIT_ROW_MARK,
    UNITS,
)

__all__ = [
    "MAX_DOSE_GY",
    "ImportReport",
    "ResultsImportError",
    "import_results",
    "read_method_sheet",
    "read_template",
]

#: Largest absorbed dose accepted in a cell. Lesion doses of [177Lu]Lu-DOTATATE are tens to
#: a few hundred Gy per cycle (Hebert 2024 cumulative cutoff 91.4 Gy); 10 kGy is two orders
#: of magnitude above any plausible value, so only unit slips (mGy typed as Gy) and junk
#: are caught — a plausibility guard, not a clinical limit.
MAX_DOSE_GY = 1.0e4
#: Relative slack for the order checks (min <= mean <= max, ...): floating-point noise only
#: (rounding to printed digits is monotone and keeps the order).
_ORDER_RTOL = 1e-9
_KEYS = ["patient_id", "cycle", "voi_id"]
#: Workflow names reserved by harmonize.
_RESERVED = {"truth"}


class ResultsImportError(ValueError):
    """A filled template (or method sheet) with problems; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class ImportReport:
    """What an import wrote, and notes (e.g. studies of the package not reported)."""

    files: list[Path] = field(default_factory=list)
    n_rows: int = 0
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


# --------------------------------------------------------------------------- reading cells


def _blank(cells: pd.Series | pd.DataFrame) -> Any:
    """Vectorised :func:`_is_blank`: missing, NaN, or text of only spaces."""
    if isinstance(cells, pd.DataFrame):
        return cells.apply(_blank)  # column by column
    return cells.isna() | (cells.astype(str).str.strip() == "")


def _stripped(cells: pd.Series) -> pd.Series:
    """Cells as stripped text, "" for blanks."""
    return cells.astype(str).str.strip().where(~_blank(cells), "")


def _is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _grid_from_csv(path: Path) -> list[list[Any]]:
    try:
        frame = pd.read_csv(
            path,
            header=None,
            dtype=str,
            keep_default_na=False,
            encoding="utf-8-sig",
            skip_blank_lines=False,
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ResultsImportError([f"{path}: cannot be read as CSV: {exc}"]) from None
    except pd.errors.EmptyDataError:
        raise ResultsImportError([f"{path}: the file is empty"]) from None
    return frame.to_numpy(dtype=object).tolist()


def _grid_from_xlsx(path: Path, sheet: str, required: bool = True) -> list[list[Any]] | None:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types on a foreign or corrupt file
        raise ResultsImportError(
            [f"{path}: cannot be read as an XLSX workbook: {type(exc).__name__}: {exc}"]
        ) from None
    try:
        if sheet not in book.sheetnames:
            if not required:
                return None
            raise ResultsImportError(
                [f"{path}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})"]
            )
        return [list(row) for row in book[sheet].iter_rows(values_only=True)]
    finally:
        book.close()


def _frame(grid: list[list[Any]], where: str) -> tuple[pd.DataFrame, list[str]]:
    """Header + body of a cell grid (trailing empty columns and rows dropped)."""
    if not grid or all(_is_blank(v) for v in grid[0]):
        raise ResultsImportError([f"{where}: row 1 (the column names) is empty"])
    header = ["" if _is_blank(v) else str(v).strip() for v in grid[0]]
    while header and header[-1] == "":
        header.pop()
    width = len(header)
    body = [list(row[:width]) + [None] * (width - len(row[:width])) for row in grid[1:]]
    frame = pd.DataFrame(body, columns=range(width), dtype=object)
    frame.index = np.arange(2, 2 + len(frame))  # spreadsheet row numbers
    return frame, header


def read_template(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, list[str]]:
    """The raw cells of a filled results template (CSV or the XLSX sheet ``results``).

    Returns
    -------
    (pandas.DataFrame, list of str)
        Cells (object dtype, columns = positions, index = spreadsheet row numbers from 2)
        and the header names of row 1.
    """
    file = Path(path)
    if not file.is_file():
        raise ResultsImportError([f"{file}: no such file"])
    suffix = file.suffix.lower()
    if suffix == ".csv":
        grid = _grid_from_csv(file)
    elif suffix == ".xlsx":
        grid = _grid_from_xlsx(file, RESULTS_SHEET) or []
    else:
        raise ResultsImportError([f"{file}: expected a .csv or .xlsx results template"])
    frame, header = _frame(grid, str(file))
    if suffix == ".csv" and len(header) == 1 and ";" in header[0]:
        raise ResultsImportError(
            [f"{file}: row 1 is one column holding ';': save the CSV with ',' as separator"]
        )
    return frame, header


def read_method_sheet(
    template: str | os.PathLike[str], method_sheet: str | os.PathLike[str] | None = None
) -> tuple[dict[str, str], str]:
    """The method sheet's items → values, and where it was read from.

    For an XLSX template the sheet ``method`` of the same workbook (unless ``method_sheet``
    is given); for a CSV template ``method_sheet`` or else ``method_sheet.csv`` beside it.

    Raises
    ------
    ResultsImportError
        Naming the sheet, row and column: missing sheet, unknown item, an item given twice,
        a required item empty, an unknown cumulative rule, unreadable time points.
    """
    from harmonize import indices

    file = Path(template)
    grid: list[list[Any]] | None
    if method_sheet is not None:
        where = Path(method_sheet)
        if not where.is_file():
            raise ResultsImportError([f"{where}: no such method sheet"])
        grid = (
            _grid_from_xlsx(where, METHOD_SHEET)
            if where.suffix.lower() == ".xlsx"
            else _grid_from_csv(where)
        )
        label = str(where)
    elif file.suffix.lower() == ".xlsx":
        grid = _grid_from_xlsx(file, METHOD_SHEET)
        label = f"{file} (sheet {METHOD_SHEET!r})"
    else:
        where = file.parent / "method_sheet.csv"
        if not where.is_file():
            raise ResultsImportError(
                [
                    f"{file}: no method sheet: put the filled method_sheet.csv beside the "
                    "template or name it with --method-sheet"
                ]
            )
        grid = _grid_from_csv(where)
        label = str(where)
    frame, header = _frame(grid or [], label)
    problems: list[str] = []
    try:
        item_col, value_col = header.index("item"), header.index("value")
    except ValueError:
        raise ResultsImportError(
            [f"{label}: row 1: the method sheet needs the columns 'item' and 'value'"]
        ) from None
    known = {m.item: m for m in METHOD_ITEMS}
    values: dict[str, str] = {}
    rows: dict[str, int] = {}
    for row, (item, value) in zip(  # a dozen rows
        frame.index, frame[[item_col, value_col]].itertuples(index=False), strict=True
    ):
        if _is_blank(item):
            continue
        name = str(item).strip()
        if name not in known:
            problems.append(f"{label}: row {row}, column item: unknown item {name!r}")
            continue
        if name in values:
            problems.append(
                f"{label}: row {row}, column item: {name!r} is given twice (row {rows[name]})"
            )
            continue
        values[name], rows[name] = ("" if _is_blank(value) else str(value).strip()), int(row)
    for m in METHOD_ITEMS:
        if m.required and not values.get(m.item):
            where_row = f"row {rows[m.item]}" if m.item in rows else "no row"
            problems.append(
                f"{label}: {where_row}, column value: {m.item!r} is required ({m.description})"
            )
    from harmonize.schema import _PRIVATE_VALUE

    for name, value in values.items():  # results carry no dates or original identifiers
        if _PRIVATE_VALUE.search(value):
            problems.append(
                f"{label}: row {rows[name]}, column value: {name!r} looks like it holds a date "
                "or a DICOM UID; the method sheet becomes provenance and must not carry them"
            )
    rule = values.get("cumulative_rule")
    if rule and rule not in indices.CUMULATIVE_RULES:
        problems.append(
            f"{label}: row {rows['cumulative_rule']}, column value: cumulative_rule {rule!r} "
            f"is not one of {', '.join(indices.CUMULATIVE_RULES)}"
        )
    times = values.get("time_points_h")
    if times and _time_points(times) is None:
        problems.append(
            f"{label}: row {rows['time_points_h']}, column value: time_points_h {times!r} is "
            "not a ';'-separated list of hours >= 0"
        )
    if problems:
        raise ResultsImportError(problems)
    return values, label


def _time_points(text: str) -> list[float] | None:
    parts = [p for p in text.replace(",", ";").split(";") if p.strip()]
    try:
        hours = [float(p) for p in parts]
    except ValueError:
        return None
    if not hours or not all(math.isfinite(h) and h >= 0 for h in hours):
        return None
    return hours


# --------------------------------------------------------------------------- validation


def _number(cells: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse cells as numbers: (values, blank mask, not-a-number mask), vectorised."""
    blank = _blank(cells).astype(bool)
    is_date = cells.map(lambda v: hasattr(v, "year") and hasattr(v, "month")).astype(bool)
    text = cells.where(~blank, None).map(lambda v: v.strip() if isinstance(v, str) else v)
    values = pd.to_numeric(text.where(~is_date, "x"), errors="coerce").astype(np.float64)
    bad = ~blank & values.isna()
    return values, blank, bad


def _check_header(header: list[str], file: str) -> list[str]:
    names = {c.name for c in TEMPLATE_COLUMNS}
    problems = []
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        letter = _column_letter(position)
        if name == "":
            problems.append(f"{file}: row 1, column {letter}: empty column name")
        elif name not in names:
            problems.append(
                f"{file}: row 1, column {name}: unknown column (template columns: "
                f"{', '.join(c.name for c in TEMPLATE_COLUMNS)})"
            )
        elif name in seen:
            problems.append(f"{file}: row 1, column {name}: given twice")
        seen.setdefault(name, position)
    for c in TEMPLATE_COLUMNS:
        if c.required and c.name not in seen:
            problems.append(f"{file}: row 1, column {c.name}: required column missing")
    return problems


def _column_letter(position: int) -> str:
    letters = ""
    position += 1
    while position:
        position, rem = divmod(position - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def _check_units(units: pd.Series, header: list[str], file: str) -> tuple[dict, list[str]]:
    """Factors to the canonical units from the units row (row 2)."""
    problems: list[str] = []
    first = units.iloc[header.index("patient_id")]
    if _is_blank(first) or str(first).strip().lower() != UNIT_ROW_MARK:
        return {}, [
            f"{file}: row 2, column patient_id: expected the units row ({UNIT_ROW_MARK!r} "
            f"here, then the unit of each quantity column), got {first!r}"
        ]
    kinds = {c.name: c.kind for c in TEMPLATE_COLUMNS}
    factors: dict[str, float] = {}
    for position, name in enumerate(header):
        kind = kinds[name]
        cell = units.iloc[position]
        text = "" if _is_blank(cell) else str(cell).strip()
        if kind in UNITS:
            accepted = UNITS[kind]
            if text not in accepted:
                label = {"dose": "an absorbed dose", "tia": "a time-integrated activity"}.get(
                    kind, "a mass"
                )
                shown = repr(text) if text else "empty"
                problems.append(
                    f"{file}: row 2, column {name}: unit {shown} is not accepted for "
                    f"{label}; use one of {', '.join(accepted)}"
                )
            else:
                factors[name] = accepted[text]
        elif text and name != "patient_id":
            problems.append(
                f"{file}: row 2, column {name}: an identifier has no unit, got {text!r}"
            )
    return factors, problems


def _validate(
    frame: pd.DataFrame, header: list[str], package: Package, file: str
) -> tuple[pd.DataFrame, list[str]]:
    """Clean rows (canonical units) and the problems found; vectorised over rows."""
    problems = _check_header(header, file)
    if problems:
        return pd.DataFrame(), problems
    cells = frame.rename(columns=dict(enumerate(header)))
    if cells.empty:
        return pd.DataFrame(), [f"{file}: row 2: no units row and no results"]
    factors, problems = _check_units(cells.iloc[0], header, file)
    body = cells.iloc[1:]
    body = body[~_blank(body).all(axis=1)]  # fully empty rows are ignored
    if body.empty:
        return pd.DataFrame(), [*problems, f"{file}: row {FIRST_DATA_ROW}: no results"]
    out = pd.DataFrame(index=body.index)

    def report(mask: pd.Series, column: str, what: Any) -> None:
        for row in body.index[mask.to_numpy(bool)]:  # one message per bad cell
            text = what(row) if callable(what) else what
            problems.append(f"{file}: row {row}, column {column}: {text}")

    vois = package.vois
    patients = set(vois["patient_id"].astype(str))
    pid_blank = _blank(body["patient_id"]).astype(bool)
    out["patient_id"] = _stripped(body["patient_id"])
    report(pid_blank, "patient_id", "empty (required)")
    unknown_pid = ~pid_blank & ~out["patient_id"].isin(patients)
    listed = ", ".join(sorted(patients)[:6]) + (" ..." if len(patients) > 6 else "")
    report(
        unknown_pid,
        "patient_id",
        lambda r: f"patient {out.at[r, 'patient_id']!r} is not in the package ({listed})",
    )
    ok = ~pid_blank & ~unknown_pid
    for name in ("cycle", "voi_id"):
        values, blank, bad = _number(body[name])
        integral = values.notna() & (values == np.floor(values)) & (values >= 1)
        report(blank, name, "empty (required)")
        report(
            ~blank & ~integral,
            name,
            lambda r, n=name: (
                f"{body.at[r, n]!r} is not {'a cycle' if n == 'cycle' else 'a VOI'}"
                " number (an integer >= 1)"
            ),
        )
        out[name] = values.where(integral).astype("Int64")
        ok &= integral
    studies = vois.groupby("patient_id")["cycle"].unique()
    key_study = pd.MultiIndex.from_frame(vois[["patient_id", "cycle"]].astype({"cycle": int}))
    has_study = pd.Series(False, index=body.index)
    has_study[ok] = pd.MultiIndex.from_arrays(
        [out.loc[ok, "patient_id"], out.loc[ok, "cycle"].astype(int)]
    ).isin(key_study)
    report(
        ok & ~has_study,
        "cycle",
        lambda r: (
            f"the package has no cycle {out.at[r, 'cycle']} for patient "
            f"{out.at[r, 'patient_id']} (cycles: "
            f"{', '.join(str(c) for c in sorted(studies[out.at[r, 'patient_id']]))})"
        ),
    )
    ok &= has_study
    package_keys = vois.set_index(["patient_id", "cycle", "voi_id"])
    has_voi = pd.Series(False, index=body.index)
    rows_ok = out.loc[ok, _KEYS].astype({"cycle": int, "voi_id": int})
    has_voi[ok] = pd.MultiIndex.from_frame(rows_ok).isin(package_keys.index)
    report(
        ok & ~has_voi,
        "voi_id",
        lambda r: (
            f"patient {out.at[r, 'patient_id']} cycle {out.at[r, 'cycle']} has no VOI "
            f"{out.at[r, 'voi_id']} in the package (vois.csv)"
        ),
    )
    ok &= has_voi
    # duplicates among the identified rows: the later row is reported, naming the first
    keyed = out.loc[ok, _KEYS].astype({"cycle": int, "voi_id": int})
    dup = keyed.duplicated(keep="first")
    first_row = keyed.reset_index().groupby(_KEYS)["index"].transform("min")
    first_row.index = keyed.index
    report(
        pd.Series(dup, index=keyed.index).reindex(body.index, fill_value=False),
        "voi_id",
        lambda r: (
            f"duplicate row: patient {out.at[r, 'patient_id']}, cycle "
            f"{out.at[r, 'cycle']}, VOI {out.at[r, 'voi_id']} is already on row {first_row[r]}"
        ),
    )
    ok &= ~pd.Series(dup, index=keyed.index).reindex(body.index, fill_value=False)
    if "voi_name" in body.columns:
        given = _stripped(body["voi_name"]).replace("", None)
        names = package_keys["voi_name"]
        expected = pd.Series(None, index=body.index, dtype=object)
        idx = pd.MultiIndex.from_frame(out.loc[ok, _KEYS].astype({"cycle": int, "voi_id": int}))
        expected[ok] = names.reindex(idx).to_numpy()
        mismatch = ok & given.notna() & (given != expected)
        report(
            mismatch,
            "voi_name",
            lambda r: (
                f"{given[r]!r} is not the package's name {expected[r]!r} of VOI "
                f"{out.at[r, 'voi_id']}"
            ),
        )
    for c in TEMPLATE_COLUMNS:
        if c.kind not in UNITS or c.name not in body.columns:
            continue
        values, blank, bad = _number(body[c.name])
        if c.required:
            report(blank, c.name, "empty (required)")
        report(bad, c.name, lambda r, n=c.name: f"{body.at[r, n]!r} is not a number")
        finite = np.isfinite(values.to_numpy())
        report(~blank & ~bad & ~finite, c.name, "not a finite number")
        converted = values * factors.get(c.name, np.nan)
        if c.kind == "mass":
            out_of_range = converted.notna() & np.isfinite(converted) & (converted <= 0)
            report(out_of_range, c.name, lambda r, n=c.name: f"{body.at[r, n]!r}: must be > 0 g")
        elif c.kind == "tia":
            out_of_range = converted.notna() & np.isfinite(converted) & (converted < 0)
            report(out_of_range, c.name, lambda r, n=c.name: f"{body.at[r, n]!r}: must be >= 0")
        else:
            out_of_range = (
                converted.notna()
                & np.isfinite(converted)
                & ((converted < 0) | (converted > MAX_DOSE_GY))
            )
            report(
                out_of_range,
                c.name,
                lambda r, n=c.name: (
                    f"{body.at[r, n]!r}: an absorbed dose must be in [0, {MAX_DOSE_GY:g}] Gy"
                ),
            )
        out[c.name] = converted.where(np.isfinite(converted) & ~out_of_range)
    for low, high in (
        ("dose_min_gy", "dose_mean_gy"),
        ("dose_mean_gy", "dose_max_gy"),
        ("dose_min_gy", "dose_median_gy"),
        ("dose_median_gy", "dose_max_gy"),
        ("dose_d98_gy", "dose_d50_gy"),
        ("dose_d50_gy", "dose_d2_gy"),
        ("dose_min_gy", "dose_d98_gy"),
        ("dose_d2_gy", "dose_max_gy"),
    ):
        if low in out.columns and high in out.columns:
            a, b = out[low], out[high]
            wrong = a.notna() & b.notna() & (a > b * (1 + _ORDER_RTOL))
            report(wrong, high, lambda r, lo=low, hi=high: f"{hi} < {lo} on the same row")
    if not problems:  # completeness: every VOI of a reported study, found by an anti-join
        given_keys = out[_KEYS].astype({"cycle": int, "voi_id": int})
        studies_given = given_keys[["patient_id", "cycle"]].drop_duplicates()
        expected = package_keys.reset_index().merge(studies_given, on=["patient_id", "cycle"])
        joined = expected.merge(given_keys, on=_KEYS, how="left", indicator=True)
        missing = joined[joined["_merge"] == "left_only"].sort_values(_KEYS)
        for row in missing.itertuples(index=False):  # one message per missing VOI
            problems.append(
                f"{file}: no row, column voi_id: VOI {row.voi_id} ({row.voi_name}) of patient "
                f"{row.patient_id} cycle {row.cycle} is missing (every VOI of a reported study "
                "must be given once)"
            )
    out["row"] = out.index
    return out.reset_index(drop=True), problems


# --------------------------------------------------------------------------- tables


def _voi_dose(
    rows: pd.DataFrame, package: Package, workflow: str, method: dict[str, str]
) -> pd.DataFrame:
    vois = package.vois.astype({"cycle": int, "voi_id": int})
    table = rows.astype({"cycle": int, "voi_id": int}).merge(
        vois, on=_KEYS, how="left", suffixes=("_given", "")
    )
    mass_given = (
        table["mass_g_given"]
        if "mass_g_given" in table.columns
        else pd.Series(np.nan, index=table.index)
    )
    tia = (
        table["tia_mbq_h"].astype(np.float64)
        if "tia_mbq_h" in table.columns
        else pd.Series(np.nan, index=table.index)
    )
    n_points = len(_time_points(method["time_points_h"]) or [])
    flags = np.where(mass_given.isna(), "imported;mass_from_package", "imported")
    frame: dict[str, Any] = {
        "patient_id": table["patient_id"].astype(str),
        "cycle": table["cycle"].astype(np.int32),
        "center": table["center"].astype(str),
        "workflow": workflow,
        "workflow_version": method["software_version"],
        "voi_id": table["voi_id"].astype(np.int32),
        "voi_name": table["voi_name"].astype(str),
        "voi_kind": table["voi_kind"].astype(str),
        "parent_voi_id": pd.array(
            table["parent_voi_id"].where(table["parent_voi_id"] > 0), dtype="Int32"
        ),
        "volume_ml": table["volume_ml"].astype(np.float64),
        "mass_g": mass_given.fillna(table["mass_g"]).astype(np.float64),
        "tia_mbq_h": tia,
        "tia_coefficient_h": tia / table["injected_activity_mbq"].astype(np.float64),
        "tac_model": f"imported:{method['kinetic_model']}",
        "n_time_points": np.int32(n_points),
    }
    for c in TEMPLATE_COLUMNS:
        if c.kind == "dose":
            frame[c.name] = table[c.name].astype(np.float64) if c.name in table.columns else np.nan
    frame.update({"fit_r2": np.nan, "fit_aicc": np.nan, "recovery_coefficient": np.nan})
    frame["flags"] = flags
    return pd.DataFrame(frame)


def run_rows(
    voi_dose: pd.DataFrame,
    method: dict[str, str],
    input_sha256: str,
    extra: dict[str, Any],
) -> pd.DataFrame:
    """One ``run`` row per imported patient × cycle: the method sheet as parameters."""
    from harmonize import schema
    from harmonize.workflow import software_versions

    studies = voi_dose[["patient_id", "cycle", "workflow", "workflow_version", "center"]]
    studies = studies.drop_duplicates(["patient_id", "cycle"]).reset_index(drop=True)
    software = {**software_versions(), "centre_software": method["software"]}
    return studies.assign(
        schema_version=schema.SCHEMA_VERSION,
        parameters_json=json.dumps({**method, **extra}, sort_keys=True),
        overrides_json="{}",
        input_sha256=input_sha256,
        software_json=json.dumps(software, sort_keys=True),
    )


def _check_workflow(workflow: str) -> None:
    from harmonize.schema import _SAFE_NAME

    if not _SAFE_NAME.match(workflow) or workflow in _RESERVED:
        raise ResultsImportError(
            [
                f"--workflow: {workflow!r} is not a usable workflow name (letters, digits, "
                f"'.', '_', '+', '-'; not {', '.join(sorted(_RESERVED))})"
            ]
        )


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_imported(
    tables: dict[str, pd.DataFrame],
    out: Path,
    workflow: str,
    provenance: dict[str, Any],
    overwrite: bool,
) -> list[Path]:
    """Write the imported tables in one call (all validated before the first file)."""
    from harmonize import schema

    return schema.write_results(
        tables,
        out,
        metadata={"workflow": workflow, "import": provenance},
        basename=f"imported-{workflow}",
        overwrite=overwrite,
    )


def import_results(
    path: str | os.PathLike[str],
    workflow: str,
    package: str | os.PathLike[str] | Package,
    out: str | os.PathLike[str],
    *,
    method_sheet: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> ImportReport:
    """Validate a filled template against the package and write it as results tables.

    Parameters
    ----------
    path : path-like
        The filled template, ``.csv`` or ``.xlsx``.
    workflow : str
        Name under which the centre's results enter the dataset (e.g. ``centre_a``).
    package : path-like or Package
        The exercise package the centre received.
    out : path-like
        Results folder (created if needed; other workflows' files are left alone).
    method_sheet : path-like, optional
        The filled method sheet, when not the XLSX sheet ``method`` or ``method_sheet.csv``
        beside a CSV template.
    overwrite : bool, default False
        Replace this workflow's previously imported files when they differ.

    Returns
    -------
    ImportReport
        Files written, number of rows, notes, and the tables.

    Raises
    ------
    ResultsImportError
        Listing every problem as ``FILE: row R, column C: ...``; nothing is written.
    harmonize.intercomparison.PackageError
        If the package is missing files or was altered.
    """
    from harmonize import indices

    _check_workflow(workflow)
    pkg = package if isinstance(package, Package) else open_package(package)
    file = Path(path)
    frame, header = read_template(file)
    rows, problems = _validate(frame, header, pkg, str(file))
    method: dict[str, str] = {}
    try:
        method, _ = read_method_sheet(file, method_sheet)
    except ResultsImportError as exc:
        problems += exc.problems
    if problems:
        raise ResultsImportError(problems)
    voi_dose = _voi_dose(rows, pkg, workflow, method)
    patient_index = indices.patient_index(voi_dose, cumulative_rule=method["cumulative_rule"])
    sha = _file_sha256(file)
    provenance = {
        "source": "results template",
        "file_sha256": sha,
        "package_manifest_sha256": pkg.manifest_sha256,
        "method": method,
    }
    run = run_rows(voi_dose, method, sha, {"package_manifest_sha256": pkg.manifest_sha256})
    tables = {"voi_dose": voi_dose, "patient_index": patient_index, "run": run}
    files = write_imported(tables, Path(out), workflow, provenance, overwrite)
    reported = set(map(tuple, voi_dose[["patient_id", "cycle"]].drop_duplicates().to_numpy()))
    absent = [k for k in pkg.study_keys() if k not in reported]
    notes = []
    if absent:
        notes.append(
            f"{len(absent)} of {len(pkg.study_keys())} studies of the package not reported: "
            + ", ".join(f"{p} c{c}" for p, c in absent)
        )
    return ImportReport(files=files, n_rows=len(voi_dose), notes=notes, tables=tables)
