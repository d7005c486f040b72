"""Method-comparison regression: Deming (with jackknife CIs) and Passing–Bablok.

Convention: ``y`` is regressed on ``x`` (``y ≈ intercept + slope · x``); in the agreement
table ``x`` is workflow_b (the reference) and ``y`` is workflow_a.

References
----------
- Deming1943: Deming WE. Statistical adjustment of data. Wiley, 1943.
- Linnet1990: Linnet K. Estimation of the linear relationship between the measurements of
  two methods with proportional errors. Stat Med 1990;9:1463–1473,
  doi:10.1002/sim.4780091210 (jackknife CIs of Deming regression).
- PB1983: Passing H, Bablok W. A new biometrical procedure for testing the equality of
  measurements from two different analytical methods. J Clin Chem Clin Biochem
  1983;21:709–720, doi:10.1515/cclm.1983.21.11.709.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from harmonize.compare._common import CompareError, as_pair, check_ci_level, two_sided_z

__all__ = [
    "PB_MAX_N",
    "DemingResult",
    "PassingBablokResult",
    "deming",
    "deming_from_moments",
    "passing_bablok",
]

#: Largest sample :func:`passing_bablok` accepts by default: the method needs all
#: n(n−1)/2 pairwise slopes (memory and time O(n²); 5000 pairs → 12.5 M slopes).
PB_MAX_N = 5000


@dataclass(frozen=True)
class DemingResult:
    """Deming regression ``y = intercept + slope · x``.

    Attributes
    ----------
    slope, intercept : float
    slope_ci, intercept_ci : tuple of float
        Jackknife (leave-one-out) t intervals, Linnet1990.
    slope_se, intercept_se : float
        Jackknife standard errors.
    error_ratio : float
        δ = σ²(error of y) / σ²(error of x).
    n : int
    ci_level : float
    """

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    slope_se: float
    intercept_se: float
    error_ratio: float
    n: int
    ci_level: float

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """Value of y on the fitted line at x."""
        return self.intercept + self.slope * np.asarray(x, dtype=np.float64)


def deming_from_moments(
    n: NDArray[np.float64] | float,
    sx: NDArray[np.float64] | float,
    sy: NDArray[np.float64] | float,
    sxx: NDArray[np.float64] | float,
    syy: NDArray[np.float64] | float,
    sxy: NDArray[np.float64] | float,
    delta: float,
) -> tuple[NDArray[np.float64] | np.float64, NDArray[np.float64] | np.float64]:
    """Deming slope and intercept from (weighted) sums; broadcasts over replicates.

    ``n, sx, …`` are Σw, Σwx, Σwy, Σwx², Σwy², Σwxy; used for the jackknife and the
    cluster bootstrap without a Python loop. Scalar sums give numpy scalars, arrays of
    sums (one element per replicate) give arrays.
    """
    mx, my = sx / n, sy / n
    vxx = sxx / n - mx * mx
    vyy = syy / n - my * my
    vxy = sxy / n - mx * my
    diff = vyy - delta * vxx
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (diff + np.sqrt(diff * diff + 4.0 * delta * vxy * vxy)) / (2.0 * vxy)
    return slope, my - slope * mx


def deming(
    x: ArrayLike,
    y: ArrayLike,
    error_ratio: float = 1.0,
    *,
    ci_level: float = 0.95,
) -> DemingResult:
    """Deming regression of ``y`` on ``x`` with jackknife confidence intervals.

    Definition followed: Deming1943 / Linnet1990 — the maximum-likelihood line when both
    variables carry normal errors with known variance ratio
    ``δ = error_ratio = σ²_err(y) / σ²_err(x)``:
    ``slope = (s_yy − δ s_xx + sqrt((s_yy − δ s_xx)² + 4 δ s_xy²)) / (2 s_xy)``,
    ``intercept = ȳ − slope · x̄``. δ = 1 is orthogonal regression. (R ``mcr::mcreg``'s
    ``error.ratio`` is defined the other way round, σ²_err(x)/σ²_err(y).)
    CIs: jackknife pseudo-values with a t quantile on n − 1 df (Linnet1990).

    Parameters
    ----------
    x, y : array_like
        Paired measurements (at least 3 pairs).
    error_ratio : float, default 1.0
        δ > 0.
    ci_level : float, default 0.95

    Returns
    -------
    DemingResult

    Examples
    --------
    >>> r = deming([1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0])
    >>> round(r.slope, 6), round(r.intercept, 6)
    (2.0, 0.0)
    """
    level = check_ci_level(ci_level)
    xa, ya = as_pair(x, y, names=("x", "y"))
    delta = float(error_ratio)
    if not delta > 0 or not math.isfinite(delta):
        raise CompareError(f"error_ratio must be a finite number > 0, got {error_ratio!r}")
    n = xa.size
    # Centre for numerical stability (the slope is shift-invariant; intercept shifted back).
    cx, cy = float(xa.mean()), float(ya.mean())
    u, v = xa - cx, ya - cy
    if np.all(u == 0) or np.all(v == 0):
        raise CompareError("x or y has zero variance; the Deming slope is undefined")
    tot = np.array([n, u.sum(), v.sum(), u @ u, v @ v, u @ v], dtype=np.float64)
    # Moments passed one by one (not ``*tot, delta``: a star-unpacked array has no static
    # length, so a type checker cannot tell that ``delta`` lands on the 7th parameter).
    w0, wx, wy, wxx, wyy, wxy = tot
    slope, icpt = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, delta)
    if float(tot[5]) == 0.0:
        raise CompareError("x and y are uncorrelated (s_xy = 0); the Deming slope is undefined")
    # Leave-one-out moments, all n at once.
    loo = tot[:, None] - np.vstack([np.ones(n), u, v, u * u, v * v, u * v])
    w0, wx, wy, wxx, wyy, wxy = loo
    s_loo, i_loo = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, delta)
    if not np.all(np.isfinite(s_loo)):
        raise CompareError("a leave-one-out Deming fit is undefined (degenerate data)")
    t = float(stats.t.ppf(0.5 + level / 2.0, n - 1))
    out = []
    for full, part in ((float(slope), s_loo), (float(icpt), i_loo)):
        pseudo = n * full - (n - 1) * part
        est = float(pseudo.mean())
        se = float(pseudo.std(ddof=1) / math.sqrt(n))
        out.append((full, (est - t * se, est + t * se), se))
    (b, b_ci, b_se), (a0, a_ci, a_se) = out
    shift = cy - b * cx  # intercept in the original (uncentred) coordinates
    return DemingResult(
        slope=b,
        intercept=a0 + shift,
        slope_ci=b_ci,
        intercept_ci=(a_ci[0] + shift, a_ci[1] + shift),
        slope_se=b_se,
        intercept_se=a_se,
        error_ratio=delta,
        n=n,
        ci_level=level,
    )


@dataclass(frozen=True)
class PassingBablokResult:
    """Passing–Bablok regression ``y = intercept + slope · x``.

    Attributes
    ----------
    slope, intercept : float
    slope_ci, intercept_ci : tuple of float
        PB1983 rank-based intervals (see :func:`passing_bablok`).
    n : int
        Pairs.
    n_slopes : int
        Pairwise slopes used (N in PB1983).
    shift : int
        K, the number of slopes < −1 (median offset; doubled-index offset for "mcr").
    rule : str
        CI rule used.
    """

    slope: float
    intercept: float
    slope_ci: tuple[float, float]
    intercept_ci: tuple[float, float]
    n: int
    n_slopes: int
    shift: int
    ci_level: float
    rule: str

    def predict(self, x: ArrayLike) -> NDArray[np.float64]:
        """Value of y on the fitted line at x."""
        return self.intercept + self.slope * np.asarray(x, dtype=np.float64)


def _pb_slopes(x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.float64]:
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    dy = y[j] - y[i]
    keep = ~((dx == 0) & (dy == 0))  # identical points do not contribute (PB1983 p. 711)
    dx, dy = dx[keep], dy[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = dy / dx
    s[dx == 0] = np.where(dy[dx == 0] > 0, np.inf, -np.inf)  # vertical pairs: ±∞
    s = s[s != -1.0]  # slopes of exactly −1 are discarded for symmetry (PB1983)
    s.sort()
    return s


def _pb_1983(
    x: NDArray[np.float64], y: NDArray[np.float64], c: float, level: float, n: int
) -> tuple[float, float, float, int, int]:
    """Slope and CI by the PB1983 rule (see :func:`passing_bablok`)."""
    s = _pb_slopes(x, y)
    n_s = s.size
    if n_s < 1:
        raise CompareError("all points are identical; the Passing–Bablok slope is undefined")
    k = int(np.count_nonzero(s < -1.0))
    if 2 * k >= n_s:
        # the K-shifted median would lie past the last slope: PB1983 assumes positively
        # related methods (its shift K counts slopes below −1), which these data are not
        raise CompareError(
            f"Passing–Bablok is undefined here: {k} of {n_s} pairwise slopes are below −1 "
            "(the method assumes positively related measurements)"
        )
    # 0-based positions of the K-shifted median.
    if n_s % 2:
        slope = float(s[(n_s + 1) // 2 + k - 1])
    else:
        slope = float(0.5 * (s[n_s // 2 + k - 1] + s[n_s // 2 + k]))
    m1 = math.floor((n_s - c) / 2.0 + 0.5)
    m2 = n_s - m1 + 1
    lo_i, hi_i = m1 + k - 1, m2 + k - 1
    if lo_i < 0 or hi_i > n_s - 1:
        raise CompareError(
            f"too few pairs ({n}) for the Passing–Bablok confidence interval at ci_level={level}"
        )
    return slope, float(s[lo_i]), float(s[hi_i]), n_s, k


def _pb_mcr(
    x: NDArray[np.float64], y: NDArray[np.float64], c: float
) -> tuple[float, float, float, int, int]:
    """Slope and CI by the angle-based rule of R ``mcr`` (``mc.paba``, posCor/negCor)."""
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    dy = y[j] - y[i]
    keep = ~((dx == 0) & (dy == 0))
    dx, dy = dx[keep], dy[keep]
    with np.errstate(divide="ignore", invalid="ignore"):
        ang = np.where(dx == 0, np.sign(dy) * (np.pi / 2.0), np.arctan(dy / dx))
    ang.sort()
    n_all = ang.size
    if n_all < 1:
        raise CompareError("all points are identical; the Passing–Bablok slope is undefined")
    q = np.pi / 4.0
    pos_cor = stats.kendalltau(x, y).statistic >= 0
    if pos_cor:
        offset2 = int(np.count_nonzero(ang <= -q) + np.count_nonzero(ang < -q))
        lowest = 2 * int(np.count_nonzero(ang <= -q) - np.count_nonzero(ang < -q)) + 1
    else:
        offset2 = -int(np.count_nonzero(ang >= q) + np.count_nonzero(ang > q))
        lowest = 2 * int(np.count_nonzero(ang >= q) - np.count_nonzero(ang > q)) + 1

    def at(index2: int) -> float:
        # "twice the index" convention of mcr: odd -> one order statistic, even -> mean
        # of two neighbours (averaged as angles, slope.measure = "radian").
        half = max((index2 + 1) // 2, 1)
        if half > n_all:
            raise CompareError(
                f"the Passing–Bablok rank {half} lies past the {n_all} pairwise slopes "
                "(degenerate data)"
            )
        if index2 % 2 == 1 or half == n_all:
            return float(math.tan(ang[half - 1]))
        return float(math.tan(0.5 * (ang[half - 1] + ang[half])))

    slope = at(n_all + offset2)
    i_lo = int(np.round(n_all - c + offset2))  # R round(): half to even, like np.round
    i_hi = int(np.round(n_all + c + offset2))
    b_lo = -math.inf if i_lo < lowest else at(i_lo)
    b_hi = math.inf if i_hi > 2 * n_all - 1 else at(i_hi)
    return slope, b_lo, b_hi, n_all, offset2


def passing_bablok(
    x: ArrayLike,
    y: ArrayLike,
    *,
    ci_level: float = 0.95,
    max_n: int = PB_MAX_N,
    rule: Literal["pb1983", "mcr"] = "pb1983",
) -> PassingBablokResult:
    """Passing–Bablok regression of ``y`` on ``x`` (PB1983).

    Definition followed: PB1983 — all pairwise slopes ``S_ij = (y_j − y_i)/(x_j − x_i)``
    (i < j), leaving out identical points (0/0) and slopes of exactly −1; vertical pairs
    count as ±∞. With N slopes sorted and K = #{S < −1}, the slope is the K-shifted
    median (``S_((N+1)/2+K)`` for odd N, mean of ``S_(N/2+K)`` and ``S_(N/2+K+1)`` for
    even N); the intercept is ``median(y − slope·x)``.

    CI rule (PB1983 §2.3, large-sample): ``C = z_{1−α/2} sqrt(n(n−1)(2n+5)/18)``,
    ``M1 = round((N − C)/2)`` (half rounded up), ``M2 = N − M1 + 1``; slope CI
    ``[S_(M1+K), S_(M2+K)]`` (1-based ranks); intercept CI
    ``[median(y − b_U x), median(y − b_L x)]`` — the R ``mcr`` "analytical" interval.

    Parameters
    ----------
    x, y : array_like
        Paired measurements (at least 3 pairs).
    ci_level : float, default 0.95
    max_n : int, default PB_MAX_N
        Refuse larger samples (O(n²) memory and time); raise it knowingly.
    rule : {"pb1983", "mcr"}, default "pb1983"
        "pb1983" is the rule above. "mcr" reproduces R ``mcr::mcreg(method.reg="PaBa",
        method.ci="analytical", slope.measure="radian")``: slopes as angles, slopes of
        exactly ±1 kept with a half offset, the sign of Kendall's τ choosing the offset,
        and the CI ranks ``round(N ∓ C + offset)`` on the doubled-index scale with
        neighbour averaging (mcr documents this as its deviation from PB1983).

    Returns
    -------
    PassingBablokResult

    Examples
    --------
    >>> r = passing_bablok([1.0, 2.0, 3.0, 4.0, 5.0], [1.1, 2.1, 3.1, 4.1, 5.1])
    >>> round(r.slope, 6), round(r.intercept, 6)
    (1.0, 0.1)
    """
    level = check_ci_level(ci_level)
    xa, ya = as_pair(x, y, names=("x", "y"))
    n = xa.size
    if n > max_n:
        raise CompareError(
            f"passing_bablok got {n} pairs > max_n={max_n}: it needs n(n−1)/2 pairwise "
            "slopes (O(n²)); pass a larger max_n knowingly or subsample"
        )
    c = two_sided_z(level) * math.sqrt(n * (n - 1) * (2 * n + 5) / 18.0)
    if rule == "mcr":
        slope, b_lo, b_hi, n_s, k = _pb_mcr(xa, ya, c)
    elif rule == "pb1983":
        slope, b_lo, b_hi, n_s, k = _pb_1983(xa, ya, c, level, n)
    else:
        raise CompareError(f"rule must be 'pb1983' or 'mcr', got {rule!r}")
    if not math.isfinite(slope):
        raise CompareError("the Passing–Bablok slope is infinite (degenerate x values)")
    intercept = float(np.median(ya - slope * xa))
    a_lo = float(np.median(ya - b_hi * xa))
    a_hi = float(np.median(ya - b_lo * xa))
    return PassingBablokResult(
        slope=slope,
        intercept=intercept,
        slope_ci=(b_lo, b_hi),
        intercept_ci=(a_lo, a_hi),
        n=n,
        n_slopes=n_s,
        shift=k,
        ci_level=level,
        rule=rule,
    )
