"""The definition of "true" absorbed dose for synthetic data — kept in this one place.

The phantom knows the true activity concentration of every voxel at every time (uniform
within each VOI, with that VOI's analytic kinetics), hence the exact time-integrated
activity (TIA) of every voxel. The **true absorbed dose** of a voxel is that noise-free,
unblurred TIA map through the reference dose physics:

* dose-voxel-kernel convolution with the Lanconelli et al. 2012 soft-tissue voxel S-values
  (Phys Med Biol 57:517) for the nuclide and voxel size, which carries electrons and the
  photon energy absorbed within the kernel's 11³-voxel support;
* **energy-normalised to ICRP-107**: the Lanconelli Lu-177 tables deposit about 138.5 keV
  of electron energy per decay, 6 % below ICRP-107's 147.9 keV (harmonize.dose.kernels
  documents the comparison). Every other part of harmonize uses ICRP-107, so the truth
  kernel is scaled by (E_electrons + f_capture · E_photons) / Σ S·m, where f_capture is the
  photon fraction absorbed within the kernel cube; the kernel keeps its shape (the
  spatial spread of electrons and photons) and carries the ICRP-107 energy;
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

__all__ = ["REFERENCE_DOSE_METHOD", "kernel_energy_scale", "reference_dose_gy"]

#: Human-readable statement of the truth definition, recorded in truth tables and reports.
REFERENCE_DOSE_METHOD = (
    "noise-free unblurred TIA map convolved with the Lanconelli 2012 soft-tissue voxel "
    "S-value kernel energy-normalised to ICRP-107, density-scaled; VOI dose = mass-weighted "
    "mean over the VOI's own voxels"
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
    voxel = tuple(float(v) for v in voxel_size_mm)
    return kernel_energy_scale(voxel, nuclide) * _convolve(tia_mbq_h, voxel, density_g_ml, nuclide)


def _convolve(
    tia_mbq_h: np.ndarray, voxel: tuple[float, ...], density_g_ml: np.ndarray, nuclide: str
) -> np.ndarray:
    from harmonize import dose

    return dose.convolve_kernel(
        tia_mbq_h, voxel, nuclide=nuclide, medium="soft_tissue", density_g_ml=density_g_ml
    )


def kernel_energy_scale(voxel_size_mm: Sequence[float], nuclide: str = "Lu-177") -> float:
    """Factor bringing the tabulated kernel's energy per decay to ICRP-107 (see above).

    For an anisotropic voxel the photon capture is evaluated at the geometric-mean side.

    >>> round(kernel_energy_scale((4.8, 4.8, 4.8)), 3)  # (147.9 + 0.102·35.1) / 142.2 keV
    1.066
    """
    from harmonize import dose
    from harmonize.nuclides import get_nuclide

    voxel = tuple(float(v) for v in voxel_size_mm)
    side = float(np.prod(voxel) ** (1.0 / 3.0))
    data = get_nuclide(nuclide)
    wanted = (
        data.nonpenetrating_energy_mev
        + dose.kernel_photon_capture(side, nuclide) * data.photon_energy_mev
    )
    tabulated = dose.kernel_energy_mev(dose.voxel_kernel(voxel, nuclide), voxel)
    return wanted / tabulated
