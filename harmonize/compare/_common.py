"""Shared validation helpers and the error/warning classes of :mod:`harmonize.compare`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harmonize._warnings import HarmonizeWarning
from harmonize.errors import HarmonizeError

__all__ = [
    "MAX_ABS_VALUE",
    "MIN_ABS_VALUE",
    "MIN_PAIRS",
    "CompareError",
    "UnpairedRowsWarning",
    "as_1d",
    "as_pair",
    "check_ci_level",
    "two_sided_z",
]

#: Fewest paired observations any agreement statistic accepts (a SD needs 2, a CI of
#: a SD or a regression needs at least 3).
MIN_PAIRS = 3
#: Range of the largest |value| of a sample the statistics accept (its scale). Deming's
#: slope and the CCC's variance form fourth powers of the data; with the scale in
#: [1e-60, 1e60] they stay within float64 (1e±308) for any realistic n (smaller values
#: beside the largest only underflow to 0, harmlessly). Doses, TIAs and masses are many
#: orders inside.
MAX_ABS_VALUE = 1e60
MIN_ABS_VALUE = 1e-60


class CompareError(HarmonizeError, ValueError):
    """Bad input to a comparison function (names the argument and what was expected)."""


class UnpairedRowsWarning(HarmonizeWarning):
    """Rows present in some workflows but missing in others were left out of a comparison."""


def check_ci_level(ci_level: float, name: str = "ci_level") -> float:
    """Return ``ci_level`` as float after checking 0 < ci_level < 1."""
    try:
        level = float(ci_level)
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{name} must be a number in (0, 1), got {ci_level!r}") from exc
    if not 0.0 < level < 1.0:
        raise CompareError(f"{name} must be in (0, 1), got {ci_level!r}")
    return level


def two_sided_z(level: float) -> float:
    """Standard normal quantile z with P(|Z| <= z) = level."""
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2.0))


def as_1d(values: ArrayLike, name: str, *, min_n: int = MIN_PAIRS) -> NDArray[np.float64]:
    """Convert to a finite 1-D float64 array of at least ``min_n`` values."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CompareError(f"{name} must be numeric, got {type(values).__name__}") from exc
    if arr.ndim != 1:
        raise CompareError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise CompareError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    if arr.size < min_n:
        raise CompareError(f"{name} needs at least {min_n} values, got {arr.size}")
    peak = float(np.max(np.abs(arr))) if arr.size else 0.0
    if peak > MAX_ABS_VALUE or 0.0 < peak < MIN_ABS_VALUE:
        raise CompareError(
            f"{name} has values of magnitude outside [{MIN_ABS_VALUE:g}, {MAX_ABS_VALUE:g}] "
            f"(largest {peak:.3g}): the statistics form up to fourth powers of the data, "
            "which would overflow or underflow; rescale the values (e.g. change the unit)"
        )
    return arr


def as_pair(
    a: ArrayLike,
    b: ArrayLike,
    names: Sequence[str] = ("a", "b"),
    *,
    min_n: int = MIN_PAIRS,
    positive: bool = False,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Validate two paired samples: same length, finite, at least ``min_n`` pairs.

    With ``positive=True`` every value must be > 0 (needed on the log scale).
    """
    x = as_1d(a, names[0], min_n=0)
    y = as_1d(b, names[1], min_n=0)
    if x.shape != y.shape:
        raise CompareError(
            f"{names[0]} and {names[1]} must have the same length, got {x.size} and {y.size}"
        )
    if x.size < min_n:
        raise CompareError(f"{names[0]} and {names[1]} need at least {min_n} pairs, got {x.size}")
    if positive:
        for arr, nm in ((x, names[0]), (y, names[1])):
            if np.any(arr <= 0):
                raise CompareError(
                    f"{nm} has {int(np.count_nonzero(arr <= 0))} zero or negative value(s); "
                    "the log/ratio scale needs strictly positive values"
                )
    return x, y
