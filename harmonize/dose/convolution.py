"""Dose by convolution of the time-integrated activity map with a dose-voxel kernel.

``D = TIA ⊛ S``: one linear FFT convolution (:func:`scipy.signal.fftconvolve`, which pads
to the full linear size, so nothing wraps around) of the TIA map (MBq·h per voxel) with the
kernel of :func:`harmonize.dose.voxel_kernel` (mGy/(MBq·s)); ``Gy = MBq·h × 3600 s/h ×
mGy/(MBq·s) × 1e-3``. Outside the map the medium is assumed to hold no activity.

Density correction (optional): the kernel is for a uniform medium of density ρ_k (1.04 g/mL
soft tissue, 1.85 g/mL bone). With ``density_g_ml`` given, the dose of each target voxel is
scaled by ρ_k/ρ (the energy is deposited in a voxel of a different mass); transport
distances are not rescaled. This is the usual first-order density correction of kernel
dosimetry; it is meaningless in air (very low ρ), where the dose is formally very large.

Examples
--------
>>> import numpy as np
>>> from harmonize import dose
>>> tia = np.zeros((15, 15, 15)); tia[7, 7, 7] = 1.0          # 1 MBq·h in one voxel
>>> d = dose.convolve_kernel(tia, 4.8)
>>> round(float(d[7, 7, 7]), 4)                              # 3.6 × 0.178 mGy
0.6408
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from harmonize.dose._common import (
    SECONDS_PER_HOUR,
    DoseInputError,
    as_voxel_size_mm,
    check_finite_nonnegative,
)
from harmonize.dose.kernels import MEDIUM_DENSITY_G_ML, voxel_kernel

__all__ = ["convolve_kernel"]


def convolve_kernel(
    tia_mbq_h_map: npt.ArrayLike,
    voxel_size_mm: float | Sequence[float],
    nuclide: str = "Lu-177",
    medium: str = "soft_tissue",
    density_g_ml: float | npt.ArrayLike | None = None,
    *,
    workers: int | None = None,
) -> np.ndarray:
    """Absorbed dose (Gy) by dose-voxel-kernel convolution.

    Parameters
    ----------
    tia_mbq_h_map : array_like
        3-D time-integrated activity per voxel, MBq·h, axes (z, y, x), ≥ 0.
    voxel_size_mm : float or (dz, dy, dx)
        Voxel size in mm (see :func:`harmonize.dose.voxel_kernel` for non-tabulated sizes).
    nuclide, medium : str
        Kernel nuclide and medium.
    density_g_ml : float or array_like, optional
        Mass density per voxel (or one value); if given the dose is scaled by
        ρ_medium/ρ per voxel (see the module docstring). None: no correction.
    workers : int, optional
        Threads for the FFT (:func:`scipy.fft.set_workers`); default this process's share
        of the cores (:func:`harmonize._threads.thread_share`: every core, or the cohort
        runner's share per worker process). The result does not depend on it (pocketfft
        splits the independent 1-D transforms between threads).

    Returns
    -------
    numpy.ndarray
        Dose map in Gy, same shape as the TIA map.
    """
    tia = np.asarray(tia_mbq_h_map, dtype=float)
    if tia.ndim != 3:
        raise DoseInputError(f"tia_mbq_h_map must be a 3-D array (z, y, x), got shape {tia.shape}")
    check_finite_nonnegative("tia_mbq_h_map", tia)
    d = as_voxel_size_mm(voxel_size_mm)
    kernel = voxel_kernel(d, nuclide, medium)
    import scipy.fft
    from scipy.signal import fftconvolve  # here: importing scipy.signal costs ~1 s of start-up

    from harmonize._threads import thread_share

    with scipy.fft.set_workers(workers if workers is not None else thread_share()):
        conv = fftconvolve(tia, kernel, mode="same")
    # FFT round-off can leave values of order 1e-16 x max below zero where the true dose is 0.
    np.maximum(conv, 0.0, out=conv)
    dose_gy = conv * (SECONDS_PER_HOUR * 1e-3)
    if density_g_ml is not None:
        rho = np.asarray(density_g_ml, dtype=float)
        if not np.all(np.isfinite(rho)) or np.any(rho <= 0):
            raise DoseInputError("density_g_ml must be finite and > 0 everywhere")
        if rho.ndim and rho.shape != tia.shape:
            raise DoseInputError(
                f"density_g_ml shape {rho.shape} differs from the TIA map shape {tia.shape}"
            )
        dose_gy *= MEDIUM_DENSITY_G_ML[medium] / rho
    return dose_gy
