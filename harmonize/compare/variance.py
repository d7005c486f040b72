"""Within-subject variability (wSD, wCV, repeatability) and variance components.

References
----------
- BA1996a: Bland JM, Altman DG. Measurement error. BMJ 1996;313:744,
  doi:10.1136/bmj.313.7059.744 (within-subject SD; repeatability 2.77·s_w).
- BA1996b: Bland JM, Altman DG. Measurement error proportional to the mean. BMJ
  1996;313:106, doi:10.1136/bmj.313.7049.106 (log method for the CV).
- Hyslop2009: Hyslop NP, White WH. Estimating precision using duplicate measurements.
  J Air Waste Manag Assoc 2009;59:1032–1039, doi:10.3155/1047-3289.59.9.1032 (RMS CV).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

from harmonize.compare._common import CompareError, check_ci_level, two_sided_z

__all__ = ["WithinSubjectResult", "variance_components", "within_subject"]


@dataclass(frozen=True)
class WithinSubjectResult:
    """Within-subject variability of replicate measurements.

    Attributes
    ----------
    wsd : float
        Within-subject SD s_w (pooled, BA1996a).
    wsd_ci : tuple of float
        Chi-square interval on Σ(m_i − 1) df.
    wcv : float
        Within-subject coefficient of variation (fraction, not %), by ``cv_method``.
    repeatability : float
        Repeatability coefficient ``z·sqrt(2)·s_w`` (2.77 s_w at 95 %).
    cv_method : str
    n_subjects, n_obs, df : int
    """

    wsd: float
    wsd_ci: tuple[float, float]
    wcv: float
    repeatability: float
    cv_method: str
    n_subjects: int
    n_obs: int
    df: int
    ci_level: float


def _long(
    values: ArrayLike | pd.DataFrame, subject: str | None, value: str | None
) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(values, pd.DataFrame) and subject is not None and value is not None:
        for col in (subject, value):
            if col not in values.columns:
                raise CompareError(f"column {col!r} not in values")
        y = pd.to_numeric(values[value], errors="raise").to_numpy(np.float64)
        codes = pd.factorize(values[subject])[0]
        return y, codes
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise CompareError(
            "values must be a 2-D array (subjects × replicates) or a DataFrame with "
            "subject= and value= column names"
        )
    codes = np.repeat(np.arange(arr.shape[0]), arr.shape[1])
    return arr.ravel(), codes


def within_subject(
    values: ArrayLike | pd.DataFrame,
    *,
    subject: str | None = None,
    value: str | None = None,
    cv_method: Literal["rms", "log"] = "rms",
    ci_level: float = 0.95,
) -> WithinSubjectResult:
    """Within-subject SD, CV and repeatability coefficient.

    Definitions followed: ``s_w² = Σ_i Σ_j (y_ij − ȳ_i)² / Σ_i (m_i − 1)`` (pooled
    within-subject variance, BA1996a); repeatability coefficient ``z_{(1+level)/2}·√2·s_w``
    (= 2.77 s_w); wCV by ``cv_method``:

    - ``"rms"``: root-mean-square of the per-subject CVs, ``sqrt(mean(s_i²/ȳ_i²))``
      (Hyslop2009), each s_i with ddof = 1;
    - ``"log"``: ``sqrt(exp(s_w,ln²) − 1)`` where s_w,ln is the within-subject SD of the
      natural logs (BA1996b); needs positive values.

    In a workflow comparison a subject is a lesion (or patient) and the replicates are the
    workflows' values.

    Parameters
    ----------
    values : array_like or pandas.DataFrame
        2-D array (subjects × replicates, NaN = missing replicate) or a long DataFrame
        with ``subject`` and ``value`` columns.
    subject, value : str, optional
        Column names for the long form.
    cv_method : {"rms", "log"}, default "rms"
    ci_level : float, default 0.95
        Level of the wSD interval and of the repeatability coefficient.

    Returns
    -------
    WithinSubjectResult

    Examples
    --------
    >>> r = within_subject([[10.0, 12.0], [20.0, 22.0], [30.0, 33.0]])
    >>> round(r.wsd, 4)
    1.6833
    """
    level = check_ci_level(ci_level)
    y, codes = _long(values, subject, value)
    keep = np.isfinite(y)
    y, codes = y[keep], codes[keep]
    codes = np.unique(codes, return_inverse=True)[1]
    m = np.bincount(codes).astype(np.float64)
    multi = m >= 2
    if np.count_nonzero(multi) < 2:
        raise CompareError("within_subject needs at least 2 subjects with ≥ 2 replicates")
    sel = multi[codes]
    y, codes = y[sel], np.unique(codes[sel], return_inverse=True)[1]
    m = np.bincount(codes).astype(np.float64)
    means = np.bincount(codes, weights=y) / m
    ss = np.bincount(codes, weights=(y - means[codes]) ** 2)
    df = int(np.sum(m - 1))
    s2 = float(ss.sum() / df)
    if cv_method == "rms":
        if np.any(means == 0):
            raise CompareError("a subject mean is zero; the RMS within-subject CV is undefined")
        wcv = math.sqrt(float(np.mean((ss / (m - 1)) / means**2)))
    elif cv_method == "log":
        if np.any(y <= 0):
            raise CompareError("cv_method='log' needs strictly positive values")
        ly = np.log(y)
        lmeans = np.bincount(codes, weights=ly) / m
        s2l = float(np.sum((ly - lmeans[codes]) ** 2) / df)
        wcv = math.sqrt(math.expm1(s2l))
    else:
        raise CompareError(f"cv_method must be 'rms' or 'log', got {cv_method!r}")
    alpha = 1.0 - level
    lo = math.sqrt(df * s2 / stats.chi2.ppf(1 - alpha / 2, df))
    hi = math.sqrt(df * s2 / stats.chi2.ppf(alpha / 2, df))
    wsd = math.sqrt(s2)
    return WithinSubjectResult(
        wsd=wsd,
        wsd_ci=(lo, hi),
        wcv=wcv,
        repeatability=two_sided_z(level) * math.sqrt(2.0) * wsd,
        cv_method=cv_method,
        n_subjects=int(m.size),
        n_obs=int(y.size),
        df=df,
        ci_level=level,
    )


def variance_components(
    df: pd.DataFrame,
    value: str,
    *,
    patient: str = "patient_id",
    lesion: str = "voi_id",
    workflow: str = "workflow",
) -> pd.DataFrame:
    """Patient, lesion-within-patient, workflow and residual variance components.

    Model (REML, ``statsmodels`` ``MixedLM``):
    ``y = workflow mean (fixed) + patient (random intercept) + lesion within patient
    (variance component) + residual``. The residual is the lesion × workflow
    interaction, i.e. the workflow-specific scatter. Workflows are few (2–5), so their
    effect is fitted as fixed means and reported as the moment-corrected variance of
    those means, ``s²(β̂) − tr(C V C)/(k − 1)`` (C the centring matrix, V = cov(β̂)),
    set to 0 when negative.

    Parameters
    ----------
    df : pandas.DataFrame
        Long table with one row per patient × lesion × workflow (e.g. the lesion rows of
        ``voi_dose`` for one cycle).
    value : str
        Column to decompose (e.g. ``"dose_mean_gy"``); rows with NaN are dropped.
    patient, lesion, workflow : str
        Column names. Lesion ids need only be unique within a patient.

    Returns
    -------
    pandas.DataFrame
        Index ``component`` ∈ {patient, lesion_within_patient, workflow, residual};
        columns ``variance, sd, fraction`` (of the total); ``attrs["fit"]`` holds the
        statsmodels result and ``attrs["workflow_means"]`` the fixed workflow means.
    """
    import statsmodels.formula.api as smf

    for col in (value, patient, lesion, workflow):
        if col not in df.columns:
            raise CompareError(f"column {col!r} not in df (columns: {list(df.columns)})")
    data = pd.DataFrame(
        {
            "y": pd.to_numeric(df[value], errors="raise").astype(np.float64),
            "p": df[patient].astype(str),
            "l": df[patient].astype(str) + "\x1f" + df[lesion].astype(str),
            "w": df[workflow].astype(str),
        }
    ).dropna()
    k = data["w"].nunique()
    if k < 2 or data["p"].nunique() < 2:
        raise CompareError("variance_components needs ≥ 2 workflows and ≥ 2 patients")
    if data.groupby("p")["l"].nunique().max() < 2:
        raise CompareError("variance_components needs some patients with ≥ 2 lesions")
    model = smf.mixedlm(
        "y ~ 0 + C(w)", data, groups=data["p"], re_formula="1", vc_formula={"l": "0 + C(l)"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels convergence chatter
        fit: Any = model.fit(reml=True)
    var_p = float(fit.cov_re.iloc[0, 0])
    var_l = float(fit.vcomp[0])
    var_e = float(fit.scale)
    beta = np.asarray(fit.fe_params, dtype=np.float64)
    cov = np.asarray(fit.cov_params().iloc[:k, :k], dtype=np.float64)
    centre = np.eye(k) - 1.0 / k
    var_w = max(float(beta.var(ddof=1) - np.trace(centre @ cov @ centre) / (k - 1)), 0.0)
    var = np.array([var_p, var_l, var_w, var_e])
    out = pd.DataFrame(
        {"variance": var, "sd": np.sqrt(var), "fraction": var / var.sum()},
        index=pd.Index(
            ["patient", "lesion_within_patient", "workflow", "residual"], name="component"
        ),
    )
    out.attrs["fit"] = fit
    out.attrs["workflow_means"] = pd.Series(
        beta, index=[n.removeprefix("C(w)[").removesuffix("]") for n in fit.fe_params.index]
    )
    return out
