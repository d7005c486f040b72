"""Reading and aligning the result tables of a report, and what the report compares.

Everything here is table work, without HTML or figures: the validated and sorted
tables (:class:`_Data`), the dose indices compared (:data:`DOSE_INDICES`), the
adapters' metadata, and the input files of :func:`harmonize.report.write_report` with
their hashes.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from harmonize.errors import HarmonizeError

__all__ = [
    "COMPARISON_TABLES",
    "DOSE_INDICES",
    "DVH_POINTS",
    "TRUTH",
    "DoseIndex",
    "ReportError",
]

#: The workflow name of the phantom's ground truth (see harmonize.runner).
TRUTH = "truth"
#: Volume fractions at which the dose indices sit on a cumulative DVH: the minimum dose is
#: received by 100 % of the volume, D98 by 98 %, D50 by 50 %, D2 by 2 % and the maximum by
#: (the limit) 0 % — by the definitions of the ``voi_dose`` columns.
DVH_POINTS: tuple[tuple[str, float], ...] = (
    ("dose_min_gy", 100.0),
    ("dose_d98_gy", 98.0),
    ("dose_d50_gy", 50.0),
    ("dose_d2_gy", 2.0),
    ("dose_max_gy", 0.0),
)


class ReportError(HarmonizeError, ValueError):
    """The inputs of a report are unusable (missing table or column, bad argument)."""


@dataclass(frozen=True)
class DoseIndex:
    """A dose index compared between workflows.

    Attributes
    ----------
    column : str
        Column of ``voi_dose`` (``level == "lesion"``) or ``patient_index``.
    level : {"lesion", "patient"}
    cycles : {"each", "last"}
        ``"each"``: every cycle's value, pooled over cycles; ``"last"``: once per patient,
        the total over the planned treatment (cumulative indices, selected by
        :func:`harmonize.compare.treatment_end`).
    label : str
        Human-readable name.
    """

    column: str
    level: Literal["lesion", "patient"]
    cycles: Literal["each", "last"]
    label: str


#: The dose indices the report compares, in report order.
DOSE_INDICES: tuple[DoseIndex, ...] = (
    DoseIndex("dose_mean_gy", "lesion", "each", "lesion mean absorbed dose"),
    DoseIndex("lesion_dose_min_gy", "patient", "each", "minimum lesion dose of a patient"),
    DoseIndex("global_mean_dose_gy", "patient", "each", "global mean lesion dose (GTD)"),
    DoseIndex(
        "cum_lesion_dose_min_gy",
        "patient",
        "last",
        "cumulative minimum lesion dose (treatment total)",
    ),
    DoseIndex(
        "cum_lesion_dose_mean_gy",
        "patient",
        "last",
        "cumulative mean lesion dose (treatment total)",
    ),
    DoseIndex(
        "cum_global_mean_dose_gy",
        "patient",
        "last",
        "cumulative global mean dose (treatment total)",
    ),
)


#: The comparison tables the report renders (written by ``harmonize compare``).
COMPARISON_TABLES: tuple[str, ...] = (
    "agreement",
    "cutoff_classifications",
    "cutoff_summary",
    "cutoff_discordant",
    "cutoff_translation",
)


@dataclass
class _Data:
    voi: pd.DataFrame
    patient: pd.DataFrame
    tac: pd.DataFrame
    run: pd.DataFrame
    dvh: pd.DataFrame
    stored_agreement: pd.DataFrame
    workflows: list[str]
    compared: list[str]
    has_truth: bool
    notes: list[str]
    tables: dict[str, pd.DataFrame]
    cutoffs: pd.DataFrame
    tables_source: str


def _comparison(
    results: Mapping[str, pd.DataFrame],
    comparison: Mapping[str, pd.DataFrame] | None,
    cutoffs: pd.DataFrame | None,
) -> tuple[dict[str, pd.DataFrame], str]:
    """The comparison tables to render: given (read from ``harmonize compare``'s folder),
    or produced here by the very function behind ``harmonize compare``, with its defaults."""
    if comparison is not None:
        missing = [t for t in COMPARISON_TABLES if t not in comparison]
        if missing:
            raise ReportError(
                f"the comparison tables lack {missing} (expected the files `harmonize compare` "
                f"writes: {', '.join(t + '.parquet' for t in COMPARISON_TABLES)})"
            )
        # every table compare wrote (the optional outcome_* and uncertainty ones too)
        return dict(comparison), "read from the comparison folder"
    from harmonize.pipeline import DEFAULT_N_BOOT, DEFAULT_SEED, compare_results

    tables = compare_results(dict(results), cutoffs=cutoffs)
    source = (
        "produced by harmonize compare's engine (harmonize.pipeline.compare_results) with its "
        f"defaults: {DEFAULT_N_BOOT} bootstrap replicates, seed {DEFAULT_SEED}"
    )
    return tables.as_dict(), source


def _prepare(
    results: Mapping[str, pd.DataFrame],
    comparison: Mapping[str, pd.DataFrame] | None = None,
    cutoffs: pd.DataFrame | None = None,
) -> _Data:
    if not isinstance(results, Mapping):
        raise ReportError(
            f"results must be a mapping of table name to DataFrame, got {type(results).__name__}"
        )
    if "voi_dose" not in results or len(results["voi_dose"]) == 0:
        raise ReportError(
            f"results has no rows in table 'voi_dose' (tables given: {sorted(results)}); "
            "a report needs at least the voi_dose table"
        )
    voi = results["voi_dose"].copy()
    needed = ["patient_id", "cycle", "workflow", "voi_id", "voi_kind", "dose_mean_gy"]
    missing = [c for c in needed if c not in voi.columns]
    if missing:
        raise ReportError(f"table 'voi_dose' lacks column(s) {missing}")
    notes: list[str] = []
    patient = results.get("patient_index")
    if patient is None or len(patient) == 0:
        raise ReportError(
            "the results hold no patient_index table; `harmonize run` writes it (the report "
            "computes no index of its own)"
        )
    from harmonize.indices import fill_cumulative_basis

    patient = fill_cumulative_basis(patient)
    empty = pd.DataFrame()
    tac = results.get("tac", empty)
    run = results.get("run", empty)
    stored = results.get("agreement", empty)
    sort = ["patient_id", "cycle", "workflow"]
    dvh = results.get("dvh", empty)
    if len(dvh):
        dvh_keys = [*sort, "voi_id", "volume_pct"]
        lacking = [c for c in [*dvh_keys, "dose_gy"] if c not in dvh.columns]
        if lacking:
            raise ReportError(f"table 'dvh' lacks column(s) {lacking}")
        dvh = dvh.sort_values(dvh_keys, kind="stable").reset_index(drop=True)
    voi = voi.sort_values([*sort, "voi_id"], kind="stable").reset_index(drop=True)
    patient = patient.sort_values(sort, kind="stable").reset_index(drop=True)
    workflows = sorted(str(w) for w in voi["workflow"].unique())
    compared = [w for w in workflows if w != TRUTH]
    from harmonize import compare

    cuts = compare.load_cutoffs() if cutoffs is None else cutoffs
    tables, source = _comparison(
        {**results, "voi_dose": voi, "patient_index": patient}, comparison, cuts
    )
    return _Data(
        voi=voi,
        patient=patient,
        tac=tac,
        run=run,
        dvh=dvh,
        stored_agreement=stored,
        workflows=workflows,
        compared=compared,
        has_truth=TRUTH in workflows,
        notes=notes,
        tables=tables,
        cutoffs=cuts,
        tables_source=source,
    )


def _index_table(data: _Data, spec: DoseIndex) -> pd.DataFrame:
    """The rows an index is drawn from: cumulative indices once per patient (the treatment
    totals selected by :func:`harmonize.compare.treatment_end`, as ``compare`` does)."""
    if spec.level == "lesion":
        return data.voi
    if spec.cycles == "last":
        from harmonize import compare

        return compare.treatment_end(data.patient)
    return data.patient


def _agreement_rows(
    data: _Data, column: str, level: str, *, against_truth: bool = False
) -> pd.DataFrame:
    """The rows of ``compare``'s agreement table for one index: between the workflows, or
    each workflow against the truth."""
    agr = data.tables["agreement"]
    sel = agr.loc[(agr["index"] == column) & (agr["level"] == level)]
    is_truth = (sel["workflow_a"] == TRUTH) | (sel["workflow_b"] == TRUTH)
    return sel.loc[is_truth if against_truth else ~is_truth].reset_index(drop=True)


def _reporting(table: pd.DataFrame, column: str, workflows: Sequence[str]) -> list[str]:
    """Workflows with at least one finite value of ``column``."""
    if column not in table.columns:
        return []
    sub = table.loc[table["workflow"].isin(list(workflows))]
    finite = sub.groupby("workflow")[column].apply(
        lambda s: bool(np.isfinite(s.astype(float)).any())
    )
    return sorted(str(w) for w, ok in finite.items() if ok)


def _captured(func: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Call ``func`` recording harmonize warnings as text (they become notes)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = func()
    messages = sorted({str(w.message) for w in caught})
    return value, messages


def _parameters(run: pd.DataFrame, workflow: str) -> pd.DataFrame:
    """Distinct parameter values of a workflow's runs: parameter, value, overridden."""
    if len(run) == 0 or "parameters_json" not in run.columns:
        return pd.DataFrame(columns=["parameter", "value", "overridden"])
    rows = run.loc[run["workflow"] == workflow]
    values: dict[str, set[str]] = {}
    overridden: set[str] = set()
    for text in sorted(set(rows["parameters_json"].astype(str))):
        for key, value in json.loads(text).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    if "overrides_json" in rows.columns:
        for text in sorted(set(rows["overrides_json"].astype(str))):
            overridden |= set(json.loads(text or "{}"))
    return pd.DataFrame(
        {
            "parameter": sorted(values),
            "value": [" | ".join(sorted(values[k])) for k in sorted(values)],
            "overridden": ["yes" if k in overridden else "" for k in sorted(values)],
        }
    )


@dataclass(frozen=True)
class _AdapterInfo:
    installed: bool
    center: str
    version: str
    description: str
    references: str
    url: str
    cumulative_rule: str
    sources: dict[str, tuple[str, str]]


def _adapter_info(workflow: str) -> _AdapterInfo:
    """Metadata and parameter sources of an installed adapter (empty when not installed)."""
    from harmonize.registry import list_workflows

    installed, _ = _captured(list_workflows)
    cls = installed.get(workflow)
    if cls is None:
        return _AdapterInfo(False, "", "", "", "", "", "", {})
    table = cls.Config.describe()
    sources = {str(r.parameter): (str(r.source), str(r.description)) for r in table.itertuples()}
    return _AdapterInfo(
        True,
        str(cls.center),
        str(cls.version),
        str(cls.description),
        ", ".join(cls.references),
        str(cls.url),
        str(cls.cumulative_rule),
        sources,
    )


def _administered(voi: pd.DataFrame) -> pd.DataFrame:
    """Administered activity per study and workflow, derived as TIA / TIA coefficient."""
    if not {"tia_mbq_h", "tia_coefficient_h"} <= set(voi.columns):
        return pd.DataFrame(columns=["patient_id", "cycle", "workflow", "activity_mbq"])
    ok = (voi["tia_coefficient_h"] > 0) & np.isfinite(voi["tia_mbq_h"].astype(float))
    sub = voi.loc[ok].assign(activity_mbq=voi["tia_mbq_h"] / voi["tia_coefficient_h"])
    return sub.groupby(["patient_id", "cycle", "workflow"])["activity_mbq"].median().reset_index()


def _input_files(results_dir: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(results_dir.rglob("*.parquet")):
        if any(part.startswith(".") for part in path.relative_to(results_dir).parts):
            continue
        data = path.read_bytes()
        out[path.relative_to(results_dir).as_posix()] = (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
    return out


def _read_agreement_dir(
    directory: Path,
) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[int, str]]]:
    if not directory.is_dir():
        raise ReportError(f"agreement_dir {directory} is not a directory")
    tables, files = {}, {}
    for path in sorted(directory.rglob("*.parquet")):
        rel = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        files[f"agreement/{rel}"] = (len(data), hashlib.sha256(data).hexdigest())
        tables[f"agreement/{rel}"] = pd.read_parquet(io.BytesIO(data))
    for path in sorted(directory.rglob("*.csv")):
        rel = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        files[f"agreement/{rel}"] = (len(data), hashlib.sha256(data).hexdigest())
        tables[f"agreement/{rel}"] = pd.read_csv(io.BytesIO(data))
    return tables, files
