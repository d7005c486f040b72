"""Section 11 of the report: the EANM dosimetry reporting checklist, per workflow.

Every item of :data:`CHECKLIST_ITEMS` (Lassmann2011; Stokke2024 Table 4) is filled from
the workflow's results and parameters, or marked :data:`NOT_REPORTED`.

References
----------
- Lassmann2011: Lassmann M, Chiesa C, Flux G, Bardiès M. EANM Dosimetry Committee guidance
  document: good practice of clinical dosimetry reporting. Eur J Nucl Med Mol Imaging
  2011;38:192–200, doi:10.1007/s00259-010-1549-3.
- Stokke2024: Stokke C, Gnesin S, Tran-Gia J, et al. EANM guidance document: dosimetry for
  first-in-human studies and early phase clinical trials. Eur J Nucl Med Mol Imaging
  2024;51:1268–1286, doi:10.1007/s00259-024-06640-x (Table 4: parameters to report).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmonize.report._data import DVH_POINTS, _AdapterInfo, _administered, _Data, _parameters
from harmonize.report.html import _details, _esc, _num, _p, _slug, _table

__all__ = [
    "CHECKLIST_ITEMS",
    "LASSMANN2011",
    "NOT_REPORTED",
    "STOKKE2024",
    "ChecklistItem",
]

#: The phrase used for every checklist item a workflow's results do not document.
NOT_REPORTED = "not reported by this workflow"


LASSMANN2011 = "Lassmann2011"
STOKKE2024 = "Stokke2024 Table 4"


@dataclass(frozen=True)
class ChecklistItem:
    """One item of the EANM dosimetry reporting checklist.

    Attributes
    ----------
    key : str
        Identifier.
    label : str
        What a reviewer looks for.
    references : str
        Where the item is asked for.
    parameter_pattern : str
        Regular expression matched (case-insensitive) against the workflow's parameter
        names; matching parameters are quoted with their values and sources.
    description_pattern : str
        Regular expression matched (case-insensitive) against the adapter's one-line
        method description; a match alone marks the item "described only" (the method
        is named but no data or parameter documents it).
    """

    key: str
    label: str
    references: str
    parameter_pattern: str
    description_pattern: str = r"$^"


_BOTH = f"{LASSMANN2011}; {STOKKE2024}"
#: The checklist items, in report order (Lassmann2011; Stokke2024 Table 4).
CHECKLIST_ITEMS: tuple[ChecklistItem, ...] = (
    ChecklistItem("activity", "Administered activity", _BOTH, r"activity|injected"),
    ChecklistItem("admin_time", "Time of administration (relative)", _BOTH, r"injection"),
    ChecklistItem("time_points", "Imaging time points", _BOTH, r"time_point|schedule"),
    ChecklistItem("tac", "Activity at each imaging time point", _BOTH, r"$^"),
    ChecklistItem("calibration", "Quantitative calibration", _BOTH, r"calib|sensitiv", r"calibrat"),
    ChecklistItem(
        "recovery",
        "Recovery (partial-volume) correction",
        _BOTH,
        r"recover|^rc_|pvc|partial",
        r"\bRC\b|recovery|partial.volume",
    ),
    ChecklistItem(
        "segmentation",
        "Segmentation (VOI definition)",
        _BOTH,
        r"segment|threshold|organ_includes|voi",
    ),
    ChecklistItem("registration", "Registration of time points", _BOTH, r"regist", r"regist"),
    ChecklistItem("volumes", "Volumes and masses", _BOTH, r"mass|density|volume"),
    ChecklistItem(
        "fit_model", "Time-activity fit model and integration", _BOTH, r"model|head|tail|fit|integr"
    ),
    ChecklistItem("fit_quality", "Fit weighting and goodness of fit", _BOTH, r"weight"),
    ChecklistItem("tia", "Time-integrated activity and TIA coefficient", _BOTH, r"tia"),
    ChecklistItem("dose_method", "Absorbed-dose calculation method", _BOTH, r"dose|engine|photon"),
    ChecklistItem(
        "s_values",
        "S-value / dose-kernel source",
        _BOTH,
        r"kernel|medium|s_value|sphere",
        r"kernel|s.value|sphere|local (energy )?deposition",
    ),
    ChecklistItem("mass_source", "Mass source (CT density or assumed)", _BOTH, r"mass|density"),
    ChecklistItem("lesion_doses", "Per-lesion absorbed doses, summary statistics", _BOTH, r"$^"),
    ChecklistItem("organ_doses", "Organ absorbed doses", _BOTH, r"$^"),
    ChecklistItem("uncertainty", "Uncertainty analysis", STOKKE2024, r"uncert"),
    ChecklistItem("software", "Software and versions", _BOTH, r"$^"),
)


def _param_lines(params: pd.DataFrame, info: _AdapterInfo, pattern: str) -> list[str]:
    rx = re.compile(pattern, re.IGNORECASE)
    out = []
    for r in params.itertuples(index=False):
        if rx.search(str(r.parameter)):
            src = info.sources.get(str(r.parameter), ("source unknown", ""))[0]
            out.append(f"{r.parameter} = {r.value} [{src}]")
    return out


def _summary(values: pd.Series, unit: str, digits: int = 3) -> str:
    v = values.astype(float).to_numpy()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ""
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    u = f" {unit}" if unit else ""
    return (
        f"n = {v.size}; median {_num(med, digits)}{u} "
        f"(IQR {_num(q1, digits)}–{_num(q3, digits)}), "
        f"range {_num(v.min(), digits)}–{_num(v.max(), digits)}{u}"
    )


def _checklist(data: _Data, w: str, info: _AdapterInfo) -> tuple[pd.DataFrame, str]:
    voi = data.voi.loc[data.voi["workflow"] == w]
    lesions = voi.loc[voi["voi_kind"] == "lesion"]
    organs = voi.loc[voi["voi_kind"] == "organ"]
    tac = data.tac.loc[data.tac["workflow"] == w] if len(data.tac) else data.tac
    params = _parameters(data.run, w)
    runs = data.run.loc[data.run["workflow"] == w] if len(data.run) else data.run
    found: dict[str, list[str]] = {}

    act = _administered(voi)
    if len(act):
        found["activity"] = [
            _summary(act["activity_mbq"], "MBq", 4)
            + " per patient-cycle (derived: TIA / TIA coefficient)"
        ]
    found["admin_time"] = [
        "t = 0 h at injection; every time in hours after injection (results keep no calendar time by design)"
    ]
    if len(tac):
        times = sorted({float(t) for t in tac["time_h"]})
        found["time_points"] = [
            f"{len(times)} distinct times: {', '.join(_num(t) for t in times)} h p.i."
        ]
        found["tac"] = [
            f"{len(tac)} VOI × time rows; medians over patient-cycles in the table below"
        ]
    elif "n_time_points" in voi.columns and len(voi):
        found["time_points"] = [
            f"n_time_points = {', '.join(str(int(n)) for n in sorted(set(voi['n_time_points'])))} (times not in the results)"
        ]
    if "recovery_coefficient" in voi.columns:
        rc = voi["recovery_coefficient"].astype(float)
        if np.isfinite(rc).any():
            found.setdefault("recovery", []).append(
                f"RC applied to {int(np.isfinite(rc).sum())} VOI rows, {_summary(rc, '')}".replace(
                    " ,", ","
                )
            )
    if (
        len(tac)
        and "recovery_corrected" in tac.columns
        and bool(tac["recovery_corrected"].astype(bool).any())
    ):
        found.setdefault("recovery", []).append("TAC activities flagged as recovery-corrected")
    kinds = voi.groupby("voi_kind")["voi_id"].nunique() if len(voi) else pd.Series(dtype=int)
    if len(kinds):
        found["segmentation"] = [
            "VOIs per kind: "
            + ", ".join(f"{k} {int(n)}" for k, n in sorted(kinds.items()))
            + " (label maps supplied with the study)"
        ]
    if len(lesions) and "volume_ml" in lesions.columns:
        found["volumes"] = [
            "lesion volume: " + _summary(lesions["volume_ml"], "mL"),
            "lesion mass: " + _summary(lesions["mass_g"], "g"),
        ]
    if "tac_model" in voi.columns and len(voi):
        counts = voi["tac_model"].value_counts().sort_index()
        found["fit_model"] = [
            "tac_model: " + ", ".join(f"{m} ({int(n)} VOI rows)" for m, n in counts.items())
        ]
    quality = []
    if "fit_r2" in voi.columns and np.isfinite(voi["fit_r2"].astype(float)).any():
        quality.append("R²: " + _summary(voi["fit_r2"], "", 3).replace("  ", " "))
    if "fit_aicc" in voi.columns and np.isfinite(voi["fit_aicc"].astype(float)).any():
        quality.append(
            f"AICc reported for {int(np.isfinite(voi['fit_aicc'].astype(float)).sum())} VOI rows"
        )
    if "flags" in voi.columns:
        tokens = pd.Series(
            # the schema's flag token, without its parameter ("=…" or "(…)")
            [
                t.split("=")[0].split("(")[0]
                for f in voi["flags"].astype(str)
                for t in f.split(";")
                if t
            ]
        )
        if len(tokens):
            quality.append(
                "flags: "
                + ", ".join(f"{k} ×{int(n)}" for k, n in tokens.value_counts().sort_index().items())
            )
    if quality:
        found["fit_quality"] = quality
    if len(lesions):
        found["tia"] = [
            "lesion TIA: " + _summary(lesions["tia_mbq_h"], "MBq·h"),
            "lesion TIA coefficient: " + _summary(lesions["tia_coefficient_h"], "h"),
        ]
    if info.description:
        found["dose_method"] = [f"{info.description} (references: {info.references or '–'})"]
    if len(lesions):
        voxel = [
            c
            for c, _ in DVH_POINTS
            if c in lesions.columns and np.isfinite(lesions[c].astype(float)).any()
        ]
        found["lesion_doses"] = [
            "lesion mean dose: "
            + _summary(lesions["dose_mean_gy"], "Gy")
            + (
                f"; voxel indices: {', '.join(voxel)}"
                if voxel
                else "; no voxel indices (min/D98/D50/D2/max)"
            )
            + (
                "; cumulative DVH of every VOI (dvh table)"
                if len(data.dvh) and bool((data.dvh["workflow"] == w).any())
                else ""
            )
            + "; per-lesion table below"
        ]
    if len(organs):
        per = organs.groupby("voi_name")["dose_mean_gy"].median().sort_index()
        found["organ_doses"] = [
            "median mean dose: " + ", ".join(f"{k} {_num(v)} Gy" for k, v in per.items())
        ]
    if len(runs) and "software_json" in runs.columns:
        soft: dict[str, set[str]] = {}
        for text in sorted(set(runs["software_json"].astype(str))):
            for k, v in json.loads(text).items():
                soft.setdefault(k, set()).add(str(v))
        versions = sorted(set(runs["workflow_version"].astype(str)))
        found["software"] = [
            f"workflow version {', '.join(versions)}; "
            + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(soft.items()))
        ]

    rows = []
    for item in CHECKLIST_ITEMS:
        lines = list(found.get(item.key, []))
        lines += _param_lines(params, info, item.parameter_pattern)
        described = bool(
            info.description and re.search(item.description_pattern, info.description, re.I)
        )
        if lines:
            state, status, text = "reported", "✔ reported", "; ".join(lines)
        elif described:
            state, status = "described", "◐ described only"
            text = (
                f"{NOT_REPORTED} as data or parameter; the adapter's method description "
                f"says: “{info.description}”"
            )
        else:
            state, status, text = "missing", "✘ missing", NOT_REPORTED
        rows.append(
            {
                "item": item.label,
                "status": status,
                "from the data": text,
                "asked for by": item.references,
                "_state": state,
            }
        )
    table = pd.DataFrame(rows)
    extra = ""
    if len(tac):
        kinds_of = voi[["patient_id", "cycle", "voi_id", "voi_kind"]].drop_duplicates()
        t = tac.merge(kinds_of, on=["patient_id", "cycle", "voi_id"], how="left")
        per_study = (
            t.groupby(["patient_id", "cycle", "time_h", "voi_kind"], sort=True)[
                ["activity_measured_mbq", "activity_fitted_mbq"]
            ]
            .sum(min_count=1)
            .reset_index()
        )
        med = (
            per_study.groupby(["time_h", "voi_kind"], sort=True)[
                ["activity_measured_mbq", "activity_fitted_mbq"]
            ]
            .median()
            .reset_index()
        )
        show = pd.DataFrame(
            {
                "time (h p.i.)": [_num(v) for v in med["time_h"]],
                "VOI kind (summed)": med["voi_kind"].astype(str),
                "measured (MBq)": [_num(v) for v in med["activity_measured_mbq"]],
                "fitted (MBq)": [_num(v) for v in med["activity_fitted_mbq"]],
            }
        )
        extra += _details(
            f"{w}: activity at each imaging time point (sum over the VOIs of a kind, median over patient-cycles)",
            _table(show, numeric=["time (h p.i.)", "measured (MBq)", "fitted (MBq)"]),
        )
    if len(lesions):
        cols = [
            c
            for c in [
                "patient_id",
                "cycle",
                "voi_id",
                "voi_name",
                "volume_ml",
                "mass_g",
                "tia_mbq_h",
                "tia_coefficient_h",
                "dose_mean_gy",
                "dose_d98_gy",
                "dose_d50_gy",
                "dose_d2_gy",
                "recovery_coefficient",
                "fit_r2",
            ]
            if c in lesions.columns
        ]
        per = lesions[cols].copy()
        numeric = [c for c in cols if c not in ("patient_id", "voi_name")]
        for c in numeric:
            per[c] = [_num(v) if c not in ("cycle", "voi_id") else str(int(v)) for v in per[c]]
        extra += _details(
            f"{w}: per-lesion doses ({len(per)} lesion rows)", _table(per, numeric=numeric)
        )
    return table, extra


def _checklist_section(data: _Data, infos: Mapping[str, _AdapterInfo]) -> str:
    parts = ['<h2 id="checklist">11. EANM dosimetry reporting checklist, per workflow</h2>']
    parts.append(
        _p(
            "The items a dosimetry report should state (Lassmann2011; Stokke2024 Table 4), "
            "filled from the results of each workflow. Parameters are quoted as name = value "
            "[source]. An item the results do not document is marked "
            f"'{NOT_REPORTED}' — a reviewer can tick the list from this page alone."
        )
    )
    if not data.compared:
        return "".join(parts) + _p("No workflow other than truth in the results.")
    for w in data.compared:
        table, extra = _checklist(data, w, infos[w])
        n_ok = int((table["_state"] == "reported").sum())
        parts.append(
            f'<h3 id="{_slug("checklist", w)}">{_esc(w)}: {n_ok} of {len(table)} items reported</h3>'
        )
        parts.append(
            _table(
                table.drop(columns="_state"),
                row_class=lambda r: "missing" if not r["status"].startswith("✔") else "",
                cell_class={"status": "status"},
            )
        )
        parts.append(extra)
    return "".join(parts)
