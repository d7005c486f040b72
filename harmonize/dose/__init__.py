"""Dose engines: local deposition, dose-voxel-kernel convolution, sphere model, organ S-values.

Every engine turns time-integrated activity (TIA, MBq·h) into absorbed dose (Gy):

* :func:`local_deposition` — electron energy absorbed in the voxel of emission (LDM);
* :func:`convolve_kernel` — FFT convolution with Lanconelli2012 voxel S-values
  (:func:`voxel_kernel`, any voxel size, see :mod:`harmonize.dose.kernels`);
* :func:`sphere_s_value` / :func:`sphere_dose` — unit-density sphere model S(mass);
* :func:`read_organ_s_table` / :func:`organ_dose` — user-supplied organ S-value tables;
* :func:`density_from_hu` / :func:`voi_mass_g` — CT densities and VOI masses.

Nuclear data (energies, yields, half-lives) come from :mod:`harmonize.nuclides` (ICRP-107).
"""

from harmonize.dose._common import DoseInputError
from harmonize.dose.convolution import convolve_kernel
from harmonize.dose.density import density_from_hu, voi_mass_g
from harmonize.dose.kernels import (
    MEDIUM_DENSITY_G_ML,
    KernelNotAvailableError,
    KernelResolutionWarning,
    kernel_energy_mev,
    kernel_method,
    kernel_photon_capture,
    tabulated_voxel_sizes_mm,
    voxel_kernel,
)
from harmonize.dose.ldm import DEFAULT_TISSUE_DENSITY_G_ML, energy_per_decay_mev, local_deposition
from harmonize.dose.organ import OrganSTableError, organ_dose, organ_doses, read_organ_s_table
from harmonize.dose.sphere import sphere_absorbed_energy_mev, sphere_dose, sphere_s_value

__all__ = [
    "DEFAULT_TISSUE_DENSITY_G_ML",
    "MEDIUM_DENSITY_G_ML",
    "DoseInputError",
    "KernelNotAvailableError",
    "KernelResolutionWarning",
    "OrganSTableError",
    "convolve_kernel",
    "density_from_hu",
    "energy_per_decay_mev",
    "kernel_energy_mev",
    "kernel_method",
    "kernel_photon_capture",
    "local_deposition",
    "organ_dose",
    "organ_doses",
    "read_organ_s_table",
    "sphere_absorbed_energy_mev",
    "sphere_dose",
    "sphere_s_value",
    "tabulated_voxel_sizes_mm",
    "voi_mass_g",
    "voxel_kernel",
]
