"""Fast parametric imaging: effective Gaussian resolution and correlated, count-driven noise.

The full simulation (:mod:`harmonize.imaging.osem`) costs seconds to minutes per image;
tests and the demo use this stand-in whose three parameters are *measured* on the full
simulation for each centre profile (``benchmarks/bench_imaging.py --calibrate`` writes them
into the profile's ``fast`` block):

* resolution: an isotropic Gaussian core of ``effective_fwhm_mm`` plus, optionally, a wider
  Gaussian tail carrying ``tail_fraction`` of the counts — resolution-modelled OSEM stopped
  after a few iterations leaves such a halo, which a single Gaussian cannot reproduce (its
  small spheres recover far less than a Gaussian of the large spheres' width predicts).
  The three numbers are the best match of the full chain's NEMA sphere RCs;
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

import numpy as np
from scipy import ndimage

from harmonize.imaging.profile import CentreProfile

__all__ = ["MAX_COV", "correlated_unit_noise", "fast_image"]

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
    conc = np.asarray(concentration_bq_ml, dtype=np.float64)
    mean = _blur(conc, fast.effective_fwhm_mm / voxel_size_mm)
    if fast.tail_fraction > 0:
        tail = _blur(conc, fast.tail_fwhm_mm / voxel_size_mm)
        mean = (1.0 - fast.tail_fraction) * mean + fast.tail_fraction * tail
    mean = np.clip(mean, 0.0, None)
    if rng is None:
        return mean.astype(np.float32)
    voxel_ml = voxel_size_mm**3 / 1000.0
    counts = mean * voxel_ml * 1e-6 * profile.system_sensitivity_cps_per_mbq * profile.acquisition_s
    cov2 = np.divide(fast.noise_gain, counts, out=np.zeros_like(counts), where=counts > 0)
    # nearly empty voxels: the relative noise is capped at 300 % [assumed] (their absolute
    # noise, m·CoV, still vanishes with m, as in EM images)
    cov2 = np.minimum(cov2, MAX_COV**2)
    s2 = np.log1p(cov2)
    noise = correlated_unit_noise(
        conc.shape, fast.noise_correlation_fwhm_mm / voxel_size_mm, rng
    ).astype(np.float64)
    return (mean * np.exp(np.sqrt(s2) * noise - 0.5 * s2)).astype(np.float32)
