"""Fitting one time-activity curve (a VOI) and integrating it to the TIA.

:func:`fit_tac` fits one of the models of :mod:`harmonize.kinetics.models` by weighted least
squares with bounds, or integrates the data with the trapezoidal rule, or (``"auto"``)
fits every sum-of-exponentials model the number of points allows and selects by AICc.

Fitting
    Residuals ``√wᵢ·(f(tᵢ) − yᵢ)`` with ``wᵢ`` = 1 (``"none"``), 1/yᵢ² (``"relative"``) or
    1/yᵢ (``"poisson"``); points ``<= 0`` are excluded (weight 0, flag
    ``"nonpositive_points"``; see :mod:`harmonize.kinetics.voxel` for why). Bounds: amplitudes
    >= 0, every effective λ >= the nuclide's physical λ and <= ``LAMBDA_MAX_PER_H``; the
    ordering λ1 <= λ2 <= λ3 is built in by fitting increments ``λ_{k+1} − λ_k >= 0``. Start:
    a grid over the decay constants (log-spaced from the physical λ to ``10/t_first``) with
    the amplitudes solved by non-negative least squares for each grid point (variable
    projection). From the best grid point, one unbounded Levenberg-Marquardt fit
    (:func:`scipy.optimize.leastsq`, analytic Jacobian) is kept when it converged strictly
    inside the bounds and its TIA is determined by the data (``_first_fit``: over the
    parameters whose cost is within the multi-start's ``ftol`` of the minimum, the TIA moves
    by < 1e-7 relative). Otherwise, e.g. a λ at its bound or an uptake λ2 that no sampling
    point constrains (the cost is flat along λ2 while the TIA is not), the three best grid
    points start :func:`scipy.optimize.least_squares` (trust-region reflective, analytic
    Jacobian, bounds) and the lowest cost wins, as before issue #17
    (``tests/test_kinetics_reference.py``). The
    mono-exponential, a 1-D problem once the amplitude is profiled out, is instead solved
    like the voxel fit (:mod:`harmonize.kinetics.voxel`: closed-form log-linear start, then
    safeguarded Newton on λ, in plain floats) — the same optimum (TIAs within 1e-7 of the
    least squares, ``tests/test_kinetics_reference.py``) at ~1/10 of the cost; the least
    squares remain its fallback when Newton does not converge.

Failure
    A fit that does not converge, returns non-finite parameters or a zero/non-finite TIA,
    or has fewer points with positive weight than parameters, yields a flagged
    :class:`TACFit` (``"fit_failed"`` or ``"too_few_positive_points"``) whose TIA comes from
    the fallback ``fallback="trapezoid+physical_tail"``: trapezoid with a linear head from
    zero and a physical-decay tail from the last point.

Model selection (``model="auto"``)
    NUKFIT practice (Kletting2013: Kletting P et al. Med Phys 2013;40:102504,
    doi:10.1118/1.4820367): ``AICc = n·ln(RSS/n) + 2k + 2k(k+1)/(n−k−1)`` with RSS the
    weighted residual sum of squares, ``k`` the number of fitted parameters; candidates
    are the models with ``n >= k + 2``; Akaike weights ``exp(−Δᵢ/2)/Σ exp(−Δⱼ/2)``. The RSS is
    floored at ``1e-12·Σwy²`` (residuals below a millionth of the data are round-off), so that
    on noise-free data the simplest exact model wins rather than the one with the smallest
    round-off.

Flags (``TACFit.flags``)
    ``"no_washout"`` (slowest λ at the physical bound, or trapezoid tail fitted slower than
    physical decay), ``"fallback_physical_decay"`` (trapezoid tail replaced by physical
    decay), ``"fit_failed"``, ``"too_few_positive_points"``, ``"nonpositive_points"``,
    ``"lambda_at_upper_bound"``, ``"aicc_undefined"`` (n <= k + 1, non-parametric or
    fallback; ``aicc`` is NaN), ``"r2_undefined"`` (``r2`` is NaN).

Examples
--------
>>> import numpy as np
>>> from harmonize.kinetics import fit_tac
>>> t = np.array([4.0, 24.0, 72.0, 192.0])
>>> fit = fit_tac(t, 50.0 * np.exp(-0.02 * t), model="monoexp")
>>> round(fit.tia, 6), round(fit.params["lambda1_per_h"], 9)
(2500.0, 0.02)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from harmonize.kinetics._validate import (
    WEIGHTINGS,
    KineticsError,
    check_activity_1d,
    check_choice,
    check_integral,
    check_time_scale,
    check_times,
    physical_lambda_per_h,
)
from harmonize.kinetics.models import (
    MODEL_PARAMETERS,
    PARAMETRIC_MODELS,
    _integrate_terms,
    exponential_terms,
)
from harmonize.kinetics.voxel import (
    _LOCAL_STEP,
    _MAX_HALVINGS,
    _NEWTON_MAX_ITER,
    _REL_TOL,
    HEAD_RULES,
    LAMBDA_MAX_PER_H,
    TAIL_RULES,
    VoxelFlag,
    fit_monoexp_columns,
    point_weights,
)
from harmonize.nuclides import Nuclide

if TYPE_CHECKING:
    import pandas as pd
    from scipy import optimize as _optimize
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")
    _optimize = lazy_module("scipy.optimize")

__all__ = [
    "FALLBACK_TRAPEZOID",
    "TAC_MODELS",
    "TACFit",
    "aicc",
    "akaike_weights",
    "fit_tac",
]

#: Models :func:`fit_tac` accepts.
TAC_MODELS = (*PARAMETRIC_MODELS, "trapezoid", "auto")
#: Name of the fallback used when a fit fails.
FALLBACK_TRAPEZOID = "trapezoid+physical_tail"

#: Amplitude-to-exponential coefficient matrices: f = Σ_j (Σ_i a_i C_ij) e^(−λ_j t).
_COEFFS = {
    "monoexp": np.array([[1.0]]),
    "biexp": np.array([[1.0, 0.0], [0.0, 1.0]]),
    "biexp_uptake": np.array([[1.0, -1.0]]),
    "triexp": np.array([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]),
}
_GRID_POINTS = 24
_N_STARTS = 3
_RSS_FLOOR_REL = 1e-12
_TOL = 1e-14
_FIRST_MAX_NFEV = 400
_INTERIOR_MARGIN = 1e-6
_TIA_DETERMINED = 1e-7


# --------------------------------------------------------------------------- information


def aicc(rss: float, n: int, k: int) -> float:
    """Corrected Akaike information criterion ``n ln(RSS/n) + 2k + 2k(k+1)/(n−k−1)``.

    Parameters
    ----------
    rss : float
        Residual sum of squares (> 0).
    n : int
        Number of data points.
    k : int
        Number of fitted parameters; requires ``n >= k + 2``.

    Returns
    -------
    float

    Raises
    ------
    KineticsError
        If ``n < k + 2`` or ``rss <= 0``.

    Examples
    --------
    >>> round(aicc(7.0, 7, 2), 6)  # 7·ln(1) + 4 + 12/4
    7.0
    """
    if n < k + 2:
        raise KineticsError(f"AICc needs n >= k + 2 points, got n={n}, k={k}")
    if not rss > 0:
        raise KineticsError(f"rss must be > 0, got {rss}")
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def akaike_weights(aicc_values: object) -> np.ndarray:
    """Akaike weights ``exp(−Δᵢ/2)/Σⱼ exp(−Δⱼ/2)``; infinite AICc values get weight 0.

    Examples
    --------
    >>> akaike_weights([10.0, 10.0, np.inf]).tolist()
    [0.5, 0.5, 0.0]
    """
    v = np.asarray(aicc_values, dtype=float)
    finite = np.isfinite(v)
    if not np.any(finite):
        raise KineticsError("akaike_weights needs at least one finite AICc value")
    rel = np.where(finite, np.exp(-0.5 * (v - np.min(v[finite]))), 0.0)
    return rel / rel.sum()


# --------------------------------------------------------------------------- curves


@dataclass(frozen=True)
class _Piecewise:
    """Piecewise-linear curve through knots, then ``y_last·e^(−λ(t − t_last))``."""

    knots_h: np.ndarray
    values: np.ndarray
    tail_lambda_per_h: float  # 0 means no tail

    def predict(self, t_h: np.ndarray) -> np.ndarray:
        t0, t_last = self.knots_h[0], self.knots_h[-1]
        inside = np.interp(t_h, self.knots_h, self.values)
        if self.tail_lambda_per_h > 0:
            tail = self.values[-1] * np.exp(-self.tail_lambda_per_h * (t_h - t_last))
        else:
            tail = np.zeros_like(t_h)
        out = np.where(t_h > t_last, tail, inside)
        return np.where(t_h < t0, 0.0, out)

    def integrate(self, a: float, b: float) -> float:
        k, v = self.knots_h, self.values
        lo = np.clip(a, k[:-1], k[1:])
        hi = np.clip(b, k[:-1], k[1:])
        body = float(np.sum((hi - lo) * 0.5 * (np.interp(lo, k, v) + np.interp(hi, k, v))))
        lam = self.tail_lambda_per_h
        if lam <= 0 or b <= k[-1]:
            return body
        # y_last·e^(−λ(t − t_last)) integrated from start to b, written relative to t_last:
        # the form c·e^(λ·t_last) overflows once λ·t_last > 709
        start = max(a, k[-1])
        upper = 0.0 if math.isinf(b) else math.exp(-lam * (b - k[-1]))
        return body + float(v[-1]) / lam * (math.exp(-lam * (start - k[-1])) - upper)


@dataclass(frozen=True)
class _Parametric:
    model: str
    params: Mapping[str, float]

    @functools.cached_property
    def _terms(self) -> tuple[np.ndarray, np.ndarray]:
        return exponential_terms(self.model, self.params)

    def predict(self, t_h: np.ndarray) -> np.ndarray:
        c, lam = self._terms  # evaluate_model's arithmetic, terms computed once
        return np.sum(c * np.exp(-lam * np.asarray(t_h, dtype=float)[..., None]), axis=-1)

    def integrate(self, a: float, b: float) -> float:
        c, lam = self._terms
        return _integrate_terms(c, lam, a, b)


@dataclass(frozen=True, eq=False)
class TACFit:
    """Result of :func:`fit_tac`.

    Attributes
    ----------
    model : str
        The model fitted (for ``"auto"``: the one selected; if every candidate failed,
        ``"auto"``).
    params : dict
        Fitted parameters by name (:data:`~harmonize.kinetics.models.MODEL_PARAMETERS`);
        for the trapezoid ``{"lambda_tail_per_h": λ}``; empty when the fallback was used.
    tia : float
        Integral from 0 to ∞ in activity unit·h.
    r2 : float
        ``1 − Σ(y − f)²/Σ(y − ȳ)²`` (unweighted) at the sampling points; NaN with flag
        ``"r2_undefined"`` for the trapezoid, the fallback, or constant data.
    aicc : float
        AICc of the fit (weighted RSS, see module docstring); NaN with flag
        ``"aicc_undefined"`` when ``n <= k + 1``, for the trapezoid and the fallback.
    flags : tuple of str
        Quality flags (module docstring).
    fallback : str or None
        What produced the TIA instead of the requested model, if anything
        (``"trapezoid+physical_tail"``, ``"physical_decay_tail"``).
    candidates : pandas.DataFrame or None
        For ``"auto"``: one row per candidate with ``model, n_params, n_points, rss, aicc,
        delta_aicc, akaike_weight, tia, r2, flags, selected``.
    weighting : str
        Residual weighting used.
    lambda_phys_per_h : float
        Physical decay constant used as the lower bound.
    times_h, activity : numpy.ndarray
        The data fitted.
    """

    model: str
    params: dict[str, float]
    tia: float
    r2: float
    aicc: float
    flags: tuple[str, ...]
    fallback: str | None
    weighting: str
    lambda_phys_per_h: float
    times_h: np.ndarray = field(repr=False)
    activity: np.ndarray = field(repr=False)
    _curve: _Piecewise | _Parametric = field(repr=False)
    candidates: pd.DataFrame | None = field(default=None, repr=False)

    def predict(self, t_h: object) -> np.ndarray:
        """Activity of the fitted (or fallback) curve at ``t_h`` (h), same shape."""
        t = np.asarray(t_h, dtype=float)
        if not np.all(np.isfinite(t)) or np.any(t < 0):
            raise KineticsError("t_h must be finite times >= 0 h")
        return self._curve.predict(t)

    def integrate(self, t0_h: float = 0.0, t1_h: float = math.inf) -> float:
        """Integral of the fitted (or fallback) curve from ``t0_h`` to ``t1_h`` (unit·h)."""
        t0, t1 = float(t0_h), float(t1_h)
        if not (math.isfinite(t0) and t0 >= 0) or math.isnan(t1) or t1 < t0:
            raise KineticsError(f"need 0 <= t0_h <= t1_h, got t0_h={t0_h!r}, t1_h={t1_h!r}")
        return self._curve.integrate(t0, t1)


# --------------------------------------------------------------------------- helpers


def _r2(y: np.ndarray, f: np.ndarray) -> float:
    tss = float(np.sum((y - y.mean()) ** 2))
    if tss <= 0:
        return math.nan
    return 1.0 - float(np.sum((y - f) ** 2)) / tss


def _trapezoid_curve(t: np.ndarray, y: np.ndarray, head: str, lam_tail: float) -> _Piecewise:
    if head == "none" or t[0] == 0:
        knots, values = t, y
    else:
        y0 = 0.0 if head == "linear_from_zero" else y[0]
        knots, values = np.concatenate([[0.0], t]), np.concatenate([[y0], y])
    tail_lam = lam_tail if y[-1] > 0 else 0.0
    return _Piecewise(knots, values, tail_lam)


def _unpack(model: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k_lin = _COEFFS[model].shape[0]
    return x[:k_lin], np.cumsum(x[k_lin:])


def _params_dict(model: str, amps: np.ndarray, lams: np.ndarray) -> dict[str, float]:
    values = {f"a{i + 1}": float(v) for i, v in enumerate(amps)}
    values.update({f"lambda{j + 1}_per_h": float(v) for j, v in enumerate(lams)})
    return {name: values[name] for name in MODEL_PARAMETERS[model]}


@functools.lru_cache(maxsize=64)
def _grid_combinations(lam_lo: float, lam_hi: float, n_exp: int) -> np.ndarray:
    """Every increasing ``n_exp``-combination of the λ grid, one per row (cached, read-only).

    The same values as ``np.array(list(itertools.combinations(grid, n_exp)))`` (rows in
    lexicographic order), built once per grid instead of once per fit.
    """
    grid = np.geomspace(lam_lo, lam_hi, _GRID_POINTS)
    index = np.array(list(itertools.combinations(range(_GRID_POINTS), n_exp)))
    combos = grid[index]
    combos.flags.writeable = False
    return combos


def _grid_starts(
    model: str, t: np.ndarray, y: np.ndarray, w: np.ndarray, lam_phys: float
) -> list[np.ndarray]:
    """Best grid points (λ combination + NNLS amplitudes), as internal parameter vectors."""
    coeffs = _COEFFS[model]
    n_exp = coeffs.shape[1]
    combos = _grid_combinations(lam_phys, _grid_top(t, lam_phys), n_exp)
    e = np.exp(-combos[:, None, :] * t[None, :, None])  # (G, n, n_exp)
    basis = e @ coeffs.T  # (G, n, k_lin)
    sw = np.sqrt(w)[None, :, None]
    xb = basis * sw
    yb = (y * np.sqrt(w))[None, :]
    h = np.einsum("gni,gnj->gij", xb, xb)
    gvec = np.einsum("gni,gn->gi", xb, yb)
    syy = float(np.sum(w * y * y))
    best_rss, best_amp = _grid_nnls(h, gvec, syy)
    order = np.argsort(best_rss)[:_N_STARTS]
    return [_internal(best_amp[g], combos[g]) for g in order]


def _grid_top(t: np.ndarray, lam_phys: float) -> float:
    """Largest λ of the start grid: ``10/t_first`` (h⁻¹), within [4 λ_phys, LAMBDA_MAX]."""
    t_first = next((v for v in t.tolist() if v > 0), 1.0)
    return min(LAMBDA_MAX_PER_H, max(10.0 / t_first, 4.0 * lam_phys))


def _internal(amps: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Internal parameter vector: amplitudes, λ1, then the λ increments."""
    return np.concatenate([amps, [lams[0]], np.diff(lams)])


def _grid_nnls(h: np.ndarray, gvec: np.ndarray, syy: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact NNLS of one or two amplitudes per grid point (normal equations ``h``, ``gvec``).

    Interior solution, else each single basis; returns the weighted RSS and amplitudes.
    """
    n_grid, k_lin = gvec.shape
    best_rss = np.full(n_grid, np.inf)
    best_amp = np.zeros((n_grid, k_lin))
    diag = np.einsum("gii->gi", h)
    for i in range(k_lin):
        amp = np.zeros((n_grid, k_lin))
        amp[:, i] = np.maximum(gvec[:, i] / np.where(diag[:, i] > 0, diag[:, i], 1.0), 0.0)
        rss = syy - 2 * np.einsum("gi,gi->g", amp, gvec) + np.einsum("gi,gij,gj->g", amp, h, amp)
        better = rss < best_rss
        best_rss[better], best_amp[better] = rss[better], amp[better]
    if k_lin == 2:
        det = np.linalg.det(h)
        ok = np.abs(det) > 1e-300
        amp = np.zeros((n_grid, 2))
        amp[ok] = np.linalg.solve(h[ok], gvec[ok][..., None])[..., 0]
        feasible = ok & np.all(amp >= 0, axis=1)
        rss = syy - 2 * np.einsum("gi,gi->g", amp, gvec) + np.einsum("gi,gij,gj->g", amp, h, amp)
        better = feasible & (rss < best_rss)
        best_rss[better], best_amp[better] = rss[better], amp[better]
    return best_rss, best_amp


@functools.lru_cache(maxsize=32)  # ≤ 0.7 MB an entry (tri-exponential, 7 points)
def _grid_basis(
    model: str, t_h: tuple[float, ...], lam_lo: float, lam_hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """λ combinations, basis ``(G, n, k_lin)`` and its outer products ``(G, n, k_lin²)``.

    They depend on the sampling times and the grid only, not on the data: cached, so that a
    fit's best grid point costs two small matrix products (:func:`_best_grid_start`).
    """
    coeffs = _COEFFS[model]
    t = np.asarray(t_h)
    combos = _grid_combinations(lam_lo, lam_hi, coeffs.shape[1])
    basis = np.exp(-combos[:, None, :] * t[None, :, None]) @ coeffs.T
    outer = (basis[..., :, None] * basis[..., None, :]).reshape(*basis.shape[:2], -1)
    for a in (basis, outer):
        a.flags.writeable = False
    return combos, basis, outer


def _best_grid_start(
    model: str, t: np.ndarray, y: np.ndarray, w: np.ndarray, lam_phys: float
) -> np.ndarray:
    """The best grid point of :func:`_grid_starts` (internal vector), from cached bases.

    The same grid and NNLS; the sums are taken in another order (``Σ w·b·b`` instead of
    ``Σ (√w·b)²``), so the RSS differ from :func:`_grid_starts`'s by rounding and near-ties
    may pick a neighbouring grid point: any start in the optimum's basin serves the first
    fit, whose result is checked (:func:`_first_fit`); the multi-start uses
    :func:`_grid_starts` itself.
    """
    combos, basis, outer = _grid_basis(model, tuple(t.tolist()), lam_phys, _grid_top(t, lam_phys))
    k_lin = basis.shape[2]
    syy = float(np.sum(w * y * y))
    if k_lin == 1:  # one amplitude: NNLS is max(g/h, 0), in vector form
        hh = outer[:, :, 0] @ w
        gg = basis[:, :, 0] @ (w * y)
        amp = np.maximum(gg / np.where(hh > 0, hh, 1.0), 0.0)
        g = int(np.argmin(syy - amp * (2 * gg - amp * hh)))
        return _internal(amp[g : g + 1], combos[g])
    h = np.matmul(w, outer).reshape(-1, k_lin, k_lin)
    gvec = np.matmul(w * y, basis)
    best_rss, best_amp = _grid_nnls(h, gvec, syy)
    g = int(np.argmin(best_rss))
    return _internal(best_amp[g], combos[g])


def _fit_parametric(
    model: str, t: np.ndarray, y: np.ndarray, w: np.ndarray, lam_phys: float,
    *, first_fit: bool = True,
) -> tuple[np.ndarray, np.ndarray, bool]:  # fmt: skip
    """Bounded weighted least squares; returns amplitudes, λs and a success flag.

    First one Levenberg-Marquardt run from the best grid point (:func:`_first_fit`); when
    that fit fails its checks (or ``first_fit`` is false), the bounded multi-start least
    squares (:func:`_multi_start`).
    """
    scale = float(np.max(np.abs(y)))
    ys = y / scale
    if first_fit:
        first = _first_fit(model, t, ys, w, lam_phys, _best_grid_start(model, t, ys, w, lam_phys))
        if first is not None:
            return first[0] * scale, first[1], True
    return _multi_start(model, t, ys, w, lam_phys, _grid_starts(model, t, ys, w, lam_phys), scale)


def _first_fit(
    model: str, t: np.ndarray, ys: np.ndarray, w: np.ndarray, lam_phys: float, x0: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Levenberg-Marquardt from one start; the fit if it passes the checks, else None.

    :func:`scipy.optimize.leastsq` (MINPACK, analytic Jacobian) on the natural parameters
    (amplitudes, λs) from the best grid point, without bounds. A local minimum of the
    unbounded problem strictly inside the bounds is one of the bounded problem; it is kept
    as the multi-start's solution when it passes these checks:

    * MINPACK reports convergence (``ier`` 1–4) and the parameters are finite;
    * it is strictly inside the bounds (amplitudes > 0; λ1 > λ_phys, λs increasing and
      < ``LAMBDA_MAX_PER_H``, each by a relative margin of 1e-6);
    * its TIA is determined by the data: over the parameters whose weighted cost is within
      a relative ``_TOL`` (the multi-start's ``ftol``) of the minimum, the TIA varies by at
      most ``_TIA_DETERMINED`` relative (linearised: ``sqrt(2·_TOL·F·gᵀ(JᵀJ)⁻¹g)/TIA``, with
      ``F`` the cost, ``J`` the Jacobian, ``g`` the TIA's gradient). Where it varies more,
      the cost is flat along a direction that moves the TIA (typically an uptake λ2 that
      the sampling does not determine: no point on the rise), where any solver stops at
      an arbitrary point of the valley; there main's multi-start is kept so that the same
      point is reported (``tests/test_kinetics_reference.py``).

    When the only bound crossed is λ1 < λ_phys (no washout faster than physical decay), the
    fit is redone with λ1 fixed at λ_phys, and kept if it passes the same checks on the other
    parameters and the bound is active (the cost's derivative in λ1 there is > 0: the
    constrained minimum, the Karush-Kuhn-Tucker condition).
    """
    coeffs = _COEFFS[model]
    k_lin = coeffs.shape[0]
    sw = np.sqrt(w)
    swy = sw * ys
    p0 = np.concatenate([x0[:k_lin], np.cumsum(x0[k_lin:])])
    found = _lm(coeffs, t, sw, swy, p0, None)
    if found is None:
        return None
    p, r, j = found
    amps, lams = p[:k_lin], p[k_lin:]
    lam_list = lams.tolist()
    margin = _INTERIOR_MARGIN
    if not _strictly_inside(amps, lam_list):
        return None
    free = np.ones(p.size, dtype=bool)
    if lam_list[0] <= lam_phys * (1 + margin):
        # λ1 wants to go below the physical λ: the minimum with λ1 = λ_phys, if it is one
        if len(lam_list) > 1 and lam_list[1] <= lam_phys * (1 + margin):
            return None
        p0 = p.copy()
        p0[k_lin] = lam_phys
        found = _lm(coeffs, t, sw, swy, p0, lam_phys)
        if found is None:
            return None
        p, r, j = found
        amps, lams = p[:k_lin], p[k_lin:]
        lam_list = lams.tolist()
        # ∂F/∂λ1 = Jᵀr > 0: the bound is active
        if not (_strictly_inside(amps, lam_list) and float(j[:, k_lin] @ r) > 0):
            return None
        free[k_lin] = False
    c = amps @ coeffs
    tia = float(np.sum(c / lams))
    grad = np.concatenate([coeffs @ (1.0 / lams), -c / lams**2])[free]
    jf = j[:, free]
    try:
        spread = float(grad @ np.linalg.solve(jf.T @ jf, grad))
    except np.linalg.LinAlgError:
        return None
    # the cost's resolution: _TOL of the cost, but not below the round-off floor of the fit
    # (_RSS_FLOOR_REL of the data's weighted sum of squares, as for the AICc)
    cost = 0.5 * max(float(r @ r), _RSS_FLOOR_REL * float(swy @ swy))
    if not (tia > 0 and spread >= 0 and 2 * _TOL * cost * spread <= (_TIA_DETERMINED * tia) ** 2):
        return None
    return amps, lams


def _strictly_inside(amps: np.ndarray, lam_list: list[float]) -> bool:
    """Positive amplitudes, distinct increasing λs and the largest λ below its bound."""
    margin = _INTERIOR_MARGIN
    return not (
        min(amps.tolist()) <= 0
        or any(b - a <= margin * b for a, b in itertools.pairwise(lam_list))
        or lam_list[-1] >= LAMBDA_MAX_PER_H * (1 - margin)
    )


def _lm(
    coeffs: np.ndarray, t: np.ndarray, sw: np.ndarray, swy: np.ndarray, p0: np.ndarray,
    fixed_lambda1: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:  # fmt: skip
    """MINPACK Levenberg-Marquardt on ``sw·(f(t) − y)``; parameters, residuals, full Jacobian.

    With ``fixed_lambda1`` the first λ is held at that value (not a parameter). None if
    MINPACK does not report convergence or the parameters are not finite.
    """
    k_lin = coeffs.shape[0]
    sw_col = sw[:, None]
    minus_t = -t
    minus_t_col = minus_t[:, None]
    last: list[Any] = [b"", None]  # MINPACK asks for the Jacobian where it last evaluated
    fixed = fixed_lambda1 is not None
    keep = np.ones(p0.size, dtype=bool)
    if fixed:
        keep[k_lin] = False

    fixed_value = 0.0 if fixed_lambda1 is None else float(fixed_lambda1)

    def full(q: np.ndarray) -> np.ndarray:
        return np.insert(q, k_lin, fixed_value) if fixed else q

    def expo(p: np.ndarray) -> np.ndarray:
        key = p.tobytes()
        if key != last[0]:
            last[0], last[1] = key, np.exp(np.multiply.outer(minus_t, p[k_lin:]))  # (n, n_exp)
        return last[1]

    def resid_full(p: np.ndarray) -> np.ndarray:
        return sw * (expo(p) @ (p[:k_lin] @ coeffs)) - swy

    def jac_full(p: np.ndarray) -> np.ndarray:
        e = expo(p)
        d_lam = minus_t_col * e * (p[:k_lin] @ coeffs)
        return sw_col * np.concatenate([e @ coeffs.T, d_lam], axis=1)

    resid: Callable[[np.ndarray], np.ndarray] = resid_full
    jac: Callable[[np.ndarray], np.ndarray] = jac_full
    if fixed:

        def resid(q: np.ndarray) -> np.ndarray:
            return resid_full(full(q))

        def jac(q: np.ndarray) -> np.ndarray:
            return jac_full(full(q))[:, keep]

    try:
        with np.errstate(all="ignore"):  # overflow on a wild step: MINPACK rejects that step
            q, _, info, _, ier = _optimize.leastsq(
                resid, p0[keep], Dfun=jac, full_output=True, ftol=_TOL, xtol=_TOL, gtol=0.0,
                maxfev=_FIRST_MAX_NFEV,
            )  # fmt: skip
    except (ValueError, np.linalg.LinAlgError, FloatingPointError):
        return None
    if ier not in (1, 2, 3, 4) or not np.all(np.isfinite(q)):
        return None
    p = full(q)
    return p, info["fvec"], jac_full(p)


def _multi_start(
    model: str, t: np.ndarray, ys: np.ndarray, w: np.ndarray, lam_phys: float,
    starts: list[np.ndarray], scale: float,
) -> tuple[np.ndarray, np.ndarray, bool]:  # fmt: skip
    """Bounded trust-region least squares from every start; the lowest cost wins."""
    coeffs = _COEFFS[model]
    k_lin, n_exp = coeffs.shape
    sw = np.sqrt(w)
    lower = np.concatenate([np.zeros(k_lin), [lam_phys], np.zeros(n_exp - 1)])
    upper = np.concatenate(
        [np.full(k_lin, np.inf), [LAMBDA_MAX_PER_H], np.full(n_exp - 1, LAMBDA_MAX_PER_H)]
    )

    def resid(x: np.ndarray) -> np.ndarray:
        amps, lams = _unpack(model, x)
        e = np.exp(-np.outer(t, lams))
        return sw * (e @ (amps @ coeffs) - ys)

    def jac(x: np.ndarray) -> np.ndarray:
        amps, lams = _unpack(model, x)
        e = np.exp(-np.outer(t, lams))  # (n, n_exp)
        d_amp = e @ coeffs.T  # (n, k_lin)
        d_lam = -t[:, None] * e * (amps @ coeffs)[None, :]  # (n, n_exp)
        d_inc = np.cumsum(d_lam[:, ::-1], axis=1)[:, ::-1]  # λ_j = Σ_{m<=j} x_m
        return sw[:, None] * np.hstack([d_amp, d_inc])

    def solve(x0: np.ndarray) -> Any:
        try:
            res = _optimize.least_squares(
                resid,
                np.clip(x0, lower, upper),
                jac=jac,
                bounds=(lower, upper),
                method="trf",
                x_scale="jac",
                ftol=_TOL,
                xtol=_TOL,
                gtol=_TOL,
                max_nfev=2000,
            )
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            return None
        if res.status <= 0 or not np.all(np.isfinite(res.x)):
            return None
        return res

    # Every start is run and the lowest cost kept: with two or more exponentials the best
    # grid point alone lands in a different local minimum for some TACs (TIA off by up to
    # 1e-4 on the P004 phantom TACs, tests/test_kinetics_reference.py).
    best = None
    for x0 in starts:
        res = solve(x0)
        if res is not None and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        return np.array([]), np.array([]), False
    amps, lams = _unpack(model, best.x)
    return amps * scale, lams, True


def _monoexp_newton(
    t: list[float], y: list[float], w: list[float], lam_phys: float
) -> tuple[float, float] | None:
    """Amplitude and λ of the bounded mono-exponential fit of one TAC, or None.

    The algorithm of :func:`~harmonize.kinetics.voxel.fit_monoexp_columns` (closed-form
    weighted log-linear start, safeguarded Newton on the variable-projection gain
    ``g(λ) = (Σw·y·e)²/Σw·e²``, projected onto the bounds, step halving, stop at a relative
    step of 1e-7) written for one curve of a few points in plain floats: numpy's per-call
    cost is larger than the arithmetic here. ``tests/test_kinetics_reference.py`` checks that both
    give the same λ. None when the fit is impossible (fewer than two points with positive
    weight), Newton did not converge, or the amplitude is not positive.
    """
    pts = [(ti, yi, wi) for ti, yi, wi in zip(t, y, w, strict=True) if yi > 0 and wi > 0]
    if len(pts) < 2:
        return None
    # Start: weighted log-linear regression, weights w·y² (positive points only).
    s0 = s1 = s2 = z0 = z1 = 0.0
    for ti, yi, wi in pts:
        ui = wi * yi * yi
        zi = math.log(yi)
        s0 += ui
        s1 += ti * ui
        s2 += ti * ti * ui
        z0 += ui * zi
        z1 += ti * ui * zi
    stt = s2 - s1 * s1 / s0
    slope = (z1 - s1 * z0 / s0) / stt if stt > 0 else 0.0
    lam_max = LAMBDA_MAX_PER_H
    lam = min(max(-slope, lam_phys), lam_max)
    if len(t) == 2 and lam_phys < lam < lam_max and len(pts) == 2:
        converged = True  # two positive points inside the bounds: the start fits exactly
    else:
        converged = False

    def gain(lam_: float) -> float:
        num = den = 0.0
        for ti, yi, wi in pts:
            e = math.exp(-lam_ * ti)
            num += wi * yi * e
            den += wi * e * e
        return max(num, 0.0) ** 2 / den if den > 0 else 0.0

    for _ in range(_NEWTON_MAX_ITER if not converged else 0):
        n0 = n1 = n2 = d0 = d1 = d2 = 0.0
        for ti, yi, wi in pts:
            e = math.exp(-lam * ti)
            wye = wi * yi * e
            wee = wi * e * e
            n0 += wye
            n1 += ti * wye
            n2 += ti * ti * wye
            d0 += wee
            d1 += ti * wee
            d2 += ti * ti * wee
        n1, d1, d2 = -n1, -2.0 * d1, 4.0 * d2
        dd = d0 if d0 > 0 else 1.0
        r1, r2 = d1 / dd, d2 / dd
        u0, u1, u2 = n0 * n0, 2.0 * n0 * n1, 2.0 * (n1 * n1 + n0 * n2)
        q = u1 - u0 * r1
        curv = u2 - u0 * r2 - 2.0 * r1 * q
        newton = curv < 0 and n0 > 0
        step = -q / curv if newton else math.copysign(0.5 * lam, q) if q != 0 else 0.0
        if not math.isfinite(step):
            step = 0.0
        step = min(max(lam + step, lam_phys), lam_max) - lam
        new = lam
        if newton and abs(step) <= _LOCAL_STEP * lam:
            new = lam + step
        elif step != 0:
            g_now = max(n0, 0.0) ** 2 / dd
            for _ in range(_MAX_HALVINGS):
                if gain(lam + step) >= g_now:
                    new = lam + step
                    break
                step *= 0.5
        moved = abs(new - lam) > _REL_TOL * lam
        lam = new
        if not moved:
            converged = True
            break
    if not converged:
        return None
    num = den = 0.0
    for ti, yi, wi in pts:
        e = math.exp(-lam * ti)
        num += wi * yi * e
        den += wi * e * e
    amp = num / den if den > 0 else 0.0
    if not (math.isfinite(amp) and math.isfinite(lam) and amp > 0):
        return None
    return amp, lam


def _fit_monoexp(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, lam_phys: float
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The mono-exponential by variable projection (closed-form start, Newton on λ).

    The same bounded weighted least-squares optimum the least squares of
    :func:`_fit_parametric` finds (one minimum of a 1-D profile in λ), at a fraction of the
    cost; the least squares remain the fallback when Newton does not converge or finds no
    fit.
    """
    found = _monoexp_newton(t.tolist(), y.tolist(), w.tolist(), lam_phys)
    if found is None:
        return _fit_parametric("monoexp", t, y, w, lam_phys, first_fit=False)
    return np.array([found[0]]), np.array([found[1]]), True


# --------------------------------------------------------------------------- fit_tac


def _fallback(
    model: str, t: np.ndarray, y: np.ndarray, weighting: str, lam_phys: float, flags: list[str]
) -> TACFit:
    curve = _trapezoid_curve(t, np.maximum(y, 0.0), "linear_from_zero", lam_phys)
    return TACFit(
        model=model, params={}, tia=curve.integrate(0.0, math.inf), r2=math.nan,
        aicc=math.nan, flags=tuple(dict.fromkeys([*flags, "aicc_undefined", "r2_undefined"])),
        fallback=FALLBACK_TRAPEZOID, weighting=weighting, lambda_phys_per_h=lam_phys,
        times_h=t, activity=y, _curve=curve,
    )  # fmt: skip


def _fit_one(
    model: str, t: np.ndarray, y: np.ndarray, weighting: str, lam_phys: float
) -> tuple[TACFit, float]:
    """Fit one parametric model; returns the TACFit and its floored weighted RSS."""
    k = len(MODEL_PARAMETERS[model])
    w = point_weights(y, weighting)
    y_list = y.tolist()  # a few points: counted in Python (validated: no NaN)
    flags = ["nonpositive_points"] if min(y_list) <= 0 else []
    n_eff = sum(1 for v in w.tolist() if v != 0)
    if n_eff < k or sum(1 for v in y_list if v > 0) < _COEFFS[model].shape[1]:
        fb = _fallback(model, t, y, weighting, lam_phys, [*flags, "too_few_positive_points"])
        return fb, math.inf
    if model == "monoexp":
        amps, lams, ok = _fit_monoexp(t, y, w, lam_phys)
    else:
        amps, lams, ok = _fit_parametric(model, t, y, w, lam_phys)
    if not ok:
        return _fallback(model, t, y, weighting, lam_phys, [*flags, "fit_failed"]), math.inf
    params = _params_dict(model, amps, lams)
    curve = _Parametric(model, params)
    tia = curve.integrate(0.0, math.inf)
    f = curve.predict(t)
    if not (math.isfinite(tia) and tia > 0 and np.all(np.isfinite(f))):
        return _fallback(model, t, y, weighting, lam_phys, [*flags, "fit_failed"]), math.inf
    if lams[0] <= lam_phys * (1 + 1e-9):
        flags.append("no_washout")
    if lams[-1] >= LAMBDA_MAX_PER_H * (1 - 1e-9):
        flags.append("lambda_at_upper_bound")
    rss = float(np.sum(w * (y - f) ** 2))
    rss = max(rss, _RSS_FLOOR_REL * float(np.sum(w * y * y)))
    if n_eff >= k + 2:
        aic = aicc(rss, n_eff, k)
    else:
        aic = math.nan
        flags.append("aicc_undefined")
    r2 = _r2(y, f)
    if math.isnan(r2):
        flags.append("r2_undefined")
    fit = TACFit(
        model=model, params=params, tia=tia, r2=r2, aicc=aic, flags=tuple(flags),
        fallback=None, weighting=weighting, lambda_phys_per_h=lam_phys, times_h=t,
        activity=y, _curve=curve,
    )  # fmt: skip
    return fit, rss


def _fit_trapezoid(
    t: np.ndarray, y: np.ndarray, weighting: str, lam_phys: float,
    head: str, tail: str, tail_points: int,
) -> TACFit:  # fmt: skip
    flags: list[str] = ["nonpositive_points"] if np.any(y <= 0) else []
    fallback = None
    lam_tail = lam_phys
    if tail == "monoexp":
        _, lam_fit, tflags = fit_monoexp_columns(
            t[-tail_points:], y[-tail_points:, None], lam_phys, weighting
        )
        if tflags[0] & VoxelFlag.FALLBACK:
            flags.append("fallback_physical_decay")
            fallback = "physical_decay_tail"
        elif tflags[0] & VoxelFlag.NO_WASHOUT:
            flags += ["no_washout", "fallback_physical_decay"]
            fallback = "physical_decay_tail"
        else:
            lam_tail = float(lam_fit[0])
            if tflags[0] & VoxelFlag.LAMBDA_AT_UPPER_BOUND:
                flags.append("lambda_at_upper_bound")
    curve = _trapezoid_curve(t, y, head, lam_tail)
    return TACFit(
        model="trapezoid", params={"lambda_tail_per_h": lam_tail},
        tia=curve.integrate(0.0, math.inf), r2=math.nan, aicc=math.nan,
        flags=(*flags, "aicc_undefined", "r2_undefined"), fallback=fallback,
        weighting=weighting, lambda_phys_per_h=lam_phys, times_h=t, activity=y, _curve=curve,
    )  # fmt: skip


def _fit_auto(t: np.ndarray, y: np.ndarray, weighting: str, lam_phys: float) -> TACFit:
    n_eff = int(np.count_nonzero(point_weights(y, weighting)))
    eligible = [m for m in PARAMETRIC_MODELS if n_eff >= len(MODEL_PARAMETERS[m]) + 2]
    if not eligible:
        raise KineticsError(
            f"model='auto' needs at least 4 time points with positive weight (AICc of the "
            f"mono-exponential needs n >= k + 2), got {n_eff}"
        )
    fits = [_fit_one(m, t, y, weighting, lam_phys) for m in eligible]
    aics = np.array([f.aicc if f.fallback is None else math.inf for f, _ in fits])
    rows = pd.DataFrame(
        {
            "model": eligible,
            "n_params": [len(MODEL_PARAMETERS[m]) for m in eligible],
            "n_points": n_eff,
            "rss": [rss for _, rss in fits],
            "aicc": aics,
            "tia": [f.tia for f, _ in fits],
            "r2": [f.r2 for f, _ in fits],
            "flags": [",".join(f.flags) for f, _ in fits],
        }
    )
    if not np.any(np.isfinite(aics)):
        rows["delta_aicc"] = math.inf
        rows["akaike_weight"] = 0.0
        rows["selected"] = False
        fb = _fallback("auto", t, y, weighting, lam_phys, ["fit_failed"])
        return dataclasses.replace(fb, candidates=rows)
    weights = akaike_weights(aics)
    best = int(np.argmin(np.where(np.isfinite(aics), aics, np.inf)))
    rows["delta_aicc"] = aics - aics[best]
    rows["akaike_weight"] = weights
    rows["selected"] = np.arange(len(eligible)) == best
    return dataclasses.replace(fits[best][0], candidates=rows)


def fit_tac(
    times_h: object,
    activity: object,
    model: str = "biexp_uptake",
    weighting: str = "none",
    nuclide: str | Nuclide = "Lu-177",
    *,
    head: str = "linear_from_zero",
    tail: str = "monoexp",
    tail_points: int = 2,
) -> TACFit:
    """Fit a time-activity curve and integrate it from 0 to ∞.

    Parameters
    ----------
    times_h : array_like
        Sampling times after administration (h): sorted, distinct, >= 0.
    activity : array_like
        Activity at each time (any unit; the TIA is in that unit·h). At least one value must
        be positive; zero/negative values are allowed (flag ``"nonpositive_points"``).
    model : {"monoexp", "biexp", "biexp_uptake", "triexp", "trapezoid", "auto"}
        See :mod:`harmonize.kinetics.models`; ``"trapezoid"`` integrates the data (module
        :mod:`harmonize.kinetics.voxel` for the head/tail rules); ``"auto"`` selects by AICc.
    weighting : {"none", "relative", "poisson"}
        Residual weights 1, 1/y², 1/y.
    nuclide : str or Nuclide
        Radionuclide whose physical λ bounds every effective λ (and sets physical tails).
    head : {"linear_from_zero", "constant", "none"}
        Trapezoid only: area from 0 to the first point.
    tail : {"monoexp", "physical"}
        Trapezoid only: tail after the last point.
    tail_points : int
        Trapezoid with ``tail="monoexp"``: number of last points of the tail fit (>= 2).

    Returns
    -------
    TACFit

    Raises
    ------
    KineticsError
        On mismatched lengths, unsorted/duplicate/negative times, NaN/inf, no positive
        activity, fewer points than the model's parameters, or an unknown option; on times
        later than ``MAX_HALF_LIVES`` half-lives (not hours); on a TIA that is not finite
        and positive (the message says why).
    """
    t = check_times(times_h)
    y = check_activity_1d(activity, t.size)
    model = check_choice("model", model, TAC_MODELS)
    weighting = check_choice("weighting", weighting, WEIGHTINGS)
    head = check_choice("head", head, HEAD_RULES)
    tail = check_choice("tail", tail, TAIL_RULES)
    lam_phys = physical_lambda_per_h(nuclide)
    check_time_scale(t, nuclide)
    fit = _dispatch(t, y, model, weighting, lam_phys, head, tail, tail_points)
    check_integral(fit.tia)  # never a non-finite or non-positive TIA as a valid result
    return fit


def _dispatch(
    t: np.ndarray, y: np.ndarray, model: str, weighting: str, lam_phys: float,
    head: str, tail: str, tail_points: int,
) -> TACFit:  # fmt: skip
    if model == "trapezoid":
        if tail == "monoexp" and (
            not isinstance(tail_points, int | np.integer) or not 2 <= tail_points <= t.size
        ):
            raise KineticsError(
                f"tail_points must be an integer in [2, {t.size}] (number of time points), "
                f"got {tail_points!r}"
            )
        return _fit_trapezoid(t, y, weighting, lam_phys, head, tail, int(tail_points))
    if model == "auto":
        return _fit_auto(t, y, weighting, lam_phys)
    k = len(MODEL_PARAMETERS[model])
    if t.size < k:
        raise KineticsError(
            f"model {model!r} has {k} parameters but times_h has only {t.size} points"
        )
    return _fit_one(model, t, y, weighting, lam_phys)[0]
