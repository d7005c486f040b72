"""The results template a participant fills, and the method sheet that goes with it.

Results template
----------------
One row per patient × cycle × VOI of the exercise package. Row 1 holds the column names,
row 2 the unit of each quantity column (``unit`` in the ``patient_id`` cell marks it), the
results start on row 3. Row numbers in every message are the spreadsheet's own (as Excel
and a text editor show them), so a participant finds the cell at once.

=================  ========  ===========  ==================================================
column             required  unit         meaning
=================  ========  ===========  ==================================================
patient_id         yes                    pseudonym of the package (``vois.csv``)
cycle              yes                    therapy cycle, integer ≥ 1
voi_id             yes                    label of the shared VOI in the package's label map
dose_mean_gy       yes       Gy           mean absorbed dose of the VOI
voi_name           no                     must equal the package's name when given
dose_min_gy        no        Gy           minimum voxel dose
dose_median_gy     no        Gy           median voxel dose
dose_max_gy        no        Gy           maximum voxel dose
dose_d2_gy         no        Gy           D2 (dose to the hottest 2 % of the volume)
dose_d50_gy        no        Gy           D50
dose_d98_gy        no        Gy           D98
tia_mbq_h          no        MBq·h        time-integrated activity of the VOI
mass_g             no        g            VOI mass the centre used (else the package's)
=================  ========  ===========  ==================================================

The columns and units of the issue's contract are the first eleven rows except D2/D50/D98,
which are optional additions (the lesion indices the compare engine reads).
Accepted units (:data:`UNITS`) are converted to the canonical unit; any other is refused.

Method sheet
------------
The items of the EANM Dosimetry Committee's guidance on reporting clinical dosimetry
(Lassmann M et al., Eur J Nucl Med Mol Imaging 2011;38:192-200, "good practice of clinical
dosimetry reporting"): software and version, time points, kinetic model, integration, dose
method, S-value or kernel source, partial-volume correction, segmentation — plus the
cumulative rule over cycles, which harmonize needs to form the patient indices. One row per
item (columns ``item``, ``value``, ``description``); in the XLSX template it is the sheet
``method``, next to the CSV template it is ``method_sheet.csv``.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harmonize import indices

__all__ = [
    "METHOD_ITEMS",
    "TEMPLATE_COLUMNS",
    "UNITS",
    "UNIT_ROW_MARK",
    "MethodItem",
    "TemplateColumn",
    "method_sheet_frame",
    "template_frame",
    "write_template_csv",
    "write_template_xlsx",
]

#: Marker in the ``patient_id`` cell of the units row (row 2).
UNIT_ROW_MARK = "unit"
#: First spreadsheet row of results (row 1 = header, row 2 = units).
FIRST_DATA_ROW = 3
#: Sheet names of the XLSX template.
RESULTS_SHEET = "results"
METHOD_SHEET = "method"


@dataclass(frozen=True)
class TemplateColumn:
    """One column of the results template."""

    name: str
    required: bool
    kind: str  # "text", "integer", "dose", "tia", "mass"
    description: str

    @property
    def unit(self) -> str:
        """Canonical unit ('' for identifiers)."""
        return {"dose": "Gy", "tia": "MBq·h", "mass": "g"}.get(self.kind, "")


TEMPLATE_COLUMNS: tuple[TemplateColumn, ...] = (
    TemplateColumn("patient_id", True, "text", "patient pseudonym as in the package"),
    TemplateColumn("cycle", True, "integer", "therapy cycle (integer >= 1)"),
    TemplateColumn("voi_id", True, "integer", "VOI label in the package's label map"),
    TemplateColumn("dose_mean_gy", True, "dose", "mean absorbed dose of the VOI"),
    TemplateColumn("voi_name", False, "text", "VOI name (must match the package)"),
    TemplateColumn("dose_min_gy", False, "dose", "minimum voxel dose"),
    TemplateColumn("dose_median_gy", False, "dose", "median voxel dose"),
    TemplateColumn("dose_max_gy", False, "dose", "maximum voxel dose"),
    TemplateColumn("dose_d2_gy", False, "dose", "dose to the hottest 2 % of the volume"),
    TemplateColumn("dose_d50_gy", False, "dose", "dose to the hottest 50 % of the volume"),
    TemplateColumn("dose_d98_gy", False, "dose", "dose to the hottest 98 % of the volume"),
    TemplateColumn("tia_mbq_h", False, "tia", "time-integrated activity of the VOI"),
    TemplateColumn("mass_g", False, "mass", "VOI mass used (default: the package's)"),
)

#: Accepted spellings of each unit and the factor to the canonical unit (Gy, MBq·h, g).
UNITS: dict[str, dict[str, float]] = {
    "dose": {"Gy": 1.0, "GY": 1.0, "cGy": 1e-2, "CGY": 1e-2, "mGy": 1e-3},
    "tia": {
        "MBq·h": 1.0,
        "MBq*h": 1.0,
        "MBq.h": 1.0,
        "MBq h": 1.0,
        "MBqh": 1.0,
        "GBq·h": 1e3,
        "GBq*h": 1e3,
        "GBq.h": 1e3,
        "GBq h": 1e3,
        "kBq·h": 1e-3,
        "MBq·s": 1.0 / 3600.0,
        "MBq*s": 1.0 / 3600.0,
        "MBq s": 1.0 / 3600.0,
    },
    "mass": {"g": 1.0, "kg": 1e3, "mg": 1e-3},
}


@dataclass(frozen=True)
class MethodItem:
    """One item of the method sheet."""

    item: str
    required: bool
    description: str
    example: str


#: Method-sheet items: the EANM reporting items (Lassmann 2011) + the cumulative rule.
METHOD_ITEMS: tuple[MethodItem, ...] = (
    MethodItem("software", True, "dosimetry software used (name)", "PLANET Dose"),
    MethodItem("software_version", True, "its version", "3.1.1"),
    MethodItem(
        "time_points_h",
        True,
        "imaging time points used, hours after injection, separated by ';'",
        "4;24;72;192",
    ),
    MethodItem(
        "kinetic_model",
        True,
        "time-activity model (mono-exponential, bi-exponential, trapezoid + tail, ...)",
        "voxel trapezoid + mono-exponential tail",
    ),
    MethodItem(
        "integration",
        True,
        "integration rule (from 0 to the first point, tail to infinity)",
        "linear from 0; analytic tail",
    ),
    MethodItem(
        "dose_method",
        True,
        "absorbed-dose calculation (local deposition, kernel convolution, sphere model, MC)",
        "local energy deposition",
    ),
    MethodItem(
        "s_values_source",
        False,
        "S-values or dose-voxel kernel and their source",
        "none (local deposition)",
    ),
    MethodItem("partial_volume_correction", False, "partial-volume correction", "none"),
    MethodItem(
        "segmentation",
        False,
        "segmentation (the package's shared VOIs, or describe any change)",
        "shared VOIs of the package",
    ),
    MethodItem(
        "cumulative_rule",
        True,
        f"how cycles add up to a cumulative dose: one of {', '.join(indices.CUMULATIVE_RULES)}",
        "sum",
    ),
)


def template_frame(vois: pd.DataFrame) -> pd.DataFrame:
    """The template as text cells: header names, the units row, one row per package VOI.

    Parameters
    ----------
    vois : pandas.DataFrame
        The package's VOI table (``patient_id``, ``cycle``, ``voi_id``, ``voi_name``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`TEMPLATE_COLUMNS`; row 0 the units row; then one row per VOI with the
        identifier cells filled and the result cells empty.
    """
    names = [c.name for c in TEMPLATE_COLUMNS]
    units = {c.name: c.unit for c in TEMPLATE_COLUMNS}
    units["patient_id"] = UNIT_ROW_MARK
    body = pd.DataFrame("", index=range(len(vois)), columns=names, dtype=object)
    ordered = vois.sort_values(["patient_id", "cycle", "voi_id"], kind="stable")
    for col in ("patient_id", "cycle", "voi_id", "voi_name"):
        body[col] = ordered[col].astype(str).to_numpy()
    return pd.concat([pd.DataFrame([units]), body], ignore_index=True)[names]


def method_sheet_frame(values: dict[str, str] | None = None) -> pd.DataFrame:
    """The method sheet: ``item``, ``value`` (empty unless given), ``description``."""
    values = values or {}
    return pd.DataFrame(
        {
            "item": [m.item for m in METHOD_ITEMS],
            "value": [values.get(m.item, "") for m in METHOD_ITEMS],
            "description": [
                f"{'required' if m.required else 'optional'}: {m.description} (e.g. {m.example})"
                for m in METHOD_ITEMS
            ],
        }
    )


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV bytes of a frame (no index); floats are written with full precision."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode("utf-8")


def write_template_csv(
    template: pd.DataFrame, method: pd.DataFrame, folder: Path, *, overwrite: bool = False
) -> list[Path]:
    """Write ``results_template.csv`` and ``method_sheet.csv`` into ``folder`` (atomic)."""
    from harmonize._fs import write_bytes_atomic

    return [
        write_bytes_atomic(folder / "results_template.csv", csv_bytes(template), overwrite),
        write_bytes_atomic(folder / "method_sheet.csv", csv_bytes(method), overwrite),
    ]


def xlsx_bytes(template: pd.DataFrame, method: pd.DataFrame) -> bytes:
    """An XLSX workbook with the sheets ``results`` and ``method``, byte-identical per input.

    Cells are written as they are in the frames (text for identifiers; numbers stay numbers
    when a frame holds numbers). The workbook's creation/modification times are pinned so
    that the same package gives the same bytes (determinism).
    """
    from datetime import datetime

    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = RESULTS_SHEET
    for frame, ws in ((template, sheet), (method, book.create_sheet(METHOD_SHEET))):
        ws.append([str(c) for c in frame.columns])
        for row in frame.itertuples(index=False):  # spreadsheet writing: one call per row
            ws.append([_cell(v) for v in row])
    _excel_aids(sheet, [str(c) for c in template.columns])
    fixed = datetime(2000, 1, 1)  # a fixed, meaningless time: no date of the exercise
    book.properties.created = fixed
    book.properties.modified = fixed
    book.properties.creator = "harmonize"
    buffer = io.BytesIO()
    book.save(buffer)
    return _pin_zip_times(buffer.getvalue())


def _excel_aids(sheet: Any, names: list[str]) -> None:
    """Freeze the header and units rows; offer the accepted units as a drop-down in row 2."""
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    sheet.freeze_panes = "A3"
    kinds = {c.name: c.kind for c in TEMPLATE_COLUMNS}
    for position, name in enumerate(names, start=1):
        kind = kinds.get(name)
        if kind not in UNITS:
            continue
        choices = ",".join(u for u in UNITS[kind] if "," not in u)
        rule = DataValidation(type="list", formula1=f'"{choices}"', allow_blank=False)
        rule.error = f"accepted units: {choices}"
        sheet.add_data_validation(rule)
        rule.add(f"{get_column_letter(position)}2")


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str) and value == "":
        return None
    return value


def _pin_zip_times(data: bytes) -> bytes:
    """Rewrite a zip archive with every member dated 1980-01-01 and the workbook's save
    time pinned (deterministic bytes, no date of the exercise in the file)."""
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            item = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            item.compress_type = zipfile.ZIP_DEFLATED
            content = source.read(info.filename)
            if info.filename == "docProps/core.xml":  # openpyxl stamps "modified" at save
                content = re.sub(
                    rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)",
                    rb"\g<1>2000-01-01T00:00:00Z\g<2>",
                    content,
                )
            target.writestr(item, content)
    return out.getvalue()


def write_template_xlsx(
    template: pd.DataFrame,
    method: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Write the XLSX template (sheets ``results`` and ``method``) atomically."""
    from harmonize._fs import write_bytes_atomic

    return write_bytes_atomic(Path(path), xlsx_bytes(template, method), overwrite)
