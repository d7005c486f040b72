"""The uncertainty package: sensitivities, the worked example, analytic vs Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harmonize import indices, kinetics, schema
from harmonize.nuclides import get_nuclide
from harmonize.phantom import PhantomConfig, make_patient, simulate_study
from harmonize.registry import get_workflow
from harmonize.uncertainty import (
    COMPONENTS,
    TiaRule,
    boundary_slopes,
    integral_sensitivity,
    monte_carlo,
    parameter_covariance,
    patient_index_uncertainty,
    tia_columns,
    tia_gradient,
)
from harmonize.uncertainty.example import worked_example, worked_example_by_hand

LAMBDA_PHYS = get_nuclide("Lu-177").decay_constant_per_h
RULES = [
    TiaRule("monoexp_from_zero"),
    TiaRule("monoexp_head", head="linear_from_zero"),
    TiaRule("trapezoid_tail", head="linear_from_zero", tail_points=3),
]


def _uptake_washout(t: np.ndarray) -> np.ndarray:
    """A bi-exponential with uptake (not a mono-exponential: the fit has residuals)."""
    return 50.0 * (np.exp(-0.012 * t) - np.exp(-0.3 * t))


@pytest.mark.parametrize("start_h", [0.0, 24.0])
def test_integral_sensitivity_matches_finite_differences(start_h):
    a, lam = 40.0, 0.011

    def integral(a_: float, lam_: float) -> float:
        return a_ / lam_ * math.exp(-lam_ * start_h)

    g = integral_sensitivity(a, lam, start_h)
    # central differences: truncation error O(h²) ≈ 1e-12 relative at h = 1e-6·x
    ha, hl = 1e-6 * a, 1e-6 * lam
    fd = [
        (integral(a + ha, lam) - integral(a - ha, lam)) / (2 * ha),
        (integral(a, lam + hl) - integral(a, lam - hl)) / (2 * hl),
    ]
    np.testing.assert_allclose(g, fd, rtol=1e-7)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.kind)
def test_tia_gradient_matches_finite_differences_of_the_refit(rule):
    # the sensitivity of the TIA to each measured point, through the fitted parameters
    # (a, λ), the head and the tail, against refitting perturbed data
    t = np.array([4.0, 24.0, 72.0, 168.0])
    y = _uptake_washout(t) * np.array([1.0, 1.02, 0.97, 1.03])
    grad = tia_gradient(rule, t, y, LAMBDA_PHYS)
    fd = np.empty(t.size)
    for i in range(t.size):
        h = 1e-6 * y[i]
        up, down = y.copy(), y.copy()
        up[i] += h
        down[i] -= h
        pair = tia_columns(rule, t, np.column_stack([up, down]), LAMBDA_PHYS)
        fd[i] = (pair[0] - pair[1]) / (2 * h)
    # the refit converges to ~1e-14 relative; the central difference of a smooth optimum
    # is then good to ~1e-7 of the largest coefficient
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_fit_covariance_form_equals_the_gradient_form():
    # u²(Ã) = gᵀ Σ_p g (the fit's parameter covariance through the integral's sensitivity
    # vector) equals the same variance from ∂Ã/∂y, for the rule whose TIA is the fit alone;
    # with a head, the head's own term and its covariance with p come on top
    t = np.array([24.0, 72.0, 168.0])
    y = _uptake_washout(t) * np.array([1.0, 1.02, 0.97])
    u_y = 0.02 * y
    rule = TiaRule("monoexp_from_zero")
    p, cov = parameter_covariance(rule, t, y, u_y, LAMBDA_PHYS)
    g = integral_sensitivity(p[0], p[1], 0.0)
    grad = tia_gradient(rule, t, y, LAMBDA_PHYS)
    assert g @ cov @ g == pytest.approx(float(np.sum((grad * u_y) ** 2)), rel=1e-10)
    head = TiaRule("monoexp_head")
    p_h, cov_h = parameter_covariance(head, t, y, u_y, LAMBDA_PHYS)
    g_h = integral_sensitivity(p_h[0], p_h[1], t[0])
    grad_h = tia_gradient(head, t, y, LAMBDA_PHYS)
    var_head = (0.5 * t[0] * u_y[0]) ** 2
    # cross term 2·(t₁/2)·cov(y₁, I) = 2·(t₁/2)·g_hᵀ ∂p/∂y₁ u₁²; recovered as the remainder
    total = float(np.sum((grad_h * u_y) ** 2))
    cross = total - g_h @ cov_h @ g_h - var_head
    fit_part = grad_h.copy()
    fit_part[0] -= 0.5 * t[0]
    assert cross == pytest.approx(2 * 0.5 * t[0] * fit_part[0] * u_y[0] ** 2, rel=1e-8)


def test_tia_gradient_at_the_physical_bound_moves_the_amplitude_only():
    # a curve that does not wash out: λ stays at the physical bound, the TIA is a/λ_phys
    t = np.array([24.0, 72.0, 168.0])
    y = 10.0 * np.exp(-0.5 * LAMBDA_PHYS * t)
    rule = TiaRule("monoexp_from_zero")
    grad = tia_gradient(rule, t, y, LAMBDA_PHYS)
    e = np.exp(-LAMBDA_PHYS * t)
    np.testing.assert_allclose(grad, e / np.sum(e * e) / LAMBDA_PHYS, rtol=1e-9)


def test_tia_rules_reproduce_the_workflow_integrals():
    t = np.array([24.0, 72.0, 168.0])
    y = _uptake_washout(t) * np.array([1.0, 1.02, 0.97])
    fit = kinetics.fit_tac(t, y, model="monoexp")
    head = 0.5 * t[0] * y[0]
    expected = [fit.tia, head + fit.integrate(t[0], np.inf)]
    got = [tia_columns(r, t, y[:, None], LAMBDA_PHYS)[0] for r in RULES[:2]]
    # both minimise the same least-squares criterion; the optimisers agree to ~1e-9
    np.testing.assert_allclose(got, expected, rtol=1e-7)
    trap = kinetics.fit_tac(t, y, model="trapezoid", tail_points=3)
    got_trap = tia_columns(TiaRule("trapezoid_tail", tail_points=3), t, y[:, None], LAMBDA_PHYS)
    np.testing.assert_allclose(got_trap, [trap.tia], rtol=1e-7)


def test_worked_example_reproduces_the_hand_derivation():
    _, budget = worked_example()
    by_hand = worked_example_by_hand()
    got = budget.set_index("component")["dose_u_rel"]
    assert list(got.index) == list(COMPONENTS)
    # rtol 1e-6: the code takes ∂ln R/∂ln V by a central difference of step 1e-3 (error
    # ~ step² = 1e-6 relative); everything else is the same closed form
    np.testing.assert_allclose(got.to_numpy(), [by_hand[c] for c in got.index], rtol=1e-6)
    # the Gear 2018 structure: shares of the dose variance add up to one; here the volume
    # (through the mass and the recovery coefficient, partly cancelling) dominates
    assert budget["share"].sum() == pytest.approx(1.0)
    assert budget.set_index("component")["share"].idxmax() == "volume"


def test_volume_uncertainty_of_a_voxelised_sphere():
    # u(V)/V = surface·u_b/V = 3·u_b/r for a sphere; the 6-connected layers measure it
    for radius in (8.0, 15.0, 25.0):
        n = int(radius) + 4
        z, y, x = np.mgrid[-n : n + 1, -n : n + 1, -n : n + 1]
        labels = ((x**2 + y**2 + z**2) <= radius**2).astype(np.int32)
        out = boundary_slopes(
            labels, np.array([1]), {"mass": np.ones(labels.shape)}, (2.0,) * 3, 1.0
        )
        # voxelisation of the surface: 2 % at r = 8 voxels, less for larger spheres
        assert out.volume_u_rel[0] == pytest.approx(3.0 * 1.0 / (2.0 * radius), rel=0.02)
        assert out.slopes["mass"][0] == pytest.approx(1.0)  # a uniform map grows like V


@pytest.fixture(scope="module")
def phantom_runs():
    # the test suite's small phantom (tests/test_runner.py): 9.28 mm voxels, 2–3 lesions
    config = PhantomConfig(
        voxel_size_mm=9.28, fov_mm=(185.6, 259.84, 371.2), cycles=(1,), n_lesions=(2, 3)
    )
    patient = make_patient(0, 1, config)
    study, truth = simulate_study(patient, 1, 1, config)
    runs = {name: get_workflow(name)().run(study) for name in ("milan", "bordet", "montpellier")}
    return runs, truth


def test_analytic_and_monte_carlo_agree_on_the_phantom(phantom_runs):
    runs, _ = phantom_runs
    rows = []
    for name, result in runs.items():
        mc = monte_carlo(result.uncertainty_chain, n_samples=2000, seed=3)
        voi = result.voi_dose
        rows.append(
            pd.DataFrame(
                {
                    "workflow": name,
                    "voi": voi["voi_name"],
                    "u_rel": voi["dose_mean_u_gy"] / voi["dose_mean_gy"],
                    "rc": voi["recovery_coefficient"].fillna(1.0) < 1.0,
                    "ratio": mc["dose_mean_u_gy"].to_numpy() / voi["dose_mean_u_gy"].to_numpy(),
                }
            )
        )
    table = pd.concat(rows, ignore_index=True)
    # M = 2000 draws give u to ~1.6 % (1/√(2M)) for a Gaussian output; 10 % is the issue's
    # criterion. It holds wherever the chain is close to linear. Where a recovery
    # coefficient is applied to a lesion with a large volume uncertainty, R(V) is curved in
    # ln V and clipped at rc_min, the output is skewed and the GUM linearisation is off
    # either way (Monte Carlo/analytic 0.83 for a lesion near the clip here, 1.03–1.13 at
    # u_rel 0.24–0.30 and ≈1.5 above 0.4 on the default phantom): there JCGM 101 §8 says
    # the Monte Carlo value is the valid one. Asserted: agreement within 10 % where no RC
    # is applied or u_rel <= 0.2; elsewhere only the same order of magnitude.
    linear = ~table["rc"] | (table["u_rel"] <= 0.20)
    assert linear.mean() > 0.8
    bad = table[linear & ((table["ratio"] - 1).abs() > 0.10)]
    assert bad.empty, bad.to_string()
    assert table["ratio"].between(0.5, 2.0).all(), table.to_string()


def test_budget_adds_up_to_the_voi_uncertainty(phantom_runs):
    runs, _ = phantom_runs
    for name, result in runs.items():
        budget = result.uncertainty
        schema.to_arrow_table(budget, "uncertainty")  # valid rows of the schema table
        voi = result.voi_dose.set_index("voi_id")
        rss = budget.groupby("voi_id")["dose_u_rel"].apply(lambda s: np.sqrt(np.sum(s**2)))
        np.testing.assert_allclose(
            rss.to_numpy(), (voi["dose_mean_u_gy"] / voi["dose_mean_gy"]).loc[rss.index], rtol=1e-12
        )
        expected = set(get_workflow(name).uncertainty_components)
        assert set(budget["component"]) <= expected
        assert ("recovery" in set(budget["component"])) == (name == "milan")


def test_monte_carlo_is_deterministic(phantom_runs):
    runs, _ = phantom_runs
    chain = runs["bordet"].uncertainty_chain
    pd.testing.assert_frame_equal(monte_carlo(chain, 200, seed=1), monte_carlo(chain, 200, seed=1))


def _one_lesion(doses, u_shared, u_ind):
    voi = pd.DataFrame(
        {
            "patient_id": "P1",
            "cycle": np.arange(1, len(doses) + 1),
            "center": "C",
            "workflow": "w",
            "workflow_version": "1",
            "voi_id": 10,
            "voi_kind": "lesion",
            "dose_mean_gy": doses,
            "mass_g": 5.0,
        }
    )
    voi["dose_mean_u_gy"] = voi["dose_mean_gy"] * math.hypot(u_shared, u_ind)
    budget = pd.concat(
        [
            voi[["patient_id", "cycle", "workflow", "voi_id"]].assign(
                component=c, u_rel=u, sensitivity=-1.0, dose_u_rel=u, shared=s
            )
            for c, u, s in (("calibration", u_shared, True), ("counts", u_ind, False))
        ],
        ignore_index=True,
    )
    return voi, budget


@pytest.mark.parametrize("shared", [True, False])
def test_patient_index_uncertainty_keeps_the_correlation_of_shared_components(shared):
    voi, budget = _one_lesion([20.0, 10.0], 0.05 if shared else 0.0, 0.0 if shared else 0.05)
    u = patient_index_uncertainty(
        voi,
        budget,
        lambda f: indices.patient_index(f, cumulative_rule="sum", planned_cycles=2),
        n_samples=4000,
    ).set_index("cycle")
    # a shared 5 % moves both cycles together: u(sum) = 5 % of 30 Gy; independent: of √(20²+10²)
    expected = 0.05 * (30.0 if shared else math.hypot(20.0, 10.0))
    # log-normal std = D·σ·(1 + O(σ²)); M = 4000 gives the std to ~1.1 % (1/√(2M))
    assert u.loc[2, "cum_lesion_dose_min_u_gy"] == pytest.approx(expected, rel=0.05)
    assert u.loc[1, "lesion_dose_min_u_gy"] == pytest.approx(0.05 * 20.0, rel=0.05)
