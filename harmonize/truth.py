"""The definition of "true" absorbed dose for synthetic data — kept in this one place.

The phantom knows the true activity concentration of every voxel at every time (uniform
within each VOI, with that VOI's analytic kinetics), hence the exact time-integrated
activity (TIA) of every voxel. The **true absorbed dose** of a voxel is that noise-free,
unblurred TIA map through the reference dose physics:

* dose-voxel-kernel convolution with the Lanconelli et al. 2012 soft-tissue voxel S-values
  (Phys Med Biol 57:517) for the nuclide and voxel size, which carries electrons and the
  photon energy absorbed within the kernel's 11³-voxel support;
* scaled by the kernel medium's density over the voxel's true density (absorbed dose is
  energy per mass);
* the true mean dose of a VOI is the mass-weighted mean over the VOI's own voxels (a lesion's
  voxels are not counted in the organ that contains it).

Workflows are judged against this truth; their differences from it are the point of the
exercise, so nothing here is tuned to any workflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["REFERENCE_DOSE_METHOD", "reference_dose_gy"]

#: Human-readable statement of the truth definition, recorded in truth tables and reports.
REFERENCE_DOSE_METHOD = (
    "noise-free unblurred TIA map convolved with the Lanconelli 2012 soft-tissue voxel "
    "S-value kernel, density-scaled; VOI dose = mass-weighted mean over the VOI's own voxels"
)


def reference_dose_gy(
    tia_mbq_h: np.ndarray,
    voxel_size_mm: Sequence[float],
    density_g_ml: np.ndarray,
    nuclide: str = "Lu-177",
) -> np.ndarray:
    """True absorbed dose map (Gy) of a noise-free TIA map (MBq·h per voxel).

    Parameters
    ----------
    tia_mbq_h : ndarray (z, y, x)
        Time-integrated activity of each voxel, MBq·h.
    voxel_size_mm : (dz, dy, dx)
        Voxel spacing.
    density_g_ml : ndarray (z, y, x)
        True mass density of each voxel (g/mL).
    nuclide : str
        Radionuclide name.
    """
    from harmonize import dose

    return dose.convolve_kernel(
        tia_mbq_h,
        tuple(float(v) for v in voxel_size_mm),
        nuclide=nuclide,
        medium="soft_tissue",
        density_g_ml=density_g_ml,
    )
