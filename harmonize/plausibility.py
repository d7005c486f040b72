"""Physical plausibility of a workflow's per-VOI results: flags, fallbacks and refusals.

A dosimetry number that is wrong without a flag is worse than no number. Every adapter's
``voi_dose`` rows pass through :func:`check_voi_results` (refusal: the number is
meaningless) and :func:`flag_voi_results` (flag: the number is computed but suspect) in
:meth:`harmonize.workflow.WorkflowAdapter.run`; the CT density guard
(:func:`density_with_fallback`) is applied where the adapters turn CT into mass.

Refusals (:class:`~harmonize.workflow.WorkflowError`, naming the VOI)
    a TIA that is not finite and > 0; a mass or mean dose that is not finite, a negative
    mean dose.

Flags (tokens of the ``flags`` column; every token is an enum value of the results schema,
``data_schema/harmonize-results.schema.json`` → ``flag_tokens``)
    ``implausible_density``
        The VOI's mean density from CT lies outside :data:`TISSUE_DENSITY_RANGE_G_ML`
        (e.g. air, −1000 HU, inside a lesion); its voxels took the nominal soft-tissue density
        :data:`NOMINAL_DENSITY_G_ML` instead (the declared fallback).
    ``implausible_dose``
        Mean dose above :data:`DOSE_SANITY_BOUND_GY_PER_CYCLE` for one cycle.
    ``implausible_tia``
        TIA above the physical bound ``A₀/λ_phys`` (all the injected activity in the VOI from
        t = 0 with no biological clearance): only a wrong calibration or unit gives this.
    ``poor_fit``
        The fit's r² (the ``fit_r2`` column, unweighted, at the sampling points) is below
        :data:`POOR_FIT_R2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from harmonize.nuclides import get_nuclide

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = [
    "DOSE_SANITY_BOUND_GY_PER_CYCLE",
    "NOMINAL_DENSITY_G_ML",
    "POOR_FIT_R2",
    "TISSUE_DENSITY_RANGE_G_ML",
    "check_voi_results",
    "density_with_fallback",
    "flag_voi_results",
    "join_flags",
]

#: Mass densities (g/mL) a VOI of tissue can have on average: from inflated lung (0.26 g/cm³)
#: to cortical bone (1.92 g/cm³), both ICRU Report 44 (1989, body tissue compositions). A VOI whose CT mean
#: falls outside holds air, metal or a mis-registered CT, not tissue.
TISSUE_DENSITY_RANGE_G_ML = (0.26, 1.92)
#: Nominal density used as the fallback: ICRU-44 soft tissue, as the adapters' default.
NOMINAL_DENSITY_G_ML = 1.04
#: Sanity bound of a VOI mean absorbed dose in one cycle [assumed]: about ten times the
#: highest published cumulative lesion cutoff (Montpellier, 91.4 Gy over all cycles,
#: ARCHITECTURE.md) and well above the lesion doses per cycle of 177Lu-DOTATATE series
#: (tens of Gy). A dose beyond it is computed but flagged, not refused.
DOSE_SANITY_BOUND_GY_PER_CYCLE = 1000.0
#: r² below which a fit is flagged ``poor_fit`` [assumed]: a fit explaining less than 80 %
#: of the variance of the time-activity points.
POOR_FIT_R2 = 0.8


def join_flags(*tokens: str) -> str:
    """Join non-empty ``;``-separated flag strings, without duplicates, in order."""
    items: list[str] = []
    for text in tokens:
        items.extend(t for t in str(text).split(";") if t)
    return ";".join(dict.fromkeys(items))


def density_with_fallback(
    density_g_ml: np.ndarray, labels: np.ndarray, voi_ids: Sequence[int], kinds: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Replace the density of lesion/organ VOIs whose CT mean is not tissue.

    Parameters
    ----------
    density_g_ml : ndarray (z, y, x)
        Density from CT.
    labels : ndarray (z, y, x)
        VOI label map.
    voi_ids, kinds : sequences
        The VOI table's ids and kinds (``body`` and ``background`` VOIs hold air
        legitimately and are not checked).

    Returns
    -------
    density : ndarray
        A copy with the flagged VOIs' own voxels at :data:`NOMINAL_DENSITY_G_ML`.
    flags : list of str
        ``"implausible_density"`` or ``""`` per VOI, in ``voi_ids`` order.
    """
    ids = np.asarray(voi_ids, dtype=np.int64)
    flat = np.clip(np.asarray(labels).ravel(), 0, None).astype(np.int64)
    size = max(int(flat.max(initial=0)), int(ids.max(initial=0))) + 1
    count = np.bincount(flat, minlength=size)[ids]
    total = np.bincount(flat, weights=np.asarray(density_g_ml, float).ravel(), minlength=size)[ids]
    mean = np.divide(total, count, out=np.full(ids.size, np.nan), where=count > 0)
    low, high = TISSUE_DENSITY_RANGE_G_ML
    checked = np.isin(np.asarray(kinds, dtype=object), ("lesion", "organ"))
    bad = checked & (count > 0) & ((mean < low) | (mean > high))
    out = np.array(density_g_ml, dtype=np.float64, copy=True)
    if bad.any():
        out[np.isin(labels, ids[bad])] = NOMINAL_DENSITY_G_ML
    return out, ["implausible_density" if b else "" for b in bad]


def check_voi_results(voi_dose: pd.DataFrame, where: str) -> None:
    """Refuse rows whose TIA, mass or mean dose is not a physical number.

    Raises
    ------
    harmonize.workflow.WorkflowError
        Naming the study (``where``), the VOI and the column.
    """
    from harmonize.workflow import WorkflowError

    checks = (
        ("tia_mbq_h", "a finite TIA > 0", lambda v: np.isfinite(v) & (v > 0)),
        ("mass_g", "a finite mass > 0", lambda v: np.isfinite(v) & (v > 0)),
        ("dose_mean_gy", "a finite mean dose ≥ 0", lambda v: np.isfinite(v) & (v >= 0)),
    )
    for column, expected, ok in checks:
        values = voi_dose[column].to_numpy(np.float64)
        bad = ~ok(values)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            row = voi_dose.iloc[k]
            raise WorkflowError(
                f"{where}: VOI {int(row['voi_id'])} ({row['voi_name']}): {column} = "
                f"{values[k]:.6g}, expected {expected}"
                + (f" ({int(bad.sum()) - 1} more VOI(s) alike)" if bad.sum() > 1 else "")
            )


def flag_voi_results(
    voi_dose: pd.DataFrame, injected_activity_mbq: float, radionuclide: str
) -> pd.DataFrame:
    """Add ``implausible_dose``, ``implausible_tia`` and ``poor_fit`` flags (a copy)."""
    out = voi_dose.copy()
    lam_phys = get_nuclide(radionuclide).decay_constant_per_h
    tia_bound = float(injected_activity_mbq) / lam_phys
    dose = out["dose_mean_gy"].to_numpy(np.float64)
    tia = out["tia_mbq_h"].to_numpy(np.float64)
    r2 = out["fit_r2"].to_numpy(np.float64) if "fit_r2" in out else np.full(len(out), np.nan)
    extra = [
        join_flags(
            "implausible_dose" if d > DOSE_SANITY_BOUND_GY_PER_CYCLE else "",
            "implausible_tia" if t > tia_bound else "",
            "poor_fit" if np.isfinite(r) and r < POOR_FIT_R2 else "",
        )
        for d, t, r in zip(dose, tia, r2, strict=True)
    ]
    out["flags"] = [join_flags(a, b) for a, b in zip(out["flags"], extra, strict=True)]
    return out
