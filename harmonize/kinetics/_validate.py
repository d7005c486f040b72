"""Input checks shared by the kinetics functions (private)."""

from __future__ import annotations

import itertools
import math

import numpy as np

from harmonize.errors import HarmonizeError
from harmonize.nuclides import MAX_HALF_LIVES, Nuclide, get_nuclide

__all__ = [
    "MAX_ABS_ACTIVITY",
    "MAX_HALF_LIVES",
    "MIN_PEAK_ACTIVITY",
    "WEIGHTINGS",
    "KineticsError",
    "check_activity_1d",
    "check_activity_magnitude",
    "check_choice",
    "check_integral",
    "check_peak_magnitude",
    "check_time_scale",
    "check_times",
    "physical_lambda_per_h",
    "time_scale_message",
]


#: Largest |activity| accepted, in any unit. The fits form moments up to y²·t⁴ (≈ y² × 1e13
#: for t up to 3190 h) and square them, which must stay below the float64 limit (≈1.8e308):
#: y ≤ 1e30 keeps them finite. A therapy activity in Bq is ≈1e10, so this bound refuses only
#: numbers that are not activities (unit or corruption errors).
MAX_ABS_ACTIVITY = 1e30
#: Smallest peak |activity| accepted: the same moments must not underflow to 0 either
#: (float64 holds down to ≈2e-308), the mirror image of :data:`MAX_ABS_ACTIVITY`.
MIN_PEAK_ACTIVITY = 1e-30

#: Residual weightings accepted by the fitters: weight of a point of activity ``y``.
WEIGHTINGS = ("none", "relative", "poisson")
#: Up to this many values, a valid 1-D input is recognised on Python floats (a few µs for a
#: TAC, against ~20 µs of numpy calls); anything else takes the numpy checks and their errors.
_SMALL = 64


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
    if t.size <= _SMALL:  # the same checks on Python floats: numpy's per-call cost dominates
        v = t.tolist()
        if (
            all(math.isfinite(x) for x in v)
            and v[0] >= 0
            and all(a < b for a, b in itertools.pairwise(v))
        ):
            return t
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
    if a.size <= _SMALL:  # the same checks on Python floats: numpy's per-call cost dominates
        v = a.tolist()
        if all(math.isfinite(x) for x in v):
            peak = max(abs(min(v)), abs(max(v)))
            if MIN_PEAK_ACTIVITY <= peak <= MAX_ABS_ACTIVITY and max(v) > 0:
                return a
    if not np.all(np.isfinite(a)):
        raise KineticsError(f"{name} contains NaN or infinite values: {a.tolist()}")
    check_activity_magnitude(a, name=name)
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


def check_time_scale(times_h: np.ndarray, nuclide: str | Nuclide, *, name: str = "times_h") -> None:
    """Refuse sampling times later than :data:`MAX_HALF_LIVES` physical half-lives.

    Such times are not hours: the message names the unit expected and the likely mistake.
    """
    nuc = nuclide if isinstance(nuclide, Nuclide) else get_nuclide(nuclide)
    t_last = float(np.max(times_h)) if np.size(times_h) else 0.0
    limit_h = MAX_HALF_LIVES * nuc.half_life_h
    if t_last > limit_h:
        raise KineticsError(time_scale_message(name, t_last, nuc))


def time_scale_message(name: str, t_last_h: float, nuc: Nuclide) -> str:
    """The message for sampling times that are not hours (shared with the Study validator)."""
    return (
        f"{name} must be in hours after administration: the last time {t_last_h:g} h is "
        f"{t_last_h / nuc.half_life_h:.0f} half-lives of {nuc.name} (more than "
        f"{MAX_HALF_LIVES:g}, i.e. > {MAX_HALF_LIVES * nuc.half_life_h:g} h) — were the times "
        "given in minutes or seconds? Divide by 60 or 3600."
    )


def check_integral(tia: float, *, what: str = "time-integrated activity") -> float:
    """Return ``tia`` if it is finite and > 0, else raise :class:`KineticsError`.

    A non-finite integral comes from activities or times out of range (overflow); a
    non-positive one from data whose integral is not an activity (negative values).
    """
    value = float(tia)
    if not math.isfinite(value):
        raise KineticsError(
            f"the {what} is not finite ({value}): activities or times out of range "
            "(overflow); check their units"
        )
    if value <= 0:
        raise KineticsError(
            f"the {what} is {value:.6g} ≤ 0: the curve's integral is not a positive activity "
            "(negative or zero activities dominate); check the time-activity data"
        )
    return value


def check_activity_magnitude(activity: np.ndarray, *, name: str = "activity") -> None:
    """Refuse activities beyond :data:`MAX_ABS_ACTIVITY` or peaking below :data:`MIN_PEAK_ACTIVITY`."""
    # two reductions instead of np.abs: no copy of a large voxel array
    peak = max(abs(float(np.min(activity))), abs(float(np.max(activity)))) if activity.size else 0.0
    check_peak_magnitude(peak, name=name)


def check_peak_magnitude(peak: float, *, name: str = "activity") -> None:
    """:func:`check_activity_magnitude` given the largest ``|activity|`` (``peak``)."""
    if peak > MAX_ABS_ACTIVITY:
        raise KineticsError(
            f"{name} has values of magnitude {peak:.3g}, beyond {MAX_ABS_ACTIVITY:g} in any "
            "unit: not an activity (check the unit or the data)"
        )
    if 0 < peak < MIN_PEAK_ACTIVITY:
        raise KineticsError(
            f"{name} peaks at {peak:.3g}, below {MIN_PEAK_ACTIVITY:g} in any unit: too small "
            "to fit in floating point (check the unit or the data)"
        )
