"""The common results schema: generated Arrow schemas and deterministic Parquet I/O.

Every table harmonize writes (``voi_dose``, ``patient_index``, ``tac``, ``agreement``,
``run``, ``dvh``, ``uncertainty``, ``clinical``) is described once, in the versioned JSON
document ``harmonize/data_schema/harmonize-results.schema.json``; :func:`arrow_schema` *generates* the
:class:`pyarrow.Schema` of a table from it, with the unit and description of every column in
the Arrow field metadata. ``data_schema/SPEC.md`` is the normative prose (MUST/SHOULD).

Files are written by :func:`write_table` / :func:`write_results`:

* atomically (a temporary file in the same directory, then :func:`os.replace`);
* deterministically (same frame and metadata give the same bytes: rows sorted by the primary
  key, fixed writer options, no timestamp anywhere);
* with one key ``harmonize`` in the Parquet key-value metadata, holding JSON with
  ``schema_version``, ``table`` and what the caller records (workflow, parameters,
  overrides, software versions, input hash);
* as hive-partitioned datasets (``OUT/voi_dose/workflow=montpellier/P001_c1.parquet``) with
  deterministic file names, so runs and centres merge without coordination and a re-run
  replaces its own files.

:func:`read_results` reads a results directory, one table directory or one file back into
pandas DataFrames and refuses files it cannot trust (newer major version, missing column,
wrong type, wrong unit, nulls where none are allowed, duplicate rows); unknown extra columns
and metadata keys are ignored. :func:`validate_path` returns the same problems as a list.

Examples
--------
>>> import tempfile, pathlib
>>> frames = example_frames()
>>> with tempfile.TemporaryDirectory() as tmp:
...     paths = write_results(frames, tmp, metadata={"workflow": "example"})
...     back = read_results(tmp)
>>> sorted(back) == sorted(frames)
True
>>> back["voi_dose"].equals(frames["voi_dose"])
True
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from harmonize._fs import write_bytes_atomic
from harmonize._warnings import HarmonizeWarning
from harmonize.errors import HarmonizeError

__all__ = [
    "EXAMPLE_METADATA",
    "FLAG_TOKENS",
    "METADATA_KEY",
    "PARQUET_WRITE_OPTIONS",
    "SCHEMA_DOCUMENT",
    "SCHEMA_VERSION",
    "SchemaError",
    "SchemaVersionError",
    "ZeroRowWarning",
    "arrow_schema",
    "example_frames",
    "load_schema_document",
    "read_results",
    "table_names",
    "to_arrow_table",
    "validate_path",
    "write_examples",
    "write_results",
    "write_table",
]

#: File name of the schema document inside the package ``harmonize.data_schema``.
SCHEMA_DOCUMENT = "harmonize-results.schema.json"

#: The one key harmonize writes in the Parquet key-value metadata.
METADATA_KEY = "harmonize"

#: Pinned Parquet writer options (determinism: same input, same bytes, for a given pyarrow).
PARQUET_WRITE_OPTIONS: dict[str, Any] = {
    "version": "2.6",
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "data_page_version": "1.0",
    "store_schema": True,
    "write_page_index": False,
    # CRC-32 of every data page, verified on read (a flipped bit → a named error)
    "write_page_checksum": True,
    "row_group_size": 1_048_576,
}

_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
# Privacy safety net (SPEC.md, "Privacy"): calendar dates and DICOM-UID-like strings.
_DATE_PATTERN = r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_UID_PATTERN = r"(?:^|[^\d.])\d+(?:\.\d+){5,}(?:$|[^\d.])"
_PRIVATE_VALUE = re.compile(f"{_DATE_PATTERN}|{_UID_PATTERN}")
_FORBIDDEN_KEYS = frozenset(
    {
        "patient_name",
        "patients_name",
        "patientname",
        "name_of_patient",
        "birth_date",
        "birthdate",
        "date_of_birth",
        "dob",
        "patient_birth_date",
        "patients_birth_date",
        "patientbirthdate",
        "original_id",
        "original_patient_id",
        "mrn",
        "medical_record_number",
        "accession_number",
        "study_instance_uid",
        "series_instance_uid",
        "sop_instance_uid",
        "study_date",
        "series_date",
        "acquisition_date",
        "content_date",
        "injection_time",
        "injection_datetime",
        "timestamp",
        "created",
        "started",
    }
)
_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())


class SchemaError(HarmonizeError, ValueError):
    """A table, frame or file does not conform to the harmonize results schema."""


class SchemaVersionError(SchemaError):
    """A file declares a schema major version this reader does not support."""


# --------------------------------------------------------------------------------------------
# The schema document and the generated Arrow schemas
# --------------------------------------------------------------------------------------------


@functools.cache
def _document_text() -> str:
    return files("harmonize.data_schema").joinpath(SCHEMA_DOCUMENT).read_text(encoding="utf-8")


def load_schema_document() -> dict[str, Any]:
    """Return the schema document (a fresh copy, safe to modify).

    Returns
    -------
    dict
        The parsed ``harmonize-results.schema.json``: ``schema_version``, ``metadata_key``,
        ``file_metadata_schema`` (a JSON Schema of the ``harmonize`` metadata value) and
        ``tables`` (table name -> description, primary key, default partitioning, columns;
        each column with ``name``, ``type``, ``nullable``, ``unit``, ``required``,
        ``description`` and optional ``enum``, ``pattern``, ``minimum``, ``maximum``).

    Examples
    --------
    >>> doc = load_schema_document()
    >>> doc["schema_version"] == SCHEMA_VERSION
    True
    >>> [c["unit"] for c in doc["tables"]["voi_dose"]["columns"] if c["name"] == "tia_mbq_h"]
    ['MBq·h']
    """
    return json.loads(_document_text())


#: Version of the schema this module reads and writes (SemVer).
SCHEMA_VERSION: str = load_schema_document()["schema_version"]


@dataclass(frozen=True)
class _Column:
    name: str
    type: pa.DataType
    nullable: bool
    unit: str
    required: bool
    description: str
    enum: tuple[str, ...] | None
    pattern: str | None
    minimum: float | None
    maximum: float | None


@dataclass(frozen=True)
class _Table:
    name: str
    columns: tuple[_Column, ...]
    primary_key: tuple[str, ...]
    partition_by: tuple[str, ...]

    def column(self, name: str) -> _Column:
        return next(c for c in self.columns if c.name == name)


_ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
}


@functools.cache
def _tables() -> dict[str, _Table]:
    doc = load_schema_document()
    out: dict[str, _Table] = {}
    for tname, tdoc in doc["tables"].items():
        cols = tuple(
            _Column(
                name=c["name"],
                type=_ARROW_TYPES[c["type"]],
                nullable=bool(c["nullable"]),
                unit=c["unit"],
                required=bool(c["required"]),
                description=c["description"],
                enum=tuple(c["enum"]) if "enum" in c else None,
                pattern=c.get("pattern"),
                minimum=c.get("minimum"),
                maximum=c.get("maximum"),
            )
            for c in tdoc["columns"]
        )
        out[tname] = _Table(tname, cols, tuple(tdoc["primary_key"]), tuple(tdoc["partition_by"]))
    return out


def table_names() -> tuple[str, ...]:
    """Return the names of the tables the schema defines, in document order.

    Examples
    --------
    >>> table_names()
    ('voi_dose', 'patient_index', 'tac', 'agreement', 'run', 'dvh', 'uncertainty', 'clinical')
    """
    return tuple(_tables())


def _table(name: str) -> _Table:
    try:
        return _tables()[name]
    except KeyError:
        raise SchemaError(
            f"unknown table {name!r}; the schema {SCHEMA_VERSION} defines {list(_tables())}"
        ) from None


def arrow_schema(table: str) -> pa.Schema:
    """Return the Arrow schema of a table, generated from the schema document.

    Parameters
    ----------
    table : str
        Table name, one of :func:`table_names`.

    Returns
    -------
    pyarrow.Schema
        One field per column, in document order, with ``nullable`` as declared and field
        metadata ``unit`` and ``description`` (UTF-8).

    Raises
    ------
    SchemaError
        If ``table`` is not defined by the schema.

    Examples
    --------
    >>> schema = arrow_schema("voi_dose")
    >>> schema.field("dose_mean_gy").type
    DataType(double)
    >>> schema.field("dose_mean_gy").metadata[b"unit"].decode()
    'Gy'
    """
    spec = _table(table)
    return pa.schema(
        [
            pa.field(
                c.name,
                c.type,
                nullable=c.nullable,
                metadata={"unit": c.unit, "description": c.description},
            )
            for c in spec.columns
        ]
    )


# --------------------------------------------------------------------------------------------
# DataFrame -> Arrow (coercion and validation)
# --------------------------------------------------------------------------------------------


def _row_hint(index: pd.Index, bad: np.ndarray) -> str:
    labels = list(index[bad][:5])
    more = " ..." if int(bad.sum()) > 5 else ""
    return f"{int(bad.sum())} row(s), index {labels}{more}"


def _coerce_column(series: pd.Series, col: _Column, table: str) -> pa.Array:
    """Convert one pandas column to an Arrow array of the schema type, or raise SchemaError."""
    where = f"column {col.name!r} of table {table!r}"
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        series = series.astype(object)
        dtype = series.dtype
    missing = series.isna().to_numpy(dtype=bool)
    if col.type == pa.string():
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred not in ("string", "empty"):
            raise SchemaError(f"{where} must hold strings, got {inferred} values (dtype {dtype})")
        values = series.to_numpy(dtype=object, na_value=None)
        array = pa.array(values, type=pa.string(), from_pandas=True)
    elif col.type == pa.bool_():
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred not in ("boolean", "empty"):
            raise SchemaError(f"{where} must hold booleans, got {inferred} values (dtype {dtype})")
        values = series.to_numpy(dtype=object, na_value=False).astype(bool)
        array = pa.array(values, type=pa.bool_(), mask=missing)
    else:
        if pd.api.types.is_bool_dtype(dtype) or not (
            pd.api.types.is_numeric_dtype(dtype)
            or pd.api.types.infer_dtype(series, skipna=True)
            in ("integer", "floating", "mixed-integer-float", "decimal", "empty")
        ):
            raise SchemaError(f"{where} must be numeric ({col.type}), got dtype {dtype}")
        numbers = pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
        inf = np.isinf(numbers)
        if inf.any():
            raise SchemaError(
                f"{where} holds infinite values ({_row_hint(series.index, inf)}); "
                "the schema requires finite numbers or null"
            )
        missing = np.isnan(numbers)
        if col.type == pa.float64():
            array = pa.array(numbers, type=pa.float64(), mask=missing)
        else:
            filled = np.where(missing, 0.0, numbers)
            fractional = filled != np.floor(filled)
            if fractional.any():
                raise SchemaError(
                    f"{where} must hold integers, got fractional values "
                    f"({_row_hint(series.index, fractional)})"
                )
            info = np.iinfo(np.int32 if col.type == pa.int32() else np.int64)
            if pd.api.types.is_integer_dtype(dtype):
                exact = series.to_numpy(dtype=np.int64, na_value=0)
            else:
                exact = filled.astype(np.int64)
            out_of_range = (exact < info.min) | (exact > info.max)
            if out_of_range.any():
                raise SchemaError(
                    f"{where} has values outside the {col.type} range "
                    f"({_row_hint(series.index, out_of_range)})"
                )
            array = pa.array(exact.astype(info.dtype), type=col.type, mask=missing)
    if not col.nullable and missing.any():
        raise SchemaError(
            f"{where} is not nullable but has missing values ({_row_hint(series.index, missing)})"
        )
    return array


def _value_problems(array: pa.ChunkedArray | pa.Array, col: _Column, where: str) -> list[str]:
    """Check enum, pattern, minimum, maximum and the privacy rule on one column."""
    problems = []
    if not col.nullable and array.null_count:
        problems.append(f"{where} is not nullable but has {array.null_count} null value(s)")
    if col.enum is not None:
        # a null is not "outside" the enum (nullability is checked above)
        inside = pc.or_(pc.is_in(array, value_set=pa.array(col.enum)), pc.is_null(array))
        bad = pc.sum(pc.invert(inside)).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} value(s) outside {list(col.enum)}")
    if col.pattern is not None:
        bad = pc.sum(pc.invert(pc.match_substring_regex(array, col.pattern))).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} value(s) not matching {col.pattern!r}")
    if col.minimum is not None:
        bad = pc.sum(pc.less(array, col.minimum)).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} value(s) below the minimum {col.minimum}")
    if col.maximum is not None:
        bad = pc.sum(pc.greater(array, col.maximum)).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} value(s) above the maximum {col.maximum}")
    if pa.types.is_floating(array.type):
        bad = pc.sum(pc.is_inf(array)).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} infinite value(s)")
        bad = pc.sum(pc.is_nan(array)).as_py() or 0
        if bad:
            problems.append(f"{where} has {bad} NaN value(s) (a missing value is written as null)")
    if col.type == pa.string():
        bad = pc.sum(pc.match_substring_regex(array, _PRIVATE_VALUE.pattern)).as_py() or 0
        if bad:
            problems.append(
                f"{where} has {bad} value(s) that look like a calendar date or a DICOM UID; "
                "results must not carry dates or original identifiers (SPEC.md, Privacy)"
            )
    return problems


def to_arrow_table(df: pd.DataFrame, table: str, *, allow_extra: bool = False) -> pa.Table:
    """Validate a DataFrame against a table of the schema and convert it to Arrow.

    Columns are reordered to the schema order, coerced to the schema types (integers from
    integral floats, NaN to null), absent optional columns are added as nulls, and rows are
    stably sorted by the table's primary key (determinism). A named index whose names are
    schema columns absent from ``df`` is moved into the columns; any other index is dropped.

    Parameters
    ----------
    df : pandas.DataFrame
        The rows of the table.
    table : str
        Table name, one of :func:`table_names`.
    allow_extra : bool, default False
        Keep columns the schema does not define (written after the schema columns, without
        unit metadata). By default they are refused, which catches misspelt column names.

    Returns
    -------
    pyarrow.Table
        With the generated schema (:func:`arrow_schema`) and no schema-level metadata.

    Raises
    ------
    SchemaError
        Naming the table and column: missing required column, unknown column, value of the
        wrong type, fractional or out-of-range integer, infinite number, null in a
        non-nullable column, value outside an enumeration, pattern or [minimum, maximum],
        duplicate primary key, date- or UID-like string (privacy rule).

    Examples
    --------
    >>> frame = example_frames()["tac"]
    >>> to_arrow_table(frame, "tac").num_rows == len(frame)
    True
    """
    spec = _table(table)
    if not isinstance(df, pd.DataFrame):
        raise SchemaError(f"table {table!r} must be a pandas DataFrame, got {type(df).__name__}")
    names = [c.name for c in spec.columns]
    index_names = [n for n in df.index.names if n is not None]
    if index_names and all(n in names and n not in df.columns for n in index_names):
        df = df.reset_index()
    if df.columns.has_duplicates:
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise SchemaError(f"table {table!r} has duplicate column names {dup}")
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(f"table {table!r} lacks required column(s) {missing}")
    extra = [c for c in df.columns if c not in names]
    if extra and not allow_extra:
        raise SchemaError(
            f"table {table!r} has column(s) {extra} the schema {SCHEMA_VERSION} does not define "
            "(pass allow_extra=True to keep them)"
        )
    df = df.reset_index(drop=True)
    arrays, fields = [], []
    schema = arrow_schema(table)
    problems: list[str] = []
    for col, field in zip(spec.columns, schema, strict=True):
        if col.name in df.columns:
            array = _coerce_column(df[col.name], col, table)
        elif col.nullable:
            array = pa.nulls(len(df), type=col.type)
        else:
            raise SchemaError(
                f"optional column {col.name!r} of table {table!r} is absent and not nullable"
            )
        problems += _value_problems(array, col, f"column {col.name!r} of table {table!r}")
        arrays.append(array)
        fields.append(field)
    for name in extra:
        array = pa.array(df[name], from_pandas=True)
        arrays.append(array)
        fields.append(pa.field(name, array.type))
    if problems:
        raise SchemaError("; ".join(problems))
    result = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    if result.num_rows:
        keys = [(k, "ascending") for k in spec.primary_key]
        order = pc.sort_indices(result, sort_keys=keys)
        result = result.take(order)
        dup = _duplicate_keys(result, spec)
        if dup:
            raise SchemaError(f"table {table!r} has duplicate primary keys {dup}")
    return result


def _duplicate_keys(table: pa.Table, spec: _Table) -> list[tuple]:
    """Return up to five duplicated primary-key tuples of an Arrow table."""
    keys = table.select(list(spec.primary_key))
    counts = keys.group_by(list(spec.primary_key), use_threads=False).aggregate([([], "count_all")])
    dup = counts.filter(pc.greater(counts["count_all"], 1))
    return [tuple(row[k] for k in spec.primary_key) for row in dup.slice(0, 5).to_pylist()]


# --------------------------------------------------------------------------------------------
# Metadata, privacy and deterministic bytes
# --------------------------------------------------------------------------------------------


def _privacy_problems(value: Any, where: str) -> list[str]:
    problems = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            norm = re.sub(r"[^a-z0-9]+", "_", str(key).lower()).strip("_")
            if norm in _FORBIDDEN_KEYS:
                problems.append(f"metadata key {where}{key!r} is not allowed (SPEC.md, Privacy)")
            problems += _privacy_problems(item, f"{where}{key!r}.")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problems += _privacy_problems(item, f"{where}[{i}].")
    elif isinstance(value, str) and _PRIVATE_VALUE.search(value):
        problems.append(
            f"metadata value at {where.rstrip('.')} looks like a calendar date or a DICOM UID "
            "(SPEC.md, Privacy)"
        )
    return problems


def _metadata_json(table: str, metadata: Mapping[str, Any] | None) -> str:
    metadata = dict(metadata or {})
    clash = sorted({"schema_version", "table"} & set(metadata))
    if clash:
        raise SchemaError(f"metadata must not set {clash}: harmonize writes them itself")
    problems = _privacy_problems(metadata, "")
    if problems:
        raise SchemaError("; ".join(problems))
    value = {"schema_version": SCHEMA_VERSION, "table": table, **metadata}
    try:
        return json.dumps(
            value, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"metadata must be JSON-serialisable without NaN/inf: {exc}") from exc


def _parquet_bytes(table: pa.Table, metadata_json: str) -> bytes:
    table = table.replace_schema_metadata({METADATA_KEY: metadata_json})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **PARQUET_WRITE_OPTIONS)
    return sink.getvalue().to_pybytes()


def write_table(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    table: str,
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    allow_extra: bool = False,
) -> Path:
    """Write one table to one Parquet file, atomically and deterministically.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of the table (validated and coerced by :func:`to_arrow_table`).
    path : str or os.PathLike
        Destination file; parent directories are created.
    table : str
        Table name, one of :func:`table_names`.
    metadata : mapping, optional
        JSON-serialisable provenance stored under the ``harmonize`` key next to
        ``schema_version`` and ``table`` (SHOULD hold ``workflow``, ``workflow_version``,
        ``parameters``, ``overrides``, ``software``, ``input_sha256``). It must not hold
        dates, names or original identifiers (privacy rule, SPEC.md).
    overwrite : bool, default False
        Replace an existing file whose content differs. An existing file with identical
        bytes is left as it is whatever this flag.
    allow_extra : bool, default False
        Keep columns the schema does not define.

    Returns
    -------
    pathlib.Path
        The written path.

    Raises
    ------
    SchemaError
        If the frame or the metadata does not conform; nothing is written.
    FileExistsError
        If ``path`` exists with different content and ``overwrite`` is false.

    Notes
    -----
    The bytes are a function of the frame, the metadata and the pyarrow version only: rows
    are sorted by the primary key, the JSON is canonical (sorted keys) and the writer
    options are pinned (:data:`PARQUET_WRITE_OPTIONS`); no timestamp is written. The file is
    written to a hidden temporary file in the same directory and renamed with
    :func:`os.replace`, so readers never see a half-written file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = write_table(example_frames()["tac"], pathlib.Path(tmp) / "tac.parquet", "tac")
    ...     read_results(p)["tac"].shape
    (6, 8)
    """
    arrow = to_arrow_table(df, table, allow_extra=allow_extra)
    data = _parquet_bytes(arrow, _metadata_json(table, metadata))
    return write_bytes_atomic(Path(path), data, overwrite)


def _default_basename(tables: Mapping[str, pa.Table]) -> str:
    pairs = [
        t.select(["patient_id", "cycle"]).to_pandas()
        for t in tables.values()
        if {"patient_id", "cycle"} <= set(t.column_names) and t.num_rows
    ]
    if not pairs:
        return "results"
    keys = pd.concat(pairs).drop_duplicates().sort_values(["patient_id", "cycle"])
    patients = keys["patient_id"].unique()
    if len(patients) == 1 and _SAFE_NAME.match(str(patients[0])):
        cycles = "-".join(str(c) for c in sorted(keys["cycle"].unique()))
        return f"{patients[0]}_c{cycles}"
    digest = hashlib.sha256(
        json.dumps(keys.to_numpy().tolist(), default=str).encode("utf-8")
    ).hexdigest()
    return f"part-{digest[:16]}"


def _partition_value(value: Any, column: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        raise SchemaError(f"partition column {column!r} has missing values")
    text = str(int(value)) if isinstance(value, int | np.integer) else str(value)
    if not _SAFE_NAME.match(text):
        raise SchemaError(
            f"partition value {text!r} of column {column!r} is not a safe directory name "
            f"(allowed: {_SAFE_NAME.pattern})"
        )
    return text


def write_results(
    result_tables: Mapping[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    *,
    metadata: Mapping[str, Any] | None = None,
    partition_cols: Sequence[str] = ("workflow",),
    basename: str | None = None,
    overwrite: bool = False,
    allow_extra: bool = False,
) -> list[Path]:
    """Write result tables as hive-partitioned Parquet datasets under one directory.

    Each table goes to ``out_dir/<table>/<col>=<value>/.../<basename>.parquet``, one file
    per combination of the partition columns present in that table (tables without them,
    e.g. ``agreement``, are written to ``out_dir/<table>/<basename>.parquet``). Partition
    columns are also kept inside the files, so every file is self-contained.

    Parameters
    ----------
    result_tables : mapping of str to pandas.DataFrame
        Table name -> rows. Empty frames are skipped.
    out_dir : str or os.PathLike
        Root of the results dataset (created if needed).
    metadata : mapping, optional
        Provenance stored in every file's ``harmonize`` metadata (see :func:`write_table`).
    partition_cols : sequence of str, default ("workflow",)
        Columns used as hive partitions, in directory order.
    basename : str, optional
        File name without extension. Default: ``<patient_id>_c<cycle>`` when the tables
        hold a single patient (cycles joined by '-'), else ``part-<hash of the
        (patient_id, cycle) pairs>``, else ``results``. A re-run with the same basename
        replaces its own files instead of adding rows; callers writing many studies into
        one dataset SHOULD pass a basename unique to the study.
    overwrite : bool, default False
        Replace existing files with different content (see :func:`write_table`).
    allow_extra : bool, default False
        Keep columns the schema does not define.

    Returns
    -------
    list of pathlib.Path
        The files written (or already present with identical bytes), sorted.

    Raises
    ------
    SchemaError
        If a table name is unknown, a frame does not conform, or a partition value is not a
        safe directory name. All tables are validated before any file is written.
    FileExistsError
        If a destination exists with different content and ``overwrite`` is false.
    """
    out = Path(out_dir)
    unknown = sorted(set(result_tables) - set(_tables()))
    if unknown:
        raise SchemaError(f"unknown table(s) {unknown}; the schema defines {list(_tables())}")
    arrows = {
        name: to_arrow_table(df, name, allow_extra=allow_extra)
        for name, df in result_tables.items()
    }
    if basename is None:
        basename = _default_basename(arrows)
    if not _SAFE_NAME.match(basename):
        raise SchemaError(f"basename {basename!r} is not a safe file name")
    planned: list[tuple[Path, bytes]] = []
    for name, arrow in arrows.items():
        if arrow.num_rows == 0:
            continue
        meta = _metadata_json(name, metadata)
        cols = [c for c in partition_cols if c in arrow.column_names]
        if not cols:
            planned.append((out / name / f"{basename}.parquet", _parquet_bytes(arrow, meta)))
            continue
        parts = arrow.select(cols).group_by(cols, use_threads=False).aggregate([])
        for values in parts.sort_by([(c, "ascending") for c in cols]).to_pylist():
            mask = None
            for c in cols:
                if values[c] is None:
                    raise SchemaError(f"partition column {c!r} of table {name!r} has nulls")
                eq = pc.equal(arrow[c], pa.scalar(values[c], arrow.schema.field(c).type))
                mask = eq if mask is None else pc.and_(mask, eq)
            sub = arrow.filter(mask)
            folder = out / name
            for c in cols:
                folder = folder / f"{c}={_partition_value(values[c], c)}"
            planned.append((folder / f"{basename}.parquet", _parquet_bytes(sub, meta)))
    if not overwrite:
        for path, data in planned:
            if path.exists() and path.read_bytes() != data:
                raise FileExistsError(
                    f"{path} exists with different content; pass --overwrite (overwrite=True in "
                    "Python) to replace it"
                )
    return sorted(write_bytes_atomic(path, data, overwrite) for path, data in planned)


# --------------------------------------------------------------------------------------------
# Reading and validation
# --------------------------------------------------------------------------------------------


def _parse_version(text: Any) -> tuple[int, int, int] | None:
    if not isinstance(text, str):
        return None
    m = _SEMVER.match(text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _partition_values(file: Path, root: Path) -> dict[str, str]:
    out = {}
    with contextlib.suppress(ValueError):
        for part in file.parent.relative_to(root).parts:
            if "=" in part:
                key, _, value = part.partition("=")
                out[key] = value
    return out


def _types_match(actual: pa.DataType, expected: pa.DataType) -> bool:
    if expected == pa.string():
        if pa.types.is_dictionary(actual):
            actual = actual.value_type
        return actual in _STRING_TYPES
    return actual == expected


def _newer_minor(meta: Mapping[str, Any]) -> bool:
    """True when the file's schema_version is a newer minor of this reader's major."""
    version, ours = _parse_version(meta.get("schema_version")), _parse_version(SCHEMA_VERSION)
    if version is None or ours is None:
        return False
    return version[0] == ours[0] and version[1] > ours[1]


class _FileCheck:
    """Check one Parquet file against the schema; collect problems and the conformed table."""

    def __init__(self, file: Path, root: Path, expected_table: str | None) -> None:
        self.file = file
        self.problems: list[str] = []
        self.table_name: str | None = None
        self.table: pa.Table | None = None
        self.version: tuple[int, int, int] | None = None
        try:
            pfile = pq.ParquetFile(file, page_checksum_verification=True)
            file_schema = pfile.schema_arrow
        except (OSError, pa.ArrowException, ValueError) as exc:
            self.problems.append(f"{file}: not a readable Parquet file ({exc})")
            return
        meta = self._metadata(file_schema)
        if meta is None:
            return
        self.version = _parse_version(meta.get("schema_version"))
        name = meta.get("table")
        if name not in _tables() and _newer_minor(meta):
            return  # a table added by a newer minor version: ignored (SPEC.md §5, readers 2)
        if name not in _tables():
            self.problems.append(
                f"{file}: table {name!r} in the {METADATA_KEY!r} metadata is not one of "
                f"{list(_tables())}"
            )
            return
        if expected_table is not None and name != expected_table:
            self.problems.append(
                f"{file}: metadata says table {name!r} but the file is under {expected_table!r}"
            )
            return
        self.table_name = name
        self._columns(pfile, file_schema, _table(name), _partition_values(file, root))

    def _metadata(self, file_schema: pa.Schema) -> dict[str, Any] | None:
        raw = (file_schema.metadata or {}).get(METADATA_KEY.encode())
        if raw is None:
            self.problems.append(f"{self.file}: no {METADATA_KEY!r} key in the Parquet metadata")
            return None
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.problems.append(f"{self.file}: {METADATA_KEY!r} metadata is not JSON ({exc})")
            return None
        if not isinstance(meta, dict):
            self.problems.append(f"{self.file}: {METADATA_KEY!r} metadata is not a JSON object")
            return None
        version = _parse_version(meta.get("schema_version"))
        ours = _parse_version(SCHEMA_VERSION)
        assert ours is not None
        if version is None:
            self.problems.append(
                f"{self.file}: schema_version {meta.get('schema_version')!r} is not a SemVer "
                "'MAJOR.MINOR.PATCH' string"
            )
            return None
        if version[0] != ours[0]:
            newer = "newer" if version[0] > ours[0] else "older"
            raise SchemaVersionError(
                f"{self.file}: schema_version {meta['schema_version']} has a {newer} major "
                f"version than this reader supports (schema {SCHEMA_VERSION}, major {ours[0]}); "
                "update harmonize to read it"
            )
        return meta

    def _columns(
        self,
        pfile: pq.ParquetFile,
        file_schema: pa.Schema,
        spec: _Table,
        partitions: dict[str, str],
    ) -> None:
        where = str(self.file)
        present = [c.name for c in spec.columns if c.name in file_schema.names]
        for c in spec.columns:
            if c.name not in file_schema.names:
                if c.required and c.name not in partitions:
                    self.problems.append(f"{where}: missing required column {c.name!r}")
                continue
            field = file_schema.field(c.name)
            if not _types_match(field.type, c.type):
                self.problems.append(
                    f"{where}: column {c.name!r} has Arrow type {field.type}, expected {c.type}"
                )
            unit = (field.metadata or {}).get(b"unit")
            if not c.unit:
                continue
            if unit is None:
                self.problems.append(
                    f"{where}: column {c.name!r} has no unit in its field metadata "
                    f"(expected {c.unit!r})"
                )
            elif (unit_text := unit.decode("utf-8", "replace")) != c.unit:
                self.problems.append(
                    f"{where}: column {c.name!r} has unit {unit_text!r}, expected {c.unit!r}"
                )
        if self.problems:
            return
        try:
            data = pfile.read(columns=present, use_threads=False)
        except (OSError, pa.ArrowException, ValueError) as exc:
            self.problems.append(
                f"{where}: corrupt data (page checksum or decoding failed: {exc}); the file was "
                "changed after it was written — re-run or restore it"
            )
            return
        if data.num_rows == 0:
            warnings.warn(
                f"{where}: the file has no rows (a {spec.name} table with zero rows)",
                ZeroRowWarning,
                stacklevel=2,
            )
        arrays = []
        for c in spec.columns:
            cwhere = f"{where}: column {c.name!r}"
            if c.name in data.column_names:
                array = data[c.name]
                if pa.types.is_dictionary(array.type):
                    array = array.cast(array.type.value_type)
                array = array.cast(c.type)
                if c.name in partitions and not self._partition_ok(array, partitions[c.name], c):
                    self.problems.append(
                        f"{cwhere} disagrees with its partition directory "
                        f"{c.name}={partitions[c.name]}"
                    )
            elif c.name in partitions:
                try:
                    value = pa.scalar(partitions[c.name]).cast(c.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    self.problems.append(
                        f"{cwhere}: partition value {partitions[c.name]!r} is not a {c.type}"
                    )
                    continue
                array = pa.chunked_array([pa.array([value.as_py()] * data.num_rows, c.type)])
            else:
                array = pa.chunked_array([pa.nulls(data.num_rows, c.type)])
            self.problems += _value_problems(array, c, cwhere)
            arrays.append(array)
        if not self.problems:
            table = pa.Table.from_arrays(arrays, schema=arrow_schema(spec.name))
            self.problems += _row_problems(table, spec.name, where, self.version)
        if not self.problems:
            self.table = table

    @staticmethod
    def _partition_ok(array: pa.ChunkedArray, text: str, col: _Column) -> bool:
        try:
            value = pa.scalar(text).cast(col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return bool(pc.all(pc.equal(array, value)).as_py() in (True, None))


class ZeroRowWarning(HarmonizeWarning):
    """A results file holds a table with no rows (valid, but usually a sign of a failed run)."""


#: Tokens of the ``flags`` column (schema document ``flag_tokens``; since 1.2.0).
FLAG_TOKENS: tuple[str, ...] = tuple(load_schema_document().get("flag_tokens", {}))
_FLAG_TOKEN = re.compile(r"^([a-z0-9_]+)(?:\(.*\)|=.*)?$")
#: What a pseudonym must not look like: a DICOM person name ("DOE^JOHN"), "Last, First",
#: two or more words of letters separated by spaces, or a run of 6+ digits (a hospital or
#: national number). Dates and UIDs are caught by the privacy rule of every string column.
_IDENTIFYING_ID = re.compile(r"\^|,\s*\w|^[A-Za-z]+\s+[A-Za-z]+|\d{6,}")
#: harmonize's own keyed pseudonym (:func:`harmonize.deid.pseudonym`): 12 hex digits, which
#: may hold a run of 6+ decimal digits without being a number from a hospital.
_HARMONIZE_PSEUDONYM = re.compile(r"^ANON-[0-9A-F]{12}$")
_ORDERED_DOSES = {
    "voi_dose": (
        ("dose_min_gy", "dose_median_gy"),
        ("dose_median_gy", "dose_max_gy"),
        ("dose_min_gy", "dose_mean_gy"),
        ("dose_mean_gy", "dose_max_gy"),
        ("dose_d98_gy", "dose_d50_gy"),
        ("dose_d50_gy", "dose_d2_gy"),
    ),
    "patient_index": (
        ("lesion_dose_min_gy", "lesion_dose_median_gy"),
        ("lesion_dose_median_gy", "lesion_dose_max_gy"),
        ("lesion_dose_min_gy", "lesion_dose_mean_gy"),
        ("lesion_dose_mean_gy", "lesion_dose_max_gy"),
    ),
}


def _row_problems(
    table: pa.Table, name: str, where: str, version: tuple[int, int, int] | None
) -> list[str]:
    """Constraints across columns and on values the column checks do not see."""
    problems: list[str] = []
    df = table.to_pandas()
    if "patient_id" in df:
        ids = df["patient_id"].astype(str)
        ours = ids.str.fullmatch(_HARMONIZE_PSEUDONYM)
        bad = sorted(set(ids[ids.str.contains(_IDENTIFYING_ID) & ~ours]))
        if bad:
            problems.append(
                f"{where}: column 'patient_id' has {len(bad)} value(s) that look identifying "
                "(a person name, 'Last, First' or a long number); results carry pseudonyms only "
                "(SPEC.md, Privacy)"
            )
    for low, high in _ORDERED_DOSES.get(name, ()):
        # a relative tolerance of 1e-9: the indices come from the same voxel doses, so only
        # round-off separates equal values
        a, b = df[low].to_numpy(float), df[high].to_numpy(float)
        bad_rows = np.flatnonzero(a > b + 1e-9 * np.abs(b))
        if bad_rows.size:
            problems.append(
                f"{where}: {low} > {high} in {bad_rows.size} row(s) "
                f"(first at row {int(bad_rows[0])}: {a[bad_rows[0]]:.6g} > {b[bad_rows[0]]:.6g})"
            )
    ours = _parse_version(SCHEMA_VERSION)
    if name == "voi_dose" and version is not None and ours is not None and version[:2] == ours[:2]:
        # flags are enum tokens since 1.2.0; a newer minor may add tokens (tolerated)
        tokens = {t for text in df["flags"].astype(str) for t in text.split(";") if t}
        unknown = sorted(t for t in tokens if (m := _FLAG_TOKEN.match(t)) is None
                         or m.group(1) not in FLAG_TOKENS)  # fmt: skip
        if unknown:
            problems.append(
                f"{where}: column 'flags' has token(s) {unknown} that are not in the schema's "
                f"flag_tokens {list(FLAG_TOKENS)}"
            )
        from harmonize.plausibility import DOSE_SANITY_BOUND_GY_PER_CYCLE

        high_dose = df["dose_mean_gy"].to_numpy(float) > DOSE_SANITY_BOUND_GY_PER_CYCLE
        unflagged = high_dose & ~df["flags"].astype(str).str.contains("implausible_dose")
        if unflagged.any():
            problems.append(
                f"{where}: {int(unflagged.sum())} row(s) with dose_mean_gy above the sanity "
                f"bound {DOSE_SANITY_BOUND_GY_PER_CYCLE:g} Gy per cycle without the flag "
                "'implausible_dose'"
            )
    return problems


def _discover(path: Path, tables: Iterable[str] | None) -> list[tuple[str | None, Path, Path]]:
    """Return (expected table or None, file, partition root) triples, sorted."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        return [(None, path, path.parent)]
    wanted = list(tables) if tables is not None else None
    if wanted is not None:
        for name in wanted:
            _table(name)
    subdirs = [name for name in _tables() if (path / name).is_dir()]
    if subdirs:
        if wanted is not None:
            absent = [t for t in wanted if t not in subdirs]
            if absent:
                raise FileNotFoundError(f"{path} has no table folder(s) {absent}")
        roots: list[tuple[str | None, Path]] = [
            (name, path / name) for name in subdirs if wanted is None or name in wanted
        ]
    else:
        roots = [(None, path)]
    found: list[tuple[str | None, Path, Path]] = []
    for expected, root in roots:
        for file in sorted(root.rglob("*.parquet")):
            hidden = any(part.startswith((".", "_")) for part in file.relative_to(root).parts)
            if file.is_file() and not hidden:
                found.append((expected, file, root))
    return found


def _load(path: Path, tables: Iterable[str] | None) -> tuple[dict[str, pa.Table], list[str]]:
    problems: list[str] = []
    pieces: dict[str, list[pa.Table]] = {}
    for expected, file, root in _discover(path, tables):
        check = _FileCheck(file, root, expected)
        problems += check.problems
        if check.table is not None and check.table_name is not None:
            pieces.setdefault(check.table_name, []).append(check.table)
    if tables is not None and not problems:
        absent = [t for t in tables if t not in pieces]
        if absent:
            problems.append(f"{path}: no file holds table(s) {absent}")
    merged: dict[str, pa.Table] = {}
    for name in _tables():
        if name not in pieces:
            continue
        spec = _table(name)
        table = pa.concat_tables(pieces[name])
        keys = [(k, "ascending") for k in spec.primary_key]
        table = table.take(pc.sort_indices(table, sort_keys=keys))
        dup = _duplicate_keys(table, spec)
        if dup:
            problems.append(
                f"{path}: table {name!r} has rows with the same primary key "
                f"{list(spec.primary_key)} in several files or rows, e.g. {dup}"
            )
        merged[name] = table
    return merged, problems


def _to_pandas(table: pa.Table, name: str) -> pd.DataFrame:
    spec = _table(name)
    columns = {}
    for c in spec.columns:
        array = table[c.name]
        if c.type in (pa.int32(), pa.int64()) and c.nullable:
            mapper = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
            columns[c.name] = array.to_pandas(types_mapper=mapper.get)
        elif c.type == pa.bool_() and c.nullable:
            columns[c.name] = array.to_pandas(types_mapper={pa.bool_(): pd.BooleanDtype()}.get)
        else:
            columns[c.name] = array.to_pandas()
    return pd.DataFrame(columns)


def read_results(
    path: str | os.PathLike[str], tables: Iterable[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Read harmonize Parquet results into pandas DataFrames, validating every file.

    Parameters
    ----------
    path : str or os.PathLike
        A results directory (with table folders such as ``voi_dose/``), one table's
        directory (hive-partitioned or not), or a single Parquet file.
    tables : iterable of str, optional
        Tables to read; default all that are present.

    Returns
    -------
    dict of str to pandas.DataFrame
        Table name -> rows of all its files, in schema column order, sorted by the primary
        key, with a fresh RangeIndex. Dtypes: ``str`` for strings, ``int32``/``int64`` for
        non-nullable integers, ``Int32``/``Int64`` for nullable integers, ``float64`` with NaN
        for nulls, ``bool`` (``boolean`` if nullable). Partition columns are plain columns.
        Absent optional columns are restored as nulls; unknown extra columns are dropped.

    Raises
    ------
    SchemaVersionError
        If a file has a different major ``schema_version`` (the message names the file and
        both versions).
    SchemaError
        Listing every problem found (each naming the file and column): missing metadata,
        missing column, wrong Arrow type, wrong or missing unit, null in a non-nullable
        column, value outside an enumeration or range, duplicated primary key across files.
    FileNotFoundError
        If ``path`` or a requested table does not exist.

    See Also
    --------
    validate_path : the same checks, returned as a list.
    """
    merged, problems = _load(Path(path), tables)
    if problems:
        raise SchemaError("\n".join(problems))
    return {name: _to_pandas(table, name) for name, table in merged.items()}


def validate_path(path: str | os.PathLike[str]) -> list[str]:
    """Return the problems that make a results path non-conformant (empty list if none).

    Parameters
    ----------
    path : str or os.PathLike
        A results directory, a table directory or a single Parquet file.

    Returns
    -------
    list of str
        One message per problem, each naming the file (and column when relevant). A newer
        major version, an unreadable file, a missing path and no Parquet file at all are
        reported here rather than raised.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = write_examples(tmp)
    ...     validate_path(tmp)
    []
    """
    path = Path(path)
    try:
        merged, problems = _load(path, None)
    except (HarmonizeError, OSError, pa.ArrowException, ValueError) as exc:
        # a newer major version, a missing path, an unreadable folder: reported, never raised
        return [f"{exc}" if str(path) in str(exc) else f"{path}: {exc}"]
    if not merged and not problems:
        problems.append(f"{path}: no harmonize Parquet file found")
    if path.is_dir():
        from harmonize.runfolder import folder_problems

        try:  # a run manifest: unfinished run, missing, changed or unlisted files
            problems += folder_problems(path)
        except OSError as exc:
            problems.append(f"{path}: cannot check the run manifest ({exc})")
    return problems


# --------------------------------------------------------------------------------------------
# Golden examples
# --------------------------------------------------------------------------------------------

#: Provenance stored in the golden example files (fixed: no real software versions).
EXAMPLE_METADATA: dict[str, Any] = {
    "workflow": "example",
    "workflow_version": "1.0.0",
    "parameters": {"tac_model": "mono_exp", "dose_engine": "local_deposition"},
    "overrides": {},
    "software": {"harmonize": "example"},
    "input_sha256": hashlib.sha256(b"harmonize example study").hexdigest(),
}


def example_frames() -> dict[str, pd.DataFrame]:
    """Return small, deterministic example tables (one per schema table), canonical dtypes.

    One pseudonymous patient ``PX001``, cycle 1, workflow ``example``: a liver, a kidney
    and two lesions (one inside the liver); a three-point TAC of two VOIs generated from a
    mono-exponential; the patient index computed from the VOI rows by
    :func:`harmonize.indices.patient_index`; two agreement rows; one provenance row; a DVH
    of every VOI at 0, 1, ..., 100 % that interpolates linearly in volume between the VOI's
    maximum, D2, D50, D98 and minimum (so that those are its 0, 2, 50, 98 and 100 % rows,
    as the schema requires); an uncertainty budget of the two lesions whose contributions
    add in quadrature to their ``dose_mean_u_gy`` and ``tia_u_mbq_h`` (organs without one);
    a clinical row of the patient. The numbers are illustrative, not clinical.

    Returns
    -------
    dict of str to pandas.DataFrame
        Table name -> frame, with the dtypes :func:`read_results` returns.

    Examples
    --------
    >>> sorted(example_frames())
    ['agreement', 'clinical', 'dvh', 'patient_index', 'run', 'tac', 'uncertainty', 'voi_dose']
    """
    from harmonize.indices import patient_index  # local: indices never imports schema

    common = {"patient_id": "PX001", "cycle": 1, "center": "EX", "workflow": "example"}
    voi = pd.DataFrame(
        {
            "voi_id": [1, 2, 10, 11],
            "voi_name": ["liver", "kidney_left", "lesion_1", "lesion_2"],
            "voi_kind": ["organ", "organ", "lesion", "lesion"],
            "parent_voi_id": [None, None, 1, None],
            "volume_ml": [1500.0, 150.0, 12.5, 4.2],
            "mass_g": [1580.0, 157.5, 13.1, 4.4],
            "tia_mbq_h": [15000.0, 2900.0, 3100.0, 820.0],
            "tac_model": ["mono_exp"] * 4,
            "n_time_points": [4, 4, 4, 4],
            "dose_mean_gy": [0.82, 1.55, 20.1, 15.7],
            "dose_min_gy": [0.1, 0.4, 8.2, 6.0],
            "dose_median_gy": [0.8, 1.5, 20.4, 15.9],
            "dose_max_gy": [3.1, 3.9, 31.0, 24.2],
            "dose_d2_gy": [2.2, 3.1, 29.5, 23.8],
            "dose_d50_gy": [0.8, 1.5, 20.4, 15.9],
            "dose_d98_gy": [0.2, 0.6, 11.0, 8.1],
            "fit_r2": [0.998, 0.995, 0.991, None],
            "fit_aicc": [-12.5, -8.25, -6.0, None],
            "recovery_coefficient": [None, None, None, 0.72],
            "flags": ["", "", "", "fit_fallback"],
        }
    ).assign(**common, workflow_version="1.0.0", tia_coefficient_h=lambda f: f.tia_mbq_h / 7400.0)
    # the uncertainty budget of the two lesions: contributions add in quadrature to the
    # relative standard uncertainties written in voi_dose (1.2.0)
    budget_parts = {
        10: [("counts", 0.01, 1.0), ("fit", 0.04, 1.0), ("calibration", 0.03, -1.0),
             ("volume", 0.1, -1.0)],
        11: [("counts", 0.02, 1.0), ("head", 0.05, 1.0), ("calibration", 0.03, -1.0),
             ("recovery", 0.05, -1.0), ("volume", 0.2, -0.8)],
    }  # fmt: skip
    budget_rows = [
        {"voi_id": voi_id, "component": name, "u_rel": u, "sensitivity": c,
         "dose_u_rel": abs(c) * u, "tia_u_rel": u if name in ("counts", "fit", "head") else 0.0,
         "shared": name == "calibration"}
        for voi_id, parts in budget_parts.items() for name, u, c in parts
    ]  # fmt: skip
    uncertainty = pd.DataFrame(budget_rows).assign(**common, workflow_version="1.0.0")
    rel = uncertainty.groupby("voi_id")[["dose_u_rel", "tia_u_rel"]].agg(
        lambda x: float(np.sqrt(np.sum(np.square(x))))
    )
    lesion_u = voi["voi_id"].map(rel["dose_u_rel"])
    voi["dose_mean_u_gy"] = voi["dose_mean_gy"] * lesion_u
    voi["tia_u_mbq_h"] = voi["tia_mbq_h"] * voi["voi_id"].map(rel["tia_u_rel"])
    lambda_per_h = np.log(2) / (6.647 * 24)  # Lu-177 physical half-life (ICRP-107), h^-1
    times = np.array([24.0, 72.0, 168.0])
    a0 = np.array([40.0, 8.0])  # MBq at t = 0, illustrative
    fitted = a0[:, None] * np.exp(-(lambda_per_h + 0.01) * times[None, :])
    tac = pd.DataFrame(
        {
            "voi_id": np.repeat([1, 10], len(times)),
            "time_h": np.tile(times, 2),
            "activity_fitted_mbq": fitted.ravel(),
            "activity_measured_mbq": fitted.ravel() * np.tile([1.02, 0.97, 1.01], 2),
            "recovery_corrected": [False] * 3 + [True] * 3,
        }
    ).assign(patient_id="PX001", cycle=1, workflow="example")
    agreement = pd.DataFrame(
        {
            "index": ["dose_mean_gy", "dose_mean_gy"],
            "level": ["lesion", "lesion"],
            "cycle": [1, None],
            "workflow_a": ["example", "example"],
            "workflow_b": ["truth", "truth"],
            "statistic": ["bias", "ccc"],
            "estimate": [-1.25, 0.93],
            "ci_low": [-2.5, 0.81],
            "ci_high": [0.05, 0.97],
            "ci_level": [0.95, 0.95],
            "n_pairs": [2, 8],
            "unit": ["Gy", "1"],
            "method": ["Bland-Altman absolute", "Lin CCC, Fisher z interval"],
        }
    )
    canonical = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"))
    run = pd.DataFrame(
        {
            "patient_id": ["PX001"],
            "cycle": [1],
            "workflow": ["example"],
            "workflow_version": ["1.0.0"],
            "schema_version": [SCHEMA_VERSION],
            "parameters_json": [canonical(EXAMPLE_METADATA["parameters"])],
            "overrides_json": [canonical(EXAMPLE_METADATA["overrides"])],
            "input_sha256": [EXAMPLE_METADATA["input_sha256"]],
            "software_json": [canonical(EXAMPLE_METADATA["software"])],
            "center": ["EX"],
        }
    )
    knots_pct = [0.0, 2.0, 50.0, 98.0, 100.0]
    knots = ["dose_max_gy", "dose_d2_gy", "dose_d50_gy", "dose_d98_gy", "dose_min_gy"]
    volume_pct = np.arange(101, dtype=np.float64)
    dvh = pd.DataFrame(
        {
            "voi_id": np.repeat(voi["voi_id"].to_numpy(), volume_pct.size),
            "volume_pct": np.tile(volume_pct, len(voi)),
            "dose_gy": np.concatenate(
                [np.interp(volume_pct, knots_pct, row) for row in voi[knots].to_numpy()]
            ),
        }
    ).assign(**common, workflow_version="1.0.0")
    raw = {
        "voi_dose": voi,
        "patient_index": patient_index(voi, cumulative_rule="sum"),
        "tac": tac,
        "agreement": agreement,
        "run": run,
        "dvh": dvh,
        "uncertainty": uncertainty,
        "clinical": pd.DataFrame(
            {
                "patient_id": ["PX001"],
                "center": ["EX"],
                "sex": ["F"],
                "age_band": ["60-69"],
                "primary_site": ["small_intestine"],
                "grade": ["G2"],
                "ki67_pct": [5.0],
                "stage": ["IV"],
                "prior_lines": [1],
                "sstr_uptake_score": [4],
                "pfs_months": [26.5],
                "pfs_event": [True],
                "os_months": [41.0],
                "os_event": [False],
                "follow_up_months": [41.0],
                "best_response": ["SD"],
                "response_criteria": ["RECIST 1.1"],
                "egfr_change_pct": [-8.0],
                "kidney_ctcae_grade": [0],
                "haem_ctcae_grade": [1],
            }
        ),
    }
    return {name: _to_pandas(to_arrow_table(df, name), name) for name, df in raw.items()}


def write_examples(directory: str | os.PathLike[str], *, overwrite: bool = False) -> list[Path]:
    """Write the golden example files ``<directory>/<table>.parquet``.

    Used both to create ``harmonize/data_schema/examples/`` and, by the test suite, to
    regenerate them into a temporary directory and compare bytes.

    Parameters
    ----------
    directory : str or os.PathLike
        Destination directory (created if needed).
    overwrite : bool, default False
        Replace existing files with different content.

    Returns
    -------
    list of pathlib.Path
        The files, in :func:`table_names` order.
    """
    out = Path(directory)
    return [
        write_table(df, out / f"{name}.parquet", name, EXAMPLE_METADATA, overwrite=overwrite)
        for name, df in example_frames().items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m harmonize.schema write-examples DIR [--overwrite]``.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (0 on success).
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harmonize.schema")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("write-examples", help="write the golden example Parquet files")
    cmd.add_argument("directory")
    cmd.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for path in write_examples(args.directory, overwrite=args.overwrite):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
