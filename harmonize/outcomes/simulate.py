"""Simulated clinical outcomes from the phantom's *true* doses: a dose–response with a known answer.

The model (every number a named field of :class:`OutcomeModel`, with its source or the word
"assumed"):

* **Progression-free survival** is Weibull with proportional hazards,
  ``h(t | x) = h₀(t) · exp(β·x)``, ``h₀`` of shape ``weibull_shape`` scaled so that a
  patient at or above the threshold with reference covariates has median PFS
  ``median_pfs_above_months``. The dose enters as

  - a **threshold** (default): hazard ratio ``hr_below_threshold`` when the true dose is
    below ``threshold_gy`` (35 Gy of true minimum lesion dose after cycle 1, the LUMEN
    cutoff, Mileva 2024). Under Weibull proportional hazards the ratio of medians is
    ``HR^(1/shape)``; the default HR = (48.1 / 26.2)^1.2 ≈ 2.07 reproduces LUMEN's mPFS
    48.1 vs 26.2 months (Mileva 2024, J Nucl Med 65:236) with shape 1.2 [assumed];
  - and/or a **log-linear** effect, hazard ratio ``hr_per_10gy`` per 10 Gy of true dose
    (1.0 by default: none).

* **Baseline covariates** are drawn independently of dose (so they do not confound) from
  the distributions below [assumed, of the order of the NETTER-1 and LUMEN populations];
  tumour grade changes the hazard (G2: ``hr_grade2``, G3: ``hr_grade3`` [assumed]). Ki-67
  is drawn inside its grade's WHO 2019 band (G1 < 3 %, G2 3–20 %, G3 > 20 %).
* **Overall survival** = PFS event time + post-progression survival, exponential with median
  ``median_pps_months`` [assumed], so OS ≥ PFS for every patient.
* **Censoring**: accrual uniform over ``accrual_months``, analysis ``min_follow_up_months``
  after the last accrual (administrative censoring), plus exponential loss to follow-up
  with median ``median_dropout_months`` [assumed].
* **Response and safety** do not depend on dose here: RECIST 1.1 best response, eGFR change
  and CTCAE grades drawn from fixed probabilities [assumed, of the order of NETTER-1:
  objective response ≈ 18 %, grade ≥ 3 haematological toxicity ≈ 10 %]; the kidney CTCAE
  grade is set from the eGFR change (grade 1 for a 10–25 % fall, 2 beyond) [assumed].

Everything is drawn from ``numpy.random.Generator`` seeded by ``seed``: the same doses, model
and seed give the same table. The patient ids of the dose table are kept (phantom ids are
already pseudonyms).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harmonize.outcomes.survival import OutcomesError

__all__ = [
    "MILEVA2024_MEDIAN_PFS_MONTHS",
    "OutcomeModel",
    "simulate_outcomes",
    "true_patient_dose",
]

#: LUMEN median PFS above / below 35 Gy minimum lesion dose after cycle 1, months
#: (Mileva 2024, J Nucl Med 65:236–244).
MILEVA2024_MEDIAN_PFS_MONTHS = (48.1, 26.2)

_WEIBULL_SHAPE = 1.2


@dataclass(frozen=True)
class OutcomeModel:
    """Parameters of the simulated dose–response (see the module docstring).

    Attributes
    ----------
    threshold_gy : float or None
        True dose below which the hazard is ``hr_below_threshold`` times higher; None for no
        threshold.
    hr_below_threshold : float
        Hazard ratio below vs at/above the threshold.
    hr_per_10gy : float
        Hazard ratio per 10 Gy of true dose (log-linear); 1.0 = no continuous effect.
    weibull_shape : float
        Shape of the baseline Weibull hazard [assumed].
    median_pfs_above_months : float
        Median PFS at/above the threshold (grade G1, dose 0 for the log-linear term).
    hr_grade2, hr_grade3 : float
        Hazard ratios of grades G2 and G3 vs G1 [assumed].
    median_pps_months : float
        Median post-progression survival [assumed].
    accrual_months : float
        Accrual period [assumed].
    min_follow_up_months : float
        Follow-up after the last patient's start [assumed].
    median_dropout_months : float
        Median time to loss to follow-up [assumed].
    """

    threshold_gy: float | None = 35.0
    hr_below_threshold: float = (
        MILEVA2024_MEDIAN_PFS_MONTHS[0] / MILEVA2024_MEDIAN_PFS_MONTHS[1]
    ) ** _WEIBULL_SHAPE
    hr_per_10gy: float = 1.0
    weibull_shape: float = _WEIBULL_SHAPE
    median_pfs_above_months: float = MILEVA2024_MEDIAN_PFS_MONTHS[0]
    hr_grade2: float = 1.3
    hr_grade3: float = 2.0
    median_pps_months: float = 30.0
    accrual_months: float = 48.0
    min_follow_up_months: float = 24.0
    median_dropout_months: float = 240.0

    def as_dict(self) -> dict[str, float | None]:
        """The parameters as a JSON-serialisable dict (for provenance)."""
        return asdict(self)


_SITES = ("small_intestine", "pancreas", "lung", "rectum", "unknown")
_SITE_P = (0.45, 0.30, 0.08, 0.07, 0.10)
_AGE_BANDS = ("40-49", "50-59", "60-69", "70-79", "80+")
_AGE_P = (0.10, 0.25, 0.35, 0.25, 0.05)
_GRADES = ("G1", "G2", "G3")
_GRADE_P = (0.35, 0.55, 0.10)
_KI67_BAND = {"G1": (0.5, 2.9), "G2": (3.0, 20.0), "G3": (21.0, 40.0)}  # WHO 2019 grading
_RESPONSE = ("CR", "PR", "SD", "PD")
_RESPONSE_P = (0.02, 0.16, 0.70, 0.12)
_HAEM_P = (0.55, 0.25, 0.10, 0.08, 0.02)  # CTCAE grade 0..4


def true_patient_dose(
    truth: pd.DataFrame, *, cycle: int = 1, aggregate: str = "min"
) -> pd.DataFrame:
    """Patient-level true lesion dose from the phantom's truth table.

    Parameters
    ----------
    truth : pandas.DataFrame
        The phantom's ``truth.parquet`` (columns ``patient_id``, ``cycle``, ``voi_kind``,
        ``dose_mean_gy``), or ``voi_dose`` rows of the ``truth`` workflow.
    cycle : int
        Therapy cycle.
    aggregate : {"min", "median", "max", "mean"}
        Aggregate over the patient's lesions of the lesion mean dose.

    Returns
    -------
    pandas.DataFrame
        ``patient_id`` and ``true_dose_gy``, one row per patient with at least one lesion.

    Examples
    --------
    >>> t = pd.DataFrame({"patient_id": ["P1", "P1", "P2"], "cycle": 1,
    ...                   "voi_kind": "lesion", "dose_mean_gy": [30.0, 50.0, 40.0]})
    >>> true_patient_dose(t)["true_dose_gy"].tolist()
    [30.0, 40.0]
    """
    need = {"patient_id", "cycle", "voi_kind", "dose_mean_gy"}
    if not need <= set(truth.columns):
        raise OutcomesError(f"truth table lacks column(s) {sorted(need - set(truth.columns))}")
    if aggregate not in ("min", "median", "max", "mean"):
        raise OutcomesError(f"aggregate must be min, median, max or mean, got {aggregate!r}")
    rows = truth[(truth["cycle"] == cycle) & (truth["voi_kind"] == "lesion")]
    if rows.empty:
        raise OutcomesError(f"the truth table has no lesion rows at cycle {cycle}")
    out = rows.groupby("patient_id", sort=True)["dose_mean_gy"].agg(aggregate)
    return out.rename("true_dose_gy").reset_index()


def simulate_outcomes(
    doses: pd.DataFrame,
    *,
    dose_column: str = "true_dose_gy",
    model: OutcomeModel | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate a ``clinical`` table from each patient's true dose.

    Parameters
    ----------
    doses : pandas.DataFrame
        ``patient_id`` and the true dose column, one row per patient.
    dose_column : str
        Column of the true dose (Gy).
    model : OutcomeModel, optional
        The dose–response model (default: the LUMEN-like 35 Gy threshold).
    seed : int
        Seed of the generator.

    Returns
    -------
    pandas.DataFrame
        Rows of the ``clinical`` table (schema 1.2.0), ``center`` = "phantom".

    Examples
    --------
    >>> d = pd.DataFrame({"patient_id": ["P001", "P002"], "true_dose_gy": [20.0, 50.0]})
    >>> c = simulate_outcomes(d, seed=1)
    >>> bool((c["os_months"] >= c["pfs_months"]).all())
    True
    """
    model = model or OutcomeModel()
    if "patient_id" not in doses.columns or dose_column not in doses.columns:
        raise OutcomesError(f"doses need columns 'patient_id' and {dose_column!r}")
    if doses["patient_id"].duplicated().any():
        raise OutcomesError("doses must have one row per patient_id")
    dose = pd.to_numeric(doses[dose_column], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(dose).all() or (dose < 0).any():
        raise OutcomesError(f"column {dose_column!r} must hold finite doses ≥ 0 Gy")
    n = len(doses)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1515]))
    grade = rng.choice(_GRADES, size=n, p=_GRADE_P)
    ki67 = np.array([rng.uniform(*_KI67_BAND[g]) for g in grade])
    log_hr = np.log(model.hr_per_10gy) * dose / 10.0
    if model.threshold_gy is not None:
        log_hr = log_hr + np.log(model.hr_below_threshold) * (dose < model.threshold_gy)
    log_hr = log_hr + np.where(grade == "G2", np.log(model.hr_grade2), 0.0)
    log_hr = log_hr + np.where(grade == "G3", np.log(model.hr_grade3), 0.0)
    # Weibull PH: S(t) = exp(-(t/λ)^k · e^{η}); median at HR 1 is λ (ln 2)^{1/k}
    k = model.weibull_shape
    scale = model.median_pfs_above_months / np.log(2.0) ** (1.0 / k)
    u = rng.uniform(size=n)
    t_pfs = scale * (-np.log(u) * np.exp(-log_hr)) ** (1.0 / k)
    t_os = t_pfs + rng.exponential(model.median_pps_months / np.log(2.0), size=n)
    start = rng.uniform(0.0, model.accrual_months, size=n)
    admin = model.accrual_months + model.min_follow_up_months - start
    dropout = rng.exponential(model.median_dropout_months / np.log(2.0), size=n)
    censor = np.minimum(admin, dropout)
    egfr = rng.normal(-4.0, 10.0, size=n)
    return pd.DataFrame(
        {
            "patient_id": doses["patient_id"].astype(str).to_numpy(),
            "center": "phantom",
            "sex": rng.choice(("F", "M"), size=n),
            "age_band": rng.choice(_AGE_BANDS, size=n, p=_AGE_P),
            "primary_site": rng.choice(_SITES, size=n, p=_SITE_P),
            "grade": grade,
            "ki67_pct": np.round(ki67, 1),
            "stage": rng.choice(("III", "IV"), size=n, p=(0.1, 0.9)),
            "prior_lines": rng.poisson(1.0, size=n).astype(np.int32),
            "sstr_uptake_score": rng.choice((3, 4), size=n, p=(0.4, 0.6)).astype(np.int32),
            "pfs_months": np.minimum(t_pfs, censor),
            "pfs_event": t_pfs <= censor,
            "os_months": np.minimum(t_os, censor),
            "os_event": t_os <= censor,
            "follow_up_months": np.minimum(t_os, censor),
            "best_response": rng.choice(_RESPONSE, size=n, p=_RESPONSE_P),
            "response_criteria": "RECIST 1.1",
            "egfr_change_pct": np.round(egfr, 1),
            "kidney_ctcae_grade": np.where(egfr < -25.0, 2, np.where(egfr < -10.0, 1, 0)).astype(
                np.int32
            ),
            "haem_ctcae_grade": rng.choice(5, size=n, p=_HAEM_P).astype(np.int32),
        }
    )
