"""Local energy deposition (LDM): all electron energy is absorbed in the voxel of emission.

``D = TIA · E / m`` with TIA in decays (MBq·h × 3.6e9), E the energy per decay (ICRP-107
electron energy from :mod:`harmonize.nuclides`; optionally plus all photon energy, an upper
bound) and m the voxel mass (density × volume). For Lu-177 (E_e = 0.14792 MeV) this is
``D[Gy] ≈ 0.0853 · TIA[MBq·h] / m[g]``.

Examples
--------
>>> from harmonize import dose
>>> round(float(dose.local_deposition(1.0, voxel_volume_ml=1.0, density_g_ml=1.0)), 4)
0.0853
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from harmonize.dose._common import SECONDS_PER_HOUR, DoseInputError, check_finite_nonnegative
from harmonize.nuclides import MEV_TO_J, get_nuclide

__all__ = ["DEFAULT_TISSUE_DENSITY_G_ML", "energy_per_decay_mev", "local_deposition"]

#: Default tissue density (g/mL): the soft-tissue density of the Lanconelli2012 kernels
#: (see harmonize/data/lanconelli2012/README.md), so LDM and kernel doses use the same mass.
DEFAULT_TISSUE_DENSITY_G_ML = 1.04
_BQ_PER_MBQ = 1e6


def energy_per_decay_mev(nuclide: str = "Lu-177", include_photons: bool = False) -> float:
    """Energy deposited per decay under LDM, MeV: electrons (+ alphas), plus photons if asked.

    >>> round(energy_per_decay_mev("Lu-177") * 1000, 2)
    147.92
    """
    nuc = get_nuclide(nuclide)
    return nuc.total_energy_mev if include_photons else nuc.nonpenetrating_energy_mev


def local_deposition(
    tia_mbq_h_map: npt.ArrayLike,
    voxel_volume_ml: float,
    density_g_ml: float | npt.ArrayLike = DEFAULT_TISSUE_DENSITY_G_ML,
    nuclide: str = "Lu-177",
    include_photons: bool = False,
) -> np.ndarray:
    """Absorbed dose (Gy) by local energy deposition.

    Parameters
    ----------
    tia_mbq_h_map : array_like
        Time-integrated activity per voxel (or per VOI), MBq·h, ≥ 0.
    voxel_volume_ml : float
        Volume of one voxel (or of the VOI), mL (= cm³).
    density_g_ml : float or array_like
        Mass density, g/mL; a scalar or an array broadcastable to the map (e.g. from
        :func:`harmonize.dose.density_from_hu`). Default 1.04 (soft tissue).
    nuclide : str
        Radionuclide (ICRP-107 energies).
    include_photons : bool
        If True, photon energy is also deposited locally (upper bound; the default deposits
        electrons only, the usual LDM for Lu-177).

    Returns
    -------
    numpy.ndarray
        Dose in Gy, shape of the broadcast of the map and the density.
    """
    tia = np.asarray(tia_mbq_h_map, dtype=float)
    check_finite_nonnegative("tia_mbq_h_map", tia)
    vol = float(voxel_volume_ml)
    if not np.isfinite(vol) or vol <= 0:
        raise DoseInputError(f"voxel_volume_ml must be finite and > 0, got {voxel_volume_ml!r}")
    rho = np.asarray(density_g_ml, dtype=float)
    if not np.all(np.isfinite(rho)) or np.any(rho <= 0):
        raise DoseInputError("density_g_ml must be finite and > 0 everywhere")
    try:
        np.broadcast_shapes(tia.shape, rho.shape)
    except ValueError as exc:
        raise DoseInputError(
            f"density_g_ml shape {rho.shape} does not match the TIA map shape {tia.shape}"
        ) from exc
    energy_j = energy_per_decay_mev(nuclide, include_photons) * MEV_TO_J
    decays = tia * _BQ_PER_MBQ * SECONDS_PER_HOUR
    mass_kg = rho * vol * 1e-3
    return decays * energy_j / mass_kg
