"""Nuclide data against ICRP-107 published values."""

from __future__ import annotations

import math
from importlib.metadata import version

import numpy as np
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


# ----------------------------------------------------------------- cached table vs live packages


def test_cached_table_matches_live_packages_exactly():
    # The shipped table must hold exactly (bit for bit: JSON floats round-trip) what
    # radioactivedecay + icrp107-database give with the installed versions; if this fails
    # after an upgrade, regenerate with `python -m harmonize._nuclide_table`.
    from harmonize._nuclide_table import build_table, table_bytes

    live = build_table()
    shipped = nuclides._table()
    assert shipped == live
    path = resources_path()
    assert path.read_bytes() == table_bytes(live)
    prov = nuclides.nuclide_data_provenance()
    assert prov["radioactivedecay"] == version("radioactivedecay")
    assert prov["icrp107-database"] == version("icrp107-database")


def resources_path():
    from importlib import resources

    return resources.files("harmonize.data").joinpath(nuclides.NUCLIDE_TABLE)


@pytest.mark.parametrize("name", ["Lu-177", "Ac-225", "Tc-99m", "Lu-177m", "I-131"])
def test_cached_nuclide_equals_live_object(name):
    cached = nuclides.get_nuclide(name)
    live = nuclides.load_live(name)
    for attr in ("name", "half_life_h", "electron_energy_mev", "alpha_energy_mev",
                 "photon_energy_mev", "gamma_energy_mev"):  # fmt: skip
        assert getattr(cached, attr) == getattr(live, attr), attr
    np.testing.assert_array_equal(cached.photon_energies_mev, live.photon_energies_mev)
    np.testing.assert_array_equal(cached.photon_yields, live.photon_yields)


def _spellings(canonical: str) -> list[str]:
    symbol, mass = canonical.split("-")
    meta = mass.lstrip("0123456789")
    number = mass[: len(mass) - len(meta)]
    return [canonical, f"{symbol}{mass}", f"{number}{meta}{symbol}", f"{number}{meta}-{symbol}",
            canonical.upper(),
            canonical.lower(), f" {symbol}{mass} "]  # fmt: skip


def test_table_spellings_resolve_like_radioactivedecay():
    # Every spelling the fast parser accepts for a cached nuclide must give the canonical name
    # radioactivedecay gives (the parser is only a shortcut around radioactivedecay).
    for canonical in nuclides._table()["nuclides"]:
        for spelling in _spellings(canonical):
            assert nuclides._table_name(spelling) == canonical, spelling
            assert nuclides._canonical_live(spelling) == canonical, spelling
            assert nuclides.get_nuclide(spelling).name == canonical


def test_lookup_outside_table_uses_live_packages():
    # Co-60 is not in the table: served by radioactivedecay (ICRP-107 T½ = 5.2713 y).
    assert "Co-60" not in nuclides._table()["nuclides"]
    co = nuclides.get_nuclide("Co60")
    assert co.name == "Co-60"
    assert co.half_life_h / (24 * 365.25) == pytest.approx(5.2713, rel=1e-4)


@pytest.mark.parametrize("name", ["Y-090", "Lu-0177", "Lu--177"])
def test_spellings_radioactivedecay_refuses_are_refused(name):
    # The table's parser must not accept what radioactivedecay rejects.
    assert nuclides._table_name(name) is None
    with pytest.raises(nuclides.NuclideError, match="unknown radionuclide"):
        nuclides.get_nuclide(name)
