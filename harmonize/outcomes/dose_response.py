"""Dose–response per workflow: does a published cutoff survive a change of workflow?

Joins the ``patient_index`` table (doses of every workflow, truth included when present)
with the ``clinical`` table (outcomes) on ``patient_id`` and returns tidy tables that the
report renders and ``harmonize compare`` writes:

* ``outcome_cutoffs`` — each published cutoff (``harmonize/data/cutoffs.csv``) applied to
  each workflow's doses, **raw** (the published number as it stands) and **translated**
  (the number the compare engine's cutoff translation gives in that workflow's scale):
  patients below/above, hazard ratio below vs above (Cox, Efron ties) with its CI and
  p-value, log-rank χ² and p, median survival of each group;
* ``outcome_cox`` — hazard ratio per 10 Gy of each dose index of each workflow (the forest
  plot), unadjusted and adjusted for grade when the clinical table has it, with Harrell's C;
* ``outcome_optimal_cutoffs`` — the maximally selected log-rank cutoff of each index and
  workflow with its bootstrap CI and corrected p-values, beside the published cutoff;
* ``outcome_km`` — Kaplan–Meier steps below/above each published cutoff per workflow;
* ``outcome_table1`` — baseline characteristics per centre ("Table 1").

**Landmarks** (no immortal-time bias): a cycle-1 index is known once the cycle-1 dosimetry
is done, ``CYCLE1_LANDMARK_MONTHS`` (day 7, the last imaging day of the Bordet and Milan
schedules, METHODS.md) after the start of treatment; a cumulative index (cycle "end") is
known at treatment end, ``TREATMENT_END_LANDMARK_MONTHS`` (four cycles eight weeks apart —
Lutathera SmPC — put cycle 4 at week 24, its dosimetry at week 25 ≈ 5.75 months, rounded up
to 6 [assumed]). Patients whose event or censoring comes before the landmark are left out
and times are counted from the landmark (:func:`harmonize.outcomes.landmark`). Clinical
times are months from the start of cycle 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from harmonize.compare import CompareError
from harmonize.compare.cutoffs import END_OF_TREATMENT, treatment_end
from harmonize.outcomes.cutoff import optimal_cutoff
from harmonize.outcomes.survival import (
    OutcomesError,
    concordance_index,
    cox,
    kaplan_meier,
    landmark,
    logrank,
)

__all__ = [
    "CYCLE1_LANDMARK_MONTHS",
    "ENDPOINT_BY_CUTOFF",
    "TREATMENT_END_LANDMARK_MONTHS",
    "analysis_set",
    "cutoff_survival",
    "dose_cox",
    "dose_response_tables",
    "km_curves",
    "optimal_cutoffs",
    "table1",
]

#: Months from the start of cycle 1 to the end of cycle-1 dosimetry (day 7; 30.4375 d/month).
CYCLE1_LANDMARK_MONTHS = 7.0 / 30.4375
#: Months from the start of cycle 1 to the end of treatment dosimetry [assumed, see above].
TREATMENT_END_LANDMARK_MONTHS = 6.0
#: Endpoint of each published cutoff; PFS unless listed (cutoffs.csv notes: Hebert 2024
#: found shorter *overall* survival below 52.5 Gy minimum cumulative lesion dose).
ENDPOINT_BY_CUTOFF: Mapping[str, str] = {"hebert2024_min_cum": "os"}

_ENDPOINT_COLUMNS = {"pfs": ("pfs_months", "pfs_event"), "os": ("os_months", "os_event")}


def _landmark_for(cycle: str) -> float:
    return CYCLE1_LANDMARK_MONTHS if str(cycle) == "1" else TREATMENT_END_LANDMARK_MONTHS


def analysis_set(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    index: str,
    cycle: str = "1",
    endpoint: str = "pfs",
) -> pd.DataFrame:
    """Doses of every workflow joined to the outcome, landmark applied.

    Parameters
    ----------
    patient_index : pandas.DataFrame
        ``patient_index`` rows (``patient_id``, ``cycle``, ``workflow`` and ``index``).
    clinical : pandas.DataFrame
        ``clinical`` rows.
    index : str
        Dose index column.
    cycle : str
        ``"1"`` (cycle-1 value) or ``"end"`` (``"last"`` in older cutoff tables): the
        treatment totals (:func:`harmonize.compare.treatment_end`).
    endpoint : {"pfs", "os"}
        Outcome.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``workflow``, ``dose_gy``, ``time_months`` (from the landmark),
        ``event``, ``landmark_months`` and the clinical baseline columns.
    """
    if endpoint not in _ENDPOINT_COLUMNS:
        raise OutcomesError(f"endpoint must be 'pfs' or 'os', got {endpoint!r}")
    need = {"patient_id", "cycle", "workflow", index}
    if not need <= set(patient_index.columns):
        raise OutcomesError(f"patient_index lacks {sorted(need - set(patient_index.columns))}")
    duration, event = _ENDPOINT_COLUMNS[endpoint]
    if not {"patient_id", duration, event} <= set(clinical.columns):
        raise OutcomesError(f"clinical table lacks {duration!r} or {event!r}")
    rows = patient_index
    if str(cycle) in (END_OF_TREATMENT, "last"):
        # treatment totals on a common planned treatment (incomplete totals are null)
        try:
            rows = treatment_end(rows, f"index {index!r}")
        except CompareError as exc:
            raise OutcomesError(str(exc)) from exc
    else:
        rows = rows[rows["cycle"] == int(cycle)]
    doses = rows[["patient_id", "workflow", index]].rename(columns={index: "dose_gy"})
    doses = doses.dropna(subset=["dose_gy"])
    outcome = clinical.dropna(subset=[duration, event]).copy()
    outcome["time_months"] = outcome[duration].astype(float)
    outcome["event"] = outcome[event].astype(int)
    at = _landmark_for(cycle)
    outcome = landmark(outcome, "time_months", "event", at)
    merged = doses.merge(outcome, on="patient_id", how="inner", validate="many_to_one")
    merged["landmark_months"] = at
    return merged.sort_values(["workflow", "patient_id"], kind="stable").reset_index(drop=True)


def _above(dose: pd.Series, operator: str, cutoff: float) -> pd.Series:
    if operator == ">=":
        return dose >= cutoff
    if operator == ">":
        return dose > cutoff
    raise OutcomesError(f"cutoff operator must be '>=' or '>', got {operator!r}")


def _split_stats(part: pd.DataFrame, above: pd.Series) -> dict[str, Any]:
    """Log-rank, Cox HR (below vs above) and group medians for one split."""
    d = part.assign(below=(~above).astype(int))
    out: dict[str, Any] = {
        "n": len(d),
        "n_events": int(d["event"].sum()),
        "n_below": int(d["below"].sum()),
        "n_above": int(len(d) - d["below"].sum()),
    }
    nan = float("nan")
    out.update(
        hr_below=nan,
        ci_low=nan,
        ci_high=nan,
        p_cox=nan,
        logrank_chi2=nan,
        logrank_p=nan,
        median_below_months=nan,
        median_above_months=nan,
        note="",
    )
    if out["n_below"] == 0 or out["n_above"] == 0:
        out["note"] = (
            "all patients " + ("above" if out["n_below"] == 0 else "below") + " the cutoff"
        )
        return out
    if out["n_events"] == 0:
        out["note"] = "no events"
        return out
    lr = logrank(d, "time_months", "event", "below")
    km = kaplan_meier(d, "time_months", "event", "below")
    medians = km.groupby("group")["median"].first()
    try:
        hr = cox(d, "time_months", "event", ["below"]).iloc[0]
        out.update(
            hr_below=float(hr["hr"]),
            ci_low=float(hr["ci_low"]),
            ci_high=float(hr["ci_high"]),
            p_cox=float(hr["p"]),
        )
    except OutcomesError:
        out["note"] = "no events in one group: hazard ratio not estimable"
    out.update(
        logrank_chi2=lr.statistic,
        logrank_p=lr.pvalue,
        median_below_months=float(medians.get(1, nan)),
        median_above_months=float(medians.get(0, nan)),
    )
    return out


def _cutoff_specs(cutoffs: pd.DataFrame | None) -> pd.DataFrame:
    if cutoffs is not None:
        return cutoffs
    from harmonize.compare import load_cutoffs

    return load_cutoffs()


def cutoff_survival(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    cutoffs: pd.DataFrame | None = None,
    translations: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each published cutoff on each workflow's doses, raw and translated (module docstring).

    Parameters
    ----------
    patient_index, clinical : pandas.DataFrame
        The two tables.
    cutoffs : pandas.DataFrame, optional
        Cutoff table (default: :func:`harmonize.compare.load_cutoffs`).
    translations : pandas.DataFrame, optional
        The compare engine's ``cutoff_translation`` table (``cutoff_key``,
        ``to_workflow``, ``estimate_gy``); without it only raw rows are returned.

    Returns
    -------
    pandas.DataFrame
        One row per cutoff × workflow × variant (``raw`` / ``translated``).
    """
    rows = []
    for spec in _cutoff_specs(cutoffs).itertuples(index=False):
        endpoint = ENDPOINT_BY_CUTOFF.get(str(spec.key), "pfs")
        if str(spec.index) not in patient_index.columns:
            continue
        data = analysis_set(patient_index, clinical, str(spec.index), str(spec.cycle), endpoint)
        home = str(spec.centre).strip().lower()
        for workflow, part in data.groupby("workflow", sort=True):
            variants = [("raw", float(spec.cutoff_gy))]
            if translations is not None and not translations.empty and workflow != home:
                hit = translations[
                    (translations["cutoff_key"] == spec.key)
                    & (translations["to_workflow"] == workflow)
                ]
                if not hit.empty:
                    variants.append(("translated", float(hit["estimate_gy"].iloc[0])))
            for variant, cut in variants:
                above = _above(part["dose_gy"], str(spec.operator), cut)
                rows.append(
                    {
                        "cutoff_key": spec.key,
                        "index": spec.index,
                        "cycle": str(spec.cycle),
                        "endpoint": endpoint,
                        "published_gy": float(spec.cutoff_gy),
                        "from_workflow": home,
                        "workflow": workflow,
                        "variant": variant,
                        "cutoff_gy": cut,
                        "operator": str(spec.operator),
                        "landmark_months": float(part["landmark_months"].iloc[0]),
                        **_split_stats(part, above),
                    }
                )
    return pd.DataFrame(rows)


def _indices(cutoffs: pd.DataFrame, patient_index: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = cutoffs[["index", "cycle"]].astype(str).drop_duplicates()
    return [(i, c) for i, c in pairs.itertuples(index=False) if i in patient_index.columns]


def dose_cox(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    cutoffs: pd.DataFrame | None = None,
    per_gy: float = 10.0,
    adjust: Sequence[str] = ("grade",),
) -> pd.DataFrame:
    """Hazard ratio per ``per_gy`` of each published index, per workflow (forest plot).

    Each row: ``index``, ``cycle``, ``endpoint``, ``workflow``, ``model`` (``unadjusted`` or
    ``adjusted: grade``), ``hr``, ``ci_low``, ``ci_high``, ``p``, ``n``, ``n_events``,
    ``c_index`` (Harrell's C of the dose alone, higher dose = longer survival expected).
    """
    specs = _cutoff_specs(cutoffs)
    rows = []
    for index, cycle in _indices(specs, patient_index):
        keys = specs.loc[(specs["index"] == index) & (specs["cycle"].astype(str) == cycle), "key"]
        endpoint = ENDPOINT_BY_CUTOFF.get(str(keys.iloc[0]), "pfs")
        data = analysis_set(patient_index, clinical, index, cycle, endpoint)
        usable = [
            c
            for c in adjust
            if c in data.columns and data[c].notna().all() and data[c].nunique() > 1
        ]
        for workflow, part in data.groupby("workflow", sort=True):
            if part["event"].sum() < 2 or part["dose_gy"].nunique() < 2:
                continue
            c_index = concordance_index(part, "time_months", "event", "dose_gy")
            models = [("unadjusted", ["dose_gy"])]
            if usable:
                models.append((f"adjusted: {', '.join(usable)}", ["dose_gy", *usable]))
            for name, terms in models:
                try:
                    fit = cox(part, "time_months", "event", terms, per={"dose_gy": per_gy}).iloc[0]
                except OutcomesError:
                    continue  # not estimable (monotone likelihood): no row
                rows.append(
                    {
                        "index": index,
                        "cycle": cycle,
                        "endpoint": endpoint,
                        "workflow": workflow,
                        "model": name,
                        "per_gy": per_gy,
                        "hr": float(fit["hr"]),
                        "ci_low": float(fit["ci_low"]),
                        "ci_high": float(fit["ci_high"]),
                        "p": float(fit["p"]),
                        "n": int(fit["n"]),
                        "n_events": int(fit["n_events"]),
                        "c_index": c_index,
                    }
                )
    return pd.DataFrame(rows)


def optimal_cutoffs(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    cutoffs: pd.DataFrame | None = None,
    n_boot: int = 1000,
    n_perm: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The optimal cutoff of each published index per workflow, beside the published one."""
    specs = _cutoff_specs(cutoffs)
    rows = []
    for spec in specs.itertuples(index=False):
        if str(spec.index) not in patient_index.columns:
            continue
        endpoint = ENDPOINT_BY_CUTOFF.get(str(spec.key), "pfs")
        data = analysis_set(patient_index, clinical, str(spec.index), str(spec.cycle), endpoint)
        for workflow, part in data.groupby("workflow", sort=True):
            base = {
                "cutoff_key": spec.key,
                "index": spec.index,
                "cycle": str(spec.cycle),
                "endpoint": endpoint,
                "published_gy": float(spec.cutoff_gy),
                "workflow": workflow,
            }
            try:
                res = optimal_cutoff(
                    part,
                    "time_months",
                    "event",
                    "dose_gy",
                    n_boot=n_boot,
                    n_perm=n_perm,
                    seed=seed,
                )
            except OutcomesError as exc:
                rows.append({**base, "n": len(part), "note": str(exc)})
                continue
            rows.append(
                {
                    **base,
                    "cutoff_gy": res.cutoff,
                    "ci_low_gy": res.ci[0],
                    "ci_high_gy": res.ci[1],
                    "ci_level": res.ci_level,
                    "statistic": res.statistic,
                    "pvalue_adjusted": res.pvalue_adjusted,
                    "pvalue_permutation": res.pvalue_permutation,
                    "pvalue_naive": res.pvalue_naive,
                    "n": res.n,
                    "n_events": res.n_events,
                    "n_low": res.n_low,
                    "n_high": res.n_high,
                    "n_boot": res.n_boot,
                    "published_inside_ci": bool(res.ci[0] <= spec.cutoff_gy <= res.ci[1]),
                    "note": "",
                }
            )
    return pd.DataFrame(rows)


def km_curves(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    cutoffs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Kaplan–Meier steps below/above each published cutoff (raw) per workflow."""
    parts = []
    for spec in _cutoff_specs(cutoffs).itertuples(index=False):
        if str(spec.index) not in patient_index.columns:
            continue
        endpoint = ENDPOINT_BY_CUTOFF.get(str(spec.key), "pfs")
        data = analysis_set(patient_index, clinical, str(spec.index), str(spec.cycle), endpoint)
        for workflow, part in data.groupby("workflow", sort=True):
            above = _above(part["dose_gy"], str(spec.operator), float(spec.cutoff_gy))
            d = part.assign(side=np.where(above, "above", "below"))
            km = kaplan_meier(d, "time_months", "event", "side")
            parts.append(
                km.rename(columns={"group": "side"}).assign(
                    cutoff_key=spec.key, workflow=workflow, endpoint=endpoint
                )
            )
    if not parts:
        return pd.DataFrame()
    cols = ["cutoff_key", "workflow", "endpoint", "side"]
    out = pd.concat(parts, ignore_index=True)
    return out[cols + [c for c in out.columns if c not in cols]]


_TABLE1_CATEGORICAL = (
    "sex",
    "age_band",
    "primary_site",
    "grade",
    "stage",
    "sstr_uptake_score",
    "best_response",
)
_TABLE1_NUMERIC = ("ki67_pct", "prior_lines", "follow_up_months")


def table1(clinical: pd.DataFrame, *, by: str = "center") -> pd.DataFrame:
    """Baseline characteristics per ``by`` group and overall ("Table 1").

    Categorical characteristics: count and percentage of the group's patients with a known
    value; numeric ones: median and inter-quartile range. Missing values are counted as
    ``missing``.

    Returns
    -------
    pandas.DataFrame
        ``characteristic``, ``level``, ``group``, ``n``, ``value`` (formatted), ``statistic``.
    """
    if by not in clinical.columns:
        clinical = clinical.assign(**{by: "all"})
    groups = [(str(g), part) for g, part in clinical.groupby(by, sort=True)]
    if len(groups) > 1:
        groups.append(("all", clinical))
    rows = []
    for name, part in groups:
        rows.append(
            {
                "characteristic": "patients",
                "level": "",
                "group": name,
                "n": len(part),
                "value": str(len(part)),
                "statistic": "n",
            }
        )
        for col in _TABLE1_CATEGORICAL:
            if col not in part.columns:
                continue
            values = part[col].astype("string").fillna("missing")
            known = int((values != "missing").sum())
            for level, count in values.value_counts().sort_index().items():
                pct = 100.0 * count / known if known and level != "missing" else float("nan")
                text = f"{count}" if level == "missing" else f"{count} ({pct:.0f} %)"
                rows.append(
                    {
                        "characteristic": col,
                        "level": str(level),
                        "group": name,
                        "n": int(count),
                        "value": text,
                        "statistic": "n (%)",
                    }
                )
        for col in _TABLE1_NUMERIC:
            if col not in part.columns:
                continue
            x = pd.to_numeric(part[col], errors="coerce").dropna()
            if x.empty:
                continue
            q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
            rows.append(
                {
                    "characteristic": col,
                    "level": "",
                    "group": name,
                    "n": len(x),
                    "value": f"{med:.1f} [{q1:.1f}–{q3:.1f}]",
                    "statistic": "median [IQR]",
                }
            )
    return pd.DataFrame(rows)


def dose_response_tables(
    patient_index: pd.DataFrame,
    clinical: pd.DataFrame,
    *,
    translations: pd.DataFrame | None = None,
    cutoffs: pd.DataFrame | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """All dose–response tables (module docstring), keyed by their file stem."""
    specs = _cutoff_specs(cutoffs)
    return {
        "outcome_cutoffs": cutoff_survival(
            patient_index, clinical, cutoffs=specs, translations=translations
        ),
        "outcome_cox": dose_cox(patient_index, clinical, cutoffs=specs),
        "outcome_optimal_cutoffs": optimal_cutoffs(
            patient_index, clinical, cutoffs=specs, n_boot=n_boot, n_perm=n_boot, seed=seed
        ),
        "outcome_km": km_curves(patient_index, clinical, cutoffs=specs),
        "outcome_table1": table1(clinical),
    }
