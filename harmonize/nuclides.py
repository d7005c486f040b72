"""Radionuclide data: half-lives and mean emitted energies per decay.

Nothing here is typed by hand. Half-lives come from :mod:`radioactivedecay`, whose default
dataset is ICRP Publication 107 (Eckerman & Endo 2008); mean energies per decay come from
the ICRP-107 emission tables shipped by the PyPI package ``icrp107-database``.

For Lu-177 this gives (ICRP-107): half-life 6.647 d; mean energy per decay of beta minus
133.27 keV, internal-conversion electrons 13.52 keV and Auger electrons 1.13 keV, i.e.
147.92 keV of non-penetrating (electron) energy, and 31.56 keV of gamma plus 3.54 keV of
X-ray energy.

A run uses one half-life source (ICRP-107 here) and records it in its provenance; the
NUBASE2020 value for Lu-177 (6.6443 d) differs by 0.04 %, which is why sources are never
mixed within a run.

Examples
--------
>>> from harmonize import nuclides
>>> lu = nuclides.get_nuclide("Lu-177")
>>> round(lu.half_life_h / 24, 3)
6.647
>>> round(lu.electron_energy_mev * 1000, 2)
147.92
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

from harmonize.errors import HarmonizeError

__all__ = [
    "MAX_HALF_LIVES",
    "MEV_TO_J",
    "Nuclide",
    "NuclideError",
    "decay_constant_per_h",
    "get_nuclide",
    "half_life_h",
    "nuclide_data_provenance",
]

#: Latest plausible sampling time, in physical half-lives of the nuclide: after 20 half-lives
#: 2⁻²⁰ ≈ 1e-6 of the activity is left, below what any SPECT or probe measures, so a later
#: "time in hours" is almost certainly minutes or seconds (for 177Lu, T½ = 159.5 h: 3190 h;
#: 4 h in seconds is 14,400 and 168 h in minutes is 10,080). A physics bound, not a fit.
MAX_HALF_LIVES = 20.0

#: Joules per MeV (CODATA 2018 exact elementary charge: 1.602176634e-19 C).
MEV_TO_J = 1.602176634e-13

_ELECTRON_KINDS = ("beta-", "beta+", "IE", "auger")
_HEAVY_KINDS = ("alpha", "alpha recoil")
_PHOTON_KINDS = ("gamma", "X", "annihilation")


class NuclideError(HarmonizeError, ValueError):
    """An unknown radionuclide, or one the nuclear-data packages cannot describe."""


@dataclass(frozen=True)
class Nuclide:
    """Decay data of one radionuclide (ICRP-107).

    Attributes
    ----------
    name : str
        Canonical name, e.g. ``"Lu-177"``.
    half_life_h : float
        Physical half-life in hours.
    electron_energy_mev : float
        Mean kinetic energy of all electrons (beta minus, beta plus, internal conversion and
        Auger) emitted per decay, MeV.
    alpha_energy_mev : float
        Mean energy of alpha particles and recoil nuclei per decay, MeV.
    photon_energy_mev : float
        Mean energy of gamma, X-ray and annihilation photons per decay, MeV.
    gamma_energy_mev : float
        Mean energy of gamma rays alone per decay, MeV.
    photon_energies_mev, photon_yields : numpy.ndarray
        Discrete photon lines (MeV) and their yields per decay.
    """

    name: str
    half_life_h: float
    electron_energy_mev: float
    alpha_energy_mev: float
    photon_energy_mev: float
    gamma_energy_mev: float
    photon_energies_mev: np.ndarray
    photon_yields: np.ndarray

    @property
    def decay_constant_per_h(self) -> float:
        """Physical decay constant ln 2 / T½ in h⁻¹."""
        return math.log(2.0) / self.half_life_h

    @property
    def nonpenetrating_energy_mev(self) -> float:
        """Energy per decay of electrons and heavy particles (deposited locally), MeV."""
        return self.electron_energy_mev + self.alpha_energy_mev

    @property
    def total_energy_mev(self) -> float:
        """All emitted energy per decay (neutrinos excluded), MeV."""
        return self.nonpenetrating_energy_mev + self.photon_energy_mev


def _canonical(name: str) -> str:
    import radioactivedecay as rd

    try:
        return str(rd.Nuclide(name.strip()).nuclide)
    except Exception as exc:  # radioactivedecay raises ValueError for unknown names
        raise NuclideError(
            f"unknown radionuclide {name!r}: expected a name such as 'Lu-177' or 'Lu177' "
            f"known to radioactivedecay's ICRP-107 dataset"
        ) from exc


@functools.lru_cache(maxsize=64)
def _load(canonical: str) -> Nuclide:
    import radioactivedecay as rd
    from icrp107_database import get_icrp107_spectrum

    half_life_h = float(rd.Nuclide(canonical).half_life("h"))
    if not math.isfinite(half_life_h):
        raise NuclideError(f"radionuclide {canonical!r} is stable: it has no half-life")

    def spectrum(kind: str) -> tuple[np.ndarray, np.ndarray]:
        try:
            data = get_icrp107_spectrum(canonical, kind)
        except Exception as exc:  # the package raises a bare Exception for unknown nuclides
            raise NuclideError(
                f"radionuclide {canonical!r} is not in the ICRP-107 emission tables "
                f"(icrp107-database): {exc}"
            ) from exc
        return (
            np.asarray(data["energies"], dtype=float).reshape(-1),
            np.asarray(data["weights"], dtype=float).reshape(-1),
        )

    def mean_energy(kinds: tuple[str, ...]) -> float:
        return float(sum(float(np.dot(*spectrum(k))) for k in kinds))

    photon_lines = [spectrum(k) for k in ("gamma", "X")]
    energies = np.concatenate([e for e, _ in photon_lines])
    yields = np.concatenate([w for _, w in photon_lines])
    energies.setflags(write=False)
    yields.setflags(write=False)
    return Nuclide(
        name=canonical,
        half_life_h=half_life_h,
        electron_energy_mev=mean_energy(_ELECTRON_KINDS),
        alpha_energy_mev=mean_energy(_HEAVY_KINDS),
        photon_energy_mev=mean_energy(_PHOTON_KINDS),
        gamma_energy_mev=mean_energy(("gamma",)),
        photon_energies_mev=energies,
        photon_yields=yields,
    )


def get_nuclide(name: str) -> Nuclide:
    """Return the ICRP-107 decay data of a radionuclide.

    Parameters
    ----------
    name : str
        A radionuclide name in any form :mod:`radioactivedecay` accepts (``"Lu-177"``,
        ``"Lu177"``, ``"177Lu"``).

    Raises
    ------
    NuclideError
        If the name is unknown, the nuclide is stable, or it has no ICRP-107 emission data.
    """
    if not isinstance(name, str) or not name.strip():
        raise NuclideError(f"radionuclide name must be a non-empty string, got {name!r}")
    return _load(_canonical(name))


def half_life_h(name: str) -> float:
    """Physical half-life of ``name`` in hours (ICRP-107 via radioactivedecay)."""
    return get_nuclide(name).half_life_h


def decay_constant_per_h(name: str) -> float:
    """Physical decay constant of ``name`` in h⁻¹."""
    return get_nuclide(name).decay_constant_per_h


def nuclide_data_provenance() -> dict[str, str]:
    """Where the decay data come from, for a run's provenance record."""
    return {
        "half_life_source": "ICRP-107 (radioactivedecay default dataset)",
        "emission_source": "ICRP-107 (icrp107-database)",
        "radioactivedecay": version("radioactivedecay"),
        "icrp107-database": version("icrp107-database"),
    }
