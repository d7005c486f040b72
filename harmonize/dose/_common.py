"""Shared helpers of :mod:`harmonize.dose`: the error class, unit factors and validators."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harmonize.errors import HarmonizeError

__all__ = [
    "SECONDS_PER_HOUR",
    "DoseInputError",
    "as_voxel_size_mm",
    "check_finite_nonnegative",
    "check_positive",
]

#: Seconds per hour (exact).
SECONDS_PER_HOUR = 3600.0


class DoseInputError(HarmonizeError, ValueError):
    """An argument of a dose function is missing, of the wrong shape, unit or range."""


def as_voxel_size_mm(voxel_size_mm: float | Sequence[float]) -> tuple[float, float, float]:
    """Return ``(dz, dy, dx)`` in mm from a scalar (isotropic) or a 3-sequence.

    Raises
    ------
    DoseInputError
        If the value is not one positive finite number or three of them.
    """
    arr = np.atleast_1d(np.asarray(voxel_size_mm, dtype=float))
    if arr.shape == (1,):
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise DoseInputError(
            f"voxel_size_mm must be one positive number (isotropic) or three (dz, dy, dx) in mm, "
            f"got {voxel_size_mm!r}"
        )
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def check_finite_nonnegative(name: str, values: np.ndarray) -> None:
    """Raise :class:`DoseInputError` if ``values`` holds NaN, inf or negative numbers."""
    if not np.all(np.isfinite(values)):
        raise DoseInputError(f"{name} contains NaN or infinite values")
    if np.any(values < 0):
        raise DoseInputError(
            f"{name} contains negative values (minimum {np.min(values):g}); a time-integrated "
            f"activity or a mass cannot be negative (clip noise to 0 before calling)"
        )


def check_positive(name: str, values: np.ndarray) -> None:
    """Raise :class:`DoseInputError` unless every value is finite and > 0."""
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise DoseInputError(
            f"{name} must be finite and > 0 everywhere, got minimum {np.min(values)!r}"
        )
