"""Time-activity curve models and their analytic integrals.

Every parametric model is a sum of exponentials ``f(t) = Σ cᵢ·exp(−λᵢ t)`` (t in h, λ in
h⁻¹, activities in any unit), so that its integral over ``[t0, t1]`` is exact:
``Σ cᵢ/λᵢ · (exp(−λᵢ t0) − exp(−λᵢ t1))``. The decay constants are *effective* ones
(biological plus physical); fitters bound them below by the physical decay constant.

=================  ==================================================================  =========
model              formula                                                             params
=================  ==================================================================  =========
``monoexp``        a1·e^(−λ1 t)                                                        2
``biexp``          a1·e^(−λ1 t) + a2·e^(−λ2 t),  λ1 ≤ λ2                               4
``biexp_uptake``   a1·(e^(−λ1 t) − e^(−λ2 t)),  λ2 > λ1 (uptake λ2, washout λ1)        3
``triexp``         a1·e^(−λ1 t) + a2·e^(−λ2 t) − (a1 + a2)·e^(−λ3 t),  λ1 ≤ λ2 ≤ λ3    5
=================  ==================================================================  =========

The tri-exponential is NUKFIT's function with an uptake (blood-circulation) term, zero at
t = 0 (Kletting2013: Kletting P et al. Med Phys 2013;40:102504, doi:10.1118/1.4820367,
written there with λᵢ = λ_bio,i + λ_phys). We order λ1 ≤ λ2 for identifiability and
require λ3 ≥ λ2 so that the curve is non-negative for a1, a2 ≥ 0.

Parameter names are ``a1``, ``a2`` (activity units) and ``lambda1_per_h`` … ``lambda3_per_h``.

Examples
--------
>>> from harmonize.kinetics import evaluate_model, integrate_model
>>> p = {"a1": 10.0, "lambda1_per_h": 0.01}
>>> float(integrate_model("monoexp", p))  # a1 / λ1
1000.0
>>> float(evaluate_model("monoexp", p, 0.0))
10.0
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from harmonize.kinetics._validate import KineticsError

__all__ = [
    "MODEL_PARAMETERS",
    "PARAMETRIC_MODELS",
    "evaluate_model",
    "exponential_terms",
    "integrate_model",
]

#: Parameter names of each parametric model, in the order fitters use them.
MODEL_PARAMETERS: dict[str, tuple[str, ...]] = {
    "monoexp": ("a1", "lambda1_per_h"),
    "biexp": ("a1", "lambda1_per_h", "a2", "lambda2_per_h"),
    "biexp_uptake": ("a1", "lambda1_per_h", "lambda2_per_h"),
    "triexp": ("a1", "lambda1_per_h", "a2", "lambda2_per_h", "lambda3_per_h"),
}

#: The sum-of-exponential models, simplest first.
PARAMETRIC_MODELS: tuple[str, ...] = tuple(MODEL_PARAMETERS)


def exponential_terms(model: str, params: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``c`` and decay constants ``λ`` (h⁻¹) with ``f(t) = Σ c·exp(−λ t)``.

    Parameters
    ----------
    model : str
        One of :data:`PARAMETRIC_MODELS`.
    params : mapping
        The model's parameters by name (see :data:`MODEL_PARAMETERS`).

    Returns
    -------
    coefficients, lambdas_per_h : numpy.ndarray
        Two 1-D arrays of equal length.

    Raises
    ------
    KineticsError
        If the model is unknown or a parameter is missing or not finite.
    """
    if model not in MODEL_PARAMETERS:
        raise KineticsError(
            f"model must be one of {list(PARAMETRIC_MODELS)} for an analytic curve, got {model!r}"
        )
    missing = [k for k in MODEL_PARAMETERS[model] if k not in params]
    if missing:
        raise KineticsError(f"params for model {model!r} lack {missing}")
    p = {k: float(params[k]) for k in MODEL_PARAMETERS[model]}
    bad = [k for k, v in p.items() if not math.isfinite(v)]
    if bad:
        raise KineticsError(f"params {bad} of model {model!r} are not finite: {p}")
    if model == "monoexp":
        c, lam = [p["a1"]], [p["lambda1_per_h"]]
    elif model == "biexp":
        c, lam = [p["a1"], p["a2"]], [p["lambda1_per_h"], p["lambda2_per_h"]]
    elif model == "biexp_uptake":
        c, lam = [p["a1"], -p["a1"]], [p["lambda1_per_h"], p["lambda2_per_h"]]
    else:  # triexp
        c = [p["a1"], p["a2"], -(p["a1"] + p["a2"])]
        lam = [p["lambda1_per_h"], p["lambda2_per_h"], p["lambda3_per_h"]]
    return np.asarray(c, dtype=float), np.asarray(lam, dtype=float)


def evaluate_model(model: str, params: Mapping[str, float], t_h: object) -> np.ndarray:
    """Evaluate a model curve at times ``t_h`` (h); same shape as ``t_h``.

    Parameters
    ----------
    model : str
        One of :data:`PARAMETRIC_MODELS`.
    params : mapping
        The model's parameters (see :data:`MODEL_PARAMETERS`).
    t_h : array_like
        Times after administration in hours.

    Returns
    -------
    numpy.ndarray
        Activity at ``t_h`` in the unit of the amplitudes.
    """
    c, lam = exponential_terms(model, params)
    t = np.asarray(t_h, dtype=float)
    return np.sum(c * np.exp(-lam * t[..., None]), axis=-1)


def integrate_model(
    model: str, params: Mapping[str, float], t0_h: float = 0.0, t1_h: float = np.inf
) -> float:
    """Analytic integral of a model curve from ``t0_h`` to ``t1_h`` (activity unit·h).

    Parameters
    ----------
    model : str
        One of :data:`PARAMETRIC_MODELS`.
    params : mapping
        The model's parameters (see :data:`MODEL_PARAMETERS`).
    t0_h, t1_h : float
        Integration limits in hours, ``0 <= t0_h <= t1_h``; ``t1_h`` may be ``inf``.

    Returns
    -------
    float
        ``Σ cᵢ/λᵢ·(e^(−λᵢ t0) − e^(−λᵢ t1))``, evaluated with ``expm1`` for accuracy.

    Raises
    ------
    KineticsError
        On bad limits, or an infinite upper limit with a decay constant ``<= 0``.
    """
    c, lam = exponential_terms(model, params)
    return _integrate_terms(c, lam, t0_h, t1_h)


def _integrate_terms(c: np.ndarray, lam: np.ndarray, t0_h: float, t1_h: float) -> float:
    t0, t1 = float(t0_h), float(t1_h)
    if not (math.isfinite(t0) and t0 >= 0):
        raise KineticsError(f"t0_h must be a finite time >= 0 h, got {t0_h!r}")
    if math.isnan(t1) or t1 < t0:
        raise KineticsError(f"t1_h must be >= t0_h ({t0}), got {t1_h!r}")
    if math.isinf(t1):
        if any(v <= 0 for v in lam.tolist()):
            raise KineticsError(
                f"integral to infinity needs every decay constant > 0, got {lam.tolist()}"
            )
        return float(np.sum(c * np.exp(-lam * t0) / lam))
    dt = t1 - t0
    with np.errstate(divide="ignore", invalid="ignore"):
        per_term = np.where(lam != 0, -np.expm1(-lam * dt) / lam, dt)
    return float(np.sum(c * np.exp(-lam * t0) * per_term))
