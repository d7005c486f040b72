"""Photon absorbed fractions from NIST energy-absorption coefficients (water).

Data: mass attenuation μ/ρ and mass energy-absorption μ_en/ρ coefficients of liquid water,
NIST X-Ray Mass Attenuation Coefficients, Table 4 (Hubbell & Seltzer, NISTIR 5632, 1995,
doi:10.18434/T4D01F), shipped as ``harmonize/data/nist_water_photon_coefficients.csv`` (see
``nist_water_photon_coefficients.md`` there). Unit-density soft tissue is taken as water for
photon transport (mass coefficients of ICRU soft tissue differ from water by a few per cent
at 50–300 keV).

Model ("energy-conserving exponential point kernel"): the energy a point isotropic source of
photons of energy E deposits per unit mass at distance r is taken as
``μ_en·exp(-μ_en·r)/(4π r² ρ)``, i.e. primary attenuation with μ_en in place of μ. This is
the classic buildup-free approximation of the energy-absorption point kernel (Berger,
MIRD Pamphlet 2, J Nucl Med 1968;9 Suppl 1:15–25, which tabulates the exact buildup
factors): it is exact to first order for small bodies (μ_en r ≪ 1, where absorbed
fraction → μ_en × mean chord) and conserves energy for an infinite medium (its integral
over all space is 1). For intermediate sizes it neglects the difference between the true
energy-absorption buildup and exp((μ-μ_en) r); the error is a few per cent of the photon
share, i.e. well under 1 % of the total Lu-177 energy absorbed.

Photons below the table's first energy (1 keV) are absorbed locally: their mean free path
in water is below 1 µm.

Examples
--------
>>> from harmonize.dose import photons
>>> round(float(photons.mu_en_rho_cm2_g(0.2)), 5)   # NIST table value at 200 keV
0.02967
>>> float(photons.sphere_escape_probability(0.0))
1.0
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import numpy.typing as npt

from harmonize.dose._common import DoseInputError

__all__ = [
    "NIST_WATER_TABLE",
    "absorbed_fraction_point_in_cube",
    "absorbed_fraction_uniform_sphere",
    "mu_en_rho_cm2_g",
    "mu_rho_cm2_g",
    "sphere_escape_probability",
]

#: Package-data file with the NIST Table 4 values for liquid water.
NIST_WATER_TABLE = "nist_water_photon_coefficients.csv"


@functools.cache
def _table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    path = resources.files("harmonize.data").joinpath(NIST_WATER_TABLE)
    data = np.loadtxt(path.open("r", encoding="utf-8"), delimiter=",", skiprows=1)
    energy, mu, mu_en = (np.ascontiguousarray(c) for c in data.T)
    for arr in (energy, mu, mu_en):
        arr.setflags(write=False)
    return energy, mu, mu_en


def _loglog(energy_mev: npt.ArrayLike, column: np.ndarray) -> np.ndarray:
    energy_table = _table()[0]
    e = np.asarray(energy_mev, dtype=float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise DoseInputError(f"photon energy_mev must be finite and > 0, got {energy_mev!r}")
    if np.any(e > energy_table[-1]):
        raise DoseInputError(
            f"photon energy above the NIST table maximum {energy_table[-1]} MeV: {np.max(e)}"
        )
    e_clipped = np.maximum(e, energy_table[0])
    return np.exp(np.interp(np.log(e_clipped), np.log(energy_table), np.log(column)))


def mu_en_rho_cm2_g(energy_mev: npt.ArrayLike) -> np.ndarray:
    """Mass energy-absorption coefficient of water, cm²/g (log-log interpolation of NIST).

    Energies below 1 keV return the 1 keV value (such photons are absorbed within 1 µm).
    """
    return _loglog(energy_mev, _table()[2])


def mu_rho_cm2_g(energy_mev: npt.ArrayLike) -> np.ndarray:
    """Mass attenuation coefficient of water with coherent scattering, cm²/g (NIST)."""
    return _loglog(energy_mev, _table()[1])


def sphere_escape_probability(tau: npt.ArrayLike) -> np.ndarray:
    """First-flight escape probability from a sphere with a uniform isotropic source.

    ``P(τ) = 3/(8τ³)·[2τ² − 1 + (1 + 2τ)·exp(−2τ)]`` with ``τ = μR`` (optical radius); the
    classic result for a uniformly emitting sphere (e.g. Case, de Hoffmann & Placzek,
    *Introduction to the Theory of Neutron Diffusion*, Los Alamos 1953). Limits:
    ``1 − 3τ/4`` for small τ (mean distance to the surface is 3R/4) and ``3/(4τ)`` for large τ.

    Parameters
    ----------
    tau : array_like
        Optical radius μ·R (dimensionless, ≥ 0).
    """
    t = np.asarray(tau, dtype=float)
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise DoseInputError(f"tau must be finite and >= 0, got {tau!r}")
    small = t < 1e-2
    ts = np.where(small, 1.0, t)
    exact = 3.0 / (8.0 * ts**3) * (2.0 * ts**2 - 1.0 + (1.0 + 2.0 * ts) * np.exp(-2.0 * ts))
    # Taylor series 1 - 3t/4 + 2t²/5 - t³/6 (cancellation makes the closed form inaccurate).
    series = 1.0 - 0.75 * t + 0.4 * t**2 - t**3 / 6.0
    return np.where(small, series, exact)


def absorbed_fraction_uniform_sphere(
    radius_cm: npt.ArrayLike, energy_mev: npt.ArrayLike, density_g_ml: float = 1.0
) -> np.ndarray:
    """Fraction of photon energy absorbed in a sphere with a uniformly distributed source.

    ``φ = 1 − P_esc(μ_en·ρ·R)`` (energy-conserving exponential point kernel, see module doc).
    ``radius_cm`` and ``energy_mev`` broadcast against each other.
    """
    r = np.asarray(radius_cm, dtype=float)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise DoseInputError(f"radius_cm must be finite and >= 0, got {radius_cm!r}")
    mu = mu_en_rho_cm2_g(energy_mev) * density_g_ml
    return 1.0 - sphere_escape_probability(mu * r)


@functools.cache
def _unit_directions(n: int = 20_000) -> np.ndarray:
    # Fibonacci lattice on the unit sphere: near-uniform, deterministic directions.
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + 5.0**0.5) * i
    rho = np.sqrt(1.0 - z**2)
    return np.stack([z, rho * np.cos(phi), rho * np.sin(phi)], axis=1)


def absorbed_fraction_point_in_cube(
    half_side_cm: float, energy_mev: npt.ArrayLike, density_g_ml: float = 1.0
) -> np.ndarray:
    """Fraction of photon energy absorbed in a cube from a point source at its centre.

    Average over directions of ``1 − exp(−μ_en·ρ·L(Ω))`` with ``L = h / max|Ω_i|`` the
    distance to the cube surface; used to estimate the photon share a finite dose-voxel
    kernel (an 11×11×11 cube around the source voxel) can capture.
    """
    if not np.isfinite(half_side_cm) or half_side_cm < 0:
        raise DoseInputError(f"half_side_cm must be finite and >= 0, got {half_side_cm!r}")
    e = np.atleast_1d(np.asarray(energy_mev, dtype=float))
    path_cm = half_side_cm / np.max(np.abs(_unit_directions()), axis=1)
    mu = mu_en_rho_cm2_g(e) * density_g_ml
    frac = 1.0 - np.exp(-np.multiply.outer(mu, path_cm)).mean(axis=-1)
    return frac.reshape(np.shape(energy_mev))
