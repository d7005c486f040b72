"""Large simulated dose–outcome cohorts without imaging every patient.

Imaging a phantom patient and running three workflows on it costs minutes on a small
machine; a survival analysis needs hundreds of patients. A large cohort is therefore built
in two documented steps from a small cohort that *was* imaged and run:

1. **True doses.** Patient-level true doses are drawn from a log-normal distribution
   (:func:`sample_true_doses`); :func:`fit_log_normal` gives the median and log-SD of the
   imaged cohort's true doses, and the caller states which median and spread it uses.
2. **Workflow doses.** Each workflow's dose is its *measured* error against truth on the
   imaged cohort, as a calibrated multiplicative error model
   ``ln D_w = a_w + b_w · ln D_true + ε``, ε ~ N(0, σ_w²), fitted by ordinary least squares
   on the paired patients (:func:`fit_error_models`) and applied with a seeded generator
   (:func:`workflow_doses`). The model is an empirical summary of the imaged cohort: it
   carries the workflow's bias, its dose dependence and its scatter, but not the
   dependence of the error on a patient's lesion sizes beyond what the dose explains, and
   it is extrapolated outside the dose range it was fitted on (recorded in
   ``dose_range_gy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmonize.outcomes.survival import OutcomesError

__all__ = [
    "WorkflowErrorModel",
    "fit_error_models",
    "fit_log_normal",
    "sample_true_doses",
    "workflow_doses",
]


@dataclass(frozen=True)
class WorkflowErrorModel:
    """Calibrated multiplicative error of one workflow's dose index against truth.

    Attributes
    ----------
    workflow, index : str
        Workflow and dose index (``patient_index`` column).
    intercept, slope, sigma : float
        ``ln D_w = intercept + slope · ln D_true + N(0, sigma²)``.
    n_pairs : int
        Patients the model was fitted on.
    dose_range_gy : (float, float)
        Range of true doses in the fit.
    """

    workflow: str
    index: str
    intercept: float
    slope: float
    sigma: float
    n_pairs: int
    dose_range_gy: tuple[float, float]

    def median_ratio(self, true_dose_gy: float) -> float:
        """Median D_w / D_true at a true dose."""
        return float(np.exp(self.intercept + (self.slope - 1.0) * np.log(true_dose_gy)))


def fit_error_models(
    patient_index: pd.DataFrame,
    index: str = "lesion_dose_min_gy",
    *,
    cycle: int = 1,
    reference: str = "truth",
) -> list[WorkflowErrorModel]:
    """Fit each workflow's error model against the reference workflow (see module docstring).

    Parameters
    ----------
    patient_index : pandas.DataFrame
        ``patient_index`` rows of several workflows, the reference included.
    index : str
        Dose index column.
    cycle : int
        Cycle used.
    reference : str
        Workflow holding the true doses.

    Returns
    -------
    list of WorkflowErrorModel
        One per non-reference workflow, sorted by name.
    """
    from statsmodels.regression.linear_model import OLS

    need = {"patient_id", "cycle", "workflow", index}
    if not need <= set(patient_index.columns):
        raise OutcomesError(f"patient_index lacks {sorted(need - set(patient_index.columns))}")
    rows = patient_index[patient_index["cycle"] == cycle]
    wide = rows.pivot(index="patient_id", columns="workflow", values=index)
    if reference not in wide.columns:
        raise OutcomesError(f"no {reference!r} rows at cycle {cycle} to calibrate against")
    models = []
    for workflow in sorted(c for c in wide.columns if c != reference):
        pair = wide[[reference, workflow]].dropna()
        pair = pair[(pair > 0).all(axis=1)]
        if len(pair) < 5:
            raise OutcomesError(
                f"{workflow}: only {len(pair)} positive pairs with {reference} (need ≥ 5)"
            )
        x = np.log(pair[reference].to_numpy(dtype=float))
        y = np.log(pair[workflow].to_numpy(dtype=float))
        fit = OLS(y, np.column_stack([np.ones_like(x), x])).fit()
        models.append(
            WorkflowErrorModel(
                workflow=str(workflow),
                index=index,
                intercept=float(fit.params[0]),
                slope=float(fit.params[1]),
                sigma=float(np.sqrt(fit.scale)),
                n_pairs=len(pair),
                dose_range_gy=(float(np.exp(x.min())), float(np.exp(x.max()))),
            )
        )
    return models


def fit_log_normal(doses_gy: np.ndarray) -> tuple[float, float]:
    """Median and log-SD (ddof 1) of positive doses.

    Examples
    --------
    >>> m, s = fit_log_normal(np.array([10.0, 20.0, 40.0]))
    >>> round(m, 6), round(s, 4)
    (20.0, 0.6931)
    """
    x = np.asarray(doses_gy, dtype=float)
    if x.size < 2 or not (x > 0).all():
        raise OutcomesError("fit_log_normal needs at least two positive doses")
    logs = np.log(x)
    return float(np.exp(logs.mean())), float(logs.std(ddof=1))


def sample_true_doses(n: int, *, median_gy: float, log_sd: float, seed: int = 0) -> pd.DataFrame:
    """``n`` patients with log-normal true doses; ids ``S0001`` …

    Examples
    --------
    >>> sample_true_doses(3, median_gy=30.0, log_sd=0.5, seed=1)["patient_id"].tolist()
    ['S0001', 'S0002', 'S0003']
    """
    if n < 1 or median_gy <= 0 or log_sd < 0:
        raise OutcomesError(f"need n ≥ 1, median > 0, log_sd ≥ 0; got {n}, {median_gy}, {log_sd}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1516]))
    dose = median_gy * np.exp(rng.normal(0.0, log_sd, size=n))
    return pd.DataFrame({"patient_id": [f"S{i + 1:04d}" for i in range(n)], "true_dose_gy": dose})


def workflow_doses(
    true_doses: pd.DataFrame,
    models: list[WorkflowErrorModel],
    *,
    dose_column: str = "true_dose_gy",
    reference: str = "truth",
    cycle: int = 1,
    seed: int = 0,
) -> pd.DataFrame:
    """``patient_index``-like rows: the true dose and each workflow's simulated dose.

    Returns
    -------
    pandas.DataFrame
        ``patient_id``, ``cycle``, ``workflow`` and the models' index column.
    """
    if not models:
        raise OutcomesError("no error models given")
    index = models[0].index
    truth = true_doses[dose_column].to_numpy(dtype=float)
    parts = [
        pd.DataFrame({"patient_id": true_doses["patient_id"], "workflow": reference, index: truth})
    ]
    for k, m in enumerate(models):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1517, k]))
        noise = rng.normal(0.0, m.sigma, size=truth.size)
        dose = np.exp(m.intercept + m.slope * np.log(truth) + noise)
        parts.append(
            pd.DataFrame(
                {"patient_id": true_doses["patient_id"], "workflow": m.workflow, index: dose}
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out.insert(1, "cycle", np.int32(cycle))
    return out
