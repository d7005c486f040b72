"""Fast parametric imaging: effective Gaussian resolution and correlated, count-driven noise.

The full simulation (:mod:`harmonize.imaging.osem`) costs seconds to minutes per image;
tests and the demo use this stand-in whose three parameters are *measured* on the full
simulation for each centre profile (``benchmarks/bench_imaging.py --calibrate`` writes them
into the profile's ``fast`` block):

* resolution, without resolution modelling (the profile's ``resolution_modelling`` false):
  an isotropic Gaussian core of ``effective_fwhm_mm`` plus, optionally, a wider Gaussian
  tail of ``tail_fwhm_mm`` carrying ``tail_fraction`` of the counts — OSEM without
  resolution modelling converges towards the object blurred by the camera;
* resolution, with resolution modelling (``rl_iterations`` > 0): the object blurred by a
  Gaussian of ``effective_fwhm_mm`` is deconvolved by ``rl_iterations`` Richardson–Lucy
  iterations with that same Gaussian, from a uniform start, then filtered by the
  profile's post-filter. Richardson–Lucy is ML-EM whose system matrix is the blur
  (Richardson, JOSA 1972;62:55; Lucy, AJ 1974;79:745; Shepp & Vardi, IEEE TMI
  1982;1:113): it reproduces what no linear, stationary blur can — the recovery of
  resolution-modelled OSEM stopped early rises with object size far more steeply than a
  Gaussian's (large objects converge within a few updates, small ones need hundreds),
  its edge overshoot, and its dependence on contrast. The tomographic part of the full
  chain (attenuation, the orbit) converges fast at the low frequencies that matter here
  and is not modelled. ``effective_fwhm_mm`` and ``rl_iterations`` are the best match
  of the full chain's NEMA sphere RCs (``benchmarks/bench_imaging.py``), not the
  profile's nominal values: EM with subsets and a projector converges at its own pace;
* noise: the EM reconstruction's voxel variance is close to proportional to the voxel's
  mean (Barrett, Wilson & Tsui, Phys Med Biol 1994;39:833), so the relative variance is
  ``CoV² = g / N`` with N = S·T·a the counts the voxel's own activity a (MBq, after the
  blur) would give over the whole acquisition (S cps/MBq, T s) and g the measured gain;
* noise texture: Gaussian-correlated with the measured autocorrelation FWHM. White
  normal noise is smoothed and renormalised to unit variance, and enters multiplicatively
  through a log-normal, ``image = m · exp(σ n − σ²/2)`` with ``σ² = ln(1 + CoV²)``, so the
  image keeps its mean, has the wanted variance and, like an OSEM image, is never negative.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from harmonize.imaging.profile import CentreProfile

__all__ = [
    "MAX_COV",
    "correlated_unit_noise",
    "fast_image",
    "fast_mean_image",
    "richardson_lucy",
]

#: Largest relative noise (CoV) of a voxel in the fast mode [assumed].
MAX_COV = 3.0

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def correlated_unit_noise(
    shape: tuple[int, ...], correlation_fwhm_vox: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise with a Gaussian autocorrelation.

    White noise smoothed by a Gaussian of standard deviation s has an autocorrelation of
    standard deviation s·√2; the smoothing width is chosen so that the autocorrelation has
    FWHM ``correlation_fwhm_vox``. The variance is restored exactly using the discrete
    kernel's sum of squares.
    """
    white = rng.standard_normal(shape).astype(np.float32)
    if correlation_fwhm_vox <= 0:
        return white
    s = correlation_fwhm_vox * _FWHM_TO_SIGMA / math.sqrt(2.0)
    smooth = ndimage.gaussian_filter(white, s, mode="wrap")
    impulse = np.zeros((int(8 * s) * 2 + 1,) * len(shape), dtype=np.float64)
    impulse[(impulse.shape[0] // 2,) * len(shape)] = 1.0
    kernel = ndimage.gaussian_filter(impulse, s, mode="constant")
    return (smooth / math.sqrt(float((kernel**2).sum()))).astype(np.float32)


def _blur(image: np.ndarray, fwhm_vox: float) -> np.ndarray:
    if fwhm_vox <= 0:
        return image
    return ndimage.gaussian_filter(image, fwhm_vox * _FWHM_TO_SIGMA, mode="constant", truncate=4.0)


def richardson_lucy(
    data: np.ndarray,
    fwhm_vox: float,
    iterations: int,
    callback: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """ML-EM deconvolution of ``data`` by an isotropic Gaussian (Richardson–Lucy).

    ``x ← x · Hᵀ(data / H x) / Hᵀ1`` from a uniform start with the data's total, H the
    Gaussian blur with zero outside the grid (symmetric, so Hᵀ = H). ``callback(k, x)``
    is called after iteration k (1-based) with the current estimate (do not modify it).
    """
    b = np.clip(np.asarray(data, dtype=np.float32), 0.0, None)
    norm = _blur(np.ones_like(b), fwhm_vox)  # Hᵀ1: below 1 within the kernel of an edge
    x = np.full_like(b, float(b.sum()) / max(float(norm.sum()), 1e-30))
    for k in range(1, int(iterations) + 1):
        estimate = _blur(x, fwhm_vox)
        ratio = np.divide(b, estimate, out=np.zeros_like(b), where=estimate > 0)
        x = x * _blur(ratio, fwhm_vox) / norm
        if callback is not None:
            callback(k, x)
    return x


def fast_mean_image(
    concentration_bq_ml: np.ndarray, voxel_size_mm: float, profile: CentreProfile
) -> np.ndarray:
    """The fast mode's noise-free image (Bq/mL, float32): resolution only."""
    fast = profile.require_fast()
    conc = np.asarray(concentration_bq_ml, dtype=np.float32)
    core_vox = fast.effective_fwhm_mm / voxel_size_mm
    mean = _blur(conc, core_vox)
    if fast.tail_fraction != 0:
        tail = _blur(conc, fast.tail_fwhm_mm / voxel_size_mm)
        mean = (1.0 - fast.tail_fraction) * mean + fast.tail_fraction * tail
    if fast.rl_iterations > 0:
        mean = richardson_lucy(mean, core_vox, fast.rl_iterations)
        mean = _blur(mean, profile.post_filter_fwhm_mm / voxel_size_mm)
    return np.clip(mean, 0.0, None).astype(np.float32)


def fast_image(
    concentration_bq_ml: np.ndarray,
    voxel_size_mm: float,
    profile: CentreProfile,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """True activity concentration → the profile's image in the fast mode (Bq/mL).

    ``rng=None`` gives the noise-free (blurred) image.
    """
    fast = profile.require_fast()
    mean32 = fast_mean_image(concentration_bq_ml, voxel_size_mm, profile)
    if rng is None:
        return mean32
    mean = mean32.astype(np.float64)
    voxel_ml = voxel_size_mm**3 / 1000.0
    counts = mean * voxel_ml * 1e-6 * profile.system_sensitivity_cps_per_mbq * profile.acquisition_s
    cov2 = np.divide(fast.noise_gain, counts, out=np.zeros_like(counts), where=counts > 0)
    # nearly empty voxels: the relative noise is capped at 300 % [assumed] (their absolute
    # noise, m·CoV, still vanishes with m, as in EM images)
    cov2 = np.minimum(cov2, MAX_COV**2)
    s2 = np.log1p(cov2)
    noise = correlated_unit_noise(
        mean.shape, fast.noise_correlation_fwhm_mm / voxel_size_mm, rng
    ).astype(np.float64)
    return (mean * np.exp(np.sqrt(s2) * noise - 0.5 * s2)).astype(np.float32)
