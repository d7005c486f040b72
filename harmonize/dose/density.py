"""Mass density from CT numbers, and VOI masses.

Calibration ``"schneider2000"``: the piecewise-linear HU → mass density relation of
Schneider, Bortfeld & Schlegel, Phys Med Biol 2000;45:459–478 (doi:10.1088/0031-9155/45/2/314),
in the tabulated form distributed with GATE/Geant4 (``Schneider2000DensitiesTable.txt``):
air −1000 HU → 0.00121 g/mL, lung/adipose up to −98 HU → 0.93, soft tissue 14–23 HU →
1.03, 100 HU → 1.1199, a step down to 1.0762 at 101 HU (start of the marrow/bone mixtures),
1600 HU → 1.9642 and 3000 HU → 2.8. HU outside −1000…3000 are clipped to the end values
(metal and noise are not modelled). A scanner-specific calibration can be passed as
``(hu_points, density_points)``.

Examples
--------
>>> from harmonize import dose
>>> [round(float(v), 4) for v in dose.density_from_hu([-1000, 0, 20, 1000])]
[0.0012, 1.0174, 1.0307, 1.6088]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from harmonize.dose._common import DoseInputError

__all__ = ["SCHNEIDER2000_DENSITY_G_ML", "SCHNEIDER2000_HU", "density_from_hu", "voi_mass_g"]

#: Schneider2000 calibration nodes (HU), GATE ``Schneider2000DensitiesTable.txt``.
SCHNEIDER2000_HU = (-1000.0, -98.0, -97.0, 14.0, 23.0, 100.0, 101.0, 1600.0, 3000.0)
#: Mass densities (g/mL) at :data:`SCHNEIDER2000_HU`.
SCHNEIDER2000_DENSITY_G_ML = (0.00121, 0.93, 0.930486, 1.03, 1.031, 1.1199, 1.0762, 1.9642, 2.8)


def density_from_hu(
    hu_array: npt.ArrayLike,
    calibration: str | tuple[Sequence[float], Sequence[float]] = "schneider2000",
) -> np.ndarray:
    """Mass density (g/mL) from CT numbers by piecewise-linear calibration.

    Parameters
    ----------
    hu_array : array_like
        CT numbers (HU).
    calibration : "schneider2000" or (hu_points, density_points)
        The calibration; custom points must have strictly increasing HU and densities > 0.

    Returns
    -------
    numpy.ndarray
        Density, same shape as ``hu_array``; HU beyond the calibration ends take the end values.
    """
    hu = np.asarray(hu_array, dtype=float)
    if not np.all(np.isfinite(hu)):
        raise DoseInputError("hu_array contains NaN or infinite values")
    if isinstance(calibration, str):
        if calibration.lower() != "schneider2000":
            raise DoseInputError(
                f"unknown calibration {calibration!r}; use 'schneider2000' or (hu, density) points"
            )
        x, y = np.array(SCHNEIDER2000_HU), np.array(SCHNEIDER2000_DENSITY_G_ML)
    else:
        try:
            x, y = (np.asarray(v, dtype=float) for v in calibration)
        except (TypeError, ValueError) as exc:
            raise DoseInputError(
                "calibration must be a name or (hu_points, density_points)"
            ) from exc
        if x.ndim != 1 or x.shape != y.shape or x.size < 2:
            raise DoseInputError(
                "calibration points must be two 1-D sequences of equal length >= 2"
            )
        if np.any(np.diff(x) <= 0) or np.any(y <= 0) or not np.all(np.isfinite(y)):
            raise DoseInputError("calibration HU must increase strictly and densities be > 0")
    return np.interp(hu, x, y)


def voi_mass_g(
    labels: npt.ArrayLike,
    density_g_ml: float | npt.ArrayLike,
    voxel_volume_ml: float,
    label: int | None = None,
) -> float | dict[int, float]:
    """Mass (g) of a VOI: Σ density × voxel volume over its voxels.

    Parameters
    ----------
    labels : array_like
        Boolean mask, or integer label map (0 = background).
    density_g_ml : float or array_like
        Density per voxel (same shape as ``labels``) or one value.
    voxel_volume_ml : float
        Volume of one voxel, mL.
    label : int, optional
        For a label map: the label to weigh. None with an integer map: a dict {label: mass}
        for every non-zero label. Ignored for a boolean mask.

    >>> import numpy as np
    >>> voi_mass_g(np.ones((2, 2, 2), bool), 1.04, 0.5)
    4.16
    """
    lab = np.asarray(labels)
    vol = float(voxel_volume_ml)
    if not np.isfinite(vol) or vol <= 0:
        raise DoseInputError(f"voxel_volume_ml must be finite and > 0, got {voxel_volume_ml!r}")
    rho = (
        np.broadcast_to(np.asarray(density_g_ml, dtype=float), lab.shape)
        if np.ndim(density_g_ml) == 0
        else np.asarray(density_g_ml, dtype=float)
    )
    if rho.shape != lab.shape:
        raise DoseInputError(f"density shape {rho.shape} differs from labels shape {lab.shape}")
    if not np.all(np.isfinite(rho)) or np.any(rho < 0):
        raise DoseInputError("density_g_ml must be finite and >= 0")
    if lab.dtype == bool:
        return round(float(rho[lab].sum() * vol), 12)
    if not np.issubdtype(lab.dtype, np.integer):
        raise DoseInputError(f"labels must be a boolean mask or integer labels, got {lab.dtype}")
    if label is not None:
        return float(rho[lab == label].sum() * vol)
    ids = np.unique(lab[lab != 0])
    sums = np.bincount(
        np.searchsorted(ids, lab[lab != 0]), weights=rho[lab != 0], minlength=ids.size
    )
    return {int(i): float(s * vol) for i, s in zip(ids, sums, strict=True)}
