"""Intraclass correlation coefficients (Shrout–Fleiss / McGraw–Wong forms).

References
----------
- SF1979: Shrout PE, Fleiss JL. Intraclass correlations: uses in assessing rater
  reliability. Psychol Bull 1979;86:420–428, doi:10.1037/0033-2909.86.2.420.
- MW1996: McGraw KO, Wong SP. Forming inferences about some intraclass correlation
  coefficients. Psychol Methods 1996;1:30–46, doi:10.1037/1082-989X.1.1.30
  (erratum Psychol Methods 1996;1:390).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from harmonize.compare._common import CompareError, check_ci_level

__all__ = ["ICC_FORMS", "MCGRAW_WONG_NAMES", "icc", "icc_from_matrix", "icc_mixed"]

#: Row labels of :func:`icc` (Shrout–Fleiss notation, k = number of raters).
ICC_FORMS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)")

#: McGraw–Wong (MW1996) names of the same coefficients: one-way, two-way random absolute
#: agreement (A), two-way mixed consistency (C); single (1) or mean of k ratings (k).
MCGRAW_WONG_NAMES = {
    "ICC(1,1)": "ICC(1)",
    "ICC(2,1)": "ICC(A,1)",
    "ICC(3,1)": "ICC(C,1)",
    "ICC(1,k)": "ICC(k)",
    "ICC(2,k)": "ICC(A,k)",
    "ICC(3,k)": "ICC(C,k)",
}


def icc_from_matrix(y: NDArray[np.float64], ci_level: float = 0.95) -> pd.DataFrame:
    """All six ICCs of a complete targets × raters matrix (vectorised ANOVA core).

    See :func:`icc` for definitions; ``y`` must be finite with shape (n ≥ 2, k ≥ 2).
    """
    level = check_ci_level(ci_level)
    n, k = y.shape
    if n < 2 or k < 2:
        raise CompareError(f"ICC needs at least 2 targets and 2 raters, got {n} × {k}")
    grand = y.mean()
    row_m = y.mean(axis=1)
    col_m = y.mean(axis=0)
    ss_total = float(np.sum((y - grand) ** 2))
    ss_rows = k * float(np.sum((row_m - grand) ** 2))
    ss_cols = n * float(np.sum((col_m - grand) ** 2))
    ss_err = max(ss_total - ss_rows - ss_cols, 0.0)
    bms = ss_rows / (n - 1)
    jms = ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_cols + ss_err) / (n * (k - 1))
    if not bms > 0.0 or (wms == 0.0 and ems == 0.0):
        raise CompareError(
            "ratings do not vary between targets or show no error at all; ICC is undefined"
        )
    alpha = 1.0 - level
    q = 1.0 - alpha / 2.0

    def f_ppf(d1: float, d2: float) -> float:
        return float(stats.f.ppf(q, d1, d2))

    rows: dict[str, dict[str, float]] = {}
    # ICC(1,·): one-way random (SF1979 case 1; MW1996 Table 7).
    df1, df2 = n - 1, n * (k - 1)
    f1 = bms / wms if wms > 0 else math.inf
    fl, fu = f1 / f_ppf(df1, df2), f1 * f_ppf(df2, df1)
    p1 = float(stats.f.sf(f1, df1, df2))
    rows["ICC(1,1)"] = dict(
        icc=(bms - wms) / (bms + (k - 1) * wms),
        ci_low=(fl - 1) / (fl + k - 1),
        ci_high=(fu - 1) / (fu + k - 1),
        F=f1,
        df1=df1,
        df2=df2,
        p=p1,
    )
    rows["ICC(1,k)"] = dict(
        icc=(bms - wms) / bms,
        ci_low=1 - 1 / fl,
        ci_high=1 - 1 / fu,
        F=f1,
        df1=df1,
        df2=df2,
        p=p1,
    )
    # ICC(3,·): two-way mixed, consistency (SF1979 case 3).
    df1, df2 = n - 1, (n - 1) * (k - 1)
    f3 = bms / ems if ems > 0 else math.inf
    fl, fu = f3 / f_ppf(df1, df2), f3 * f_ppf(df2, df1)
    p3 = float(stats.f.sf(f3, df1, df2))
    rows["ICC(3,1)"] = dict(
        icc=(bms - ems) / (bms + (k - 1) * ems),
        ci_low=(fl - 1) / (fl + k - 1),
        ci_high=(fu - 1) / (fu + k - 1),
        F=f3,
        df1=df1,
        df2=df2,
        p=p3,
    )
    rows["ICC(3,k)"] = dict(
        icc=(bms - ems) / bms,
        ci_low=1 - 1 / fl,
        ci_high=1 - 1 / fu,
        F=f3,
        df1=df1,
        df2=df2,
        p=p3,
    )
    # ICC(2,·): two-way random, absolute agreement (SF1979 case 2); CI with the
    # Satterthwaite df of SF1979 eq. (11)/MW1996 Table 7.
    icc2 = (bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n)
    a_ = k * icc2 / (n * (1 - icc2))
    b_ = 1 + k * icc2 * (n - 1) / (n * (1 - icc2))
    v = (a_ * jms + b_ * ems) ** 2 / (
        (a_ * jms) ** 2 / (k - 1) + (b_ * ems) ** 2 / ((n - 1) * (k - 1))
    )
    fs, ft = f_ppf(n - 1, v), f_ppf(v, n - 1)
    lo2 = n * (bms - fs * ems) / (fs * (k * jms + (k * n - k - n) * ems) + n * bms)
    hi2 = n * (ft * bms - ems) / (k * jms + (k * n - k - n) * ems + n * ft * bms)
    rows["ICC(2,1)"] = dict(icc=icc2, ci_low=lo2, ci_high=hi2, F=f3, df1=df1, df2=df2, p=p3)
    rows["ICC(2,k)"] = dict(
        icc=(bms - ems) / (bms + (jms - ems) / n),
        # Spearman–Brown step-up of the single-rater bounds (as R psych::ICC does).
        ci_low=lo2 * k / (1 + lo2 * (k - 1)),
        ci_high=hi2 * k / (1 + hi2 * (k - 1)),
        F=f3,
        df1=df1,
        df2=df2,
        p=p3,
    )
    out = pd.DataFrame.from_dict(rows, orient="index").loc[list(ICC_FORMS)]
    out.index.name = "form"
    out.insert(3, "mcgraw_wong", [MCGRAW_WONG_NAMES[f] for f in ICC_FORMS])
    out["n_targets"] = n
    out["n_raters"] = k
    out["ci_level"] = level
    return out


def _wide(df: pd.DataFrame, targets: str, raters: str, ratings: str) -> pd.DataFrame:
    for col in (targets, raters, ratings):
        if col not in df.columns:
            raise CompareError(f"column {col!r} not in df (columns: {list(df.columns)})")
    if df.duplicated([targets, raters]).any():
        raise CompareError(f"several {ratings!r} values for the same ({targets}, {raters})")
    return df.pivot(index=targets, columns=raters, values=ratings)


def icc(
    df: pd.DataFrame,
    targets: str,
    raters: str,
    ratings: str,
    *,
    ci_level: float = 0.95,
) -> pd.DataFrame:
    """Six intraclass correlation coefficients of a complete, balanced design.

    Definitions followed: SF1979 (ANOVA mean squares BMS, JMS, EMS, WMS of a
    targets × raters table):

    - ICC(1,1) = (BMS − WMS)/(BMS + (k−1)WMS)   — one-way random; MW1996 ICC(1)
    - ICC(2,1) = (BMS − EMS)/(BMS + (k−1)EMS + k(JMS − EMS)/n) — absolute agreement, ICC(A,1)
    - ICC(3,1) = (BMS − EMS)/(BMS + (k−1)EMS)   — consistency, ICC(C,1)
    - ICC(1,k), ICC(2,k), ICC(3,k): the same for the mean of k raters (ICC(k), ICC(A,k),
      ICC(C,k)).

    CIs are the F-based intervals of SF1979 / MW1996 (Satterthwaite df for ICC(2,·); the
    ICC(2,k) bounds are the Spearman–Brown step-up of the ICC(2,1) bounds, as in R
    ``psych::ICC``). F, df and p test ICC = 0.

    Parameters
    ----------
    df : pandas.DataFrame
        Long table, one row per target × rater.
    targets, raters, ratings : str
        Column names.
    ci_level : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        Indexed by ``ICC_FORMS``; columns ``icc, ci_low, ci_high, mcgraw_wong, F, df1, df2,
        p, n_targets, n_raters, ci_level``.

    Raises
    ------
    CompareError
        Missing columns, duplicate ratings, or an incomplete table (use :func:`icc_mixed`).
    """
    wide = _wide(df, targets, raters, ratings)
    if wide.isna().any().any():
        n_missing = int(wide.isna().sum().sum())
        raise CompareError(
            f"{n_missing} target × rater cell(s) are missing; icc() needs a complete design "
            "(use icc_mixed() for unbalanced data)"
        )
    y = wide.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y)):
        raise CompareError(f"column {ratings!r} has non-finite values")
    return icc_from_matrix(y, ci_level)


def icc_mixed(df: pd.DataFrame, targets: str, raters: str, ratings: str) -> pd.DataFrame:
    """Single-rater ICCs of an unbalanced design from a linear mixed model (REML).

    Model (statsmodels ``MixedLM``): ``rating = rater mean (fixed) + target (random
    intercept) + error``. ``ICC(C,1) = σ²_t/(σ²_t + σ²_e)``;
    ``ICC(A,1) = σ²_t/(σ²_t + σ²_r + σ²_e)`` where the rater variance σ²_r is the
    moment estimate from the fixed rater means β̂: ``s²(β̂) − tr(C V C)/(k − 1)``
    (C the centring matrix, V = cov(β̂)), set to 0 when negative. For a complete balanced
    table these equal the ANOVA ICC(3,1) and ICC(2,1) when the variance estimates are
    positive. No CIs (point estimates only).

    Parameters
    ----------
    df : pandas.DataFrame
        Long table; target × rater cells may be missing.
    targets, raters, ratings : str
        Column names.

    Returns
    -------
    pandas.DataFrame
        Index ``["ICC(3,1)", "ICC(2,1)"]``; columns ``icc, mcgraw_wong, var_targets,
        var_raters, var_error, n_obs``.
    """
    import statsmodels.formula.api as smf

    for col in (targets, raters, ratings):
        if col not in df.columns:
            raise CompareError(f"column {col!r} not in df (columns: {list(df.columns)})")
    data = pd.DataFrame(
        {
            "y": pd.to_numeric(df[ratings], errors="raise").astype(np.float64),
            "t": df[targets].astype(str),
            "r": df[raters].astype(str),
        }
    ).dropna()
    k = data["r"].nunique()
    if k < 2 or data["t"].nunique() < 2:
        raise CompareError("icc_mixed needs at least 2 raters and 2 targets")
    model = smf.mixedlm("y ~ 0 + C(r)", data, groups=data["t"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels convergence chatter; checked below
        fit = model.fit(reml=True)
    var_t = float(fit.cov_re.iloc[0, 0])
    var_e = float(fit.scale)
    beta = np.asarray(fit.fe_params, dtype=np.float64)
    cov = np.asarray(fit.cov_params().iloc[:k, :k], dtype=np.float64)
    centre = np.eye(k) - 1.0 / k
    var_r = max(float(beta.var(ddof=1) - np.trace(centre @ cov @ centre) / (k - 1)), 0.0)
    if not var_t + var_e > 0:
        raise CompareError("mixed model returned zero total variance; ICC undefined")
    out = pd.DataFrame(
        {
            "icc": [var_t / (var_t + var_e), var_t / (var_t + var_r + var_e)],
            "mcgraw_wong": ["ICC(C,1)", "ICC(A,1)"],
            "var_targets": var_t,
            "var_raters": var_r,
            "var_error": var_e,
            "n_obs": len(data),
        },
        index=pd.Index(["ICC(3,1)", "ICC(2,1)"], name="form"),
    )
    return out
