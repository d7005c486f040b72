"""Imaging chains: profiles as data, the projector, OSEM, the fast mode, the NEMA phantom."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
from scipy import ndimage

from harmonize.imaging import ProfileError, available_profiles, image_activity, load_profile
from harmonize.imaging.fast import correlated_unit_noise, fast_image
from harmonize.imaging.nema import (
    NEMA_SPHERE_DIAMETERS_MM,
    calibration_phantom,
    measure_calibration,
)
from harmonize.imaging.osem import acquire, reconstruct
from harmonize.imaging.profile import FastModeParameters
from harmonize.imaging.projector import SpectSystem, attenuation_map_per_mm

FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def _small_profile(**changes):
    base = load_profile("bordet")
    fast = FastModeParameters(12.0, 4.0, 10.0, 4.8, "test", 0.0, 0.0)
    return replace(base, **{"n_views": 16, "subsets": 4, "iterations": 3, "fast": fast, **changes})


def test_shipped_profiles_load_with_a_source_for_every_value():
    names = available_profiles()
    assert {"bordet", "montpellier", "milan"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name
        assert len(profile.sources) == 16 and all(s.strip() for s in profile.sources.values())
    # the published values carry their publication
    bordet = load_profile("bordet")
    assert bordet.system_sensitivity_cps_per_mbq == 9.87
    assert "Marin2017" in bordet.sources["system_sensitivity_cps_per_mbq"]
    assert load_profile("montpellier").system_sensitivity_cps_per_mbq == 5.67


def test_bad_profile_names_the_file_and_field(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "centre": "c", "fields": {}}))
    with pytest.raises(ProfileError, match=r"mine\.json: field 'camera' missing"):
        load_profile(path)
    good = json.loads(
        resources.files("harmonize.imaging.profiles").joinpath("bordet.json").read_text()
    )
    good["fields"]["n_views"]["value"] = 60.5
    path.write_text(json.dumps(good))
    with pytest.raises(ProfileError, match="'n_views' must be an integer"):
        load_profile(path)
    with pytest.raises(ProfileError, match="unknown imaging profile"):
        load_profile("nowhere")


def test_projector_back_projector_is_the_exact_adjoint():
    rng = np.random.default_rng(0)
    mu = attenuation_map_per_mm(rng.uniform(0.5, 1.5, (10, 20, 22)), 208.4)
    system = SpectSystem(_small_profile(), mu, 4.8)
    x = rng.random(mu.shape).astype(np.float32)
    for view in (0, 3, 7):
        y = rng.random((10, 22)).astype(np.float32)
        lhs = float((system.forward(x, view).astype(np.float64) * y).sum())
        rhs = float((x.astype(np.float64) * system.back(y, view)).sum())
        assert lhs == pytest.approx(rhs, rel=1e-5)  # float32 arithmetic


def test_attenuation_and_collimator_response_of_a_point_source():
    v = 4.8
    density = np.ones((41, 41, 41))
    mu = attenuation_map_per_mm(density, 208.4)
    profile = _small_profile()
    system = SpectSystem(profile, mu, v)
    source = np.zeros(mu.shape, dtype=np.float32)
    j = 30  # depth index (y) of the source
    source[20, j, 20] = 1.0
    proj = system.forward(source, 0).astype(np.float64)
    # μ of water at 208 keV from NIST (≈ 0.0135 /mm), path = (j + ½) voxels of water
    mu_mm = float(mu[0, 0, 0])
    assert mu_mm == pytest.approx(0.01353, rel=0.01)
    # (the detector, 197 mm square, catches all but ~1e-4 of the blurred point)
    assert proj.sum() == pytest.approx(math.exp(-mu_mm * (j + 0.5) * v), rel=1e-3)
    # the transaxial spread is the collimator-detector response at that distance
    distance = profile.orbit_radius_mm + (j - 20) * v
    row = proj[20] / proj[20].sum()
    x = (np.arange(41) - 20) * v
    sigma = math.sqrt(float((row * x**2).sum()))
    assert sigma == pytest.approx(profile.system_fwhm_mm(distance) * FWHM_TO_SIGMA, rel=0.02)


def test_osem_recovers_a_large_uniform_object_without_noise():
    v = 4.8
    shape = (8, 40, 40)
    zz, yy, xx = np.meshgrid(*(np.arange(n) - (n - 1) / 2 for n in shape), indexing="ij")
    body = yy**2 + xx**2 <= 15**2
    density = np.where(body, 1.0, 0.0012)
    profile = _small_profile(iterations=6, post_filter_fwhm_mm=0.0, scatter_fraction=0.25)
    system = SpectSystem(profile, attenuation_map_per_mm(density, 208.4), v)
    activity = np.where(body, 0.05, 0.0).astype(np.float32)
    counts, scatter = acquire(system, activity, None)
    assert scatter.sum() / counts.sum() == pytest.approx(0.25, rel=1e-3)
    image = reconstruct(system, counts, scatter)
    core = (yy**2 + xx**2 <= 8**2) & (np.abs(zz) < 2)
    # attenuation and scatter corrected with the true model: the centre of a 144 mm
    # cylinder is recovered within 5 % after 6 × 4 subset updates (edges still converge)
    assert image[core].mean() == pytest.approx(0.05, rel=0.05)


def test_fast_mode_noise_level_and_texture():
    rng = np.random.default_rng(1)
    noise = correlated_unit_noise((40, 40, 40), 3.0, rng)
    assert noise.std() == pytest.approx(1.0, abs=0.05)
    lag1 = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
    # a Gaussian autocorrelation of FWHM 3 voxels: ρ(1) = exp(−4 ln2 / 9)
    assert lag1 == pytest.approx(math.exp(-4 * math.log(2) / 9), abs=0.03)

    profile = _small_profile()
    conc = np.full((30, 30, 30), 5.0e4)  # Bq/mL, uniform
    a = fast_image(conc, 4.8, profile, np.random.default_rng(2))
    b = fast_image(conc, 4.8, profile, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)  # seeded
    clean = fast_image(conc, 4.8, profile, None)
    centre = (slice(12, 18),) * 3
    counts = (
        5.0e4
        * 4.8**3
        / 1000
        * 1e-6
        * profile.system_sensitivity_cps_per_mbq
        * profile.acquisition_s
    )
    expected_cov = math.sqrt(profile.fast.noise_gain / counts)
    inner = (slice(8, 22),) * 3
    cov = float(a[inner].std() / clean[inner].mean())
    assert cov == pytest.approx(expected_cov, rel=0.15)  # 2744 correlated voxels
    assert float(a[inner].mean()) == pytest.approx(float(clean[centre].mean()), rel=0.05)
    assert (a >= 0).all()


def test_nema_phantom_geometry_and_fast_calibration():
    _conc, _density, labels = calibration_phantom(4.8)
    voxel_ml = 4.8**3 / 1000
    for k, d in enumerate(NEMA_SPHERE_DIAMETERS_MM, start=1):
        nominal = math.pi / 6 * d**3 / 1000
        # voxelisation of a 10–37 mm sphere at 4.8 mm: within one shell of voxels
        assert abs((labels == k).sum() * voxel_ml - nominal) < 0.5 * nominal + 0.3
    result = measure_calibration(_small_profile(), 4.8, mode="fast", noise=False)
    rc = result.table["rc"].to_numpy()
    assert np.all(np.diff(rc) > 0) and rc[-1] < 1.0
    # the fast mode is calibrated by construction: the background is recovered exactly
    assert result.calibration_cps_per_mbq == pytest.approx(9.87, rel=0.01)
    assert "NEMA IEC" in result.curve.source
    # the fitted curve goes through the measured points
    np.testing.assert_allclose(result.curve(result.table["volume_ml"].to_numpy()), rc, atol=0.06)


def test_image_activity_modes_agree_in_shape_and_reject_unknown_mode():
    profile = _small_profile()
    frames = np.zeros((2, 20, 20, 20))
    frames[:, 10, 10, 10] = 1e6
    density = np.ones((20, 20, 20))
    assert image_activity(frames, density, 4.8, profile, "fast", None).shape == frames.shape
    with pytest.raises(ValueError, match="imaging mode"):
        image_activity(frames, density, 4.8, profile, "quick", None)
    full = image_activity(frames, density, 4.8, profile, "full", None)
    assert full.shape == frames.shape and np.isfinite(full).all()
    # the point source is reconstructed where it is, its activity within 5 % (3 × 4 subset
    # updates of a consistent model; the rest is still spread around it)
    assert np.unravel_index(np.argmax(full[0]), full[0].shape) == (10, 10, 10)
    assert full[0].sum() == pytest.approx(1e6, rel=0.05)


def test_uncalibrated_profile_refuses_fast_mode():
    profile = replace(_small_profile(), fast=None)
    with pytest.raises(ProfileError, match="no 'fast' block"):
        fast_image(np.ones((4, 4, 4)), 4.8, profile, None)


def test_lesion_smaller_than_psf_is_blurred_not_lost():
    profile = _small_profile()
    conc = np.zeros((30, 30, 30))
    conc[13:17, 13:17, 13:17] = 1e5
    img = fast_image(conc, 4.8, profile, None)
    # the Gaussian preserves counts away from the grid edge
    assert img.sum() == pytest.approx(conc.sum(), rel=1e-3)
    assert img.max() < 1e5
    assert ndimage.center_of_mass(img) == pytest.approx((14.5, 14.5, 14.5), abs=1e-3)


def test_milan_takes_its_recovery_curve_from_the_calibration_phantom():
    from harmonize.phantom import PhantomConfig, make_patient, simulate_study
    from workflows.milan import MilanWorkflow

    small = PhantomConfig(
        voxel_size_mm=6.8,
        fov_mm=(210.0, 258.0, 360.0),
        cycles=(1,),
        n_lesions=(2, 3),
        imaging_profile="bordet",
        times_h=(24.0, 168.0),
    )
    study, _ = simulate_study(make_patient(0, 3, small), 1, 3, small)
    assert study.attrs["imaging_profile"] == "bordet"
    assert "psf_fwhm_mm" not in study.attrs  # the patient's resolution is not exposed
    result = MilanWorkflow().run(study)
    assert "NEMA IEC" in result.provenance["rc_curve"]
    assert "'bordet'" in result.provenance["rc_curve"]
    lesions = result.voi_dose[result.voi_dose["voi_kind"] == "lesion"]
    assert ((lesions["recovery_coefficient"] > 0) & (lesions["recovery_coefficient"] < 1)).all()
    # the former oracle is still available on request, and differs
    oracle = MilanWorkflow(rc_source="gaussian_psf").run(study)
    assert "Gaussian PSF" in oracle.provenance["rc_curve"]
    other = oracle.voi_dose[oracle.voi_dose["voi_kind"] == "lesion"]["recovery_coefficient"]
    assert not np.allclose(other.to_numpy(), lesions["recovery_coefficient"].to_numpy())
    # an ideal-scanner study records no profile: Milan's own camera is used
    ideal = PhantomConfig(**{**small.__dict__, "imaging_profile": ""})
    study_ideal, _ = simulate_study(make_patient(0, 3, ideal), 1, 3, ideal)
    assert "'milan'" in MilanWorkflow().run(study_ideal).provenance["rc_curve"]


def test_liver_voxel_cov_at_168_h_is_clinical_with_the_shipped_profiles():
    from harmonize.phantom import PhantomConfig, _concentration_mbq_ml, _voi_lookup, make_patient

    patient = make_patient(0, 0, PhantomConfig())
    conc = _concentration_mbq_ml(patient.kinetics[1], np.array([168.0]))
    frame = np.moveaxis(_voi_lookup(patient, conc), -1, 0)[0] * 1e6
    liver = ndimage.binary_erosion(patient.labels == 2, iterations=2)
    for name in ("bordet", "montpellier", "milan"):
        profile = load_profile(name)
        noisy = fast_image(frame, 4.8, profile, np.random.default_rng(7))
        clean = fast_image(frame, 4.8, profile, None)
        cov = float((noisy - clean)[liver].std() / clean[liver].mean())
        # clinical Lu-177 OSEM liver voxel CoV is typically 10-30 % (the range issue #13
        # states); the ideal scanner gave 1-2 %. The fast modes were calibrated on the full
        # simulation (benchmarks/results/imaging.md: 11-24 %), not on this range.
        assert 0.10 < cov < 0.30, (name, cov)


def _fwhm_mm(profile_1d: np.ndarray, voxel_mm: float) -> float:
    """FWHM of a single-peaked 1-D profile, half-maximum crossings linearly interpolated."""
    p = np.asarray(profile_1d, dtype=np.float64) / float(np.max(profile_1d))
    above = np.flatnonzero(p >= 0.5)
    lo, hi = int(above[0]), int(above[-1])
    left = lo - 1 + (0.5 - p[lo - 1]) / (p[lo] - p[lo - 1])
    right = hi + (p[hi] - 0.5) / (p[hi] - p[hi + 1])
    return (right - left) * voxel_mm


def test_reconstructed_point_sources_show_the_collimator_resolution_of_a_circular_orbit():
    # no attenuation, no scatter; projections with the distance-dependent response,
    # reconstructed without it: the image of a point is the response averaged over views
    v, n, nz = 4.0, 96, 24
    profile = _small_profile(
        n_views=32, subsets=8, iterations=10, scatter_fraction=0.0, post_filter_fwhm_mm=0.0
    )
    mu = np.zeros((nz, n, n), dtype=np.float32)
    source = np.zeros_like(mu)
    c = n // 2
    source[nz // 2, c, c] = 1.0  # on the axis
    source[nz // 2, c, c + 30] = 1.0  # 120 mm off the axis, along x
    counts, scatter = acquire(SpectSystem(profile, mu, v), source, None)
    image = reconstruct(SpectSystem(profile, mu, v, resolution=False), counts, scatter)
    fwhm_r = profile.system_fwhm_mm(profile.orbit_radius_mm)  # 24.4 mm at 260 mm
    # on the axis every view sees the point at the orbit radius: the reconstructed FWHM
    # is the system FWHM there, tangentially and axially (5 %: 1 mm on 4 mm voxels with
    # a bilinear rotation)
    assert _fwhm_mm(image[nz // 2, c - 12 : c + 13, c], v) == pytest.approx(fwhm_r, rel=0.05)
    assert _fwhm_mm(image[:, c, c], v) == pytest.approx(fwhm_r, rel=0.05)
    # off the axis, the views where the point is nearest resolve it best and EM keeps
    # their detail: the tangential FWHM lies between the response at the nearest
    # distance (R − r = 140 mm: 14.2 mm) and at the orbit radius — the known tangential
    # improvement of circular orbits
    tangential = _fwhm_mm(image[nz // 2, c - 12 : c + 13, c + 30], v)
    assert profile.system_fwhm_mm(140.0) * 0.95 < tangential < 0.8 * fwhm_r


def test_converged_osem_recovers_the_activity_of_a_uniform_attenuating_cylinder():
    # a 180 mm water cylinder (attenuation, 25 % scatter, resolution modelling), noise
    # free: after 30 × 4 subset updates the interior is recovered — the calibration
    # ratio → 1. 3 %: the Gibbs ripple of resolution-modelled EM inside a sharp edge
    # (measured ±3 % in rings of 20 mm at 16 × 16 updates) averages out over the core.
    v, n, nz = 6.0, 40, 6
    profile = _small_profile(iterations=30, post_filter_fwhm_mm=0.0, scatter_fraction=0.25)
    yy, xx = np.meshgrid(*(((np.arange(n) - (n - 1) / 2) * v,) * 2), indexing="ij")
    body = np.broadcast_to(yy**2 + xx**2 <= 90.0**2, (nz, n, n))
    mu = attenuation_map_per_mm(np.where(body, 1.0, 0.0012), 208.4)
    activity = np.where(body, 0.01, 0.0).astype(np.float32)
    system = SpectSystem(profile, mu, v)
    counts, scatter = acquire(system, activity, None)
    image = reconstruct(system, counts, scatter)
    core = np.broadcast_to(yy**2 + xx**2 <= 50.0**2, (nz, n, n)).copy()
    core[[0, -1]] = False  # the end slices lose counts to the axial blur
    assert float(image[core].mean()) == pytest.approx(0.01, rel=0.03)


def test_activity_outside_the_field_every_view_sees_is_refused():
    profile = _small_profile()
    mu = np.zeros((4, 20, 20), dtype=np.float32)
    system = SpectSystem(profile, mu, 4.8)
    activity = np.zeros_like(mu)
    activity[2, 0, 0] = 1.0  # a grid corner: outside the inscribed circle
    with pytest.raises(ValueError, match="outside the circle every view"):
        acquire(system, activity, None)


def test_nema_phantom_follows_the_published_geometry():
    v = 2.0
    conc, density, labels = calibration_phantom(v)
    nz, ny, nx = labels.shape
    z, y, x = ((np.arange(k) - (k - 1) / 2) * v for k in (nz, ny, nx))
    body = labels != -1
    # interior 294 mm wide, 224 mm high (one voxel of voxelisation), 194 mm long
    assert np.ptp(x[body.any(axis=(0, 1))]) == pytest.approx(294.0, abs=2 * v)
    assert np.ptp(y[body.any(axis=(0, 2))]) == pytest.approx(224.0, abs=2 * v)
    assert np.ptp(z[body.any(axis=(1, 2))]) == pytest.approx(194.0, abs=2 * v)
    # the axis is the middle of the bounding box and goes through the lung insert
    assert labels[nz // 2, ny // 2, nx // 2] == -2
    centres = ndimage.center_of_mass(labels > 0, labels, range(1, 7))
    for zc, yc, xc in centres:
        # centres 57.2 mm from the insert's axis, 70 mm from the lid (z = +97 mm)
        r = math.hypot(y[0] + yc * v, x[0] + xc * v)
        assert r == pytest.approx(57.2, abs=0.5 * v)
        assert 97.0 - (z[0] + zc * v) == pytest.approx(70.0, abs=0.5 * v)
    # the interior volume, analytically: (π 147²/2 + 140·77 + π 77²/2) mm² × 194 mm,
    # less the insert (π 25² × 194) and the spheres' volume counted apart: 10.05 L
    area = math.pi * 147**2 / 2 + 140 * 77 + math.pi * 77**2 / 2
    water_ml = (area - math.pi * 25**2) * 194 / 1000
    assert (labels >= 0).sum() * v**3 / 1000 == pytest.approx(water_ml, rel=0.01)
    # every voxel of the phantom lies in the circle every view sees
    rr = np.hypot(*np.meshgrid(y, x, indexing="ij"))
    assert not body[:, rr > (min(ny, nx) / 2 - 1) * v].any()
    # the reversed order moves every sphere to another place on the ring
    _c, _d, reversed_labels = calibration_phantom(v, reverse_spheres=True)
    moved = ndimage.center_of_mass(reversed_labels > 0, reversed_labels, range(1, 7))
    assert all(math.dist(a, b) > 20.0 / v for a, b in zip(centres, moved, strict=True))
    assert float(conc.max()) == pytest.approx(10 * float(conc[labels == 0].max()))
    assert float(density[labels == -2].min()) == pytest.approx(0.3)


def test_richardson_lucy_is_em_deconvolution_of_the_core_blur():
    from harmonize.imaging.fast import _blur, richardson_lucy

    box = np.zeros((24, 24, 24), dtype=np.float32)
    box[8:16, 8:16, 8:16] = 10.0
    box += 1.0  # a warm background, as around a lesion
    blurred = _blur(box, 4.0)
    seen: list[int] = []
    x = richardson_lucy(blurred, 4.0, 40, callback=lambda k, _x: seen.append(k))
    assert seen == list(range(1, 41))
    # EM keeps the counts: Σ H x = Σ data (exact at every iteration; float32 sums)
    assert float(_blur(x, 4.0).sum()) == pytest.approx(float(blurred.sum()), rel=1e-4)
    # and recovers what the blur took: the box's mean moves from its blurred value
    # towards the truth (40 iterations of a 4-voxel blur: not converged, but far closer)
    inside = box > 5
    truth, before, after = 11.0, float(blurred[inside].mean()), float(x[inside].mean())
    assert truth - after < 0.5 * (truth - before)
    # a uniform object is a fixed point far from the grid's edges
    flat = np.full((24, 24, 24), 3.0, dtype=np.float32)
    y = richardson_lucy(_blur(flat, 3.0), 3.0, 10)
    assert float(y[10:14, 10:14, 10:14].mean()) == pytest.approx(3.0, rel=1e-3)


@pytest.mark.parametrize("name", ["milan", "montpellier"])
def test_shipped_fast_mode_matches_the_full_chain_on_the_nema_phantom(name):
    # the fast blocks were fitted to these RCs by benchmarks/bench_imaging.py (the issue's
    # target: 5 %); a change to either chain that breaks the agreement fails here. Bordet
    # (16 × 16 updates, ~15 s) is left to the benchmark.
    profile = load_profile(name)
    full = measure_calibration(profile, 4.8, mode="full", noise=False).table["rc"].to_numpy()
    fast = measure_calibration(profile, 4.8, mode="fast", noise=False).table["rc"].to_numpy()
    np.testing.assert_allclose(fast, full, rtol=0.05)


def test_fast_block_rejects_a_bad_iteration_count(tmp_path):
    data = json.loads(
        resources.files("harmonize.imaging.profiles").joinpath("bordet.json").read_text()
    )
    data["fast"]["rl_iterations"] = 2.5
    path = tmp_path / "p.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="malformed 'fast' block.*rl_iterations"):
        load_profile(path)


def test_orbit_resolution_is_the_camera_response_on_the_axis_and_sharpens_off_it():
    from harmonize.imaging.fast import orbit_fwhm_mm

    profile = load_profile("bordet")
    r_mm = np.array([0.0, 60.0, 120.0, 180.0])
    fwhm = orbit_fwhm_mm(profile, r_mm)
    # on the axis every view sees the point at the orbit radius
    assert fwhm[0] == pytest.approx(profile.system_fwhm_mm(profile.orbit_radius_mm), rel=1e-12)
    # off it the near views dominate the central value: sharper with the radius, never
    # sharper than the nearest view's response, never broader than the on-axis one
    assert np.all(np.diff(fwhm) < 0)
    nearest = profile.system_fwhm_mm(profile.orbit_radius_mm - r_mm)
    assert np.all(fwhm >= nearest - 1e-9)
    # the peak-equivalent of the mixture of two views at R ± r, by hand (n_views = 2)
    two = replace(profile, n_views=2)
    a, b = (profile.system_fwhm_mm(profile.orbit_radius_mm + d) for d in (120.0, -120.0))
    expected = (0.5 * (a**-3 + b**-3)) ** (-1 / 3)
    assert float(orbit_fwhm_mm(two, 120.0)) == pytest.approx(expected, rel=1e-12)


def test_radius_dependent_blur_has_an_exact_adjoint_and_is_stationary_on_request():
    from harmonize.imaging.fast import resolution_operator, richardson_lucy

    fast = FastModeParameters(20.0, 1.0, 0.0, 4.8, "test", radius_dependent=True)
    profile = replace(load_profile("bordet"), fast=fast)
    op = resolution_operator((10, 30, 34), 4.8, profile)
    rng = np.random.default_rng(3)
    x, y = (rng.random((10, 30, 34)).astype(np.float32) for _ in range(2))
    lhs = float((op.forward(x).astype(np.float64) * y).sum())
    rhs = float((x.astype(np.float64) * op.adjoint(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)  # float32 arithmetic
    # the weights are a partition of unity: the mixture keeps the counts of a voxel
    assert np.allclose(sum(op.weights), 1.0)
    # off the axis the on-axis Gaussian weighs less and less (the mixture sharpens)
    w_axis = op.weights[0][0]
    assert w_axis[14, 16] > 0.99 and w_axis[0, 0] < 0.9
    assert np.all(np.diff(w_axis[14, 17:]) < 0)
    # Richardson-Lucy with the operator keeps Σ H x = Σ data (EM)
    data = op.forward(x)
    est = richardson_lucy(data, op, 5)
    assert float(op.forward(est).sum()) == pytest.approx(float(data.sum()), rel=1e-4)
    # radius_dependent false: the stationary Gaussian of effective_fwhm_mm
    flat = replace(profile, fast=replace(fast, radius_dependent=False))
    assert resolution_operator((10, 30, 34), 4.8, flat).weights is None


def test_fast_mode_follows_the_full_chain_resolution_off_the_rotation_axis():
    # The full chain (no resolution modelling, no scatter, a small grid: ~1 s) images
    # 26 mm spheres (10:1) 0, 60, 120 and 160 mm from the axis of a 340 mm water
    # cylinder. The fast mode's scale is fitted to the 60 mm sphere alone (where the
    # NEMA spheres lie); the other radii are held out. Measured: the orbit law misses
    # them by at most 11.5 %, the stationary Gaussian by up to 30 % (at 160 mm, the
    # circular orbit's sharper off-axis resolution). The law is the camera's, not a fit:
    # it must at least halve the stationary model's largest error.
    from scipy import optimize

    from harmonize.imaging.fast import fast_mean_image

    v, n, nz = 6.0, 64, 10
    profile = _small_profile(
        n_views=32,
        subsets=8,
        iterations=6,
        scatter_fraction=0.0,
        post_filter_fwhm_mm=0.0,
        resolution_modelling=False,
    )
    axes = [(np.arange(k) - (k - 1) / 2) * v for k in (nz, n, n)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    body = yy**2 + xx**2 <= 170.0**2
    conc = np.where(body, 1.0, 0.0)
    labels = np.zeros(conc.shape, dtype=int)
    radii_mm = (0.0, 60.0, 120.0, 160.0)
    for k, r in enumerate(radii_mm, start=1):
        angle = math.radians(30 + 50 * k)
        sphere = zz**2 + (yy - r * math.sin(angle)) ** 2 + (xx - r * math.cos(angle)) ** 2
        labels[sphere <= 13.0**2] = k
    conc[labels > 0] = 10.0
    mu = attenuation_map_per_mm(np.where(body, 1.0, 0.0012), profile.photopeak_kev)
    counts, scatter = acquire(SpectSystem(profile, mu, v), (conc * 1e-2).astype(np.float32), None)
    image = reconstruct(SpectSystem(profile, mu, v, resolution=False), counts, scatter)
    ids = range(1, len(radii_mm) + 1)
    rc_full = np.asarray(ndimage.mean(image, labels, ids)) / 0.1
    assert np.all(np.diff(rc_full) > 0)  # the full chain resolves better off the axis

    def rc_fast(fwhm_mm: float, radius_dependent: bool) -> np.ndarray:
        fast = FastModeParameters(fwhm_mm, 1.0, 0.0, v, "test", radius_dependent=radius_dependent)
        mean = fast_mean_image(conc, v, replace(profile, fast=fast))
        return np.asarray(ndimage.mean(mean, labels, ids)) / 10.0

    worst = {}
    for radius_dependent in (False, True):
        fit = optimize.minimize_scalar(
            lambda f, rd=radius_dependent: (rc_fast(f, rd)[1] / rc_full[1] - 1.0) ** 2,
            bounds=(5.0, 40.0),
            method="bounded",
        )
        rel = rc_fast(float(fit.x), radius_dependent) / rc_full - 1.0
        worst[radius_dependent] = float(np.max(np.abs(rel[[0, 2, 3]])))
    assert worst[True] < 0.5 * worst[False]


def test_fast_block_radius_dependent_must_be_a_flag_without_tail(tmp_path):
    data = json.loads(
        resources.files("harmonize.imaging.profiles").joinpath("bordet.json").read_text()
    )
    path = tmp_path / "p.json"
    data["fast"]["radius_dependent"] = "yes"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="malformed 'fast' block.*radius_dependent"):
        load_profile(path)
    data["fast"].update(radius_dependent=True, tail_fraction=0.2, tail_fwhm_mm=30.0)
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="no tail"):
        load_profile(path)
