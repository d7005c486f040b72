"""Tests of harmonize.pvc: recovery curves, fits, PSF simulation and correction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harmonize import pvc


def test_parametric_curve_limits_and_half_point():
    c = pvc.RecoveryCurve.parametric(v_half_ml=4.0, n=1.2)
    assert float(c(4.0)) == pytest.approx(0.5, rel=1e-12)  # RC(V½) = rc_max / 2 by definition
    v = np.geomspace(0.01, 1e5, 200)
    rc = c(v)
    assert np.all(np.diff(rc) > 0)
    assert rc[-1] == pytest.approx(1.0, abs=1e-4)
    assert rc[0] == pytest.approx((0.01 / 4.0) ** 1.2, rel=1e-3)  # RC ∝ Vⁿ for V ≪ V½


def test_table_curve_is_monotone_and_exact_at_nodes():
    v = [0.5, 1.2, 2.6, 5.6, 11.5, 26.5]  # NEMA IEC sphere volumes, mL
    rc = [0.12, 0.25, 0.38, 0.52, 0.64, 0.76]
    c = pvc.RecoveryCurve.from_table(v, rc)
    np.testing.assert_allclose(c(v), rc, rtol=1e-12)
    fine = np.geomspace(0.5, 26.5, 500)
    assert np.all(np.diff(c(fine)) >= 0)  # PCHIP keeps monotone data monotone
    assert float(c(0.1)) == pytest.approx(0.12)  # end values kept outside the table
    assert float(c(1000.0)) == pytest.approx(0.76)


def test_table_rejects_bad_data():
    with pytest.raises(pvc.PVCInputError, match="decrease"):
        pvc.RecoveryCurve.from_table([1, 2, 3], [0.5, 0.4, 0.6])
    with pytest.raises(pvc.PVCInputError, match="duplicates"):
        pvc.RecoveryCurve.from_table([1, 1, 3], [0.4, 0.5, 0.6])
    with pytest.raises(pvc.PVCInputError, match="volumes_ml"):
        pvc.RecoveryCurve.from_table([0, 1], [0.4, 0.5])
    with pytest.raises(pvc.PVCInputError, match=r"\(0, 1.5\]"):
        pvc.RecoveryCurve.from_table([1, 2], [0.0, 0.5])


def test_fit_recovers_generating_parameters():
    v = np.array([0.5, 1.2, 2.6, 5.6, 11.5, 26.5, 100.0])
    truth = pvc.RecoveryCurve.parametric(v_half_ml=3.3, n=0.9)
    fitted = pvc.RecoveryCurve.fit(v, truth(v))
    assert fitted.params["v_half_ml"] == pytest.approx(3.3, rel=1e-6)  # noise-free: exact
    assert fitted.params["n"] == pytest.approx(0.9, rel=1e-6)
    rng = np.random.default_rng(7)
    noisy = truth(v) * (1 + 0.01 * rng.standard_normal(v.size))
    f2 = pvc.RecoveryCurve.fit(v, noisy)
    # 1 % noise on 7 points: parameter errors of a few per cent (measured 1-3 %).
    assert f2.params["v_half_ml"] == pytest.approx(3.3, rel=0.08)
    assert f2.params["n"] == pytest.approx(0.9, rel=0.08)
    truth3 = pvc.RecoveryCurve.parametric(v_half_ml=2.0, n=1.1, rc_max=0.95)
    f3 = pvc.RecoveryCurve.fit(v, truth3(v), fit_rc_max=True)
    assert f3.params["rc_max"] == pytest.approx(0.95, rel=1e-6)


def test_fit_rejects_rc_above_one_without_plateau():
    with pytest.raises(pvc.PVCInputError, match="fit_rc_max"):
        pvc.RecoveryCurve.fit([1, 2, 3], [0.5, 0.9, 1.02])


def test_analytic_gaussian_sphere_rc_limits():
    fwhm = 10.0
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    big = 500.0
    # Large sphere (locally flat surface): a point at depth u leaves with probability
    # P(X_n > u), so the lost fraction per unit area is ∫ P(X_n > u) du = E[max(X_n, 0)]
    # = σ/√(2π); times A/V = 3/R: 1 − RC ≈ 3σ/(R√(2π)) (next order is O((σ/R)²) ~ 1e-4).
    expected = 1 - 3 * sigma / (big * math.sqrt(2 * math.pi))
    assert float(pvc.gaussian_sphere_rc(big, fwhm)) == pytest.approx(expected, abs=1e-4)
    small = 0.2  # R ≪ σ: RC ≈ V · Gaussian peak density = (4/3)πR³ / ((2π)^{3/2} σ³)
    peak = (4 / 3) * math.pi * small**3 / ((2 * math.pi) ** 1.5 * sigma**3)
    # next-order correction is O((R/σ)²) = 0.2 %: tolerance 0.5 %
    assert float(pvc.gaussian_sphere_rc(small, fwhm)) == pytest.approx(peak, rel=5e-3)


def test_psf_simulation_matches_the_analytic_sphere():
    fwhm = 10.0
    c = pvc.recovery_curve_from_psf(fwhm, 1.0, [1.0, 5.0, 20.0, 100.0])
    radius = (3 * c.volumes_ml * 1000 / (4 * math.pi)) ** (1 / 3)
    analytic = pvc.gaussian_sphere_rc(radius, fwhm)
    # 1 mm voxels, 10 mm FWHM: discretisation error of the voxelised sphere and of the
    # sampled Gaussian is below 0.1 % (measured 0.03 %); tolerance 0.5 %.
    np.testing.assert_allclose(c.rc, analytic, rtol=5e-3)
    assert np.all(np.diff(c.rc) > 0)


def test_psf_rc_tends_to_one_for_large_volumes():
    c = pvc.recovery_curve_from_psf(12.0, 4.8, [1.0, 10.0, 100.0, 1000.0])
    assert np.all(np.diff(c.rc) > 0)
    # 1 L sphere (R = 62 mm), FWHM 12 mm: analytic RC = 0.924; voxelisation at 4.8 mm
    # changes it by < 1 %.
    assert c.rc[-1] == pytest.approx(float(pvc.gaussian_sphere_rc(62.035, 12.0)), abs=0.01)
    assert c.rc[-1] > 0.9


def test_apply_rc_with_floor():
    c = pvc.RecoveryCurve.parametric(v_half_ml=5.0, n=1.0)
    values = np.array([10.0, 10.0, 10.0])
    vols = np.array([500.0, 5.0, 0.05])
    out = pvc.apply_rc(values, vols, c)
    assert out[0] == pytest.approx(10.0 / c(500.0))
    assert out[1] == pytest.approx(20.0)
    assert out[2] == pytest.approx(10.0 / pvc.DEFAULT_MIN_RC)  # RC 0.0099 raised to 0.25
    assert pvc.apply_rc(10.0, 0.05, c, min_rc=0.01) == pytest.approx(10.0 / 0.01)
    with pytest.raises(pvc.PVCInputError, match="min_rc"):
        pvc.apply_rc(10.0, 5.0, c, min_rc=0.0)
    with pytest.raises(pvc.PVCInputError, match="volume_ml"):
        pvc.apply_rc(10.0, -1.0, c)
