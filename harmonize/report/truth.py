"""Section 7 of the report: each workflow against the phantom truth.

Agreement with the workflow ``"truth"`` as reference, the error of the lesion doses by
lesion size (:func:`truth_error_by_size`) and the cutoff classification against truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from harmonize.report._data import (
    DOSE_INDICES,
    TRUTH,
    ReportError,
    _agreement_rows,
    _Data,
)
from harmonize.report.agreement import _compact_tables
from harmonize.report.cutoffs import _truth_rows
from harmonize.report.figures import _truth_figure
from harmonize.report.html import _esc, _note, _num, _p, _table

__all__ = [
    "LESION_SIZE_BANDS_ML",
    "truth_error_by_size",
]

#: Lesion-volume bands (mL) of the accuracy tables. 5 mL is a sphere of 2.1 cm diameter
#: (≈ 2 × the 11 mm FWHM of the phantom's SPECT PSF), 20 mL one of 3.4 cm (≈ 3 × FWHM, the
#: adapters' ``truth_min_volume_ml``); 100 mL separates the largest lesions [assumed
#: banding, chosen for readability, not from a publication].
LESION_SIZE_BANDS_ML: tuple[float, ...] = (0.0, 5.0, 20.0, 100.0, math.inf)


def truth_error_by_size(
    voi_dose: pd.DataFrame,
    *,
    reference: str = TRUTH,
    index: str = "dose_mean_gy",
    bands_ml: Sequence[float] = LESION_SIZE_BANDS_ML,
) -> pd.DataFrame:
    """Relative error of each workflow's lesion dose against a reference, by lesion size.

    Lesions are matched on (patient_id, cycle, voi_id) and banded by the reference's
    ``volume_ml`` (for the phantom, the true volume). The error of a lesion is
    ``100 · (D_workflow / D_reference − 1)`` in percent.

    Parameters
    ----------
    voi_dose : pandas.DataFrame
        The ``voi_dose`` table (columns patient_id, cycle, workflow, voi_id, voi_kind,
        volume_ml and ``index``).
    reference : str, default "truth"
        The reference workflow.
    index : str, default "dose_mean_gy"
        Dose column compared.
    bands_ml : sequence of float
        Increasing band edges in mL (left-closed bands ``[lo, hi)``).

    Returns
    -------
    pandas.DataFrame
        One row per workflow × band (bands without lesions are left out): ``workflow``,
        ``band`` ("5–20 mL"), ``band_low_ml``, ``band_high_ml``, ``n_lesions``,
        ``median_error_pct``, ``q25_error_pct``, ``q75_error_pct``,
        ``mean_abs_error_pct``, ``max_abs_error_pct``; sorted by workflow and band.

    Raises
    ------
    ReportError
        If a column is missing, the reference is absent, the edges are not increasing, or
        a reference dose is not positive.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({
    ...     "patient_id": ["P1"] * 4, "cycle": [1] * 4, "voi_id": [1, 2, 1, 2],
    ...     "workflow": ["truth", "truth", "w", "w"], "voi_kind": ["lesion"] * 4,
    ...     "volume_ml": [2.0, 50.0, 2.2, 49.0], "dose_mean_gy": [10.0, 20.0, 8.0, 21.0]})
    >>> t = truth_error_by_size(rows)
    >>> [(b, n, round(e, 6)) for b, n, e in t[["band", "n_lesions", "median_error_pct"]].to_numpy()]
    [('0–5 mL', 1, -20.0), ('20–100 mL', 1, 5.0)]
    """
    needed = ["patient_id", "cycle", "workflow", "voi_id", "voi_kind", "volume_ml", index]
    missing = [c for c in needed if c not in voi_dose.columns]
    if missing:
        raise ReportError(f"voi_dose lacks column(s) {missing}")
    edges = np.asarray(bands_ml, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ReportError(f"bands_ml must be at least two increasing edges, got {list(bands_ml)}")
    lesions = voi_dose.loc[voi_dose["voi_kind"] == "lesion"]
    keys = ["patient_id", "cycle", "voi_id"]
    ref = lesions.loc[lesions["workflow"] == reference, [*keys, "volume_ml", index]]
    if len(ref) == 0:
        raise ReportError(f"reference workflow {reference!r} has no lesion rows")
    if not np.all(ref[index].to_numpy(float) > 0):
        raise ReportError(f"reference {reference!r} has non-positive {index!r} values")
    ref = ref.rename(columns={index: "ref", "volume_ml": "ref_volume_ml"})
    other = lesions.loc[lesions["workflow"] != reference, [*keys, "workflow", index]]
    merged = other.merge(ref, on=keys, how="inner").dropna(subset=[index])
    merged["error_pct"] = 100.0 * (
        merged[index].to_numpy(float) / merged["ref"].to_numpy(float) - 1.0
    )
    position = np.searchsorted(edges, merged["ref_volume_ml"].to_numpy(float), side="right") - 1
    merged = merged.assign(band_i=position).loc[(position >= 0) & (position < edges.size - 1)]
    columns = [
        "workflow",
        "band",
        "band_low_ml",
        "band_high_ml",
        "n_lesions",
        "median_error_pct",
        "q25_error_pct",
        "q75_error_pct",
        "mean_abs_error_pct",
        "max_abs_error_pct",
    ]
    if len(merged) == 0:
        return pd.DataFrame(columns=columns)
    err = merged.groupby(["workflow", "band_i"], sort=True)["error_pct"]
    out = pd.DataFrame(
        {
            "n_lesions": err.size(),
            "median_error_pct": err.median(),
            "q25_error_pct": err.quantile(0.25),
            "q75_error_pct": err.quantile(0.75),
            "mean_abs_error_pct": err.apply(lambda s: float(np.mean(np.abs(s)))),
            "max_abs_error_pct": err.apply(lambda s: float(np.max(np.abs(s)))),
        }
    ).reset_index()
    lo = edges[out["band_i"].to_numpy()]
    hi = edges[out["band_i"].to_numpy() + 1]
    out["band_low_ml"], out["band_high_ml"] = lo, hi
    out["band"] = [
        f"≥ {a:g} mL" if not math.isfinite(b) else f"{a:g}–{b:g} mL"
        for a, b in zip(lo, hi, strict=True)
    ]
    out["n_lesions"] = out["n_lesions"].astype(int)
    return out[columns].reset_index(drop=True)


def _truth_section(data: _Data, colours: Mapping[str, str]) -> str:
    parts = ['<h2 id="truth">7. Each workflow against the phantom truth</h2>']
    if not data.has_truth:
        return "".join(parts) + _p(
            "The results hold no workflow named 'truth' (not a phantom cohort): accuracy cannot be assessed."
        )
    parts.append(
        _p(
            "The phantom's known doses are the workflow 'truth'; each workflow is compared with "
            "it by the same engine (reference = truth, so a ratio above 1 means the workflow "
            "reads high)."
        )
    )
    for spec in (DOSE_INDICES[0], DOSE_INDICES[1], DOSE_INDICES[2]):
        agr = _agreement_rows(data, spec.column, spec.level, against_truth=True)
        if len(agr) == 0:
            continue
        parts.append(f"<h3>{_esc(spec.label)} vs truth (<code>{_esc(spec.column)}</code>)</h3>")
        parts.append(_compact_tables(agr))
    try:
        bands = truth_error_by_size(data.voi)
    except ReportError as exc:
        return "".join(parts) + _note(str(exc))
    show = bands.assign(
        **{
            "median error (%)": [_num(v, 2) for v in bands["median_error_pct"]],
            "IQR (%)": [
                f"{_num(a, 2)} to {_num(b, 2)}"
                for a, b in zip(bands["q25_error_pct"], bands["q75_error_pct"], strict=True)
            ],
            "mean |error| (%)": [_num(v, 2) for v in bands["mean_abs_error_pct"]],
            "max |error| (%)": [_num(v, 2) for v in bands["max_abs_error_pct"]],
            "lesions": bands["n_lesions"].astype(str),
        }
    )[
        [
            "workflow",
            "band",
            "lesions",
            "median error (%)",
            "IQR (%)",
            "mean |error| (%)",
            "max |error| (%)",
        ]
    ]
    parts.append("<h3>Lesion mean-dose error by lesion size</h3>")
    parts.append(
        _table(show, numeric=["lesions", "median error (%)", "mean |error| (%)", "max |error| (%)"])
    )
    parts.append(_truth_figure(data, colours, LESION_SIZE_BANDS_ML))
    rows = _truth_rows(data)
    if len(rows):
        parts.append("<h3>Cutoff classification against truth</h3>")
        parts.append(_table(rows, numeric=["patients", "misclassified vs truth"]))
    return "".join(parts)
