"""Nuclide data against ICRP-107 published values."""

from __future__ import annotations

import math

import pytest

from harmonize import nuclides


def test_lu177_half_life_icrp107():
    # ICRP-107 (and the Lutathera SmPC): T½ = 6.647 d; exact to the table's 4 digits.
    lu = nuclides.get_nuclide("Lu-177")
    assert lu.half_life_h / 24.0 == pytest.approx(6.647, abs=5e-4)
    assert lu.decay_constant_per_h == pytest.approx(math.log(2) / (6.647 * 24), rel=1e-6)


def test_lu177_energies_icrp107():
    # METHODS.md / ICRP-107: beta 133.27 + IC 13.52 + Auger 1.13 = 147.9 keV per decay;
    # gamma 31.6 keV per decay. Rounded published values, hence 0.05 keV tolerance.
    lu = nuclides.get_nuclide("Lu177")
    assert lu.electron_energy_mev * 1000 == pytest.approx(147.92, abs=0.05)
    assert lu.alpha_energy_mev == 0.0
    gamma_kev = 1000 * lu.gamma_energy_mev
    assert gamma_kev == pytest.approx(31.6, abs=0.05)
    assert lu.photon_energy_mev > lu.gamma_energy_mev  # X-rays add about 3.5 keV
    # the two imaging gammas: 208.4 keV (11.0 %) and 113.0 keV (6.4 %)
    for energy_kev, yield_ in ((208.4, 0.110), (113.0, 0.064)):
        i = int(abs(lu.photon_energies_mev * 1000 - energy_kev).argmin())
        assert lu.photon_energies_mev[i] * 1000 == pytest.approx(energy_kev, abs=0.1)
        assert lu.photon_yields[i] == pytest.approx(yield_, abs=0.002)


def test_ldm_constant():
    # D[Gy] = 0.0853 · TIA[MBq·h] / m[g] for Lu-177 electrons (METHODS.md)
    lu = nuclides.get_nuclide("Lu-177")
    factor = lu.electron_energy_mev * nuclides.MEV_TO_J * 3.6e9 / 1e-3
    assert factor == pytest.approx(0.0853, abs=5e-5)


def test_other_nuclides_work():
    # Y-90: T½ = 64.05 h (ICRP-107), pure beta emitter with mean beta energy 0.9327 MeV
    y90 = nuclides.get_nuclide("Y-90")
    assert y90.half_life_h == pytest.approx(64.05, rel=1e-3)
    assert y90.electron_energy_mev == pytest.approx(0.9337, abs=0.002)


@pytest.mark.parametrize("name", ["Xx-999", "", "Lu-999"])
def test_unknown_nuclide(name):
    with pytest.raises(nuclides.NuclideError, match="radionuclide"):
        nuclides.get_nuclide(name)
