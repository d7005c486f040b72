"""Cohen's and Fleiss' kappa for classifications (thin wrappers over statsmodels).

References
----------
- Cohen1960: Cohen J. A coefficient of agreement for nominal scales. Educ Psychol Meas
  1960;20:37–46, doi:10.1177/001316446002000104.
- Fleiss1971: Fleiss JL. Measuring nominal scale agreement among many raters. Psychol Bull
  1971;76:378–382, doi:10.1037/h0031619.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from statsmodels.stats import inter_rater

from harmonize.compare._common import CompareError, check_ci_level, two_sided_z

__all__ = ["CohenKappaResult", "FleissKappaResult", "cohen_kappa", "fleiss_kappa"]


@dataclass(frozen=True)
class CohenKappaResult:
    """Cohen's kappa of two raters.

    Attributes
    ----------
    kappa : float
    ci : tuple of float
        Wald interval with the large-sample SE of statsmodels ``cohens_kappa``
        (Fleiss, Cohen & Everitt 1969 variance).
    se : float
    agreement : float
        Observed proportion of agreement p_o.
    expected_agreement : float
        Chance agreement p_e from the marginals.
    table : pandas.DataFrame
        Contingency table (rows: labels_a, columns: labels_b).
    marginals : pandas.DataFrame
        Proportion of each category for a and b.
    n : int
    """

    kappa: float
    ci: tuple[float, float]
    se: float
    agreement: float
    expected_agreement: float
    table: pd.DataFrame
    marginals: pd.DataFrame
    n: int
    ci_level: float


def cohen_kappa(
    labels_a: ArrayLike, labels_b: ArrayLike, *, ci_level: float = 0.95
) -> CohenKappaResult:
    """Cohen's (unweighted) kappa between two classifications of the same subjects.

    Definition followed: Cohen1960, ``κ = (p_o − p_e)/(1 − p_e)`` with ``p_e`` from the
    two raters' own marginals; computed by ``statsmodels.stats.inter_rater.cohens_kappa``
    on the contingency table over the union of categories. Symmetric in a and b.

    Parameters
    ----------
    labels_a, labels_b : array_like
        Category labels (any hashable), same length, no missing values.
    ci_level : float, default 0.95

    Returns
    -------
    CohenKappaResult

    Raises
    ------
    CompareError
        Mismatched lengths, missing labels, fewer than 2 subjects, or p_e = 1 (both raters
        put every subject in one and the same category: κ is 0/0, undefined).

    Examples
    --------
    >>> round(cohen_kappa(["y", "y", "n", "n"], ["y", "n", "n", "n"]).kappa, 3)
    0.5
    """
    level = check_ci_level(ci_level)
    a = pd.Series(np.asarray(labels_a, dtype=object).ravel())
    b = pd.Series(np.asarray(labels_b, dtype=object).ravel())
    if a.size != b.size:
        raise CompareError(
            f"labels_a and labels_b must have the same length, got {a.size} and {b.size}"
        )
    if a.isna().any() or b.isna().any():
        raise CompareError("labels_a/labels_b contain missing labels")
    if a.size < 2:
        raise CompareError(f"cohen_kappa needs at least 2 subjects, got {a.size}")
    cats = sorted(set(a) | set(b), key=str)
    table = pd.crosstab(
        pd.Categorical(a, categories=cats), pd.Categorical(b, categories=cats), dropna=False
    )
    table.index.name, table.columns.name = "a", "b"
    counts = table.to_numpy(dtype=np.float64)
    n = counts.sum()
    p_o = float(np.trace(counts) / n)
    pa, pb = counts.sum(axis=1) / n, counts.sum(axis=0) / n
    p_e = float(pa @ pb)
    if p_e >= 1.0:
        raise CompareError(
            "both classifications put every subject in the same single category; "
            "kappa is undefined (p_e = 1); raw agreement is 1"
        )
    with np.errstate(invalid="ignore"):  # var_kappa can round to −0 at perfect agreement
        res = inter_rater.cohens_kappa(counts)
    se = math.sqrt(max(float(res.var_kappa), 0.0))
    half = two_sided_z(level) * se
    marg = pd.DataFrame({"a": pa, "b": pb}, index=pd.Index(cats, name="category"))
    return CohenKappaResult(
        kappa=float(res.kappa),
        ci=(float(res.kappa) - half, float(res.kappa) + half),
        se=se,
        agreement=p_o,
        expected_agreement=p_e,
        table=table,
        marginals=marg,
        n=int(n),
        ci_level=level,
    )


@dataclass(frozen=True)
class FleissKappaResult:
    """Fleiss' kappa of several raters.

    Attributes
    ----------
    kappa : float
    agreement : float
        Mean pairwise agreement P̄ over subjects (Fleiss1971).
    expected_agreement : float
        P̄_e = Σ p_j² from the pooled category proportions.
    category_proportions : pandas.Series
    n_subjects, n_raters : int
    """

    kappa: float
    agreement: float
    expected_agreement: float
    category_proportions: pd.Series
    n_subjects: int
    n_raters: int


def fleiss_kappa(ratings: ArrayLike | pd.DataFrame) -> FleissKappaResult:
    """Fleiss' kappa for a subjects × raters table of category labels.

    Definition followed: Fleiss1971 (κ = (P̄ − P̄_e)/(1 − P̄_e), chance from the pooled
    category proportions), via ``statsmodels.stats.inter_rater.aggregate_raters`` and
    ``fleiss_kappa(method="fleiss")``. No CI (Fleiss1971 gives only the SE under κ = 0).

    Parameters
    ----------
    ratings : array_like or pandas.DataFrame
        Shape (subjects, raters); every cell a category label, no missing values.

    Returns
    -------
    FleissKappaResult

    Raises
    ------
    CompareError
        Not 2-D, fewer than 2 raters or subjects, missing labels, or P̄_e = 1.
    """
    arr = np.asarray(ratings, dtype=object)
    if arr.ndim != 2:
        raise CompareError(f"ratings must be 2-D (subjects × raters), got shape {arr.shape}")
    n_sub, n_rat = arr.shape
    if n_sub < 2 or n_rat < 2:
        raise CompareError(f"fleiss_kappa needs ≥ 2 subjects and ≥ 2 raters, got {arr.shape}")
    if pd.isna(pd.DataFrame(arr)).any().any():
        raise CompareError("ratings contain missing labels")
    codes, cats = pd.factorize(pd.Series(arr.ravel()), sort=True)
    counts, _ = inter_rater.aggregate_raters(codes.reshape(arr.shape), n_cat=len(cats))
    counts = counts.astype(np.float64)
    p_j = counts.sum(axis=0) / (n_sub * n_rat)
    p_e = float(np.sum(p_j**2))
    if p_e >= 1.0:
        raise CompareError("every rating is the same category; Fleiss' kappa is undefined")
    p_i = (np.sum(counts**2, axis=1) - n_rat) / (n_rat * (n_rat - 1))
    kappa = float(inter_rater.fleiss_kappa(counts, method="fleiss"))
    return FleissKappaResult(
        kappa=kappa,
        agreement=float(p_i.mean()),
        expected_agreement=p_e,
        category_proportions=pd.Series(p_j, index=pd.Index(cats, name="category")),
        n_subjects=n_sub,
        n_raters=n_rat,
    )
