"""Input checks shared by the kinetics functions (private)."""

from __future__ import annotations

import numpy as np

from harmonize.errors import HarmonizeError
from harmonize.nuclides import Nuclide, get_nuclide

__all__ = [
    "WEIGHTINGS",
    "KineticsError",
    "check_activity_1d",
    "check_choice",
    "check_times",
    "physical_lambda_per_h",
]

#: Residual weightings accepted by the fitters: weight of a point of activity ``y``.
WEIGHTINGS = ("none", "relative", "poisson")


class KineticsError(HarmonizeError, ValueError):
    """Invalid input to a kinetics function (the message names the argument)."""


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`KineticsError`."""
    if not isinstance(value, str) or value not in allowed:
        raise KineticsError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_times(times_h: object, *, name: str = "times_h") -> np.ndarray:
    """Validate sampling times: 1-D, finite, non-negative, strictly increasing.

    Returns
    -------
    numpy.ndarray
        The times as a float64 array.
    """
    try:
        t = np.asarray(times_h, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KineticsError(f"{name} must be an array of numbers: {exc}") from exc
    if t.ndim != 1:
        raise KineticsError(f"{name} must be one-dimensional, got shape {t.shape}")
    if t.size == 0:
        raise KineticsError(f"{name} is empty")
    if not np.all(np.isfinite(t)):
        raise KineticsError(f"{name} contains NaN or infinite values: {t.tolist()}")
    if np.any(t < 0):
        raise KineticsError(f"{name} must be >= 0 h (time after administration), got {t.tolist()}")
    steps = np.diff(t)
    if np.any(steps == 0):
        raise KineticsError(f"{name} contains duplicate times: {t.tolist()}")
    if np.any(steps < 0):
        raise KineticsError(f"{name} must be sorted in increasing order, got {t.tolist()}")
    return t


def check_activity_1d(activity: object, n_times: int, *, name: str = "activity") -> np.ndarray:
    """Validate one time-activity curve against ``n_times`` sampling times."""
    try:
        a = np.asarray(activity, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KineticsError(f"{name} must be an array of numbers: {exc}") from exc
    if a.ndim != 1:
        raise KineticsError(f"{name} must be one-dimensional, got shape {a.shape}")
    if a.size != n_times:
        raise KineticsError(
            f"{name} has {a.size} values but times_h has {n_times}: one activity per time point"
        )
    if not np.all(np.isfinite(a)):
        raise KineticsError(f"{name} contains NaN or infinite values: {a.tolist()}")
    if not np.any(a > 0):
        raise KineticsError(
            f"{name} has no positive value (all zero or negative): {a.tolist()}; "
            "a time-activity curve needs at least one positive activity"
        )
    return a


def physical_lambda_per_h(nuclide: str | Nuclide) -> float:
    """Physical decay constant ln 2 / T½ (h⁻¹) of ``nuclide`` (name or :class:`Nuclide`)."""
    if isinstance(nuclide, Nuclide):
        return nuclide.decay_constant_per_h
    return get_nuclide(nuclide).decay_constant_per_h
