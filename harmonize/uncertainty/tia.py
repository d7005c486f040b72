"""The TIA estimators of the built-in workflows, vectorised, with their sensitivity vectors.

A workflow turns a VOI's measured activities ``y`` (MBq at times ``t``) into a TIA by one
of three rules (:class:`TiaRule`):

``"monoexp_from_zero"`` (Milan)
    ``T = a/λ``: the mono-exponential fitted to every point, integrated from 0.
``"monoexp_head"`` (Bordet)
    ``T = H(y₁) + a/λ·e^(−λ t₁)``: the head ``0 → t₁`` from the first measured point
    (``H = y₁t₁/2`` for ``"linear_from_zero"``, ``y₁t₁`` for ``"constant"``, 0 for
    ``"none"``) plus the fitted curve from ``t₁`` on.
``"trapezoid_tail"`` (Montpellier, at VOI level)
    ``T = H(y₁) + Σ trapezoids + y_n/λ_tail``: the measured points joined by straight
    lines, then a mono-exponential tail whose λ is fitted on the last ``tail_points``
    points (bounded below by physical decay).

:func:`tia_columns` evaluates a rule on many TACs at once (the columns of an
``(n_times, m)`` array) with :func:`harmonize.kinetics.voxel.fit_monoexp_columns`, the same
bounded least-squares optimum :func:`harmonize.kinetics.fit_tac` finds; the Monte Carlo
method refits every sample with it.

:func:`tia_gradient` gives the GUM sensitivity coefficients ``∂T/∂yᵢ`` analytically. The
fitted parameters ``p = (a, λ)`` are an implicit function of ``y`` through the normal
equations ``Jᵀ W r = 0``; differentiating them (with the weights held fixed),

.. math:: \\frac{\\partial p}{\\partial y} = \\Big(J^\\top W J - \\sum_i w_i r_i H_i\\Big)^{-1} J^\\top W,

where ``J`` is the model Jacobian, ``rᵢ`` the residuals and ``Hᵢ`` the Hessian of the model
at ``tᵢ`` (the residual term matters when the model does not fit the points exactly). Then
``∂T/∂y = ∂H/∂y + gᵀ ∂p/∂y`` with ``g = ∂T/∂p`` (:func:`integral_sensitivity`), so the
covariance of the TIA is ``gᵀ Σ_p g`` plus the head's own terms and their correlation with
``p`` — all carried by the one gradient. A λ held at its physical lower bound is a
constraint: it does not move with ``y`` (only ``a`` does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harmonize.kinetics.voxel import HEAD_RULES, VoxelFlag, fit_monoexp_columns

__all__ = [
    "TIA_RULES",
    "TiaRule",
    "head_bounds",
    "integral_sensitivity",
    "monoexp_fit",
    "parameter_covariance",
    "tia_columns",
    "tia_gradient",
]

#: Kinds of :class:`TiaRule`.
TIA_RULES = ("monoexp_from_zero", "monoexp_head", "trapezoid_tail")


@dataclass(frozen=True)
class TiaRule:
    """How a workflow integrates a VOI's time-activity curve (module docstring).

    Attributes
    ----------
    kind : {"monoexp_from_zero", "monoexp_head", "trapezoid_tail"}
    head : {"linear_from_zero", "constant", "none"}
        Area from 0 to the first point (not used by ``"monoexp_from_zero"``).
    tail_points : int
        ``"trapezoid_tail"``: number of last points the tail λ is fitted on (>= 2).
    """

    kind: str
    head: str = "linear_from_zero"
    tail_points: int = 2

    def __post_init__(self) -> None:
        if self.kind not in TIA_RULES:
            raise ValueError(f"TiaRule.kind: expected one of {TIA_RULES}, got {self.kind!r}")
        if self.head not in HEAD_RULES:
            raise ValueError(f"TiaRule.head: expected one of {HEAD_RULES}, got {self.head!r}")
        if self.kind == "trapezoid_tail" and self.tail_points < 2:
            raise ValueError(f"TiaRule.tail_points must be >= 2, got {self.tail_points}")

    def fit_points(self, n_times: int) -> slice:
        """The points the mono-exponential is fitted on."""
        if self.kind == "trapezoid_tail":
            return slice(n_times - self.tail_points, n_times)
        return slice(0, n_times)

    def integration_start(self, times_h: np.ndarray) -> float:
        """Where the fitted curve's integral starts (0, or the first / last time point)."""
        if self.kind == "monoexp_from_zero":
            return 0.0
        if self.kind == "monoexp_head":
            return float(times_h[0])
        return float(times_h[-1])


def _head_factor(rule: str) -> float:
    return {"linear_from_zero": 0.5, "constant": 1.0, "none": 0.0}[rule]


def monoexp_fit(
    times_h: np.ndarray, y: np.ndarray, lambda_phys_per_h: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted bounded mono-exponential fit of every column of ``y`` (n_times, m).

    Returns ``a`` (activity unit), ``λ`` (h⁻¹) and a boolean ``ok`` per column (False when
    fewer than two positive points made a fit impossible; then ``a = λ = 0``).
    """
    a, lam, flags = fit_monoexp_columns(times_h, y, lambda_phys_per_h, "none")
    ok = (flags & np.uint8(VoxelFlag.FALLBACK)) == 0
    return a, lam, ok


def _trapezoid_weights(times_h: np.ndarray, head: str) -> np.ndarray:
    """Weights ``cᵢ`` with ``H(y₁) + Σ trapezoids = Σ cᵢ yᵢ``."""
    t = np.asarray(times_h, dtype=np.float64)
    c = np.zeros(t.size)
    dt = np.diff(t)
    c[:-1] += 0.5 * dt
    c[1:] += 0.5 * dt
    c[0] += _head_factor(head) * t[0]
    return c


def tia_columns(
    rule: TiaRule, times_h: np.ndarray, y: np.ndarray, lambda_phys_per_h: float
) -> np.ndarray:
    """TIA of every column of ``y`` (n_times, m) by ``rule`` (activity unit·h), shape (m,).

    Columns that cannot be fitted (fewer than two positive points) are NaN, except for
    ``"trapezoid_tail"``, which then uses a physical-decay tail as the workflow does.
    """
    t = np.asarray(times_h, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fit = rule.fit_points(t.size)
    a, lam, ok = monoexp_fit(t[fit], y[fit], lambda_phys_per_h)
    if rule.kind == "trapezoid_tail":
        lam_tail = np.where(ok, lam, lambda_phys_per_h)
        tail = np.where(y[-1] > 0, y[-1] / lam_tail, 0.0)
        return _trapezoid_weights(t, rule.head) @ y + tail
    safe = np.where(ok, lam, 1.0)
    start = rule.integration_start(t)
    integral = a / safe * np.exp(-safe * start)
    head = _head_factor(rule.head) * t[0] * y[0] if rule.kind == "monoexp_head" else 0.0
    return np.where(ok, head + integral, np.nan)


def integral_sensitivity(a: float, lambda_per_h: float, start_h: float) -> np.ndarray:
    """``g = ∂I/∂(a, λ)`` of ``I = ∫_start^∞ a·e^(−λt) dt = a/λ·e^(−λ·start)``.

    >>> g = integral_sensitivity(10.0, 0.01, 0.0)
    >>> [round(float(v), 6) for v in g]   # 1/λ, −a/λ²
    [100.0, -100000.0]
    """
    e = math.exp(-lambda_per_h * start_h)
    return np.array([e / lambda_per_h, -a * e * (1.0 / lambda_per_h**2 + start_h / lambda_per_h)])


def _parameter_jacobian(
    t: np.ndarray, y: np.ndarray, a: float, lam: float, lambda_phys_per_h: float
) -> np.ndarray:
    """``∂(a, λ)/∂y`` (2, n) of the unweighted bounded fit at its optimum (module docstring)."""
    e = np.exp(-lam * t)
    pos = (y > 0).astype(np.float64)  # non-positive points are excluded by the fitter
    if lam <= lambda_phys_per_h * (1.0 + 1e-9):
        # λ at its bound: a = Σ y e / Σ e² moves, λ does not
        da = pos * e / float(np.sum(pos * e * e))
        return np.vstack([da, np.zeros_like(da)])
    jac = np.column_stack([e, -a * t * e])  # ∂f/∂(a, λ)
    r = y - a * e
    h_al = -t * e
    h_ll = a * t * t * e
    hess = np.array(
        [
            [0.0, float(np.sum(pos * r * h_al))],
            [float(np.sum(pos * r * h_al)), float(np.sum(pos * r * h_ll))],
        ]
    )
    normal = (jac * pos[:, None]).T @ jac - hess
    return np.linalg.solve(normal, (jac * pos[:, None]).T)


def tia_gradient(
    rule: TiaRule,
    times_h: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    fit_result: tuple[float, float, bool] | None = None,
) -> np.ndarray:
    """Sensitivity coefficients ``∂T/∂yᵢ`` of the TIA to each measured activity, shape (n,).

    ``fit_result`` = ``(a, λ, ok)`` of :func:`monoexp_fit` on the rule's fit points, when
    already known (one vectorised fit serves every VOI of a study).

    Raises
    ------
    ValueError
        If the TAC cannot be fitted (fewer than two positive points).
    """
    t = np.asarray(times_h, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fit = rule.fit_points(t.size)
    a, lam, ok = _one_fit(t[fit], y[fit], lambda_phys_per_h, fit_result)
    grad = np.zeros(t.size)
    if rule.kind == "trapezoid_tail":
        grad += _trapezoid_weights(t, rule.head)
        if y[-1] <= 0:
            return grad
        lam = lam if ok else lambda_phys_per_h
        grad[-1] += 1.0 / lam
        if ok:
            dp = _parameter_jacobian(t[fit], y[fit], a, lam, lambda_phys_per_h)
            grad[fit] += -y[-1] / lam**2 * dp[1]
        return grad
    if not ok:
        raise ValueError("the TAC has fewer than two positive points: no fit to differentiate")
    g = integral_sensitivity(a, lam, rule.integration_start(t))
    grad[fit] += g @ _parameter_jacobian(t[fit], y[fit], a, lam, lambda_phys_per_h)
    if rule.kind == "monoexp_head":
        grad[0] += _head_factor(rule.head) * t[0]
    return grad


def parameter_covariance(
    rule: TiaRule,
    times_h: np.ndarray,
    y: np.ndarray,
    u_y: np.ndarray,
    lambda_phys_per_h: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted ``p = (a, λ)`` and their covariance ``Σ_p = (∂p/∂y) diag(u_y²) (∂p/∂y)ᵀ``.

    With ``g = ∂I/∂p`` (:func:`integral_sensitivity`), ``gᵀ Σ_p g`` is the variance of the
    fitted part of the TIA (the whole TIA for ``"monoexp_from_zero"``).

    Raises
    ------
    ValueError
        If the TAC cannot be fitted.
    """
    t = np.asarray(times_h, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    fit = rule.fit_points(t.size)
    a, lam, ok = _one_fit(t[fit], y[fit], lambda_phys_per_h, None)
    if not ok:
        raise ValueError("the TAC has fewer than two positive points: no fit")
    dp = _parameter_jacobian(t[fit], y[fit], a, lam, lambda_phys_per_h)
    cov = dp @ np.diag(np.asarray(u_y, dtype=np.float64)[fit] ** 2) @ dp.T
    return np.array([a, lam]), cov


def head_bounds(
    rule: TiaRule,
    times_h: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    fit_result: tuple[float, float, bool] | None = None,
) -> tuple[float, float]:
    """Area ``0 → t₁`` by the two bounding rules: linear from zero, and the fit extrapolated.

    For a curve that rises quickly after injection and then washes out, the true area from
    0 to the first point lies between the straight line from (0, 0) to (t₁, y₁) and the
    fitted exponential extrapolated back to t = 0. Returns ``(linear, extrapolated)``
    (activity unit·h); both equal 0 when the first point is at t = 0.
    """
    t = np.asarray(times_h, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    t1 = float(t[0])
    if t1 <= 0:
        return 0.0, 0.0
    fit = rule.fit_points(t.size)
    a, lam, ok = _one_fit(t[fit], y[fit], lambda_phys_per_h, fit_result)
    linear = 0.5 * t1 * float(y[0])
    if not ok:
        return linear, linear
    return linear, a / lam * (1.0 - math.exp(-lam * t1))


def _one_fit(
    t: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    fit_result: tuple[float, float, bool] | None,
) -> tuple[float, float, bool]:
    if fit_result is not None:
        return float(fit_result[0]), float(fit_result[1]), bool(fit_result[2])
    a, lam, ok = monoexp_fit(t, y[:, None], lambda_phys_per_h)
    return float(a[0]), float(lam[0]), bool(ok[0])
