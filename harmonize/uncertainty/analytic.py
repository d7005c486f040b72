"""GUM law of propagation of uncertainty (JCGM 100:2008, §5.1) through the VOI chain.

For the model of :mod:`harmonize.uncertainty.chain`, every input enters as a factor, so
the relative standard uncertainty of the dose is the root sum of squares of the
*contributions* ``|cᵢ|·u_rel(xᵢ)``, with ``cᵢ = ∂ln D/∂ln xᵢ`` the relative sensitivity
coefficients (GUM eq. 10 in relative form; the inputs are independent by construction:
volume's three correlated paths are combined in one coefficient). The components:

``counts``
    Poisson counting noise of each time point, ``u(yᵢ)² = yᵢ / (sensitivity × time)``,
    through the TIA rule's gradient ``∂T/∂yᵢ`` (fit covariance ``gᵀΣ_p g`` including the
    head and the tail, :func:`harmonize.uncertainty.tia.tia_gradient`).
``fit``
    Scatter of the points about the fitted curve beyond counting noise (image noise,
    model misfit): with ``χ² = Σ rᵢ²/u(yᵢ)²`` over the ``ν`` residual degrees of freedom of
    the fit, the counting covariance is scaled by the Birge ratio ``B = max(1, χ²/ν)``
    and the excess ``(B − 1)`` is this component. With no residual degree of freedom
    (two points through a mono-exponential) it is 0: nothing measures it [state it].
``head``
    The area from 0 to the first point is not measured: the truth lies between the line
    from (0, 0) and the fitted curve extrapolated to 0 (:func:`~harmonize.uncertainty.tia.head_bounds`).
    A rectangular distribution of half-width ``w = |extrapolated − linear|`` about the
    estimate (GUM §4.3.7): ``u = w/√3``.
``calibration``, ``recovery`` (the curve's own), ``density``, ``dose_factor``
    Declared Type B values (the adapter's config), sensitivity −1, −1, ``c_S``, +1.
``volume``
    Segmentation: ``u(V)/V`` from the boundary uncertainty, sensitivity
    ``c_C − ∂ln R/∂ln V + c_S`` for the dose and ``c_C − ∂ln R/∂ln V`` for the TIA.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from harmonize.uncertainty.chain import SHARED_COMPONENTS, VoiChain
from harmonize.uncertainty.tia import head_bounds, monoexp_fit, tia_columns, tia_gradient

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = [
    "analytic_budget",
    "birge_ratio",
    "chain_fits",
    "counting_u_mbq",
    "summarise_budget",
]


def counting_u_mbq(measured_mbq: np.ndarray, counts_per_mbq: float) -> np.ndarray:
    """Poisson standard uncertainty of measured activities, ``√(y/ε)`` (MBq; 0 for y <= 0)."""
    y = np.asarray(measured_mbq, dtype=np.float64)
    return np.sqrt(np.maximum(y, 0.0) / counts_per_mbq)


def chain_fits(chain: VoiChain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vectorised mono-exponential fit of every VOI on the rule's fit points."""
    t = chain.times_h
    fit = chain.rule.fit_points(t.size)
    return monoexp_fit(t[fit], chain.measured_mbq[:, fit].T, chain.lambda_phys_per_h)


def birge_ratio(
    chain: VoiChain,
    index: int,
    u_y: np.ndarray,
    fit_result: tuple[float, float, bool] | None = None,
) -> float:
    """``max(1, χ²/ν)`` of VOI ``index``'s mono-exponential fit (1 when ν = 0)."""
    t = chain.times_h
    fit = chain.rule.fit_points(t.size)
    y = chain.measured_mbq[index, fit]
    if fit_result is None:
        a_arr, lam_arr, ok_arr = monoexp_fit(t[fit], y[:, None], chain.lambda_phys_per_h)
        fit_result = (float(a_arr[0]), float(lam_arr[0]), bool(ok_arr[0]))
    a, lam, ok = fit_result
    if not ok:
        return 1.0
    bounded = lam <= chain.lambda_phys_per_h * (1.0 + 1e-9)
    use = (y > 0) & (u_y[fit] > 0)
    nu = int(use.sum()) - (1 if bounded else 2)
    if nu <= 0:
        return 1.0
    r = y - a * np.exp(-lam * t[fit])
    chi2 = float(np.sum((r[use] / u_y[fit][use]) ** 2))
    return max(1.0, chi2 / nu)


def analytic_budget(chain: VoiChain) -> pd.DataFrame:
    """Uncertainty budget of every VOI by the law of propagation (module docstring).

    Returns
    -------
    pandas.DataFrame
        One row per VOI index (``voi_index``, 0-based position in the chain) × component
        that applies: ``component``, ``u_rel`` (relative standard uncertainty of the input),
        ``sensitivity`` (∂ln D/∂ln x), ``tia_sensitivity`` (∂ln Ã/∂ln x), ``dose_u_rel`` and
        ``tia_u_rel`` (the contributions), ``shared`` (correlated between a patient's VOIs).
        VOIs whose TAC cannot be fitted get no rows.
    """
    t = chain.times_h
    v = chain.values
    c_r = chain.recovery_slope()
    rows: list[dict[str, object]] = []
    applies = set(chain.components)
    tia = tia_columns(chain.rule, t, chain.measured_mbq.T, chain.lambda_phys_per_h)
    fits = chain_fits(chain)
    for i in range(chain.n_voi):
        y = chain.measured_mbq[i]
        t0 = float(tia[i])
        if not (math.isfinite(t0) and t0 > 0):
            continue
        fit_i = (float(fits[0][i]), float(fits[1][i]), bool(fits[2][i]))
        u_y = counting_u_mbq(y, chain.counts_per_mbq)
        grad = tia_gradient(chain.rule, t, y, chain.lambda_phys_per_h, fit_i)
        u_counts = float(np.sqrt(np.sum((grad * u_y) ** 2))) / t0
        birge = birge_ratio(chain, i, u_y, fit_i)
        linear, extrapolated = head_bounds(chain.rule, t, y, chain.lambda_phys_per_h, fit_i)
        c_v_tia = float(chain.capture_slope[i] - c_r[i])
        c_s = float(chain.dose_mass_slope[i])
        entries = {
            "counts": (u_counts, 1.0, 1.0),
            "fit": (u_counts * math.sqrt(birge - 1.0), 1.0, 1.0),
            "head": (abs(extrapolated - linear) / math.sqrt(3.0) / t0, 1.0, 1.0),
            "calibration": (v.calibration_u_rel, -1.0, -1.0),
            "recovery": (v.rc_curve_u_rel, -1.0, -1.0),
            "volume": (float(chain.volume_u_rel[i]), c_v_tia + c_s, c_v_tia),
            "density": (v.density_u_rel, c_s, 0.0),
            "dose_factor": (v.dose_factor_u_rel, 1.0, 0.0),
        }
        if not chain.rc_applied[i]:
            entries.pop("recovery")
        for name, (u_rel, sens, tia_sens) in entries.items():
            if name not in applies:
                continue
            rows.append(
                {
                    "voi_index": i,
                    "component": name,
                    "u_rel": u_rel,
                    "sensitivity": sens,
                    "tia_sensitivity": tia_sens,
                    "dose_u_rel": abs(sens) * u_rel,
                    "tia_u_rel": abs(tia_sens) * u_rel,
                    "shared": name in SHARED_COMPONENTS,
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "voi_index",
            "component",
            "u_rel",
            "sensitivity",
            "tia_sensitivity",
            "dose_u_rel",
            "tia_u_rel",
            "shared",
        ],
    )


def summarise_budget(budget: pd.DataFrame, chain: VoiChain) -> pd.DataFrame:
    """Combined standard uncertainties per VOI: ``dose_mean_u_gy`` and ``tia_u_mbq_h``.

    NaN for VOIs without a budget (TAC not fitted).
    """
    n = chain.n_voi
    dose_rel = np.full(n, np.nan)
    tia_rel = np.full(n, np.nan)
    if len(budget):
        sums = budget.groupby("voi_index")[["dose_u_rel", "tia_u_rel"]].agg(
            lambda s: float(np.sqrt(np.sum(np.square(s))))
        )
        idx = sums.index.to_numpy()
        dose_rel[idx] = sums["dose_u_rel"].to_numpy()
        tia_rel[idx] = sums["tia_u_rel"].to_numpy()
    return pd.DataFrame(
        {
            "dose_mean_u_gy": dose_rel * np.abs(chain.dose_gy),
            "tia_u_mbq_h": tia_rel * np.abs(chain.tia_mbq_h),
        }
    )
