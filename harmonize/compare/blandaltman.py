"""Bland–Altman limits of agreement: plain, ratio (log), regression-based and repeated.

Sign convention everywhere: differences are ``a − b`` (ratios ``a / b``); a positive bias
means ``a`` reads higher than ``b``.

References
----------
- BA1986: Bland JM, Altman DG. Statistical methods for assessing agreement between two
  methods of clinical measurement. Lancet 1986;327:307–310, doi:10.1016/S0140-6736(86)90837-8.
- BA1999: Bland JM, Altman DG. Measuring agreement in method comparison studies.
  Stat Methods Med Res 1999;8:135–160, doi:10.1177/096228029900800204.
- BA2007: Bland JM, Altman DG. Agreement between methods of measurement with multiple
  observations per individual. J Biopharm Stat 2007;17:571–582,
  doi:10.1080/10543400701329422.
- Carkeet2015: Carkeet A. Exact parametric confidence intervals for Bland–Altman limits of
  agreement. Optom Vis Sci 2015;92:e71–e80, doi:10.1097/OPX.0000000000000513.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from harmonize.compare._common import (
    MIN_PAIRS,
    CompareError,
    as_pair,
    check_ci_level,
    two_sided_z,
)

__all__ = [
    "BlandAltmanRegressionResult",
    "BlandAltmanResult",
    "RepeatedBlandAltmanResult",
    "bland_altman",
    "bland_altman_regression",
    "bland_altman_repeated",
]

#: sqrt(pi/2): the mean absolute deviation of a normal variable is sigma*sqrt(2/pi), so a
#: regression of |residual| estimates sigma after multiplying by sqrt(pi/2) [BA1999 §3.2].
SQRT_PI_OVER_2 = math.sqrt(math.pi / 2.0)

LoaCiMethod = Literal["exact", "bland_altman_1999", "bland_altman_1986"]


@dataclass(frozen=True)
class BlandAltmanResult:
    """Bland–Altman statistics of ``a − b`` (or of ``a / b`` when ``scale == "ratio"``).

    Attributes
    ----------
    bias, sd : float
        Mean and SD (ddof=1) of the differences. With ``scale == "ratio"`` ``bias`` is the
        back-transformed mean log ratio (geometric mean of ``a / b``) and ``sd`` is the SD
        of ``ln(a / b)`` (dimensionless).
    loa_lower, loa_upper : float
        ``bias ∓ multiplier · sd`` (ratio scale: ``exp(mean ∓ multiplier · sd)``).
    bias_ci, loa_lower_ci, loa_upper_ci : tuple of float
        Confidence intervals at ``ci_level``; the LoA intervals follow ``loa_ci_method``.
    n : int
        Number of pairs.
    multiplier : float
        The SD multiplier of the limits (1.96 for 95 % limits; BA1986 used 2).
    """

    bias: float
    sd: float
    loa_lower: float
    loa_upper: float
    bias_ci: tuple[float, float]
    loa_lower_ci: tuple[float, float]
    loa_upper_ci: tuple[float, float]
    n: int
    multiplier: float
    ci_level: float
    loa_ci_method: str
    scale: str


def _loa_ci(
    mean: float, sd: float, n: int, k: float, level: float, method: str
) -> tuple[tuple[float, float], tuple[float, float]]:
    """CIs of the limits ``mean ∓ k·sd`` by the named method (see :func:`bland_altman`)."""
    alpha = 1.0 - level
    lower, upper = mean - k * sd, mean + k * sd
    if method == "exact":
        # Carkeet2015: sqrt(n)(dbar - theta)/s follows a noncentral t with n-1 df and
        # noncentrality -k*sqrt(n) for theta = mu + k*sigma (mirror image for mu - k*sigma).
        nc = k * math.sqrt(n)
        q_lo, q_hi = stats.nct.ppf([alpha / 2.0, 1.0 - alpha / 2.0], n - 1, nc)
        up_ci = (mean + sd * q_lo / math.sqrt(n), mean + sd * q_hi / math.sqrt(n))
        lo_ci = (mean - sd * q_hi / math.sqrt(n), mean - sd * q_lo / math.sqrt(n))
        return (float(lo_ci[0]), float(lo_ci[1])), (float(up_ci[0]), float(up_ci[1]))
    t = float(stats.t.ppf(1.0 - alpha / 2.0, n - 1))
    if method == "bland_altman_1999":
        # BA1999 §2.2: var(dbar ± k s) ≈ (1/n + k²/(2(n−1))) s².
        se = sd * math.sqrt(1.0 / n + k * k / (2.0 * (n - 1)))
    elif method == "bland_altman_1986":
        # BA1986: SE of each limit ≈ sqrt(3 s²/n) (the k = 2 large-n approximation).
        se = sd * math.sqrt(3.0 / n)
    else:
        raise CompareError(
            "loa_ci_method must be 'exact', 'bland_altman_1999' or 'bland_altman_1986', "
            f"got {method!r}"
        )
    return (lower - t * se, lower + t * se), (upper - t * se, upper + t * se)


def bland_altman(
    a: ArrayLike,
    b: ArrayLike,
    log: bool = False,
    *,
    ci_level: float = 0.95,
    loa_level: float = 0.95,
    multiplier: float | None = None,
    loa_ci_method: LoaCiMethod = "exact",
) -> BlandAltmanResult:
    """Bland–Altman bias and limits of agreement of two paired samples.

    Definition followed: BA1986 / BA1999 §2 — differences ``d = a − b``, bias = mean(d),
    SD = sample SD (ddof = 1), limits = bias ∓ multiplier·SD. With ``log=True`` the same
    is done on ``ln a − ln b`` and everything is back-transformed to ratios ``a / b``
    (BA1999 §3.1), so the limits are ratio limits.

    Parameters
    ----------
    a, b : array_like
        Paired measurements (same length, finite, at least 3 pairs).
    log : bool, default False
        Ratio version; needs strictly positive values.
    ci_level : float, default 0.95
        Confidence level of all intervals.
    loa_level : float, default 0.95
        Coverage of the limits; gives ``multiplier = z_{(1+loa_level)/2}`` (1.96).
    multiplier : float, optional
        Override the SD multiplier (BA1986 used 2).
    loa_ci_method : {"exact", "bland_altman_1999", "bland_altman_1986"}
        CI of the limits: "exact" — noncentral-t interval of Carkeet2015 (default);
        "bland_altman_1999" — approximate SE ``s·sqrt(1/n + k²/(2(n−1)))`` with a t
        quantile (BA1999 §2.2); "bland_altman_1986" — approximate SE ``sqrt(3 s²/n)``
        with a t quantile (BA1986). The bias CI is always the t interval.

    Returns
    -------
    BlandAltmanResult

    Raises
    ------
    CompareError
        Fewer than 3 pairs, mismatched lengths, non-finite values, all differences equal
        (SD = 0: the limits are degenerate), or non-positive values with ``log=True``.

    Examples
    --------
    >>> r = bland_altman([10.0, 12.0, 9.0, 11.0], [9.0, 12.5, 8.0, 10.0])
    >>> round(r.bias, 3), round(r.sd, 3)
    (0.625, 0.75)
    """
    level = check_ci_level(ci_level)
    cover = check_ci_level(loa_level, "loa_level")
    x, y = as_pair(a, b, positive=log)
    d = np.log(x) - np.log(y) if log else x - y
    n = d.size
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if not sd > 0.0:
        raise CompareError(
            "all differences a − b are equal (SD = 0); limits of agreement are undefined"
        )
    k = two_sided_z(cover) if multiplier is None else float(multiplier)
    if not k > 0:
        raise CompareError(f"multiplier must be > 0, got {multiplier!r}")
    t = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
    half = t * sd / math.sqrt(n)
    bias_ci = (mean - half, mean + half)
    lo_ci, up_ci = _loa_ci(mean, sd, n, k, level, loa_ci_method)
    lo, up = mean - k * sd, mean + k * sd
    if log:

        def f(v: float) -> float:
            try:
                return math.exp(v)
            except OverflowError:  # a ratio beyond float64 (≈1.8e308): not a usable limit
                raise CompareError(
                    f"log-scale Bland–Altman: a limit or CI of the ratio a/b is e^{v:.4g}, "
                    "beyond the float range; the samples differ by hundreds of orders of "
                    "magnitude (check their units)"
                ) from None

    else:

        def f(v: float) -> float:
            return v

    return BlandAltmanResult(
        bias=f(mean),
        sd=sd,
        loa_lower=f(lo),
        loa_upper=f(up),
        bias_ci=(f(bias_ci[0]), f(bias_ci[1])),
        loa_lower_ci=(f(lo_ci[0]), f(lo_ci[1])),
        loa_upper_ci=(f(up_ci[0]), f(up_ci[1])),
        n=n,
        multiplier=k,
        ci_level=level,
        loa_ci_method=loa_ci_method,
        scale="ratio" if log else "difference",
    )


@dataclass(frozen=True)
class BlandAltmanRegressionResult:
    """Regression-based limits of agreement (BA1999 §3.2).

    ``bias(m) = b0 + b1·m`` and ``sd(m) = sqrt(pi/2)·(c0 + c1·m)`` where ``m`` is the
    pair mean ``(a + b)/2``; limits are ``bias(m) ∓ multiplier·sd(m)``.
    """

    b0: float
    b1: float
    c0: float
    c1: float
    multiplier: float
    n: int

    def bias(self, mean: ArrayLike) -> NDArray[np.float64]:
        """Expected difference ``a − b`` at the given pair mean(s)."""
        return self.b0 + self.b1 * np.asarray(mean, dtype=np.float64)

    def sd(self, mean: ArrayLike) -> NDArray[np.float64]:
        """SD of the difference at the given pair mean(s)."""
        return SQRT_PI_OVER_2 * (self.c0 + self.c1 * np.asarray(mean, dtype=np.float64))

    def limits(self, mean: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Lower and upper limit of agreement at the given pair mean(s)."""
        b, s = self.bias(mean), self.sd(mean)
        return b - self.multiplier * s, b + self.multiplier * s


def bland_altman_regression(
    a: ArrayLike, b: ArrayLike, *, loa_level: float = 0.95
) -> BlandAltmanRegressionResult:
    """Regression-based limits of agreement for proportional error (BA1999 §3.2).

    Definition followed: regress ``D = a − b`` on ``A = (a + b)/2`` by OLS (``D = b0 + b1 A``),
    then regress the absolute residuals on ``A`` (``|R| = c0 + c1 A``); the SD of D at A is
    ``sqrt(pi/2)·(c0 + c1 A)`` and the limits are ``b0 + b1 A ∓ z·sqrt(pi/2)(c0 + c1 A)``.

    Parameters
    ----------
    a, b : array_like
        Paired measurements (at least 3 pairs).
    loa_level : float, default 0.95
        Coverage of the limits (z = 1.96 for 0.95).

    Returns
    -------
    BlandAltmanRegressionResult
    """
    cover = check_ci_level(loa_level, "loa_level")
    x, y = as_pair(a, b)
    d, m = x - y, (x + y) / 2.0
    if np.ptp(m) == 0.0:
        raise CompareError("all pair means are equal; the regression on the mean is undefined")
    b1, b0 = np.polyfit(m, d, 1)
    resid = np.abs(d - (b0 + b1 * m))
    c1, c0 = np.polyfit(m, resid, 1)
    return BlandAltmanRegressionResult(
        b0=float(b0),
        b1=float(b1),
        c0=float(c0),
        c1=float(c1),
        multiplier=two_sided_z(cover),
        n=int(x.size),
    )


@dataclass(frozen=True)
class RepeatedBlandAltmanResult:
    """Bland–Altman with several pairs per subject (BA2007 §3, true value varies).

    Attributes
    ----------
    bias : float
        Mean of all differences ``a − b``.
    sd : float
        Total SD of a single difference, ``sqrt(var_between + var_within)``.
    var_between, var_within : float
        Between-subject and within-subject variance components of the differences.
    loa_lower, loa_upper : float
        ``bias ∓ multiplier · sd``.
    bias_ci : tuple of float
        t interval with the cluster-aware variance of the mean (see the function).
    n_pairs, n_subjects : int
    """

    bias: float
    sd: float
    var_between: float
    var_within: float
    loa_lower: float
    loa_upper: float
    bias_ci: tuple[float, float]
    n_pairs: int
    n_subjects: int
    multiplier: float
    ci_level: float


def repeated_from_codes(
    d: NDArray[np.float64],
    codes: NDArray[np.intp],
    *,
    ci_level: float = 0.95,
    loa_level: float = 0.95,
) -> RepeatedBlandAltmanResult:
    """BA2007 §3 from differences and integer subject codes (0..N−1); vectorised core."""
    level = check_ci_level(ci_level)
    n = d.size
    raw = np.bincount(codes)
    if np.any(raw == 0):  # re-code so that every code 0..N-1 is used
        codes = np.unique(codes, return_inverse=True)[1]
        raw = np.bincount(codes)
    counts = raw.astype(np.float64)
    n_sub = counts.size
    if n < MIN_PAIRS or n_sub < 2:
        raise CompareError(
            f"repeated-measures Bland–Altman needs at least {MIN_PAIRS} pairs and 2 subjects, "
            f"got {n} pairs in {n_sub} subject(s)"
        )
    if n == n_sub:
        raise CompareError(
            "every subject has a single pair; use bland_altman() (no within-subject variance)"
        )
    sums = np.bincount(codes, weights=d)
    means = sums / counts
    grand = float(d.mean())
    ss_between = float(np.sum(counts * (means - grand) ** 2))
    ss_within = float(np.sum((d - means[codes]) ** 2))
    ms_between = ss_between / (n_sub - 1)
    ms_within = ss_within / (n - n_sub)
    # BA2007 eq. for unequal replicates: divisor = (n² − Σ m_i²) / ((N − 1) n).
    divisor = (n * n - float(np.sum(counts**2))) / ((n_sub - 1) * n)
    var_between = max((ms_between - ms_within) / divisor, 0.0)
    var_within = ms_within
    var_total = var_between + var_within
    if not var_total > 0.0:
        raise CompareError("all differences a − b are equal (SD = 0); limits are undefined")
    sd = math.sqrt(var_total)
    k = two_sided_z(check_ci_level(loa_level, "loa_level"))
    # Variance of the mean of all differences under the one-way random-effects model:
    # var(dbar) = var_between·Σ m_i²/n² + var_within/n; t quantile with N − 1 df.
    var_mean = var_between * float(np.sum(counts**2)) / (n * n) + var_within / n
    t = float(stats.t.ppf(0.5 + level / 2.0, n_sub - 1))
    half = t * math.sqrt(var_mean)
    return RepeatedBlandAltmanResult(
        bias=grand,
        sd=sd,
        var_between=var_between,
        var_within=var_within,
        loa_lower=grand - k * sd,
        loa_upper=grand + k * sd,
        bias_ci=(grand - half, grand + half),
        n_pairs=n,
        n_subjects=n_sub,
        multiplier=k,
        ci_level=level,
    )


def bland_altman_repeated(
    df: pd.DataFrame,
    subject: str,
    a: str,
    b: str,
    *,
    ci_level: float = 0.95,
    loa_level: float = 0.95,
) -> RepeatedBlandAltmanResult:
    """Limits of agreement with several paired observations per subject (BA2007 §3).

    Definition followed: BA2007 §3 "true value varies" (replicated pairs, the correction
    of BA1999 §5.3) — one-way ANOVA of the differences ``a − b`` on subject;
    ``var_within = MS_within``; ``var_between = (MS_between − MS_within) / D`` with
    ``D = (n² − Σ m_i²) / ((N − 1) n)`` (``m_i`` pairs of subject i, ``n = Σ m_i``,
    ``N`` subjects), set to 0 when negative; total SD ``sqrt(var_between + var_within)``;
    bias = mean of all differences. In dosimetry a subject is a patient and the pairs are
    its lesions (each with its own true dose).

    The bias CI (not given in BA2007) uses ``var(d̄) = var_between Σ m_i²/n² +
    var_within/n`` with a t quantile on N − 1 df. No CI is given for the limits.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per pair.
    subject, a, b : str
        Column names: subject id, measurement by method a, by method b.
    ci_level, loa_level : float, default 0.95

    Returns
    -------
    RepeatedBlandAltmanResult
    """
    for col in (subject, a, b):
        if col not in df.columns:
            raise CompareError(f"column {col!r} not in df (columns: {list(df.columns)})")
    x, y = as_pair(df[a].to_numpy(), df[b].to_numpy(), names=(a, b))
    if df[subject].isna().any():
        raise CompareError(f"column {subject!r} has missing subject ids")
    codes = pd.factorize(df[subject])[0].astype(np.intp)
    return repeated_from_codes(x - y, codes, ci_level=ci_level, loa_level=loa_level)
