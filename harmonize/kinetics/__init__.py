"""Kinetics: time-activity curve models, fitting and integration to the TIA.

The time-integrated activity (TIA, activity unit·h) of a VOI or a voxel is the integral of
its time-activity curve from administration to infinity. Centres differ in how they get
it, and each choice is a parameter here:

* :func:`fit_tac` — one curve (a VOI): ``"monoexp"``, ``"biexp"``, ``"biexp_uptake"``,
  ``"triexp"`` (sums of exponentials, weighted least squares with every effective λ bounded
  below by the physical λ, analytic integral), ``"trapezoid"`` (head, trapezoidal rule,
  mono-exponential or physical tail) or ``"auto"`` (AICc selection with Akaike weights,
  NUKFIT practice, Kletting2013 doi:10.1118/1.4820367). Fits that fail fall back to the
  trapezoid with a physical tail, flagged — never a silent NaN.
* :func:`fit_voxels` — every voxel of a registered 4-D series at once (vectorised):
  ``"monoexp"`` or ``"trapezoid"`` (the Montpellier-style voxel model).
* :func:`stp_hanscheid`, :func:`stp_madsen` — single-time-point estimates
  (Hanscheid2018 doi:10.2967/jnumed.117.193706; Madsen2018 doi:10.1002/mp.12886).
* :func:`evaluate_model`, :func:`integrate_model` — the model curves and their exact
  integrals, for reuse.

Guidance followed: EANM 2022 177Lu dosimetry recommendations (PMC9015994) and MIRD
Pamphlet 26 (doi:10.2967/jnumed.115.159012) — report the model, its fit quality and any
fallback.

Examples
--------
>>> import numpy as np
>>> from harmonize import kinetics
>>> t = np.array([4.0, 24.0, 48.0, 72.0, 96.0, 168.0, 192.0])
>>> truth = {"a1": 80.0, "lambda1_per_h": 0.012, "lambda2_per_h": 0.3}
>>> y = kinetics.evaluate_model("biexp_uptake", truth, t)
>>> fit = kinetics.fit_tac(t, y, model="biexp_uptake")
>>> bool(abs(fit.tia / kinetics.integrate_model("biexp_uptake", truth) - 1) < 1e-6)
True
"""

from harmonize.kinetics._validate import WEIGHTINGS, KineticsError
from harmonize.kinetics.fit import (
    FALLBACK_TRAPEZOID,
    TAC_MODELS,
    TACFit,
    aicc,
    akaike_weights,
    fit_tac,
)
from harmonize.kinetics.models import (
    MODEL_PARAMETERS,
    PARAMETRIC_MODELS,
    evaluate_model,
    exponential_terms,
    integrate_model,
)
from harmonize.kinetics.stp import HANSCHEID2018_VALID_TIME_RANGE_H, stp_hanscheid, stp_madsen
from harmonize.kinetics.voxel import (
    HEAD_RULES,
    LAMBDA_MAX_PER_H,
    TAIL_RULES,
    VOXEL_MODELS,
    VoxelFitResult,
    VoxelFlag,
    fit_voxels,
)

__all__ = [
    "FALLBACK_TRAPEZOID",
    "HANSCHEID2018_VALID_TIME_RANGE_H",
    "HEAD_RULES",
    "LAMBDA_MAX_PER_H",
    "MODEL_PARAMETERS",
    "PARAMETRIC_MODELS",
    "TAC_MODELS",
    "TAIL_RULES",
    "VOXEL_MODELS",
    "WEIGHTINGS",
    "KineticsError",
    "TACFit",
    "VoxelFitResult",
    "VoxelFlag",
    "aicc",
    "akaike_weights",
    "evaluate_model",
    "exponential_terms",
    "fit_tac",
    "fit_voxels",
    "integrate_model",
    "stp_hanscheid",
    "stp_madsen",
]
