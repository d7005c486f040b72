"""Comparisons that know the uncertainty: En numbers and cutoff classes with probabilities.

Reads tables only: ``voi_dose.dose_mean_u_gy`` and ``patient_index.*_u_gy``
(:mod:`harmonize.uncertainty`, schema 1.2.0). Rows without an uncertainty (files before
1.2.0, the phantom's truth) are used with u = 0 where that is meaningful (a reference
value) and reported as such.

Normalised differences (ISO 13528:2022 §9.7; ISO/IEC 17043)
    ``En = (x_a − x_b)/√(U_a² + U_b²)`` with expanded uncertainties ``U = 2u`` (k = 2);
    ``|En| <= 1`` means the two results agree within their uncertainties. Against the
    phantom's truth (``U_b = 0``) the share of ``|En| <= 1`` is the **k = 2 coverage**: the
    fraction of results whose ``|x − truth| <= 2u``, about 95 % for an honest uncertainty
    with a Gaussian error.
Probability above a cutoff
    With the index ``x`` and its standard uncertainty ``u``, the probability that the true
    index is above the cutoff ``c`` is ``Φ((x − c)/u)`` [assumed: a Gaussian state of
    knowledge; the Monte Carlo distribution of a minimum is skewed, so this is an
    approximation the tables do not hide]. A patient is ``"above"`` when that probability
    is > 95 %, ``"below"`` when < 5 %, ``"uncertain"`` in between. Without ``u`` the class
    is the point classification and the probability is null.
Discordance beyond uncertainty
    Two workflows that classify a patient differently disagree *beyond uncertainty* when
    one says "above" and the other "below" with the classes above (each > 95 % sure);
    a discordance where either is "uncertain" may be noise.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from harmonize.compare._common import CompareError
from harmonize.compare.agreement import LESION_KEYS, PATIENT_KEYS, Level, align

__all__ = [
    "CLASS_LEVELS",
    "NormalisedDifferences",
    "budget_shares",
    "cutoff_probabilities",
    "normalised_differences",
    "uncertain_discordance",
    "uncertainty_column",
]

#: Probabilities that bound the "uncertain" class (5 % and 95 %).
CLASS_LEVELS = (0.05, 0.95)
#: Coverage factor of the expanded uncertainty in En (ISO 13528).
COVERAGE_FACTOR = 2.0


def uncertainty_column(index: str) -> str:
    """The standard-uncertainty column of an index (``dose_mean_gy`` → ``dose_mean_u_gy``)."""
    if not index.endswith("_gy"):
        raise CompareError(f"index {index!r} is not a dose column (expected a name ending _gy)")
    return index[: -len("_gy")] + "_u_gy"


@dataclass(frozen=True)
class NormalisedDifferences:
    """Result of :func:`normalised_differences`.

    Attributes
    ----------
    pairs : pandas.DataFrame
        One row per aligned key × workflow pair: the keys, ``workflow_a``, ``workflow_b``,
        ``x_a``, ``x_b``, ``u_a``, ``u_b`` (standard, Gy; 0 for a workflow without one),
        ``en``.
    summary : pandas.DataFrame
        One row per workflow pair: ``index``, ``level``, ``workflow_a``, ``workflow_b``,
        ``n_pairs`` (with a finite En), ``share_en_within_1``, ``median_abs_en``.
    """

    pairs: pd.DataFrame
    summary: pd.DataFrame


def normalised_differences(
    results: pd.DataFrame | Mapping[str, pd.DataFrame],
    index: str = "dose_mean_gy",
    level: Level = "lesion",
    *,
    workflows: Sequence[str] | None = None,
    reference: str | None = None,
) -> NormalisedDifferences:
    """En numbers per VOI (or patient) for every workflow pair (module docstring).

    Parameters
    ----------
    results : DataFrame or mapping
        ``voi_dose`` (lesion level) or ``patient_index`` (patient level), or a mapping.
    index : str
        Dose column; its uncertainty is :func:`uncertainty_column` of it.
    level : {"lesion", "patient"}
    workflows : sequence of str, optional
        Workflows to pair (default all).
    reference : str, optional
        Pair every workflow with this one only (e.g. ``"truth"``: then the share of
        ``|En| <= 1`` is the k = 2 coverage).
    """
    u_col = uncertainty_column(index)
    x, _ = align(results, index, level, workflows=workflows)
    table = (
        results
        if isinstance(results, pd.DataFrame)
        else results["voi_dose" if level == "lesion" else "patient_index"]
    )
    if u_col in table.columns:
        u, _ = align(
            table.assign(**{u_col: table[u_col].fillna(0.0)}), u_col, level, workflows=workflows
        )
        u = u.reindex(index=x.index, columns=x.columns)
    else:
        u = pd.DataFrame(0.0, index=x.index, columns=x.columns)
    names = list(x.columns)
    if reference is not None:
        if reference not in names:
            raise CompareError(f"reference {reference!r} not among workflows {names}")
        pairs = [(w, reference) for w in names if w != reference]
    else:
        pairs = list(itertools.combinations(names, 2))
    keys = list(LESION_KEYS if level == "lesion" else PATIENT_KEYS)
    parts, summary = [], []
    for wa, wb in pairs:
        both = x[[wa, wb]].notna().all(axis=1)
        xa, xb = x.loc[both, wa], x.loc[both, wb]
        ua, ub = u.loc[both, wa].fillna(0.0), u.loc[both, wb].fillna(0.0)
        expanded = COVERAGE_FACTOR * np.sqrt(ua**2 + ub**2)
        with np.errstate(divide="ignore", invalid="ignore"):
            en = np.where(expanded > 0, (xa - xb) / expanded, np.nan)
        frame = xa.index.to_frame(index=False)
        frame = frame.assign(
            workflow_a=wa, workflow_b=wb, x_a=xa.to_numpy(), x_b=xb.to_numpy(),
            u_a=ua.to_numpy(), u_b=ub.to_numpy(), en=en,
        )  # fmt: skip
        parts.append(frame)
        finite = np.isfinite(en)
        n = int(finite.sum())
        summary.append(
            {
                "index": index,
                "level": level,
                "workflow_a": wa,
                "workflow_b": wb,
                "n_pairs": n,
                "share_en_within_1": float(np.mean(np.abs(en[finite]) <= 1.0)) if n else math.nan,
                "median_abs_en": float(np.median(np.abs(en[finite]))) if n else math.nan,
            }
        )
    columns = [*keys, "workflow_a", "workflow_b", "x_a", "x_b", "u_a", "u_b", "en"]
    pairs_table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    return NormalisedDifferences(pairs_table[columns], pd.DataFrame(summary))


_OPS = {">=": operator.ge, ">": operator.gt}


def cutoff_probabilities(
    patient_index: pd.DataFrame, cutoffs: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Probability that each patient is above each cutoff in each workflow, and its class.

    Returns
    -------
    pandas.DataFrame
        ``cutoff_key, index, cutoff_gy, operator, patient_id, cycle, workflow, value_gy,
        u_gy, p_above, class`` (``class`` ∈ above / below / uncertain). The cycle is
        selected as :func:`harmonize.compare.cutoff_agreement` does.
    """
    from harmonize.compare.cutoffs import _select, load_cutoffs

    cuts = load_cutoffs() if cutoffs is None else cutoffs
    parts = []
    for cut in cuts.itertuples(index=False):
        if cut.index not in patient_index.columns:
            raise CompareError(f"cutoff {cut.key!r}: index {cut.index!r} not in patient_index")
        u_col = uncertainty_column(cut.index)
        sel = _select(patient_index, cut)
        value = sel[cut.index].to_numpy(np.float64)
        u = sel[u_col].to_numpy(np.float64) if u_col in sel.columns else np.full(len(sel), np.nan)
        keep = np.isfinite(value)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(u > 0, norm.cdf((value - cut.cutoff_gy) / u), np.nan)
        point = _OPS[cut.operator](value, cut.cutoff_gy)
        low, high = CLASS_LEVELS
        cls = np.where(
            np.isnan(p),
            np.where(point, "above", "below"),
            np.where(p > high, "above", np.where(p < low, "below", "uncertain")),
        )
        parts.append(
            pd.DataFrame(
                {
                    "cutoff_key": cut.key,
                    "index": cut.index,
                    "cutoff_gy": float(cut.cutoff_gy),
                    "operator": cut.operator,
                    "patient_id": sel["patient_id"].to_numpy(),
                    "cycle": sel["cycle"].to_numpy(),
                    "workflow": sel["workflow"].to_numpy(),
                    "value_gy": value,
                    "u_gy": u,
                    "p_above": p,
                    "class": cls,
                }
            )[keep]
        )
    return pd.concat(parts, ignore_index=True)


def uncertain_discordance(probabilities: pd.DataFrame) -> pd.DataFrame:
    """Per cutoff and workflow pair: discordant patients, and those discordant beyond u.

    Parameters
    ----------
    probabilities : pandas.DataFrame
        From :func:`cutoff_probabilities`.

    Returns
    -------
    pandas.DataFrame
        ``cutoff_key, workflow_a, workflow_b, n_patients, n_discordant`` (point classes
        differ), ``n_discordant_beyond_uncertainty`` (one "above", the other "below"),
        ``n_uncertain_a``, ``n_uncertain_b``.
    """
    rows = []
    for key, group in probabilities.groupby("cutoff_key", sort=False):
        point = group.assign(point=group["value_gy"].to_numpy() >= group["cutoff_gy"].to_numpy())
        point.loc[group["operator"] == ">", "point"] = group["value_gy"] > group["cutoff_gy"]
        wide_cls = point.pivot(index="patient_id", columns="workflow", values="class")
        wide_pt = point.pivot(index="patient_id", columns="workflow", values="point")
        for wa, wb in itertools.combinations(sorted(wide_cls.columns), 2):
            both = wide_cls[[wa, wb]].notna().all(axis=1)
            ca, cb = wide_cls.loc[both, wa], wide_cls.loc[both, wb]
            pa, pb = wide_pt.loc[both, wa].astype(bool), wide_pt.loc[both, wb].astype(bool)
            beyond = ((ca == "above") & (cb == "below")) | ((ca == "below") & (cb == "above"))
            rows.append(
                {
                    "cutoff_key": key,
                    "workflow_a": wa,
                    "workflow_b": wb,
                    "n_patients": int(both.sum()),
                    "n_discordant": int((pa != pb).sum()),
                    "n_discordant_beyond_uncertainty": int(beyond.sum()),
                    "n_uncertain_a": int((ca == "uncertain").sum()),
                    "n_uncertain_b": int((cb == "uncertain").sum()),
                }
            )
    return pd.DataFrame(rows)


def budget_shares(
    uncertainty: pd.DataFrame, voi_dose: pd.DataFrame, kind: str = "lesion"
) -> pd.DataFrame:
    """The uncertainty budget per workflow: each component's share of the dose variance.

    For every VOI of ``kind`` the share of a component is ``dose_u_rel² / Σ dose_u_rel²``
    (the components are independent, so the shares add to one, as in Gear 2018's worked
    example); the table gives their mean over the workflow's VOIs (0 for a VOI without the
    component, so the means add to one too), ``n_vois`` the VOIs that have the component,
    and its median contribution over them.

    Returns
    -------
    pandas.DataFrame
        ``workflow, component, n_vois, mean_share, median_dose_u_rel``.
    """
    key = ["patient_id", "cycle", "workflow", "voi_id"]
    kinds = voi_dose[[*key, "voi_kind"]]
    rows = uncertainty.merge(kinds, on=key, how="inner")
    rows = rows.loc[rows["voi_kind"] == kind].copy()
    columns = ["workflow", "component", "n_vois", "mean_share", "median_dose_u_rel"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    variance = rows["dose_u_rel"] ** 2
    total = variance.groupby([rows[k] for k in key]).transform("sum")
    rows["share"] = np.where(total > 0, variance / total, np.nan)
    out = (
        rows.groupby(["workflow", "component"], sort=True)
        .agg(
            n_vois=("share", "size"),
            share_sum=("share", "sum"),
            median_dose_u_rel=("dose_u_rel", "median"),
        )
        .reset_index()
    )
    # a component a VOI does not have contributes a share of 0 to the mean over the VOIs
    vois = rows.groupby("workflow")[key].apply(lambda f: len(f.drop_duplicates()))
    out["mean_share"] = out["share_sum"] / out["workflow"].map(vois)
    return out[columns]
