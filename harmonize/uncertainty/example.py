"""A worked example in the structure of Gear 2018: one lesion, the whole chain, by hand.

Gear 2018 (EJNMMI 45:2456) builds the budget in three stages — activity at each time point
(counts, calibration, recovery), time-integrated activity (the fit), absorbed dose (mass,
S-value) — and reports each component's share. This example is ours (the numbers are
illustrative, not from the paper); every value below can be recomputed with a pocket
calculator, and :func:`worked_example_by_hand` does exactly that, independently of the
propagation code, so the test suite can compare the two.

The lesion
    A 10 mL sphere (``V``), imaged at ``t₁ = 24 h`` and ``t₂ = 168 h`` with VOI activities
    ``y₁ = 10 MBq`` and ``y₂ = 4 MBq``; Milan-style TIA ``T = a/λ`` through the two points
    (``λ = ln(y₁/y₂)/(t₂ − t₁)``, ``a = y₁ e^{λ t₁}``); recovery curve
    ``R(V) = R_max V^n/(V^n + V_½^n)`` with ``V_½ = 2 mL``, ``n = 1``, ``R_max = 1``
    (so ``∂ln R/∂ln V = n V_½^n/(V^n + V_½^n) = 1/6``); dose ``D ∝ T/m`` (``c_S = −1``), all
    activity gathered by the VOI (``c_C = 0``).
Declared inputs
    counts: ``ε = 9.87 cps/MBq × 1200 s`` (so ``u(yᵢ)/yᵢ = 1/√(yᵢ ε)``); calibration 3 %;
    recovery curve 5 %; volume 10 %; density 2 %; dose factor 3 %.
Stage 1–2: TIA
    ``ln T = ln y₁ + λt₁ − ln λ`` gives ``∂ln T/∂ln y₁ = 1 + (t₁ − 1/λ)/Δ`` and
    ``∂ln T/∂ln y₂ = −(t₁ − 1/λ)/Δ`` with ``Δ = t₂ − t₁``; the counting component is the root
    sum of squares of these times ``1/√(yᵢε)``. With two points there is no residual to
    measure the fit (``fit`` = 0). The head: the fitted curve from 0 to t₁ is
    ``a/λ(1 − e^{−λt₁})``, the line from zero ``y₁t₁/2``; ``u = |difference|/√3 / T``.
Stage 3: dose
    calibration −1, recovery curve −1, volume ``c_C − ∂ln R/∂ln V + c_S = −1/6 − 1``,
    density ``c_S = −1``, dose factor +1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harmonize.nuclides import get_nuclide
from harmonize.pvc import RecoveryCurve
from harmonize.uncertainty.analytic import analytic_budget
from harmonize.uncertainty.chain import ComponentValues, VoiChain
from harmonize.uncertainty.tia import TiaRule

__all__ = ["WORKED_EXAMPLE", "WorkedExample", "worked_example", "worked_example_by_hand"]


@dataclass(frozen=True)
class WorkedExample:
    """The inputs of the worked example (module docstring)."""

    volume_ml: float = 10.0
    times_h: tuple[float, float] = (24.0, 168.0)
    activity_mbq: tuple[float, float] = (10.0, 4.0)
    counts_per_mbq: float = 9.87 * 1200.0
    rc_v_half_ml: float = 2.0
    rc_n: float = 1.0
    calibration_u_rel: float = 0.03
    rc_curve_u_rel: float = 0.05
    volume_u_rel: float = 0.10
    density_u_rel: float = 0.02
    dose_factor_u_rel: float = 0.03
    dose_gy: float = 20.0


#: The worked example's inputs.
WORKED_EXAMPLE = WorkedExample()


def worked_example() -> tuple[VoiChain, pd.DataFrame]:
    """The example's chain and its budget from :func:`analytic_budget`, with ``share``.

    ``share`` is each component's fraction of the dose variance (contribution² / u²).
    """
    ex = WORKED_EXAMPLE
    curve = RecoveryCurve.parametric(ex.rc_v_half_ml, ex.rc_n, 1.0)
    t = np.asarray(ex.times_h)
    y = np.asarray(ex.activity_mbq)
    rule = TiaRule("monoexp_from_zero")
    lam = math.log(y[0] / y[1]) / (t[1] - t[0])
    tia = y[0] * math.exp(lam * t[0]) / lam / float(curve(np.array([ex.volume_ml]))[0])
    chain = VoiChain(
        times_h=t,
        measured_mbq=y[None, :],
        rule=rule,
        lambda_phys_per_h=get_nuclide("Lu-177").decay_constant_per_h,
        tia_mbq_h=np.array([tia]),
        dose_gy=np.array([ex.dose_gy]),
        volume_ml=np.array([ex.volume_ml]),
        counts_per_mbq=ex.counts_per_mbq,
        capture_slope=np.zeros(1),
        volume_u_rel=np.array([ex.volume_u_rel]),
        dose_mass_slope=np.array([-1.0]),
        values=ComponentValues(
            calibration_u_rel=ex.calibration_u_rel,
            rc_curve_u_rel=ex.rc_curve_u_rel,
            density_u_rel=ex.density_u_rel,
            dose_factor_u_rel=ex.dose_factor_u_rel,
        ),
        recovery_curve=curve,
        rc_applied=np.array([True]),
    )
    budget = analytic_budget(chain)
    total = float(np.sum(budget["dose_u_rel"] ** 2))
    return chain, budget.assign(share=budget["dose_u_rel"] ** 2 / total)


def worked_example_by_hand() -> dict[str, float]:
    """The example's dose contributions (relative, k = 1) from the closed forms above."""
    ex = WORKED_EXAMPLE
    t1, t2 = ex.times_h
    y1, y2 = ex.activity_mbq
    eps = ex.counts_per_mbq
    lam = math.log(y1 / y2) / (t2 - t1)
    a = y1 * math.exp(lam * t1)
    tia = a / lam
    k = (t1 - 1.0 / lam) / (t2 - t1)
    counts = math.hypot((1.0 + k) / math.sqrt(y1 * eps), k / math.sqrt(y2 * eps))
    head = abs(a / lam * (1.0 - math.exp(-lam * t1)) - 0.5 * y1 * t1) / math.sqrt(3.0) / tia
    v, vh, n = ex.volume_ml, ex.rc_v_half_ml, ex.rc_n
    rc_slope = n * vh**n / (v**n + vh**n)
    return {
        "counts": counts,
        "fit": 0.0,
        "head": head,
        "calibration": ex.calibration_u_rel,
        "recovery": ex.rc_curve_u_rel,
        "volume": abs(0.0 - rc_slope - 1.0) * ex.volume_u_rel,
        "density": ex.density_u_rel,
        "dose_factor": ex.dose_factor_u_rel,
    }
