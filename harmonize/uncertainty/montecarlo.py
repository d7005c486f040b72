"""Propagation of distributions by Monte Carlo (JCGM 101:2008, GUM Supplement 1).

The second, independent method. For every VOI, ``M`` draws of the inputs of the chain
(:mod:`harmonize.uncertainty.chain`) are pushed through the *nonlinear* model:

* the measured activities ``y* = y + √B·u(y)·z`` (Gaussian, the counting covariance
  scaled by the Birge ratio ``B`` of the Type A evaluation, as in the analytic budget), and
  **every sample is refitted** with the workflow's TIA rule (vectorised over samples with
  :func:`harmonize.uncertainty.tia.tia_columns`), so the fit's nonlinearity, the λ bound
  and the head/tail terms act as they do in the workflow;
* the head area: rectangular, ``U(−w, w)`` with ``w`` the distance between the two bounding
  head rules;
* calibration, recovery curve, dose factor: Gaussian about 1 with the declared relative
  uncertainties; volume and density, positive quantities: log-normal about V and ρ with
  ``σ = u_rel`` (a Gaussian volume with the 20–40 % relative uncertainty of a small lesion
  puts mass near V = 0 and the dose's ``V^(c−1)`` dependence then gives a tail that no
  segmentation produces); the volume acts through the recovery curve itself ``R(V*)``
  (clipped like the workflow clips it), the gathered activity ``(V*/V)^c_C`` and the mass
  ``(ρ*V*/ρV)^c_S``.

The standard uncertainty is the standard deviation of the output sample (JCGM 101 §7.6),
the estimate its mean; the 95 % coverage interval is the probabilistically symmetric one
(2.5 and 97.5 percentiles, §7.7). Draws are seeded: the same inputs and seed give the same
numbers. ``M = 2000`` gives the standard uncertainty to about 1.6 % (relative standard error
``1/√(2(M−1))`` for a Gaussian output), enough for the 10 % cross-check with the analytic
method; JCGM 101 §7.9 adaptive M is not implemented.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harmonize.uncertainty.analytic import birge_ratio, chain_fits, counting_u_mbq
from harmonize.uncertainty.chain import VoiChain
from harmonize.uncertainty.tia import head_bounds, tia_columns

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = ["monte_carlo"]


def monte_carlo(chain: VoiChain, n_samples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Monte Carlo uncertainty of every VOI's TIA and mean dose (module docstring).

    Parameters
    ----------
    chain : VoiChain
        The inputs.
    n_samples : int
        Draws per VOI (>= 100).
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    pandas.DataFrame
        One row per VOI: ``voi_index``, ``tia_u_mbq_h``, ``dose_mean_u_gy`` (standard
        deviations), ``dose_mc_mean_gy``, ``dose_low_gy``/``dose_high_gy`` (95 % interval),
        ``n_valid`` (samples whose TAC could be fitted). NaN where the TAC cannot be fitted.
    """
    if n_samples < 100:
        raise ValueError(f"n_samples must be >= 100, got {n_samples}")
    rng = np.random.default_rng(seed)
    t = chain.times_h
    n, m = chain.n_voi, int(n_samples)
    applies = set(chain.components)
    v = chain.values

    def gauss(u_rel: float | np.ndarray, name: str) -> np.ndarray:
        z = rng.standard_normal((n, m))  # always drawn: the stream does not depend on flags
        if name not in applies:
            return np.zeros((n, m))
        return np.asarray(u_rel).reshape(-1, 1) * z

    y = chain.measured_mbq
    u_y = counting_u_mbq(y, chain.counts_per_mbq)
    fits = chain_fits(chain)
    fit_of = [(float(fits[0][i]), float(fits[1][i]), bool(fits[2][i])) for i in range(n)]
    birge = np.array([birge_ratio(chain, i, u_y[i], fit_of[i]) for i in range(n)])
    scale = np.zeros(n)
    if "counts" in applies:
        scale += 1.0
    if "fit" in applies:
        scale += birge - 1.0
    z_y = rng.standard_normal((n, t.size, m))
    y_star = y[:, :, None] + np.sqrt(scale)[:, None, None] * u_y[:, :, None] * z_y
    flat = np.moveaxis(y_star, 1, 0).reshape(t.size, n * m)
    t_star = tia_columns(chain.rule, t, flat, chain.lambda_phys_per_h).reshape(n, m)
    t0 = tia_columns(chain.rule, t, y.T, chain.lambda_phys_per_h)

    halfwidth = np.array(
        [
            abs(np.subtract(*head_bounds(chain.rule, t, y[i], chain.lambda_phys_per_h, fit_of[i])))
            for i in range(n)
        ]
    )
    u_head = rng.uniform(-1.0, 1.0, (n, m))
    if "head" in applies:
        t_star = t_star + halfwidth[:, None] * u_head

    q = 1.0 + gauss(v.calibration_u_rel, "calibration")
    rc_curve = 1.0 + np.where(chain.rc_applied[:, None], gauss(v.rc_curve_u_rel, "recovery"), 0.0)
    # volume and density are positive: log-normal with the declared relative uncertainty
    volume_ratio = np.exp(gauss(chain.volume_u_rel, "volume"))
    rho = np.exp(gauss(v.density_u_rel, "density"))
    f = 1.0 + gauss(v.dose_factor_u_rel, "dose_factor")
    recovery = np.vstack(
        [chain.recovery_ratio(i, chain.volume_ml[i] * volume_ratio[i]) for i in range(n)]
    )
    capture = volume_ratio ** chain.capture_slope[:, None]
    mass_ratio = rho * volume_ratio
    s_ratio = mass_ratio ** chain.dose_mass_slope[:, None]

    with np.errstate(invalid="ignore", divide="ignore"):
        rel_tia = t_star / t0[:, None] * capture * recovery / (q * rc_curve)
        tia = rel_tia * chain.tia_mbq_h[:, None]
        dose = rel_tia * s_ratio * f * chain.dose_gy[:, None]
    rows = []
    for i in range(n):
        ok = np.isfinite(dose[i]) & np.isfinite(tia[i])
        valid = int(ok.sum())
        if not (np.isfinite(t0[i]) and t0[i] > 0) or valid < 2:
            rows.append((i, np.nan, np.nan, np.nan, np.nan, np.nan, valid))
            continue
        d, a = dose[i, ok], tia[i, ok]
        low, high = np.percentile(d, [2.5, 97.5])
        rows.append(
            (i, float(a.std(ddof=1)), float(d.std(ddof=1)), float(d.mean()), low, high, valid)
        )
    return pd.DataFrame(
        rows,
        columns=[
            "voi_index",
            "tia_u_mbq_h",
            "dose_mean_u_gy",
            "dose_mc_mean_gy",
            "dose_low_gy",
            "dose_high_gy",
            "n_valid",
        ],
    )
