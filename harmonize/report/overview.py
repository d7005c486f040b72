"""Sections 1 and 2 of the report: the cohort and the workflows with their parameters."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harmonize.report._data import TRUTH, _AdapterInfo, _administered, _Data, _parameters
from harmonize.report.html import _esc, _num, _p, _table

#: No public names: :mod:`harmonize.report` re-exports the package's public API.
__all__: list[str] = []


def _cycle_ranges(cycles: list[int]) -> str:
    """``[1, 2, 3, 4]`` → "1–4"; ``[1, 2, 4]`` → "1–2, 4"; ``[1, 4]`` → "1, 4"."""
    runs: list[list[int]] = []
    for c in sorted(cycles):
        if runs and c == runs[-1][-1] + 1:
            runs[-1].append(c)
        else:
            runs.append([c])
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def _cohort_section(data: _Data) -> str:
    voi = data.voi
    ref = TRUTH if data.has_truth else data.workflows[0]
    lesions = voi.loc[(voi["workflow"] == ref) & (voi["voi_kind"] == "lesion")]
    studies = voi[["patient_id", "cycle"]].drop_duplicates()
    patients = sorted(str(p) for p in studies["patient_id"].unique())
    cycles = sorted(int(c) for c in studies["cycle"].unique())
    per = (
        studies.groupby("patient_id")["cycle"]
        .apply(lambda s: ", ".join(str(int(c)) for c in sorted(s)))
        .rename("cycles")
    )
    n_les = lesions.groupby("patient_id")["voi_id"].nunique().rename("lesions")
    vol = lesions.groupby("patient_id")["volume_ml"].agg(["min", "max"])
    activity = _administered(voi).groupby("patient_id")["activity_mbq"].agg(["min", "max"])
    rows = []
    for pid in patients:
        lo, hi = (vol.loc[pid, "min"], vol.loc[pid, "max"]) if pid in vol.index else (np.nan,) * 2
        alo, ahi = (
            (activity.loc[pid, "min"], activity.loc[pid, "max"])
            if pid in activity.index
            else (np.nan, np.nan)
        )
        rows.append(
            {
                "patient": pid,
                "cycles": per.get(pid, ""),
                "lesions": int(n_les.get(pid, 0)),
                "lesion volume range (mL)": f"{_num(lo)} – {_num(hi)}",
                "administered activity per cycle (MBq)": f"{_num(alo, 4)} – {_num(ahi, 4)}",
            }
        )
    kinds = voi.loc[voi["workflow"] == ref].groupby("voi_kind")["voi_id"].nunique()
    intro = (
        f"{len(patients)} patients · cycles {_cycle_ranges(cycles)} · {len(studies)} "
        f"patient-cycles · {int(lesions[['patient_id', 'voi_id']].drop_duplicates().shape[0])} "
        f"distinct lesions (counted in workflow '{ref}'). VOI kinds: "
        + ", ".join(f"{k} {int(v)}" for k, v in sorted(kinds.items()))
        + ". Administered activity is derived as TIA / TIA coefficient (the results hold no "
        "activity column); time zero is the injection."
    )
    return (
        '<h2 id="cohort">1. Cohort</h2>'
        + _p(intro)
        + _table(pd.DataFrame(rows), numeric=["lesions"])
    )


def _workflows_section(data: _Data, infos: Mapping[str, _AdapterInfo]) -> str:
    parts = ['<h2 id="workflows">2. Workflows and their parameters</h2>']
    parts.append(
        _p(
            "Each workflow reproduces one centre's method. Parameters are the effective values "
            "recorded in the run table (after overrides); the source of each is the "
            "publication key declared by the adapter, or 'assumed' when no source states it. "
            "Sources are read from the installed adapter; an adapter not installed where this "
            "report was built shows its recorded values without sources."
        )
    )
    rules = (
        data.patient.groupby("workflow")["cum_rule"].agg(
            lambda s: ", ".join(sorted({str(v).split(":")[0] for v in s}))
        )
        if "cum_rule" in data.patient.columns
        else pd.Series(dtype=object)
    )
    rows = []
    for w in data.workflows:
        info = infos[w]
        versions = (
            sorted(set(data.voi.loc[data.voi["workflow"] == w, "workflow_version"].astype(str)))
            if "workflow_version" in data.voi.columns
            else []
        )
        rows.append(
            {
                "workflow": w,
                "centre": info.center or ("phantom ground truth" if w == TRUTH else "–"),
                "version": ", ".join(versions) or "–",
                "method": info.description
                or (
                    "the phantom's known doses (noise-free TIA, same physics)"
                    if w == TRUTH
                    else "–"
                ),
                "references": info.references or "–",
                "cumulative rule": str(rules.get(w, "–")),
                "adapter installed here": "yes" if info.installed else "no",
            }
        )
    parts.append(_table(pd.DataFrame(rows)))
    for w in data.compared:
        info = infos[w]
        params = _parameters(data.run, w)
        if len(params) == 0:
            parts.append(f"<h4>{_esc(w)}</h4>" + _p("No run table rows: parameters not recorded."))
            continue
        params["source"] = [info.sources.get(p, ("–", ""))[0] for p in params["parameter"]]
        params["description"] = [info.sources.get(p, ("", "–"))[1] for p in params["parameter"]]
        parts.append(f"<h4>{_esc(w)}: parameters</h4>" + _table(params))
    return "".join(parts)
