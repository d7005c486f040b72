"""Section 10 of the report: lesion dose–volume histograms.

Drawn from the ``dvh`` table; for results without one, a labelled piecewise-linear
summary through the voxel dose indices instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from harmonize.report._data import DVH_POINTS, _Data
from harmonize.report.figures import _dvh_figure, _dvh_summary_figure, _tac_figure
from harmonize.report.html import _num, _p

#: No public names: :mod:`harmonize.report` re-exports the package's public API.
__all__: list[str] = []

_DVH_HEADING = '<h2 id="dvh">10. Lesion dose–volume histograms</h2>'


def _dvh_lesions(data: _Data) -> pd.DataFrame:
    """The lesions whose DVHs are drawn: the smallest and the largest of one patient-cycle.

    The first patient (by id) that has a DVH of a lesion, at its first cycle with one
    (cycle 1 when measured); volumes from the ``voi_dose`` rows of the first workflow (by
    name) with a DVH there; ties by ``voi_id``. One row when the patient has one lesion.
    """
    keys = ["patient_id", "cycle", "workflow", "voi_id"]
    drawn = data.dvh[keys].drop_duplicates()
    lesions = data.voi.loc[data.voi["voi_kind"] == "lesion"].merge(drawn, on=keys)
    if lesions.empty:
        return lesions
    first = lesions.sort_values(["patient_id", "cycle", "workflow"], kind="stable").iloc[0]
    same = (
        (lesions["patient_id"] == first["patient_id"])
        & (lesions["cycle"] == first["cycle"])
        & (lesions["workflow"] == first["workflow"])
    )
    ordered = lesions.loc[same].sort_values(["volume_ml", "voi_id"], kind="stable")
    return ordered.iloc[sorted({0, len(ordered) - 1})].reset_index(drop=True)


def _dvh_section(data: _Data, colours: Mapping[str, str]) -> str:
    """Cumulative DVHs of two lesions from the ``dvh`` table, one curve per workflow."""
    parts = [_DVH_HEADING]
    picks = _dvh_lesions(data)
    if picks.empty:
        return "".join(parts) + _p(
            "The dvh table holds no lesion: no lesion dose–volume histogram drawn."
        )
    names = " and ".join(
        f"{row.get('voi_name', '')} ({_num(row['volume_ml'])} mL)" for _, row in picks.iterrows()
    )
    which = "the smallest and the largest lesion" if len(picks) > 1 else "the lesion"
    patient, cycle = str(picks.iloc[0]["patient_id"]), int(picks.iloc[0]["cycle"])
    parts.append(
        _p(
            f"Cumulative dose–volume histograms of {which} of patient {patient} at cycle "
            f"{cycle}: {names}, read from the results' dvh table. Each curve gives the "
            "percentage of the lesion volume that receives at least a dose, from the doses "
            "D_x at x = 0, 1, …, 100 % of the volume (the step DVH of the voxels, as the "
            "D2/D50/D98 of the lesion tables, which are points of these curves). "
            "Workflows without a DVH of the lesion (no voxel dose map, e.g. the sphere model, "
            "and the truth, which has a mean dose only) are drawn as a dashed vertical line "
            "at their mean dose."
        )
    )
    parts.append(_dvh_figure(data, picks, colours, which, patient, cycle))
    if len(data.tac):
        parts.append(_tac_figure(data, picks.iloc[len(picks) // 2], colours))
    return "".join(parts)


def _dvh_summary(data: _Data, colours: Mapping[str, str]) -> str:
    """Fallback without a ``dvh`` table: piecewise-linear summaries through the dose indices."""
    parts = [_DVH_HEADING]
    cols = [c for c, _ in DVH_POINTS]
    lesions = data.voi.loc[data.voi["voi_kind"] == "lesion"]
    have = [c for c in cols if c in lesions.columns]
    if len(have) < len(cols):
        return "".join(parts) + _p(
            "The results lack the voxel dose-index columns: no dose–volume summary."
        )
    complete = lesions.dropna(subset=cols)
    voxel_workflows = sorted(set(complete["workflow"]))
    parts.append(
        _p(
            "The results hold no dvh table (results written with schema 1.0.0, or by "
            "workflows without a voxel dose map), only dose indices per "
            "lesion. The curves below are therefore not DVHs: they join, by straight lines, the "
            "five points every cumulative DVH passes through by definition — 100 % of the volume "
            "at the minimum dose, 98 % at D98, 50 % at D50, 2 % at D2 and 0 % at the maximum. "
            "The true DVH lies between them, so read them as a summary of dose heterogeneity. "
            "Workflows without voxel doses (e.g. the sphere model) and the truth (mean dose only) "
            "are shown as a vertical line at their mean dose. Lesions: the smallest, a median "
            "and the largest lesion of the first cycle with voxel doses."
        )
    )
    if not voxel_workflows:
        return "".join(parts) + _p("No workflow reports voxel dose indices: no summary drawn.")
    first = complete.loc[complete["workflow"] == voxel_workflows[0]]
    first = first.loc[first["cycle"] == first["cycle"].min()].sort_values(
        ["volume_ml", "patient_id", "voi_id"], kind="stable"
    )
    picks = first.iloc[sorted({0, (len(first) - 1) // 2, len(first) - 1})]
    parts.append(_dvh_summary_figure(data, picks, colours))
    if len(data.tac):
        parts.append(_tac_figure(data, picks.iloc[len(picks) // 2], colours))
    return "".join(parts)
