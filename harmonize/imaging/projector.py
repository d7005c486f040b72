"""Rotation-based SPECT system model: attenuation and distance-dependent resolution.

For view angle θ the activity and attenuation maps are rotated about the patient axis (z)
(bilinear interpolation in the (y, x) plane, stored as one sparse matrix per view so the
back projector is its exact transpose), so that the detector faces the
rows of increasing y at a distance ``orbit_radius_mm + y`` from each plane. Each plane is

* attenuated by ``exp(−Σ μ Δy)`` from the plane to the detector (half of its own voxel
  included), μ the linear attenuation coefficient at the photopeak;
* blurred in (z, x) by the collimator–detector response, a Gaussian whose FWHM grows
  linearly with the distance (:meth:`CentreProfile.system_fwhm_mm`);

and the planes are summed. The blur is applied in the 2-D Fourier domain (zero-padded so
nothing wraps), plane by plane, so one view costs one rotation and one batched FFT.
The back projector is the exact adjoint (transpose) of the projector, so the
reconstruction (:mod:`harmonize.imaging.osem`) uses the same system model as the simulation.

μ at the photopeak: the NIST μ/ρ of liquid water (``harmonize/data``, Hubbell & Seltzer) at
the photopeak energy times the mass density from CT (Schneider2000 calibration), i.e. every
tissue is treated as water of its own density (a good approximation at 208 keV, where
Compton scattering dominates, except for the photoelectric excess of bone [assumed]).

Why not PyTomography: it needs PyTorch; the CPU wheel alone is several hundred MB and the
CI machine has 2 cores. This projector needs numpy/scipy only; its speed is measured in
``benchmarks/bench_imaging.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft, sparse

from harmonize.imaging.profile import CentreProfile

__all__ = ["SpectSystem", "attenuation_map_per_mm"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def attenuation_map_per_mm(density_g_ml: np.ndarray, photopeak_kev: float) -> np.ndarray:
    """Linear attenuation coefficient (1/mm) at the photopeak: μ/ρ(water) × density."""
    from harmonize.dose.photons import mu_rho_cm2_g

    mu_rho = float(mu_rho_cm2_g(photopeak_kev / 1000.0))
    return (np.asarray(density_g_ml, dtype=np.float64) * mu_rho / 10.0).astype(np.float32)


@dataclass
class SpectSystem:
    """Projector/back projector of one camera for one patient (μ map and grid).

    Parameters
    ----------
    profile : CentreProfile
        Camera geometry and resolution.
    mu_per_mm : ndarray (z, y, x)
        Attenuation map at the photopeak, 1/mm.
    voxel_size_mm : float
        Isotropic voxel size.
    resolution : bool
        Model the collimator–detector response (False: a pencil-beam collimator).
    """

    profile: CentreProfile
    mu_per_mm: np.ndarray
    voxel_size_mm: float
    resolution: bool = True

    def __post_init__(self) -> None:
        nz, ny, nx = self.mu_per_mm.shape
        v = self.voxel_size_mm
        self.shape = (nz, ny, nx)
        self.angles_deg = np.arange(self.profile.n_views) * 360.0 / self.profile.n_views
        y_mm = (np.arange(ny) - (ny - 1) / 2.0) * v
        distance = np.maximum(self.profile.orbit_radius_mm + y_mm, 0.0)
        sigma_mm = self.profile.system_fwhm_mm(distance) * _FWHM_TO_SIGMA
        pad = math.ceil(4.0 * float(sigma_mm.max()) / v) if self.resolution else 0
        self._pad = pad
        self._fshape = (fft.next_fast_len(nz + 2 * pad), fft.next_fast_len(nx + 2 * pad))
        fz = np.fft.fftfreq(self._fshape[0], d=v)[:, None, None]
        fx = np.fft.rfftfreq(self._fshape[1], d=v)[None, None, :]
        s2 = (sigma_mm**2)[None, :, None]
        self._otf = (
            np.exp(-2.0 * math.pi**2 * s2 * (fz**2 + fx**2)).astype(np.complex64)
            if self.resolution
            else None
        )  # (fz, y, fx)
        # voxels outside the circle swept by the rotation are never seen by every view
        yy = (np.arange(ny) - (ny - 1) / 2.0)[:, None]
        xx = (np.arange(nx) - (nx - 1) / 2.0)[None, :]
        radius = min(ny, nx) / 2.0 - 1.0
        self.fov_mask = np.broadcast_to((yy**2 + xx**2) <= radius**2, self.shape)
        self._rotations: dict[int, sparse.csr_matrix] = {}
        self._attenuations: dict[int, np.ndarray] = {}

    # -- one view ------------------------------------------------------------------------
    def _rotation(self, view: int) -> sparse.csr_matrix:
        """Bilinear rotation of the (y, x) plane by the view angle, as a sparse matrix."""
        cached = self._rotations.get(view)
        if cached is None:
            cached = _rotation_matrix(self.shape[1], self.shape[2], float(self.angles_deg[view]))
            self._rotations[view] = cached
        return cached

    def _rotate(self, volume: np.ndarray, view: int, inverse: bool = False) -> np.ndarray:
        nz, ny, nx = self.shape
        matrix = self._rotation(view)
        flat = np.asarray(volume, dtype=np.float32).reshape(nz, ny * nx)
        out = (matrix.T @ flat.T).T if inverse else (matrix @ flat.T).T
        return np.asarray(out, dtype=np.float32).reshape(nz, ny, nx)

    def _attenuation(self, view: int) -> np.ndarray:
        cached = self._attenuations.get(view)
        if cached is None:
            mu = self._rotate(self.mu_per_mm, view)
            path = (np.cumsum(mu, axis=1) - 0.5 * mu) * self.voxel_size_mm
            cached = np.exp(-path).astype(np.float32)
            self._attenuations[view] = cached
        return cached

    def _blur_sum(self, planes: np.ndarray) -> np.ndarray:
        """(z, y, x) → projection (z, x): per-plane CDR blur, summed over y."""
        if self._otf is None:
            return planes.sum(axis=1)
        # zero padding at the end: what the blur pushes past an edge lands in the padding
        # (≥ 4σ wide on each side) and is cropped, as photons missing the detector
        spec = fft.rfft2(planes, s=self._fshape, axes=(0, 2))
        proj = fft.irfft2((spec * self._otf).sum(axis=1), s=self._fshape)
        nz, _, nx = self.shape
        return proj[:nz, :nx].astype(np.float32)

    def _spread(self, projection: np.ndarray) -> np.ndarray:
        """Adjoint of :meth:`_blur_sum`: projection (z, x) → (z, y, x)."""
        nz, ny, nx = self.shape
        if self._otf is None:
            return np.broadcast_to(projection[:, None, :], (nz, ny, nx)).astype(np.float32)
        spec = fft.rfft2(projection, s=self._fshape)
        planes = fft.irfft2(spec[:, None, :] * self._otf, s=self._fshape, axes=(0, 2))
        return planes[:nz, :, :nx].astype(np.float32)

    def forward(self, activity: np.ndarray, view: int) -> np.ndarray:
        """Expected primary counts per (z, x) detector bin per unit sensitivity × time."""
        rotated = self._rotate(activity, view)
        return self._blur_sum(rotated * self._attenuation(view))

    def back(self, projection: np.ndarray, view: int) -> np.ndarray:
        """Exact adjoint of :meth:`forward` for one view."""
        planes = self._spread(np.asarray(projection, dtype=np.float32)) * self._attenuation(view)
        return self._rotate(planes, view, inverse=True)


def _rotation_matrix(ny: int, nx: int, angle_deg: float) -> sparse.csr_matrix:
    """Sparse (ny·nx)² matrix: output pixel ← bilinear sample of the input rotated by θ."""
    theta = math.radians(angle_deg)
    cy, cx = (ny - 1) / 2.0, (nx - 1) / 2.0
    yo, xo = np.meshgrid(np.arange(ny) - cy, np.arange(nx) - cx, indexing="ij")
    # the source point of each output pixel (rotation by −θ)
    ys = math.cos(theta) * yo - math.sin(theta) * xo + cy
    xs = math.sin(theta) * yo + math.cos(theta) * xo + cx
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    fy, fx = ys - y0, xs - x0
    rows, cols, vals = [], [], []
    out_index = np.arange(ny * nx).reshape(ny, nx)
    for dy, dx, w in (
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    ):
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx) & (w > 0)
        rows.append(out_index[ok])
        cols.append(yy[ok] * nx + xx[ok])
        vals.append(w[ok])
    return sparse.csr_matrix(
        (np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
        shape=(ny * nx, ny * nx),
    )
