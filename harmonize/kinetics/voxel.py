"""Voxel-level kinetics: vectorised mono-exponential and trapezoid integration.

Both models work on an ``(n_times, n_voxels)`` array in one pass of numpy operations (no
Python loop over voxels), in chunks of voxels run on a small thread pool (numpy releases the
GIL in its ufuncs), so a 128³ × 4 study takes well under a second per core-pair.

Mono-exponential fit (``model="monoexp"``)
    Minimises ``Σ wᵢ (yᵢ − a·e^(−λ tᵢ))²`` per voxel with the weights of ``weighting``
    (``"none"``: 1, ``"relative"``: 1/y², ``"poisson"``: 1/y). Start: closed-form weighted
    log-linear regression of ``ln y`` on ``t`` over the *positive* points with weights
    ``w·y²`` (the first-order equivalent of the linear-space weights). Then variable
    projection: for a fixed λ the best amplitude is ``a(λ) = Σw·y·e/Σw·e²`` (``e = e^(−λt)``,
    clipped at 0), so the fit maximises ``g(λ) = (Σw·y·e)²/Σw·e²``; vectorised safeguarded
    Newton iterations on λ (step halving until ``g`` does not decrease), projected onto
    ``λ_phys <= λ <= λ_max``, until the relative Newton step is below 1e-7 (convergence is
    quadratic, so the remaining relative error is then of order 1e-14). This is the same
    bounded least-squares optimum :func:`harmonize.kinetics.fit_tac` finds.
    :func:`fit_voxels` runs the iterations chunk by chunk in lock-step on the columns still
    moving (frozen ones are compacted away), with in-place arithmetic; a voxel that needs
    step halving, and the few still moving once most of their chunk has converged, are
    handed on to one batch over all chunks that finishes them with the same iterations on
    the same numbers (so that a few percent of slow voxels do not cost every chunk dozens of
    rounds of numpy calls on a handful of numbers).
    Zero/negative points are excluded from the fit (weight 0, flag ``NONPOSITIVE_POINTS``):
    with them the linear-space least-squares problem can be degenerate (a curve that fits
    only the first point with an arbitrarily fast decay, whose back-extrapolated integral is
    unbounded). A voxel with fewer than two positive points falls back to the
    trapezoid with a linear head and a physical-decay tail (flag ``FALLBACK``); a voxel with
    no positive point gets TIA 0 (flag ``ALL_NONPOSITIVE``).

Trapezoid (``model="trapezoid"``, the Montpellier-style voxel model)
    Head ``0 → t₁`` by ``head`` (``"linear_from_zero"``: y₁·t₁/2, ``"constant"``: y₁·t₁,
    ``"none"``: 0); trapezoidal rule between the measured points (values as measured,
    negatives included so that VOI means stay unbiased); tail after the last point
    ``y_last/λ``, with ``λ`` from a mono-exponential fitted (as above) on the last
    ``tail_points`` points (``tail="monoexp"``) or the physical λ (``tail="physical"``).
    A tail that does not wash out (``λ_fit < λ_phys``) uses physical decay (flag
    ``NO_WASHOUT``); a tail with fewer than two positive points, physical decay too (flag
    ``FALLBACK``); a non-positive last point contributes no tail.

Examples
--------
>>> import numpy as np
>>> from harmonize.kinetics import fit_voxels
>>> t = np.array([4.0, 24.0, 72.0, 192.0])
>>> lam = np.log(2) / 60.0                     # effective half-life 60 h
>>> a4d = (100.0 * np.exp(-lam * t))[:, None, None, None] * np.ones((4, 2, 2, 2))
>>> tia = fit_voxels(t, a4d, model="monoexp")
>>> bool(np.allclose(tia, 100.0 / lam, rtol=1e-9))
True
"""

from __future__ import annotations

import enum
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal, overload

import numpy as np

from harmonize.kinetics._validate import (
    MAX_ABS_ACTIVITY,
    WEIGHTINGS,
    KineticsError,
    check_activity_magnitude,
    check_choice,
    check_peak_magnitude,
    check_time_scale,
    check_times,
    physical_lambda_per_h,
)
from harmonize.nuclides import Nuclide

__all__ = [
    "HEAD_RULES",
    "LAMBDA_MAX_PER_H",
    "TAIL_RULES",
    "VOXEL_MODELS",
    "VoxelFitResult",
    "VoxelFlag",
    "fit_voxels",
]

#: Upper bound on any effective decay constant (h⁻¹): a half-life of 25 s, far shorter than
#: any imaging interval, so it only stops a fit running away on a curve that drops to zero.
LAMBDA_MAX_PER_H = 100.0

#: Models :func:`fit_voxels` supports.
VOXEL_MODELS = ("monoexp", "trapezoid")
#: Rules for the area from 0 to the first time point.
HEAD_RULES = ("linear_from_zero", "constant", "none")
#: Rules for the area after the last time point.
TAIL_RULES = ("monoexp", "physical")

_NEWTON_MAX_ITER = 30
_REL_TOL = 1e-7
_LOCAL_STEP = 0.25
_MAX_HALVINGS = 12
#: Voxels per chunk: 32768 × 4 points × 8 bytes = 1 MiB an array, in L2 (2 MiB a core here)
#: with the temporaries of an iteration; fewer chunks mean fewer per-iteration numpy calls,
#: each holding the interpreter lock between two released loops. On 128³ × 4 (one thread,
#: CPU time, paired rounds) 16384 took 0.84× the time of 8192 for the mono-exponential and
#: 0.92× for the trapezoid; with 2 threads (wall time, 7 paired rounds, 2-core VM) 32768
#: took 0.76× the time of 16384 for the mono-exponential and 0.81× for the trapezoid, and
#: 0.99× / 0.97× on one thread; 65536 was no faster than 32768. The numbers do not depend
#: on it (each voxel's arithmetic is its own; tests compare with the plain column fit).
_CHUNK_VOXELS = 1 << 15
#: fit_voxels leaves a chunk's columns still iterating to one final batch over all chunks once
#: fewer than 1/16 of the chunk's columns are (a few percent of noisy voxels need 5–20
#: iterations; per chunk, each of those iterations would cost ~50 numpy calls on a handful
#: of numbers).
_DEFER_FRACTION = 16


class VoxelFlag(enum.IntFlag):
    """Bits of the per-voxel ``flags`` map (``uint8``) returned with ``return_details``.

    Attributes
    ----------
    NO_WASHOUT : 1
        The fitted effective λ was below the physical λ; physical decay used instead.
    NONPOSITIVE_POINTS : 2
        At least one time point is zero or negative.
    ALL_NONPOSITIVE : 4
        No time point is positive; TIA set to 0.
    FALLBACK : 8
        Mono-exponential fit impossible (fewer than two positive points) or failed: TIA from
        the trapezoid with a linear head and a physical-decay tail (monoexp model), or a
        physical-decay tail because the tail points could not be fitted (trapezoid model).
    NOT_CONVERGED : 16
        Newton reached its iteration limit before the relative step in λ fell below 1e-7.
    LAMBDA_AT_UPPER_BOUND : 32
        The fitted λ hit :data:`LAMBDA_MAX_PER_H`.
    NEGATIVE_INTEGRAL : 64
        The integral of the voxel's data was negative (noise around zero): TIA set to 0,
        never returned as a negative activity.
    """

    NO_WASHOUT = 1
    NONPOSITIVE_POINTS = 2
    ALL_NONPOSITIVE = 4
    FALLBACK = 8
    NOT_CONVERGED = 16
    LAMBDA_AT_UPPER_BOUND = 32
    NEGATIVE_INTEGRAL = 64


@dataclass(frozen=True, eq=False)
class VoxelFitResult:
    """Per-voxel results of :func:`fit_voxels` with ``return_details=True``.

    Voxels outside the mask hold 0 in every map.

    Attributes
    ----------
    tia : numpy.ndarray
        Time-integrated activity (activity unit·h), shape ``(z, y, x)``.
    flags : numpy.ndarray
        ``uint8`` bit map of :class:`VoxelFlag`.
    lambda_eff_per_h : numpy.ndarray
        Effective decay constant of the fit (monoexp) or of the tail (trapezoid), h⁻¹;
        the physical λ where physical decay was used, 0 where there is no positive point.
    a0 : numpy.ndarray
        Fitted amplitude at t = 0 (monoexp); the last measured value (trapezoid).
    model, head, tail : str
        The settings used (``head``/``tail`` apply to the trapezoid and the fallback).
    lambda_phys_per_h : float
        Physical decay constant of the nuclide.
    """

    tia: np.ndarray
    flags: np.ndarray
    lambda_eff_per_h: np.ndarray
    a0: np.ndarray
    model: str
    head: str
    tail: str
    lambda_phys_per_h: float


# --------------------------------------------------------------------------- core numerics


def _bit(flag: VoxelFlag) -> np.uint8:
    return np.uint8(int(flag))


def point_weights(y: np.ndarray, weighting: str) -> np.ndarray:
    """Residual weights per point (1, 1/y², 1/y); points ``<= 0`` get weight 0 (excluded)."""
    pos = y > 0
    if weighting == "none":
        return pos.astype(float)
    safe = np.where(pos, y, 1.0)
    w = 1.0 / safe**2 if weighting == "relative" else 1.0 / safe
    return np.where(pos, w, 0.0)


def _projected_gain(y: np.ndarray, w: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``(Σw·y·e)² / Σw·e²``: Σw·y² minus this is the RSS at the best amplitude."""
    we = w * e
    num = np.einsum("ij,ij->j", we, y)
    den = np.einsum("ij,ij->j", we, e)
    num = np.maximum(num, 0.0)  # amplitudes are >= 0
    return np.where(den > 0, num * num / np.where(den > 0, den, 1.0), 0.0)


def _amplitude_given_lambda(y: np.ndarray, w: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Least-squares amplitude for fixed exponentials ``e`` (closed form)."""
    we = w * e
    num = np.einsum("ij,ij->j", we, y)
    den = np.einsum("ij,ij->j", we, e)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _time_powers(t_h: np.ndarray) -> np.ndarray:
    """Rows 1, t, t²: as matrix products they give the moments Σ(·), Σt(·), Σt²(·)."""
    return np.vstack([np.ones_like(t_h), t_h, t_h * t_h])


def _unit_exponents(t_h: np.ndarray, pos: np.ndarray, all_positive: bool) -> np.ndarray:
    """−t where a point has weight 1 and −∞ where it has weight 0 (unweighted fits).

    ``exp(−t·λ)`` of these is e where the weight is 1 and 0 where it is 0 (λ > 0), i.e. w·e
    to the bit, so the iterations need no multiplication by the weights. Shape ``(n, 1)``
    (−t for every column) when every point is positive, else ``(n, m)``.
    """
    ntt = -t_h[:, None]
    return ntt if all_positive else np.where(pos, ntt, -np.inf)


def _bits(mask: np.ndarray, flag: VoxelFlag) -> np.ndarray:
    """``flag`` where ``mask`` is true, else 0 (``uint8``; no boolean-index scatter)."""
    return mask.view(np.uint8) * _bit(flag)


def _loglinear_start(
    t_pow: np.ndarray, y: np.ndarray, wy: np.ndarray, pos: np.ndarray, fit: np.ndarray,
    lambda_phys_per_h: float,
) -> np.ndarray:  # fmt: skip
    """λ of the weighted log-linear regression on the positive points (weights w·y²).

    The start of :func:`fit_monoexp_columns`, clipped to the bounds; columns where ``fit`` is
    false get a meaningless value (they are not fitted). ``wy`` (= w·y) must be 0 at the
    non-positive points, as :func:`point_weights` makes it: their terms are then 0 whatever
    the finite value standing in for their logarithm.
    """
    u = wy * y
    # log(max(y, 5e-324)) is ln y at every positive point (no positive double is below the
    # smallest subnormal) and a finite number elsewhere, where u is 0
    z = np.maximum(y, 5e-324)
    np.log(z, out=z)
    mu = t_pow @ u
    z *= u
    mz = t_pow[:2] @ z
    s0 = mu[0] if fit.all() else np.where(fit, mu[0], 1.0)
    stt = mu[2] - mu[1] ** 2 / s0
    stz = mz[1] - mu[1] * mz[0] / s0
    if stt.min() > 0:
        lam = np.divide(stz, stt, out=stz)
    else:
        lam = np.where(stt > 0, stz / np.where(stt > 0, stt, 1.0), 0.0)
    # λ = −slope, clipped to the bounds (in place: np.clip's wrapper costs more than this)
    np.negative(lam, out=lam)
    np.maximum(lam, lambda_phys_per_h, out=lam)
    return np.minimum(lam, LAMBDA_MAX_PER_H, out=lam)


@dataclass
class _Pending:
    """Columns whose Newton iterations are left to a later batch (:func:`_finish_pending`).

    Attributes
    ----------
    cols : numpy.ndarray
        Their positions among the columns of the ``y`` they came from.
    lam : numpy.ndarray
        Their current λ.
    iterations : numpy.ndarray
        Newton iterations each has had.
    """

    cols: np.ndarray
    lam: np.ndarray
    iterations: np.ndarray

    def take(self, keep: np.ndarray) -> _Pending:
        """The columns selected by ``keep`` (index or boolean array)."""
        return _Pending(self.cols[keep], self.lam[keep], self.iterations[keep])


def _halve(
    t_h: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    step: np.ndarray,
    gain: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Step halving: the first of ``λ + step``, ``λ + step/2``, … (:data:`_MAX_HALVINGS` in
    all) whose projected gain is at least ``gain``, per column of ``y`` (data, weights ``w``).

    Returns the positions of the columns that found one and the λ found. The first trial is
    evaluated for every column, the remaining halvings of the (few) columns that failed it
    all at once: the same trial values (halving is exact in floating point) and the same
    choice as halving one at a time.
    """
    tt = t_h[:, None]
    lt = lam + step
    ok = _projected_gain(y, w, np.exp(-lt * tt)) >= gain
    found, lam_found = np.flatnonzero(ok), lt[ok]
    rest = np.flatnonzero(~ok)
    if rest.size == 0 or _MAX_HALVINGS < 2:
        return found, lam_found
    # rows j = 1 … _MAX_HALVINGS-1: λ + step·2^-j (exact: a power-of-two scaling)
    scale = np.ldexp(1.0, -np.arange(1, _MAX_HALVINGS))[:, None]
    lt = (lam[rest] + step[rest] * scale).reshape(-1)
    reps = scale.size
    gr = _projected_gain(
        np.tile(y[:, rest], reps), np.tile(w[:, rest], reps), np.exp(-lt * tt)
    ).reshape(reps, rest.size)
    better = gr >= gain[rest]
    hit = better.any(axis=0)
    first = better.argmax(axis=0)[hit]
    cols = rest[hit]
    lam_hit = lt.reshape(reps, rest.size)[first, np.flatnonzero(hit)]
    return np.concatenate([found, cols]), np.concatenate([lam_found, lam_hit])


def _newton(
    t_h: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    wy: np.ndarray,
    cols: np.ndarray | None,
    lam: np.ndarray,
    lambda_phys_per_h: float,
    ntw: np.ndarray | None,
    *,
    done: np.ndarray | None = None,
    defer: bool = False,
) -> tuple[np.ndarray, np.ndarray, _Pending | None]:
    """Safeguarded Newton iterations on λ for the columns ``cols`` of ``y`` (None: all).

    ``w`` are the weights and ``wy`` = w·y; ``ntw`` is None or, for weights that are all 0
    or 1 (:func:`_unit_exponents`), −t at the points of weight 1 and −∞ at the others;
    ``lam`` holds the start values of the columns and ``done`` the iterations each has had
    already (None: none). Returns the final λ of these columns, the positions (among them)
    of those that did not converge within :data:`_NEWTON_MAX_ITER` iterations, and the
    columns left to a later batch.

    With ``defer``, columns that need step halving (a Newton step over 25 % of λ or where
    g is not concave: a few percent of noisy voxels, each costing a dozen numpy calls on a
    handful of numbers) are not stepped but handed back as :class:`_Pending` with their
    current λ, and so are all columns still moving once fewer than 1/:data:`_DEFER_FRACTION`
    of the columns are; their entries in the returned λ are then placeholders. The batch
    that finishes them repeats the same iterations on the same numbers.
    """
    n = y.shape[0]
    k = lam.size
    lam = lam.copy()
    # Rows 1, −t, t² (for N) and 1, −t, 2·t² (for D): the moments Σ(·), −Σt(·) and Σt²(·) or
    # 2·Σt²(·); a sign and a power of two are exact, so they are those of rows 1, t, t²
    # times −1 or 2 to the bit, without the multiplications.
    n_pow = _time_powers(t_h)
    n_pow[1] *= -1.0
    d_pow = n_pow.copy()
    d_pow[2] *= 2.0
    ntt = -t_h[:, None]
    # Variable projection: for fixed λ the best amplitude is N/D (N = Σw·y·e, D = Σw·e²),
    # so the fit maximises g(λ) = N²/D. Safeguarded Newton on λ (quadratic convergence),
    # projected onto the bounds, on the voxels still moving. The iterations work on the
    # columns of `pos` (positions among the given columns); a column that has converged is
    # frozen (`live` false: its λ is no longer updated) and the arrays are compacted to the
    # live columns once fewer than 7/8 of them are live, so that neither a gather per
    # iteration nor the arithmetic of many frozen columns is paid (the voxels stopped at a
    # bound in the first iteration, about 10 % of noisy ones, leave at once: a compaction
    # costs about the arithmetic of 1/8 of the columns for one iteration).
    ycols = np.arange(y.shape[1]) if cols is None else cols
    pos = np.arange(k)
    wya = wy if cols is None else wy.take(cols, axis=1)
    # the weights themselves only when they are not folded into the exponents (below)
    wa = w if cols is None or ntw is not None else w.take(cols, axis=1)
    # exponents −t·λ, with −∞ (e = 0) at the points of weight 0 when the weights are 0 or 1:
    # then w·e² is e² and w·y·e is wy·e to the bit, without multiplying by w
    ta = ntt if ntw is None else ntw
    if cols is not None and ta.shape[1] > 1:
        ta = ta.take(cols, axis=1)
    counts = None if done is None else done.copy()  # per column, compacted with the rest
    defer_below = k // _DEFER_FRACTION if defer else 0
    la = lam
    live = np.ones(k, dtype=bool)
    n_live = k
    e4, p4 = np.empty((n, k)), np.empty((n, k))
    left: list[tuple[np.ndarray, np.ndarray, int]] = []  # (positions, λ, iterations had)
    stuck: list[np.ndarray] = []
    it = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        while n_live and (counts is not None or it < _NEWTON_MAX_ITER):
            if 8 * n_live < 7 * la.size:
                keep = np.flatnonzero(live)
                lam[pos] = la
                pos, la = pos[keep], la[keep]
                wya = wya.take(keep, axis=1)
                if ntw is None:
                    wa = wa.take(keep, axis=1)
                if ta.shape[1] > 1:
                    ta = ta.take(keep, axis=1)
                live = np.ones(keep.size, dtype=bool)
                e4, p4 = np.empty((n, keep.size)), np.empty((n, keep.size))
                if counts is not None:
                    counts = counts[keep]
            if n_live < defer_below:
                left.append((pos[live], la[live], it))
                live[:] = False
                break
            all_live = n_live == la.size
            # moments N, N' = −n1, N'' = n2 and D, D' = −2·d1, D'' = 4·d2 at λ
            ea = np.multiply(ta, la, out=e4)
            np.exp(ea, out=ea)
            nm = n_pow @ np.multiply(wya, ea, out=p4)
            np.multiply(ea, ea, out=ea)
            if ntw is None:
                np.multiply(wa, ea, out=ea)
            dm = d_pow @ ea
            # With n0 = Σw·y·e, n1 = Σt·w·y·e, n2 = Σt²·w·y·e and d0, d1, d2 the same sums of
            # w·e²: N = n0, N' = −n1, N'' = n2, D = d0, D' = −2·d1, D'' = 4·d2. g = u/D with
            # u = N²: g' = (u' − u·D'/D)/D and g'' ∝ u'' − u·D''/D − 2(D'/D)(u' − u·D'/D); the
            # Newton step −g'/g'' does not depend on the positive factor 1/D. Written as
            # q = 2·n0·(−n1) − u0·r1 (g'·D) and curv = 2·(n1² + n0·n2) − u0·(4·d2/dd) − 2·r1·q
            # (g''·D) with u0 = n0², r1 = −2·d1/dd, the step is −q/curv. Computed here: half of
            # each, hq = n0·(−n1) − u0·(−d1/dd) and hc = n1² + n0·n2 − u0·(2·d2/dd) − 4·s·hq
            # with s = −d1/dd: every factor 2 moved is a power of two, so hq = q/2 and
            # hc = curv/2 to the bit, and so is the step −hq/hc (fewer operations).
            mn1, n2 = nm[1], nm[2]  # −n1, n2
            n0 = nm[0]
            d0 = dm[0]
            dd = d0 if d0.min() > 0 else np.where(d0 > 0, d0, 1.0)
            s = np.divide(dm[1], dd)  # −d1/dd
            u0 = n0 * n0
            q = n0 * mn1  # hq
            tmp = np.multiply(u0, s)
            q -= tmp
            curv = mn1 * mn1  # hc
            np.multiply(n0, n2, out=tmp)
            curv += tmp
            np.divide(dm[2], dd, out=tmp)
            tmp *= u0
            curv -= tmp
            np.multiply(s, q, out=tmp)
            tmp *= 4.0
            curv -= tmp
            # Newton where g is concave with a positive amplitude, else a step of λ/2 uphill
            all_newton = curv.max() < 0 and n0.min() > 0
            if all_newton:
                newton = None
                ratio = np.divide(q, curv, out=curv)  # the step is −hq/hc
            else:
                newton = (curv < 0) & (n0 > 0)
                ratio = np.where(newton, q / np.where(newton, curv, -1.0), np.sign(q) * -0.5 * la)
            # Steps that would leave the bounds are cut at the bound; a non-finite step is 0.
            x = la - ratio
            lo, hi = x.min(), x.max()
            if not (lo >= lambda_phys_per_h and hi <= LAMBDA_MAX_PER_H):
                if not (np.isfinite(lo) and np.isfinite(hi)):  # NaN or ±inf: la is finite
                    fix = ~np.isfinite(ratio)
                    x[fix] = la[fix]
                if x.min() < lambda_phys_per_h:
                    np.maximum(x, lambda_phys_per_h, out=x)
                if x.max() > LAMBDA_MAX_PER_H:
                    np.minimum(x, LAMBDA_MAX_PER_H, out=x)
            step = np.subtract(x, la, out=ratio)
            # Newton steps below 25 % of λ where g is concave are taken directly (in the
            # quadratic basin g cannot even resolve them in floating point); larger steps must
            # not decrease g, else they are halved. A local step is at most a quarter of λ, so
            # λ + (x − λ) is x exactly (Sterbenz).
            size = np.abs(step, out=q)
            local = size <= np.multiply(la, _LOCAL_STEP, out=tmp)
            if newton is not None:
                local &= newton
            if not all_live:
                local &= live
            new_l = np.where(local, x, la)
            moved = size > np.multiply(la, _REL_TOL, out=tmp)
            moved &= local
            if np.count_nonzero(local) < n_live:  # live columns without a local step
                tried = step != 0
                tried &= ~local
                if not all_live:
                    tried &= live
                trial = np.flatnonzero(tried)
                if trial.size and defer:
                    left.append((pos[trial], la[trial], it))  # frozen here, λ unchanged
                elif trial.size:
                    at = ycols[pos[trial]]
                    lt0 = la[trial]
                    got, lt = _halve(
                        t_h,
                        y[:, at],
                        w[:, at],
                        lt0,
                        step[trial],
                        np.maximum(n0[trial], 0.0) ** 2 / dd[trial],
                    )
                    acc = trial[got]
                    new_l[acc] = lt
                    moved[acc] = np.abs(lt - lt0[got]) > _REL_TOL * lt0[got]
            la = new_l
            live = moved
            it += 1
            if counts is not None:
                counts += 1
                out = counts >= _NEWTON_MAX_ITER
                out &= live
                if out.any():
                    stuck.append(pos[out])
                    live &= ~out
            n_live = int(np.count_nonzero(live))
    lam[pos] = la
    stuck.append(pos[live])
    pending = None
    if left:
        pending = _Pending(
            np.concatenate([p for p, _, _ in left]),
            np.concatenate([v for _, v, _ in left]),
            np.concatenate([np.full(p.size, i) for p, _, i in left]),
        )
    return lam, np.concatenate(stuck), pending


def _finish(
    t_h: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    lam: np.ndarray,
    not_converged: np.ndarray,
    lambda_phys_per_h: float,
    ntw: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amplitude, λ and flags of fitted columns from their final λ (closed-form amplitude).

    ``ntw`` as for :func:`_newton` (then w·e is e to the bit).
    """
    e = np.multiply(-t_h[:, None] if ntw is None else ntw, lam)
    np.exp(e, out=e)
    we = e if ntw is not None else w * e
    num = np.einsum("ij,ij->j", we, y)
    den = np.einsum("ij,ij->j", we, e)
    if den.min() > 0:
        a = np.divide(num, den, out=num)
    else:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    flags = _bits(lam <= lambda_phys_per_h, VoxelFlag.NO_WASHOUT)
    flags |= _bits(lam >= LAMBDA_MAX_PER_H, VoxelFlag.LAMBDA_AT_UPPER_BOUND)
    if not_converged.size:
        flags[not_converged] |= _bit(VoxelFlag.NOT_CONVERGED)
    bad = a <= 0
    if not (np.isfinite(a.sum()) and np.isfinite(lam.sum())):  # NaN or ±inf somewhere
        bad |= ~(np.isfinite(a) & np.isfinite(lam))
    if bad.any():
        flags |= _bits(bad, VoxelFlag.FALLBACK)
        a[bad], lam[bad] = 0.0, 0.0
    return a, lam, flags


def _fit_monoexp(
    t_h: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    weighting: str,
    defer: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Pending | None]:
    """:func:`fit_monoexp_columns`, optionally leaving the few slow columns to the caller.

    With ``defer``, the columns that need step halving or many iterations (see
    :func:`_newton`) are returned as :class:`_Pending` (positions among the columns of
    ``y``; their a, λ and flags in the returned arrays are placeholders, except the
    NONPOSITIVE_POINTS bit): :func:`fit_voxels` gathers those of every chunk and finishes
    them in one batch (:func:`_finish_pending`), so that a few percent of slow voxels do not
    cost every chunk dozens of iterations of numpy calls on a handful of numbers.
    """
    n, m = y.shape
    pos = y > 0
    n_pos = np.count_nonzero(pos, axis=0)
    flags = _bits(n_pos < n, VoxelFlag.NONPOSITIVE_POINTS)
    flags |= _bits(n_pos == 0, VoxelFlag.ALL_NONPOSITIVE)
    w = point_weights(y, weighting)
    fit = n_pos >= 2
    if weighting != "none":  # a weight can underflow to 0 at a positive point
        fit &= np.count_nonzero(w, axis=0) >= 2
    flags |= _bits(~fit, VoxelFlag.FALLBACK)
    n_fit = int(np.count_nonzero(fit))
    if n_fit == 0:
        return np.zeros(m), np.zeros(m), flags, None
    # When most columns are fitted, all columns go through the iterations (no gather of the
    # fitted ones, no scatter back): a column with fewer than two positive points has a
    # gain g(λ) that does not depend on λ (one term), so its first Newton step is 0 and it
    # is frozen at once; its numbers are discarded below.
    dense = 4 * n_fit >= 3 * m
    idx = None if dense else np.flatnonzero(fit)
    # Computed on every column (no gather of the fitted ones: the others are not used).
    wy = w * y
    lf = _loglinear_start(_time_powers(t_h), y, wy, pos, fit, lambda_phys_per_h)
    if idx is not None:
        lf = lf[idx]
    # Two positive points inside the bounds are fitted exactly by the start.
    if n == 2:
        pf = pos if idx is None else pos[:, idx]
        todo = np.flatnonzero(
            (lf <= lambda_phys_per_h) | (lf >= LAMBDA_MAX_PER_H) | ~pf.all(axis=0)
        )
    else:
        todo = None
    ntw = _unit_exponents(t_h, pos, n_pos.min() == n) if weighting == "none" else None
    sub = idx if todo is None else (todo if idx is None else idx[todo])
    ls = lf if todo is None else lf[todo]
    ls, stuck, pending = _newton(t_h, y, w, wy, sub, ls, lambda_phys_per_h, ntw, defer=defer)
    if todo is None:
        lf = ls
    else:
        lf[todo] = ls
        stuck = todo[stuck]
    if pending is not None:
        pending.cols = pending.cols if todo is None else todo[pending.cols]
        if idx is not None:
            pending.cols = idx[pending.cols]
        elif n_fit < m:  # columns not fitted are discarded below, whatever their λ
            pending = pending.take(fit[pending.cols])
        if pending.cols.size == 0:
            pending = None
    if idx is None:
        af, lf, sub_flags = _finish(t_h, y, w, lf, stuck, lambda_phys_per_h, ntw)
        if n_fit < m:
            out = np.flatnonzero(~fit)
            af[out], lf[out], sub_flags[out] = 0.0, 0.0, 0
        a, lam = af, lf
        flags |= sub_flags
    else:
        af, lf, sub_flags = _finish(
            t_h,
            y[:, idx],
            w[:, idx],
            lf,
            stuck,
            lambda_phys_per_h,
            None if ntw is None or ntw.shape[1] == 1 else ntw[:, idx],
        )
        a, lam = np.zeros(m), np.zeros(m)
        a[idx], lam[idx] = af, lf
        flags[idx] |= sub_flags
    if pending is not None:  # placeholders until the batch finishes them
        flags[pending.cols] &= _bit(VoxelFlag.NONPOSITIVE_POINTS)
        a[pending.cols], lam[pending.cols] = 0.0, 0.0
    return a, lam, flags, pending


def _finish_pending(
    t_h: np.ndarray,
    y: np.ndarray,
    lam: np.ndarray,
    iterations: np.ndarray,
    lambda_phys_per_h: float,
    weighting: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finish the Newton iterations of deferred columns (:class:`_Pending`, gathered).

    ``y`` holds their data, ``lam`` their current λ and ``iterations`` the iterations each
    has had. Returns their amplitude, λ and flags (without NONPOSITIVE_POINTS, which the
    chunk that deferred them has set): what :func:`fit_monoexp_columns` returns for them.
    """
    w = point_weights(y, weighting)
    pos = y > 0
    ntw = _unit_exponents(t_h, pos, bool(pos.all())) if weighting == "none" else None
    lam, stuck, _ = _newton(t_h, y, w, w * y, None, lam, lambda_phys_per_h, ntw, done=iterations)
    return _finish(t_h, y, w, lam, stuck, lambda_phys_per_h, ntw)


def fit_monoexp_columns(
    t_h: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    weighting: str = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit ``a·e^(−λt)`` to every column of ``y`` (vectorised; see the module docstring).

    Parameters
    ----------
    t_h : numpy.ndarray
        Sampling times (h), shape ``(n,)``, validated.
    y : numpy.ndarray
        Activities, shape ``(n, m)``.
    lambda_phys_per_h : float
        Lower bound of λ.
    weighting : {"none", "relative", "poisson"}
        Residual weights.

    Returns
    -------
    a, lambda_per_h : numpy.ndarray
        Shape ``(m,)``; 0 where the fit was impossible.
    flags : numpy.ndarray
        ``uint8`` :class:`VoxelFlag` bits (``FALLBACK`` marks columns not fitted).
    """
    a, lam, flags, _ = _fit_monoexp(t_h, y, lambda_phys_per_h, weighting)
    return a, lam, flags


def _head_area(t0_h: float, y0: np.ndarray, head: str) -> np.ndarray:
    if head == "linear_from_zero":
        return 0.5 * y0 * t0_h
    if head == "constant":
        return y0 * t0_h
    return np.zeros_like(y0)


#: Largest λ·t of the two-point shortcut: w·e^(−2λt) >= 1e-60·e^(−400) ≈ 1e-234 (w >= 1e-60
#: for |y| <= 1e30) cannot underflow, so the amplitude is positive and finite; beyond it
#: :func:`fit_monoexp_columns` decides.
_TWO_POINT_MAX_EXPONENT = 200.0


def _two_point_tail(
    t_h: np.ndarray, y: np.ndarray, lambda_phys_per_h: float, weighting: str
) -> tuple[np.ndarray, np.ndarray]:
    """λ and flags of :func:`fit_monoexp_columns` on two points, without its iterations.

    Two positive points whose start λ (the same weighted log-linear regression,
    :func:`_loglinear_start`, the same arithmetic) lies strictly inside the bounds are fitted
    exactly by it: :func:`fit_monoexp_columns` runs no Newton iteration on them and flags
    nothing, as long as its amplitude is positive and finite, which ``λ·t <
    _TWO_POINT_MAX_EXPONENT`` guarantees (no underflow of ``w·e^(−2λt)``). Two positive
    points that clearly do not wash out get λ_phys and ``NO_WASHOUT``, where its first
    projected Newton step stops (comment below). Every other column is passed to
    :func:`fit_monoexp_columns` itself: the same λ and flags.
    """
    pos = y > 0
    both = pos[0] & pos[1]
    w = point_weights(y, weighting)
    lam = _loglinear_start(_time_powers(t_h), y, w * y, pos, both, lambda_phys_per_h)
    easy = (
        both
        & (lam > lambda_phys_per_h)
        & (lam < LAMBDA_MAX_PER_H)
        & (lam * t_h[1] < _TWO_POINT_MAX_EXPONENT)
    )
    flags = np.zeros(y.shape[1], dtype=np.uint8)
    # Two positive points whose exact fit decays slower than the nuclide (start clipped at
    # λ_phys): the gain g(λ) of two points has a single maximum (at the exact fit), so where
    # g decreases at λ_phys the bounded optimum is λ_phys itself — which is where
    # fit_monoexp_columns' first projected Newton step stops (step clipped to 0), flagging
    # NO_WASHOUT. With the moments n0 = N = Σw·y·e, n1 = Σt·w·y·e, d0 = D = Σw·e² and
    # d1 = Σt·w·e² (N' = −n1, D' = −2·d1), g' = (2N·N' − N²·D'/D)/D = 2·n0·(n0·d1/d0 − n1)/D
    # has the sign of n0·d1/d0 − n1 (n0 > 0 for two positive points). Only a clearly
    # negative slope is taken here (a relative margin of 1e-9, far above rounding); the
    # others go through fit_monoexp_columns.
    low = np.flatnonzero(both & (lam <= lambda_phys_per_h))
    if low.size:
        e = np.exp(-lambda_phys_per_h * t_h)[:, None]
        wl = w[:, low]
        wye = wl * y[:, low] * e
        we2 = wl * (e * e)
        n0, n1 = wye.sum(axis=0), t_h @ wye
        slope = n0 * (t_h @ we2) / we2.sum(axis=0) - n1
        sure = low[slope < -1e-9 * np.abs(n1)]
        flags[sure] = _bit(VoxelFlag.NO_WASHOUT)
        easy[sure] = True
    hard = np.flatnonzero(~easy)
    if hard.size:
        _, lam_h, flags_h = fit_monoexp_columns(t_h, y[:, hard], lambda_phys_per_h, weighting)
        lam[hard], flags[hard] = lam_h, flags_h
    return lam, flags


def trapezoid_columns(
    t_h: np.ndarray,
    y: np.ndarray,
    lambda_phys_per_h: float,
    *,
    head: str = "linear_from_zero",
    tail: str = "monoexp",
    tail_points: int = 2,
    weighting: str = "none",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trapezoid TIA of every column of ``y`` (see the module docstring for the rules).

    Returns
    -------
    tia : numpy.ndarray
        Shape ``(m,)``, activity unit·h.
    lambda_tail_per_h : numpy.ndarray
        Decay constant used for the tail (physical where physical decay was used).
    flags : numpy.ndarray
        ``uint8`` :class:`VoxelFlag` bits.
    """
    m = y.shape[1]
    flags = np.zeros(m, dtype=np.uint8)
    n_pos = (y > 0).sum(axis=0)
    flags[n_pos < y.shape[0]] |= _bit(VoxelFlag.NONPOSITIVE_POINTS)
    flags[n_pos == 0] |= _bit(VoxelFlag.ALL_NONPOSITIVE)
    area = _head_area(float(t_h[0]), y[0], head)
    if y.shape[0] > 1:
        area = area + np.trapezoid(y, t_h, axis=0)
    lam = np.full(m, lambda_phys_per_h)
    if tail == "monoexp":
        if tail_points == 2:
            lam_fit, tflags = _two_point_tail(t_h[-2:], y[-2:], lambda_phys_per_h, weighting)
        else:
            _, lam_fit, tflags = fit_monoexp_columns(
                t_h[-tail_points:], y[-tail_points:], lambda_phys_per_h, weighting
            )
        usable = (tflags & _bit(VoxelFlag.FALLBACK)) == 0
        lam = np.where(usable, lam_fit, lambda_phys_per_h)
        flags |= tflags & _bit(VoxelFlag.NO_WASHOUT | VoxelFlag.LAMBDA_AT_UPPER_BOUND)
        flags |= tflags & _bit(VoxelFlag.NOT_CONVERGED)
        flags[~usable & (n_pos > 0)] |= _bit(VoxelFlag.FALLBACK)
    y_last = y[-1]
    tail_area = np.where(y_last > 0, y_last / lam, 0.0)
    tia = np.where(n_pos > 0, area + tail_area, 0.0)
    lam = np.where(n_pos > 0, lam, 0.0)
    return tia, lam, flags


# --------------------------------------------------------------------------- public entry


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` consecutive (start, stop) ranges covering ``range(n)``, sizes within 1."""
    edges = [n * i // parts for i in range(parts + 1)]
    return list(pairwise(edges))


def _check_volume(times: np.ndarray, activity_4d: object, mask: object):
    try:
        a = np.asarray(activity_4d)
    except (TypeError, ValueError) as exc:
        raise KineticsError(f"activity_4d must be an array of numbers: {exc}") from exc
    if a.ndim != 4:
        raise KineticsError(f"activity_4d must have shape (time, z, y, x), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise KineticsError(f"activity_4d must hold real numbers, got dtype {a.dtype}")
    if a.shape[0] != times.size:
        raise KineticsError(
            f"activity_4d has {a.shape[0]} time frames but times_h has {times.size}"
        )
    if mask is None:
        return a, None
    m = np.asarray(mask)
    if m.shape != a.shape[1:]:
        raise KineticsError(f"mask must have shape {a.shape[1:]} (z, y, x), got {m.shape}")
    if m.dtype != bool:
        if not np.all(np.isin(m, (0, 1))):
            raise KineticsError("mask must be boolean (or 0/1)")
        m = m.astype(bool)
    return a, m


#: Environment variable capping the default thread count (set by the cohort runner in
#: each worker process so that N processes × threads do not oversubscribe the cores).
THREADS_ENV = "HARMONIZE_NUM_THREADS"


def _n_threads(n_threads: int | None) -> int:
    if n_threads is None:
        capped = os.environ.get(THREADS_ENV, "").strip()
        if capped.isdigit() and int(capped) >= 1:
            return int(capped)
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not on Linux
            return max(1, os.cpu_count() or 1)
    if not isinstance(n_threads, int) or n_threads < 1:
        raise KineticsError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    return n_threads


@overload
def fit_voxels(
    times_h: object,
    activity_4d: object,
    model: str = ...,
    nuclide: str | Nuclide = ...,
    mask: object = ...,
    *,
    weighting: str = ...,
    head: str = ...,
    tail: str = ...,
    tail_points: int = ...,
    return_details: Literal[False] = ...,
    n_threads: int | None = ...,
) -> np.ndarray: ...


@overload
def fit_voxels(
    times_h: object,
    activity_4d: object,
    model: str = ...,
    nuclide: str | Nuclide = ...,
    mask: object = ...,
    *,
    weighting: str = ...,
    head: str = ...,
    tail: str = ...,
    tail_points: int = ...,
    return_details: Literal[True],
    n_threads: int | None = ...,
) -> VoxelFitResult: ...


@overload
def fit_voxels(
    times_h: object,
    activity_4d: object,
    model: str = ...,
    nuclide: str | Nuclide = ...,
    mask: object = ...,
    *,
    weighting: str = ...,
    head: str = ...,
    tail: str = ...,
    tail_points: int = ...,
    return_details: bool = ...,
    n_threads: int | None = ...,
) -> np.ndarray | VoxelFitResult: ...


def fit_voxels(
    times_h: object,
    activity_4d: object,
    model: str = "monoexp",
    nuclide: str | Nuclide = "Lu-177",
    mask: object = None,
    *,
    weighting: str = "none",
    head: str = "linear_from_zero",
    tail: str = "monoexp",
    tail_points: int = 2,
    return_details: bool = False,
    n_threads: int | None = None,
) -> np.ndarray | VoxelFitResult:
    """Time-integrated activity of every voxel of a registered 4-D activity series.

    Parameters
    ----------
    times_h : array_like
        Sampling times after administration (h), sorted, distinct, >= 0.
    activity_4d : array_like
        Activity (any unit, e.g. MBq per voxel or Bq/mL), shape ``(time, z, y, x)``.
    model : {"monoexp", "trapezoid"}
        Voxel model (module docstring).
    nuclide : str or Nuclide
        Radionuclide whose physical λ bounds the effective λ and sets the physical tail.
    mask : array_like of bool, optional
        Shape ``(z, y, x)``; only voxels in the mask are computed, others are 0.
    weighting : {"none", "relative", "poisson"}
        Residual weights of the mono-exponential fits (1, 1/y², 1/y).
    head : {"linear_from_zero", "constant", "none"}
        Area 0 → first time point (trapezoid model and monoexp fallback).
    tail : {"monoexp", "physical"}
        Tail after the last point (trapezoid model).
    tail_points : int
        Number of last points the tail mono-exponential is fitted on (>= 2).
    return_details : bool
        Return a :class:`VoxelFitResult` instead of the TIA map.
    n_threads : int, optional
        Threads over voxel chunks (default: the CPUs this process may use).

    Returns
    -------
    numpy.ndarray or VoxelFitResult
        TIA map ``(z, y, x)`` in activity unit·h (float64), or the detailed result.

    Raises
    ------
    KineticsError
        On shapes that do not match, bad times, NaN/inf activity, unknown options.
    """
    times = check_times(times_h)
    model = check_choice("model", model, VOXEL_MODELS)
    weighting = check_choice("weighting", weighting, WEIGHTINGS)
    head = check_choice("head", head, HEAD_RULES)
    tail = check_choice("tail", tail, TAIL_RULES)
    a4, m = _check_volume(times, activity_4d, mask)
    check_time_scale(times, nuclide)
    if m is not None:  # outside the mask too (without a mask, the chunks check as they go)
        check_activity_magnitude(a4, name="activity_4d")
    need = 2 if model == "monoexp" else 1
    if times.size < need:
        raise KineticsError(f"model {model!r} needs at least {need} time points, got {times.size}")
    if tail == "monoexp" and model == "trapezoid":
        if not isinstance(tail_points, int | np.integer) or not 2 <= tail_points <= times.size:
            raise KineticsError(
                f"tail_points must be an integer in [2, {times.size}] (number of time points), "
                f"got {tail_points!r}"
            )
    lam_phys = physical_lambda_per_h(nuclide)
    threads = _n_threads(n_threads)

    spatial = a4.shape[1:]
    flat = a4.reshape(a4.shape[0], -1)
    sel = None if m is None else np.flatnonzero(m.reshape(-1))
    n_vox = flat.shape[1] if sel is None else sel.size
    tia = np.zeros(flat.shape[1])
    lam = np.zeros(flat.shape[1])
    a0 = np.zeros(flat.shape[1])
    flags = np.zeros(flat.shape[1], dtype=np.uint8)
    bad_chunks: list[int] = []
    peaks: list[float] = []  # largest |activity| of each chunk
    overflow: list[int] = []
    # (voxel positions, their data, λ, iterations done) of the fits left to the final batch,
    # and (voxel positions, their data) of the mono-exponential fallbacks
    deferred: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    fallback: list[tuple[np.ndarray, np.ndarray]] = []

    def store(
        where: slice | np.ndarray,
        tv: np.ndarray,
        lv: np.ndarray,
        av: np.ndarray,
        fv: np.ndarray,
        first: bool,
    ) -> None:
        # TIA, λ, a0 and flags of the voxels `where`; a chunk's own (first) or added later
        if not np.isfinite(tv.sum()) and not np.all(np.isfinite(tv)):
            overflow.append(1)
        negative = tv < 0  # a negative integral is noise, never an activity
        if negative.any():
            tv[negative] = 0.0
            fv |= _bits(negative, VoxelFlag.NEGATIVE_INTEGRAL)
        tia[where], lam[where], a0[where] = tv, lv, av
        if first:
            flags[where] = fv
        else:  # voxels finished after their chunk: add to the chunk's flags
            flags[where] |= fv

    def monoexp_tia(av: np.ndarray, lv: np.ndarray, fv: np.ndarray) -> np.ndarray:
        # FALLBACK columns have λ = 0, so TIA 0 until the fallback batch sets theirs
        return np.divide(av, lv, out=np.zeros_like(av), where=lv > 0)

    def work(start: int) -> None:
        stop = min(start + _CHUNK_VOXELS, n_vox)
        # a slice when there is no mask: no index array, no fancy-index copy or scatter
        cols = slice(start, stop) if sel is None else sel[start:stop]
        y = np.asarray(flat[:, cols], dtype=float)
        # min and max are NaN or ±inf if any value is: finite extremes prove every value
        # finite, and give the chunk's largest |activity| (the magnitude check of the volume,
        # here on data in cache rather than two passes over the volume beforehand)
        lo, hi = float(y.min()), float(y.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            bad_chunks.append(start)
            return
        peak = max(-lo, hi)
        peaks.append(peak)
        if peak > MAX_ABS_ACTIVITY:
            return  # refused below, unfitted
        if model == "monoexp":
            av, lv, fv, pending = _fit_monoexp(times, y, lam_phys, weighting, defer=True)
            tv = monoexp_tia(av, lv, fv)
            where = np.arange(start, stop) if sel is None else sel[start:stop]
            if pending is not None:
                deferred.append(
                    (where[pending.cols], y[:, pending.cols], pending.lam, pending.iterations)
                )
            fb = np.flatnonzero(fv & _bit(VoxelFlag.FALLBACK))
            if fb.size:
                fallback.append((where[fb], y[:, fb]))
        else:
            tv, lv, fv = trapezoid_columns(
                times,
                y,
                lam_phys,
                head=head,
                tail=tail,
                tail_points=tail_points,
                weighting=weighting,
            )
            av = y[-1]
        store(cols, tv, lv, av, fv, True)

    def finish(part: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        where, y, lam_now, iterations = part
        av, lv, fv = _finish_pending(times, y, lam_now, iterations, lam_phys, weighting)
        store(where, monoexp_tia(av, lv, fv), lv, av, fv, False)
        fb = np.flatnonzero(fv & _bit(VoxelFlag.FALLBACK))
        if fb.size:
            fallback.append((where[fb], y[:, fb]))

    starts = range(0, n_vox, _CHUNK_VOXELS)
    pool = None
    if threads > 1 and n_vox > _CHUNK_VOXELS:
        pool = ThreadPoolExecutor(max_workers=threads)
    try:
        if pool is None:
            for s in starts:
                work(s)
        else:
            list(pool.map(work, starts))
        if bad_chunks:
            raise KineticsError("activity_4d contains NaN or infinite values (inside the mask)")
        if m is None:
            check_peak_magnitude(max(peaks, default=0.0), name="activity_4d")
        if deferred:
            # the slow voxels of every chunk, finished together (the same iterations on the
            # same numbers)
            where = np.concatenate([d[0] for d in deferred])
            y = np.concatenate([d[1] for d in deferred], axis=1)
            lam_now = np.concatenate([d[2] for d in deferred])
            iterations = np.concatenate([d[3] for d in deferred])
            # in parts of at most a chunk (in cache, like the chunks); the same parts whatever
            # the number of threads, so that the numbers do not depend on it
            n_parts = -(-where.size // _CHUNK_VOXELS)
            parts = [
                (where[s], np.ascontiguousarray(y[:, s]), lam_now[s], iterations[s])
                for s in (slice(*b) for b in _bounds(where.size, n_parts))
            ]
            if pool is None or n_parts == 1:
                for part in parts:
                    finish(part)
            else:
                list(pool.map(finish, parts))
    finally:
        if pool is not None:
            pool.shutdown()
    if fallback:
        # mono-exponential impossible or failed: the trapezoid with a physical tail
        where = np.concatenate([f[0] for f in fallback])
        y = np.concatenate([f[1] for f in fallback], axis=1)
        tv, lv, fv = trapezoid_columns(
            times, np.maximum(y, 0.0), lam_phys, head=head, tail="physical"
        )
        store(where, tv, lv, y[-1], fv, False)
    if overflow:
        raise KineticsError("the voxel TIA is not finite (overflow): check the activity unit")
    if not return_details:
        return tia.reshape(spatial)
    return VoxelFitResult(
        tia=tia.reshape(spatial),
        flags=flags.reshape(spatial),
        lambda_eff_per_h=lam.reshape(spatial),
        a0=a0.reshape(spatial),
        model=model,
        head=head,
        tail=tail,
        lambda_phys_per_h=lam_phys,
    )
