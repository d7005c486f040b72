"""Sphere model: S-values of uniformly filled unit-density spheres, S(mass).

For a sphere of mass m (radius R, density 1 g/mL) with activity uniformly distributed::

    S·m = E_e·φ_e(R) + Σ_i y_i·E_i·φ_γ(R, E_i)        (energy absorbed per decay)

* ``E_e``, ``y_i``, ``E_i``: ICRP-107 electron energy and photon lines (:mod:`harmonize.nuclides`).
* Photons: ``φ_γ = 1 − P_esc(μ_en·R)``, the energy-conserving exponential point kernel
  with NIST μ_en of water (:mod:`harmonize.dose.photons`).
* Electrons: first-order surface (thin-layer) correction ``φ_e = 1 − ℓ·(A/V) = 1 − 3ℓ/R``.
  When the electron range is much smaller than the body, the escaping energy is
  proportional to the surface area, with an effective escape length ℓ that depends only on
  the nuclide and medium. ℓ is calibrated on the Lanconelli2012 soft-tissue kernels: the
  self-dose of a cubic voxel of side a obeys ``S(0)·m − photon self-absorption =
  E_tab·(1 − 6ℓ/a)`` (A/V = 6/a for a cube); a least-squares fit over the 13 tabulated sizes
  gives ℓ ≈ 0.057 mm with residuals below 0.3 keV (0.2 %), which supports the first-order
  form over 2.21–9.28 mm (:func:`lanconelli_electron_model`). For the smallest sphere of the
  validated range (0.1 g, R = 2.9 mm) the correction is 6 %, for 1 g 2.8 %, for 10 g 1.3 %.
  The fit also yields ``E_tab`` (≈ 137 keV), the electron energy the tables carry; only the
  ratio ℓ is used here, the energy comes from ICRP-107.

Validated mass range 0.1 g – 1 kg (as required by the workflow using it); outside it the
functions raise. No published Lu-177 unit-density sphere S-values (e.g. OLINDA/EXM sphere
model, Stabin & Konijnenberg, J Nucl Med 2000;41:149–160) were available to us, so the
model is checked against invariants (energy bounds, LDM limit) and against kernel
convolution of voxelised spheres (tests/test_dose.py), not against those tables.

Examples
--------
>>> from harmonize import dose
>>> s = dose.sphere_s_value([1.0, 10.0, 100.0])
>>> [round(float(v), 5) for v in s]   # mGy/(MBq·s)
[0.02317, 0.00236, 0.00024]
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from harmonize.dose._common import SECONDS_PER_HOUR, DoseInputError
from harmonize.dose.kernels import (
    MEDIUM_DENSITY_G_ML,
    KernelNotAvailableError,
    tabulated_voxel_sizes_mm,
    voxel_kernel,
)
from harmonize.dose.photons import absorbed_fraction_uniform_sphere
from harmonize.nuclides import MEV_TO_J, get_nuclide

__all__ = [
    "SPHERE_DENSITY_G_ML",
    "SPHERE_MASS_RANGE_G",
    "ElectronEscapeModel",
    "lanconelli_electron_model",
    "sphere_absorbed_energy_mev",
    "sphere_dose",
    "sphere_s_value",
]

#: Density of the model spheres (unit-density soft tissue, as in the OLINDA sphere model).
SPHERE_DENSITY_G_ML = 1.0
#: Mass range (g) over which the model is validated; outside it the functions raise.
SPHERE_MASS_RANGE_G = (0.1, 1000.0)
#: Gy per decay -> mGy/(MBq·s).
_GY_PER_DECAY_TO_MGY_PER_MBQ_S = 1e9


@dataclass(frozen=True)
class ElectronEscapeModel:
    """First-order electron escape fitted to the Lanconelli2012 self-dose values.

    Attributes
    ----------
    escape_length_mm : float
        ℓ in ``φ_e = 1 − ℓ·A/V``.
    table_electron_energy_mev : float
        Electron energy per decay the tables imply (intercept of the fit).
    max_abs_residual_mev : float
        Largest fit residual over the tabulated sizes.
    """

    escape_length_mm: float
    table_electron_energy_mev: float
    max_abs_residual_mev: float


@functools.cache
def lanconelli_electron_model(nuclide: str = "Lu-177") -> ElectronEscapeModel:
    """Fit ``S(0)·m − photon self-absorption = E_tab·(1 − 6ℓ/a)`` over the soft-tissue tables.

    The photon energy absorbed in the source voxel itself is estimated with a sphere of the
    voxel's volume (:func:`harmonize.dose.photons.absorbed_fraction_uniform_sphere`); it is
    below 1 % of the self-dose.

    >>> m = lanconelli_electron_model()
    >>> round(m.escape_length_mm, 3)
    0.057
    """
    nuc = get_nuclide(nuclide)
    rho = MEDIUM_DENSITY_G_ML["soft_tissue"]
    sizes = np.array(tabulated_voxel_sizes_mm(nuc.name, "soft_tissue"))
    weights = nuc.photon_energies_mev * nuc.photon_yields
    y = np.empty_like(sizes)
    for n, a_mm in enumerate(sizes):  # 13 tabulated sizes
        k = voxel_kernel(float(a_mm), nuc.name, "soft_tissue")
        mass_kg = rho * (a_mm / 10.0) ** 3 * 1e-3
        self_mev = k[k.shape[0] // 2, k.shape[1] // 2, k.shape[2] // 2] * 1e-9 * mass_kg / MEV_TO_J
        r_eq_cm = (a_mm / 10.0) * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        photon_self = absorbed_fraction_uniform_sphere(r_eq_cm, nuc.photon_energies_mev, rho)
        y[n] = self_mev - float(np.sum(photon_self * weights))
    design = np.stack([np.ones_like(sizes), -6.0 / sizes], axis=1)
    (e_tab, e_tab_ell), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ np.array([e_tab, e_tab_ell])
    return ElectronEscapeModel(
        escape_length_mm=float(e_tab_ell / e_tab),
        table_electron_energy_mev=float(e_tab),
        max_abs_residual_mev=float(np.max(np.abs(resid))),
    )


def _radius_cm(mass_g: np.ndarray) -> np.ndarray:
    return (3.0 * mass_g / (4.0 * math.pi * SPHERE_DENSITY_G_ML)) ** (1.0 / 3.0)


def _check_mass(mass_g: npt.ArrayLike) -> np.ndarray:
    m = np.asarray(mass_g, dtype=float)
    lo, hi = SPHERE_MASS_RANGE_G
    if not np.all(np.isfinite(m)) or np.any(m < lo) or np.any(m > hi):
        raise DoseInputError(
            f"mass_g must lie in the validated sphere-model range {lo}–{hi} g, got "
            f"min {np.min(m)!r}, max {np.max(m)!r}"
        )
    return m


def sphere_absorbed_energy_mev(
    mass_g: npt.ArrayLike,
    nuclide: str = "Lu-177",
    *,
    electron_escape_length_mm: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Electron and photon energy absorbed per decay in a uniform unit-density sphere, MeV.

    Parameters
    ----------
    mass_g : array_like
        Sphere mass(es), 0.1–1000 g.
    nuclide : str
        Radionuclide (ICRP-107 emissions).
    electron_escape_length_mm : float, optional
        ℓ of the electron surface correction; default: fitted to the Lanconelli2012 kernels
        (available for Lu-177 only — other nuclides must pass it).

    Returns
    -------
    (electron_mev, photon_mev) : tuple of numpy.ndarray
        Same shape as ``mass_g``.
    """
    m = _check_mass(mass_g)
    nuc = get_nuclide(nuclide)
    if electron_escape_length_mm is None:
        try:
            ell_mm = lanconelli_electron_model(nuc.name).escape_length_mm
        except KernelNotAvailableError as exc:
            raise DoseInputError(
                f"no kernel tables to calibrate electron escape for {nuc.name}; pass "
                f"electron_escape_length_mm"
            ) from exc
    else:
        ell_mm = float(electron_escape_length_mm)
        if not math.isfinite(ell_mm) or ell_mm < 0:
            raise DoseInputError(f"electron_escape_length_mm must be >= 0, got {ell_mm!r}")
    r_cm = _radius_cm(m)
    phi_e = np.clip(1.0 - 3.0 * (ell_mm / 10.0) / r_cm, 0.0, 1.0)
    phi_g = absorbed_fraction_uniform_sphere(
        r_cm[..., None], nuc.photon_energies_mev, SPHERE_DENSITY_G_ML
    )
    photon = np.sum(phi_g * (nuc.photon_energies_mev * nuc.photon_yields), axis=-1)
    return nuc.nonpenetrating_energy_mev * phi_e, photon


def sphere_s_value(
    mass_g: npt.ArrayLike,
    nuclide: str = "Lu-177",
    *,
    electron_escape_length_mm: float | None = None,
) -> np.ndarray:
    """Self-dose S-value of a uniform unit-density sphere, mGy/(MBq·s), vectorised over mass.

    See the module docstring for the derivation; ``S = (E_e·φ_e + Σ y E φ_γ) / m``.
    """
    m = _check_mass(mass_g)
    electron, photon = sphere_absorbed_energy_mev(
        m, nuclide, electron_escape_length_mm=electron_escape_length_mm
    )
    gy_per_decay = (electron + photon) * MEV_TO_J / (m * 1e-3)
    return gy_per_decay * _GY_PER_DECAY_TO_MGY_PER_MBQ_S


def sphere_dose(
    tia_mbq_h: npt.ArrayLike,
    mass_g: npt.ArrayLike,
    nuclide: str = "Lu-177",
    *,
    electron_escape_length_mm: float | None = None,
) -> np.ndarray:
    """Mean absorbed dose (Gy) of a uniform sphere: ``TIA·S`` with TIA in MBq·h.

    ``tia_mbq_h`` and ``mass_g`` broadcast against each other.

    >>> round(float(sphere_dose(100.0, 10.0)), 3)   # 100 MBq·h in a 10 g lesion
    0.85
    """
    tia = np.asarray(tia_mbq_h, dtype=float)
    if not np.all(np.isfinite(tia)) or np.any(tia < 0):
        raise DoseInputError(f"tia_mbq_h must be finite and >= 0, got {tia_mbq_h!r}")
    s = sphere_s_value(mass_g, nuclide, electron_escape_length_mm=electron_escape_length_mm)
    return tia * SECONDS_PER_HOUR * s * 1e-3
