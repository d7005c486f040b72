"""Lin's concordance correlation coefficient with its Fisher-Z confidence interval.

References
----------
- Lin1989: Lin LI-K. A concordance correlation coefficient to evaluate reproducibility.
  Biometrics 1989;45:255–268, doi:10.2307/2532051.
- Lin2000: Lin LI-K. A note on the concordance correlation coefficient.
  Biometrics 2000;56:324–325, doi:10.1111/j.0006-341X.2000.00324.x (corrected variance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harmonize.compare._common import CompareError, as_pair, check_ci_level, two_sided_z

__all__ = ["ConcordanceResult", "ccc_from_arrays", "lin_ccc"]


@dataclass(frozen=True)
class ConcordanceResult:
    """Lin's CCC.

    Attributes
    ----------
    ccc : float
        Concordance correlation coefficient ρ_c.
    ci : tuple of float
        Confidence interval (Fisher Z, Lin1989 §3 with the Lin2000 variance).
    pearson_r : float
        Precision component ρ.
    bias_correction : float
        Accuracy component C_b = ρ_c / ρ.
    n : int
    ci_level : float
    """

    ccc: float
    ci: tuple[float, float]
    pearson_r: float
    bias_correction: float
    n: int
    ci_level: float


def ccc_from_arrays(
    x: NDArray[np.float64], y: NDArray[np.float64], level: float
) -> tuple[float, float, float, float]:
    """Return (ccc, ci_low, ci_high, pearson r) of validated arrays (vectorised core)."""
    n = x.size
    mx, my = float(x.mean()), float(y.mean())
    dx, dy = x - mx, y - my
    sxx = float(dx @ dx) / n  # Lin1989 uses the 1/n moments
    syy = float(dy @ dy) / n
    sxy = float(dx @ dy) / n
    denom = sxx + syy + (mx - my) ** 2
    if not denom > 0.0:
        raise CompareError("all values are equal in both samples; the CCC is undefined")
    rc = 2.0 * sxy / denom
    if sxx == 0.0 or syy == 0.0:
        raise CompareError(
            "one sample has zero variance; the CCC CI (needs Pearson r) is undefined"
        )
    r = sxy / math.sqrt(sxx * syy)
    if abs(rc) >= 1.0 or n <= 2:
        return rc, rc, rc, r
    u2 = (mx - my) ** 2 / math.sqrt(sxx * syy)
    # Lin1989 eq. (3) as corrected in Lin2000: variance of Z = atanh(rc), written with the
    # bias-correction factor C_b = rc/r = 2·s_x·s_y/denom (rc³/r = r²C_b³, rc⁴/r² = r²C_b⁴),
    # the same expression without a division by r, so uncorrelated samples (r = 0) have
    # their limit C_b²/(n − 2) instead of a ZeroDivisionError.
    cb = 2.0 * math.sqrt(sxx * syy) / denom
    var_z = (
        (1.0 - r * r) * cb * cb / (1.0 - rc * rc)
        + 2.0 * r * r * cb**3 * (1.0 - rc) * u2 / (1.0 - rc * rc) ** 2
        - r * r * cb**4 * u2 * u2 / (2.0 * (1.0 - rc * rc) ** 2)
    ) / (n - 2)
    z = math.atanh(rc)
    half = two_sided_z(level) * math.sqrt(max(var_z, 0.0))
    return rc, math.tanh(z - half), math.tanh(z + half), r


def lin_ccc(a: ArrayLike, b: ArrayLike, *, ci_level: float = 0.95) -> ConcordanceResult:
    """Lin's concordance correlation coefficient of two paired samples.

    Definition followed: Lin1989 sample estimator
    ``ρ_c = 2 s_ab / (s_a² + s_b² + (ā − b̄)²)`` with 1/n (not 1/(n−1)) moments; CI by the
    Fisher Z transformation ``Z = atanh(ρ_c)`` with the asymptotic variance of Lin1989
    corrected in Lin2000 (the "z-transform" interval of R ``epiR::epi.ccc``). The CCC is
    symmetric in ``a`` and ``b`` (no sign convention needed).

    Parameters
    ----------
    a, b : array_like
        Paired measurements (at least 3 pairs).
    ci_level : float, default 0.95

    Returns
    -------
    ConcordanceResult

    Examples
    --------
    >>> round(lin_ccc([1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.2, 3.9]).ccc, 4)
    0.9928
    """
    level = check_ci_level(ci_level)
    x, y = as_pair(a, b)
    rc, lo, hi, r = ccc_from_arrays(x, y, level)
    # C_b = 2·s_x·s_y/(s_x² + s_y² + (x̄ − ȳ)²) (Lin1989), = rc/r but defined at r = 0
    sx, sy = float(x.std()), float(y.std())
    cb = 2.0 * sx * sy / (sx * sx + sy * sy + (float(x.mean()) - float(y.mean())) ** 2)
    return ConcordanceResult(
        ccc=rc, ci=(lo, hi), pearson_r=r, bias_correction=cb, n=int(x.size), ci_level=level
    )
