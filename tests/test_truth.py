"""The phantom's truth: an independent dose-point-kernel method, validated on spheres."""

from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import pytest
from scipy import integrate

from harmonize import dose, truth
from harmonize.nuclides import get_nuclide

ELECTRON_MEV = 0.14792  # ICRP-107 non-penetrating energy per Lu-177 decay


def test_kernels_conserve_energy():
    value, _ = integrate.quad(truth.electron_shell_density, 0, 20, points=[0.3, 1.0], limit=400)
    assert value == pytest.approx(1.0, rel=1e-4)
    weight = get_nuclide("Lu-177").photon_energy_mev
    value, _ = integrate.quad(truth.photon_shell_density, 0, 5000, limit=400)
    assert value == pytest.approx(weight, rel=1e-3)  # infinite water absorbs every photon


def test_voxel_kernel_carries_the_energy_within_its_reach():
    kernel = truth.voxel_dpk(4.8)
    r = np.linspace(0, truth.PHOTON_CUTOFF_MM, 200_001)
    photons_within = float(np.trapezoid(truth.photon_shell_density(r), r))
    # electrons all stay within 300 mm; the stochastic near field is exact in energy
    assert kernel.sum() == pytest.approx(ELECTRON_MEV + photons_within, rel=1e-3)
    half = kernel.shape[0] // 2
    centre = kernel[half - 1 : half + 2, half - 1 : half + 2, half - 1 : half + 2]
    # symmetric under the cube's reflections within the sampling noise (0.5 %)
    np.testing.assert_allclose(centre, centre[::-1, ::-1, ::-1], rtol=5e-3, atol=1e-9)
    # the source voxel keeps most electron energy: Lu-177 electrons travel < 2 mm
    assert 0.85 * ELECTRON_MEV < kernel[half, half, half] < ELECTRON_MEV + 0.01


@pytest.mark.parametrize("mass_g", [1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0])
def test_sphere_doses_agree_with_the_sphere_model_within_3_percent(mass_g):
    # harmonize.dose.sphere_s_value: electron escape fitted to Lanconelli 2012 self-doses,
    # photons by the exponential μ_en kernel; the truth: Loevinger electrons and
    # build-up photons (the published table is tested above; this is the adapters' model).
    truth_gy = float(truth.sphere_mean_dose_gy_per_decay(mass_g))
    model_mgy_per_mbq_s = float(dose.sphere_s_value(mass_g))
    assert truth_gy * 1e9 == pytest.approx(model_mgy_per_mbq_s, rel=0.03)


def _published_spheres() -> tuple[np.ndarray, np.ndarray]:
    """(mass g, S Gy per decay) of the soft-tissue Lu-177 spheres shipped as package data."""
    path = resources.files("harmonize.data") / "spheres_lu177_pytheranostics.json"
    table = json.loads(path.read_text(encoding="utf-8"))["100%/0%"]
    return np.asarray(table["tumor_mass"]), np.asarray(table["total_s_value"])


#: Density of the table's soft tissue, g/mL: its masses are spheres of radius 1, 1.5, 2, 3,
#: 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 60 mm at 1.03 g/mL (checked in the test below).
PUBLISHED_SOFT_TISSUE_G_ML = 1.03


def test_published_sphere_table_is_what_its_readme_says():
    mass_g, s_gy = _published_spheres()
    radius_cm = np.array([1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 60]) / 10.0
    # 3 significant digits: 0.6 % at worst (4.31e-3)
    np.testing.assert_allclose(
        mass_g, 4.0 / 3.0 * math.pi * radius_cm**3 * PUBLISHED_SOFT_TISSUE_G_ML, rtol=6e-3
    )
    # unit Gy per decay: the largest sphere (60 mm) is local deposition of the ICRP-107
    # electrons plus a few % of photons
    ldm = ELECTRON_MEV * 1.602176634e-13 / (mass_g[-1] * 1e-3)
    assert 1.0 < s_gy[-1] / ldm < 1.06


def test_sphere_doses_agree_with_published_sphere_s_values_within_3_percent():
    # every tabulated soft-tissue sphere of 1–500 g (radius 8–40 mm: 2.21, 4.31, 14.6, 34.5,
    # 116, 276 g), compared at its own mass and density 1.03 g/mL (scaling theorem, see
    # truth.sphere_mean_dose_gy_per_decay; treating it as unit density instead moves the
    # truth by < 0.4 %). Residuals truth/table − 1 (2026-11 run):
    #   2.21 g −0.8 %, 4.31 g −0.6 %, 14.6 g −0.6 %, 34.5 g −0.3 %, 116 g +0.5 %, 276 g +0.4 %.
    # The 3 % tolerance is the issue's; the table's 3 significant digits add ≤ 0.5 %.
    mass_g, s_gy = _published_spheres()
    keep = (mass_g >= 1.0) & (mass_g <= 500.0)
    assert keep.sum() == 6
    truth_gy = truth.sphere_mean_dose_gy_per_decay(
        mass_g[keep], density_g_ml=PUBLISHED_SOFT_TISSUE_G_ML
    )
    np.testing.assert_allclose(truth_gy, s_gy[keep], rtol=0.03)


@pytest.mark.parametrize("composition", ["75%/25%", "50%/50%", "25%/75%", "0%/100%"])
def test_denser_published_spheres_follow_the_density_scaling(composition):
    # The table's soft-tissue/bone mixtures are the same radii at 1.26–1.92 g/mL. The truth
    # is water-like in composition and handles density only by the scaling theorem; it still
    # agrees within 1.3 % for every sphere of 1–500 g (measured −1.3 % to +0.2 %), which
    # checks the density handling used for the 1.03 g/mL series above.
    path = resources.files("harmonize.data") / "spheres_lu177_pytheranostics.json"
    table = json.loads(path.read_text(encoding="utf-8"))[composition]
    mass_g, s_gy = np.asarray(table["tumor_mass"]), np.asarray(table["total_s_value"])
    radius_cm = np.array([1, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 40, 50, 60]) / 10.0
    density = float(np.median(mass_g / (4.0 / 3.0 * math.pi * radius_cm**3)))
    keep = (mass_g >= 1.0) & (mass_g <= 500.0)
    truth_gy = truth.sphere_mean_dose_gy_per_decay(mass_g[keep], density_g_ml=density)
    np.testing.assert_allclose(truth_gy, s_gy[keep], rtol=0.03)


def test_small_published_spheres_show_the_single_end_point_electron_kernel():
    # below 1 g (radius ≤ 6 mm) electron escape dominates; the truth is low by 0.9 % (6 mm)
    # to 3.4 % (1 mm): one Loevinger kernel with the main branch's end point (0.498 MeV)
    # for every electron overstates the range of the softer β branches and of the
    # conversion/Auger electrons. Recorded, not tuned (outside the issue's 1–500 g; the
    # phantom's smallest lesions are > 1 mL). Fails if the deficit changes sign or grows.
    mass_g, s_gy = _published_spheres()
    small = mass_g < 1.0
    ratio = (
        truth.sphere_mean_dose_gy_per_decay(mass_g[small], density_g_ml=PUBLISHED_SOFT_TISSUE_G_ML)
        / s_gy[small]
    )
    assert np.all((ratio > 0.96) & (ratio < 1.0))
    # the deficit shrinks as the sphere grows (to the table's rounding, 0.5 %)
    assert np.all(np.diff(ratio) > -0.005) and ratio[-1] - ratio[0] > 0.02


def test_sphere_density_follows_the_scaling_theorem():
    one = float(truth.sphere_mean_dose_gy_per_decay(100.0))
    assert float(truth.sphere_mean_dose_gy_per_decay(100.0, density_g_ml=1.0)) == one
    # same mass, denser: the electrons stay absorbed and the smaller, optically thicker
    # sphere keeps more photon energy (+1 %: photons carry ~4 % of the energy here)
    dense = float(truth.sphere_mean_dose_gy_per_decay(100.0, density_g_ml=1.5))
    assert 1.0 < dense / one < 1.03
    # a 0.1 g sphere loses electrons through its surface; denser, it loses fewer (+2 %)
    small = float(truth.sphere_mean_dose_gy_per_decay(0.1))
    assert 1.0 < float(truth.sphere_mean_dose_gy_per_decay(0.1, density_g_ml=1.5)) / small < 1.05
    with pytest.raises(ValueError, match="density"):
        truth.sphere_mean_dose_gy_per_decay(1.0, density_g_ml=0.0)


@pytest.mark.parametrize("radius_mm", [10.0, 20.0, 40.0])
def test_voxel_truth_matches_lanconelli_voxel_s_values_in_shape(radius_mm):
    # Second published reference: Lanconelli 2012 voxel S-values (4.8 mm, soft tissue),
    # packaged in harmonize/data/lanconelli2012. Two known differences are taken out
    # first: (1) the tables carry ~6 % less electron energy than ICRP-107 (Σ S·m = 142.2
    # keV per decay over their 11³ cube; harmonize.dose.kernels docstring), and (2) they
    # stop at ±5 voxels. So the truth's kernel is cut to the same cube and normalised to
    # the same energy; what remains compared is the spatial spread (electron escape and
    # near photons). Measured (2026-11): −0.9 % (10 mm), −0.6 % (20 mm), −0.3 % (40 mm);
    # without the normalisation the truth is +7.5 to +8 % above the tables (their lower
    # electron energy), which is why the tables are not the 3 % reference.
    from scipy import signal

    a = 4.8
    kernel = truth.voxel_dpk(a)
    h = kernel.shape[0] // 2
    cube = kernel[h - 5 : h + 6, h - 5 : h + 6, h - 5 : h + 6]
    # Lanconelli: mGy/(MBq·s) → MeV per decay deposited in a 1.04 g/mL voxel
    voxel_kg = 1.04 * (a / 10.0) ** 3 * 1e-3
    lanconelli = np.asarray(dose.voxel_kernel(a)) * 1e-9 * voxel_kg / 1.602176634e-13
    assert cube.sum() / lanconelli.sum() == pytest.approx(147.9 / 138.5, rel=0.02)
    shape = cube * (lanconelli.sum() / cube.sum())
    n = 41
    c = (np.arange(n) - n // 2) * a
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    sphere = (zz**2 + yy**2 + xx**2 <= radius_mm**2).astype(float)
    inside = sphere > 0
    ours = signal.fftconvolve(sphere, shape, mode="same")[inside].mean()
    theirs = signal.fftconvolve(sphere, lanconelli, mode="same")[inside].mean()
    assert ours == pytest.approx(theirs, rel=0.02)  # Monte Carlo tables: ~1 % noise/shape


@pytest.mark.parametrize("mass_g", [100.0, 300.0, 500.0])
def test_large_spheres_approach_local_deposition_within_5_percent(mass_g):
    ldm_gy = ELECTRON_MEV * 1.602176634e-13 / (mass_g * 1e-3)
    ratio = float(truth.sphere_mean_dose_gy_per_decay(mass_g)) / ldm_gy
    # above: the absorbed photons (a few %); below: the electrons escaping the surface
    assert 1.0 < ratio < 1.05


def test_voxelised_sphere_matches_the_continuous_sphere():
    a = 4.8
    n = 41
    c = (np.arange(n) - n // 2) * a
    zz, yy, xx = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    radius = 40.0
    mask = zz**2 + yy**2 + xx**2 <= radius**2
    voxel_ml = a**3 / 1000
    mass_g = float(mask.sum() * voxel_ml)
    tia = np.where(mask, 1.0 / mask.sum(), 0.0)  # 1 MBq·h in total
    dose_gy = truth.reference_dose_gy(tia, (a, a, a), np.ones(mask.shape))
    per_decay = float(dose_gy[mask].mean()) / 3.6e9
    # the voxelised sphere (its own mass) vs the continuous one: surface roughness of a
    # 4.8 mm grid changes the electron escape by < 1 %
    assert per_decay == pytest.approx(float(truth.sphere_mean_dose_gy_per_decay(mass_g)), rel=0.01)


def test_truth_does_not_use_any_adapter_dose_engine(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the truth must not call an adapter's dose engine")

    for name in ("convolve_kernel", "voxel_kernel", "sphere_s_value", "local_deposition"):
        monkeypatch.setattr(dose, name, forbidden)
    tia = np.zeros((9, 9, 9))
    tia[4, 4, 4] = 1.0
    out = truth.reference_dose_gy(tia, (4.8, 4.8, 4.8), np.ones(tia.shape))
    assert out[4, 4, 4] > 0 and math.isfinite(float(out.sum()))


def test_anisotropic_voxels_are_refused():
    with pytest.raises(ValueError, match="isotropic"):
        truth.reference_dose_gy(np.ones((3, 3, 3)), (4.8, 4.8, 2.4), np.ones((3, 3, 3)))
