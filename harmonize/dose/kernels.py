"""Dose-voxel kernels (voxel S-values) of Lanconelli et al. 2012 for any voxel size.

The kernel ``S[i, j, k]`` is the mean absorbed dose in the voxel at offset ``(i, j, k)`` per
decay in the central voxel, in mGy/(MBq·s), for a uniform infinite medium (soft tissue or
compact bone). Lanconelli2012 (Phys Med Biol 2012;57:517–545) tabulates the positive octant
(offsets 0..5) for 13 isotropic voxel sides 2.21–9.28 mm; mirroring gives 11×11×11 kernels.

How a kernel is obtained for a voxel size ``(dz, dy, dx)``:

1. **Tabulated isotropic size** (within 1 µm): the published values, exactly.
2. **Isotropic size between two tabulated ones** (``a_lo < a < a_hi``): per offset, the
   dimensionless energy-like quantity ``S·m_voxel`` (proportional to the absorbed fraction
   in the target voxel, since ``m ∝ a³``) is interpolated linearly in ``log a`` on a log
   scale, and divided by the voxel mass again::

       ln(S·a³)(a) = (1 − q)·ln(S·a³)(a_lo) + q·ln(S·a³)(a_hi),   q = ln(a/a_lo)/ln(a_hi/a_lo)

   Absorbed fractions vary smoothly (close to power laws) with voxel size at a fixed offset
   in voxel units, so log–log interpolation is exact at the nodes, keeps every value between
   its two neighbours (monotone between neighbouring sizes) and keeps the kernel symmetric.
3. **Anisotropic voxels, or isotropic sizes outside 2.21–9.28 mm**: the kernel is derived by
   resampling from an isotropic reference kernel of side ``a = clip(min(d), 2.21, 9.28)``
   (obtained by 1. or 2.). Per axis, when the target side ``d ≥ a``, each target voxel is
   mapped to the reference voxels whose centres it contains (a centre on a boundary counts
   one half for each side; the reference grid is offset by a/2 when ``d/a`` is nearest an
   even integer, so that ``d = q·a`` aggregates exactly); when ``d < a`` (only below 2.21
   mm) the weights are the overlap lengths of the target and reference voxels. The source
   voxel's decays are split over its reference voxels by these weights, the reference kernel
   is applied, and the dose of a target voxel is the weighted mean over its reference voxels
   (no smoothing: assigning by centres instead of overlaps keeps the electron self-dose,
   which interpolation between grids would smear over neighbours). The grids are centred on the source voxel, so the
   result is mirror-symmetric; finally the kernel is scaled so that ``Σ S·m`` (the energy
   per decay the kernel deposits) equals that of the reference kernel. This is the response
   of "resample the activity map onto an isotropic grid, convolve, resample the dose back"
   to a single source voxel, written as a shift-invariant kernel so the convolution stays
   one FFT. Along an axis whose side equals the reference side the mapping is the identity,
   so a nearly isotropic grid gets a nearly unchanged kernel (the method is continuous).
   Limitations: geometric positions are approximated to half a reference voxel; below
   2.21 mm the kernel cannot resolve structure finer than 2.21 mm (the self-dose of a
   small voxel is the mean over a 2.21 mm voxel, an underestimate); above 9.28 mm nothing
   is lost except the kernel extent, which is that of the 9.28 mm kernel (±51 mm).

Energy balance of the tables (soft tissue, 1.04 g/mL): ``Σ S·m`` is 140.1 keV per decay at
2.21 mm rising to 146.0 keV at 9.28 mm, whereas ICRP-107 gives 147.9 keV of electrons plus
35.1 keV of photons per decay. The rise is the photon energy captured by the larger kernel
cube; the electron part implied by the tables (about 138.5 keV once the captured photon
share is subtracted; see also :func:`harmonize.dose.sphere.lanconelli_electron_model`) is
6 % below ICRP-107, i.e. the
tables' source spectrum carries less electron energy than ICRP-107. Photons deposit most of
their energy outside the 11-voxel cube: the cube captures about 5 % of the photon energy at
2.21 mm, 10 % at 4.8 mm and 18 % at 9.28 mm (:func:`kernel_photon_capture`).

Examples
--------
>>> from harmonize import dose
>>> k = dose.voxel_kernel(4.8)
>>> k.shape, float(k[5, 5, 5])
((11, 11, 11), 0.178)
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Sequence
from importlib import resources

import numpy as np

from harmonize._warnings import HarmonizeWarning
from harmonize.dose._common import DoseInputError, as_voxel_size_mm
from harmonize.nuclides import MEV_TO_J, NuclideError, get_nuclide

__all__ = [
    "MEDIUM_DENSITY_G_ML",
    "KernelNotAvailableError",
    "KernelResolutionWarning",
    "kernel_energy_mev",
    "kernel_method",
    "kernel_photon_capture",
    "read_lanconelli_octant",
    "tabulated_voxel_sizes_mm",
    "voxel_kernel",
]

#: Density of the kernel media, g/mL. Soft tissue: 1.04 (ICRU soft tissue as used by
#: Lanconelli2012, see the data README); compact bone: 1.85 (ICRU compact bone, NIST
#: material "Bone, Compact (ICRU)"). With these densities Σ S·m of the bone tables is 1 %
#: above soft tissue's at 2.21 mm (larger photon capture of the denser medium), a check.
MEDIUM_DENSITY_G_ML: dict[str, float] = {"soft_tissue": 1.04, "bone": 1.85}

_MEDIUM_FILE_KEY = {"soft_tissue": "soft", "bone": "bone"}
_DATA_PACKAGE = "harmonize.data.lanconelli2012"
_FILE_RE = re.compile(r"^(\d+)([A-Za-z]+)([\d.]+)mm(soft|bone)\.txt$")
_OCTANT = 6  # offsets 0..5 per axis in the files
_SIZE_TOL_MM = 1e-3
#: mGy/(MBq·s) -> Gy per decay: 1e-3 Gy / 1e6 Bq.
_S_UNIT_GY_PER_DECAY = 1e-9


class KernelNotAvailableError(DoseInputError):
    """No voxel S-value table exists for the requested nuclide or medium."""


class KernelResolutionWarning(HarmonizeWarning):
    """A kernel was requested for voxels finer than the finest tabulated size (2.21 mm).

    Such a kernel cannot resolve structure below 2.21 mm: the self-dose of a small voxel is
    the mean dose over a 2.21 mm voxel, an underestimate for concentrated activity.
    """


def _nuclide_key(nuclide: str) -> str:
    try:
        name = get_nuclide(nuclide).name  # canonical, e.g. "Lu-177"
    except NuclideError as exc:
        raise KernelNotAvailableError(str(exc)) from exc
    symbol, mass = name.split("-")
    return f"{mass}{symbol}"


def _check_medium(medium: str) -> str:
    if medium not in _MEDIUM_FILE_KEY:
        raise KernelNotAvailableError(
            f"medium must be one of {sorted(_MEDIUM_FILE_KEY)}, got {medium!r}"
        )
    return _MEDIUM_FILE_KEY[medium]


@functools.cache
def _catalogue() -> dict[tuple[str, str], dict[float, str]]:
    out: dict[tuple[str, str], dict[float, str]] = {}
    for entry in resources.files(_DATA_PACKAGE).iterdir():
        m = _FILE_RE.match(entry.name)
        if m:
            key = (f"{m.group(1)}{m.group(2)}", m.group(4))
            out.setdefault(key, {})[float(m.group(3))] = entry.name
    return out


def tabulated_voxel_sizes_mm(
    nuclide: str = "Lu-177", medium: str = "soft_tissue"
) -> tuple[float, ...]:
    """Voxel sides (mm) with a published Lanconelli2012 table, ascending.

    >>> tabulated_voxel_sizes_mm()[:3]
    (2.21, 2.33, 2.4)
    """
    key = (_nuclide_key(nuclide), _check_medium(medium))
    sizes = _catalogue().get(key)
    if not sizes:
        have = sorted({k[0] for k in _catalogue()})
        raise KernelNotAvailableError(
            f"no voxel S-value tables for {nuclide!r} in {medium!r}; tables exist for {have}"
        )
    return tuple(sorted(sizes))


@functools.cache
def _read_octant_cached(nuclide_key: str, medium_key: str, size_mm: float) -> np.ndarray:
    name = _catalogue()[(nuclide_key, medium_key)][size_mm]
    path = resources.files(_DATA_PACKAGE).joinpath(name)
    with path.open("r", encoding="latin-1") as fh:
        data = np.loadtxt(fh, skiprows=2)
    if data.shape != (_OCTANT**3, 4):
        raise DoseInputError(f"{name}: expected {_OCTANT**3} rows of 'i j k S', got {data.shape}")
    idx = data[:, :3].astype(int)
    if np.any(idx < 0) or np.any(idx >= _OCTANT) or np.any(data[:, 3] <= 0):
        raise DoseInputError(f"{name}: offsets must be 0..5 and S-values > 0")
    octant = np.full((_OCTANT,) * 3, np.nan)
    octant[idx[:, 0], idx[:, 1], idx[:, 2]] = data[:, 3]
    if np.isnan(octant).any():
        raise DoseInputError(f"{name}: some offsets of the octant are missing")
    octant.setflags(write=False)
    return octant


def read_lanconelli_octant(
    voxel_size_mm: float, nuclide: str = "Lu-177", medium: str = "soft_tissue"
) -> np.ndarray:
    """The published positive octant ``S[i, j, k]``, i, j, k = 0..5, in mGy/(MBq·s).

    Raises
    ------
    KernelNotAvailableError
        If ``voxel_size_mm`` is not a tabulated size (use :func:`voxel_kernel` instead).
    """
    sizes = tabulated_voxel_sizes_mm(nuclide, medium)
    match = [s for s in sizes if abs(s - float(voxel_size_mm)) <= _SIZE_TOL_MM]
    if not match:
        raise KernelNotAvailableError(
            f"voxel_size_mm={voxel_size_mm!r} is not tabulated; tabulated sizes are {sizes}"
        )
    return _read_octant_cached(_nuclide_key(nuclide), _check_medium(medium), match[0]).copy()


def _mirror(octant: np.ndarray) -> np.ndarray:
    n = octant.shape[0]
    idx = np.abs(np.arange(-(n - 1), n))
    return octant[np.ix_(idx, idx, idx)]


def _isotropic_kernel(a_mm: float, nuclide: str, medium: str) -> tuple[np.ndarray, str]:
    sizes = np.array(tabulated_voxel_sizes_mm(nuclide, medium))
    close = np.abs(sizes - a_mm) <= _SIZE_TOL_MM
    if close.any():
        octant = read_lanconelli_octant(float(sizes[close][0]), nuclide, medium)
        return _mirror(octant), "tabulated"
    hi = int(np.searchsorted(sizes, a_mm))
    a_lo, a_hi = float(sizes[hi - 1]), float(sizes[hi])
    q = math.log(a_mm / a_lo) / math.log(a_hi / a_lo)
    lo_energy = np.log(read_lanconelli_octant(a_lo, nuclide, medium) * a_lo**3)
    hi_energy = np.log(read_lanconelli_octant(a_hi, nuclide, medium) * a_hi**3)
    octant = np.exp((1.0 - q) * lo_energy + q * hi_energy) / a_mm**3
    return _mirror(octant), "log-interpolated"


def _axis_weights(d_mm: float, a_mm: float, fine_half: int) -> np.ndarray:
    """1-D transfer matrix B[m, n]: target offset m <- reference kernel offset n."""
    reach = math.ceil(d_mm / a_mm) + 2 * fine_half + 3  # reference voxels that can matter
    fine = np.arange(-reach, reach + 1)
    m_half = math.ceil(((fine_half + 1) * a_mm + d_mm) / d_mm) + 1
    coarse = np.arange(-m_half, m_half + 1)
    lo = (coarse[:, None] - 0.5) * d_mm
    hi = (coarse[:, None] + 0.5) * d_mm
    tol = 1e-9 * max(a_mm, d_mm)
    if d_mm >= a_mm - tol:
        # Target voxel at least as large as the reference: it takes the reference voxels whose
        # centres it contains (half weight on a boundary). The reference grid is shifted by
        # a/2 when d/a is closer to an even number, so that d = q·a aggregates exactly.
        shift = 0.5 if round(d_mm / a_mm) % 2 == 0 else 0.0
        centre = (fine[None, :] + shift) * a_mm
        inside = (centre > lo + tol) & (centre < hi - tol)
        on_edge = (np.abs(centre - lo) <= tol) | (np.abs(centre - hi) <= tol)
        w = inside.astype(float) + 0.5 * on_edge
    else:
        # Target voxel smaller than the reference: weights are the overlap lengths (the
        # reference voxel's value is spread uniformly over it), which conserves energy.
        f_lo = (fine[None, :] - 0.5) * a_mm
        f_hi = (fine[None, :] + 0.5) * a_mm
        w = np.clip(np.minimum(hi, f_hi) - np.maximum(lo, f_lo), 0.0, None)
    w /= w.sum(axis=1, keepdims=True)
    src = w[m_half]  # weights of the source voxel (offset 0) over reference voxels
    offsets = np.arange(-fine_half, fine_half + 1)
    # B[m, n] = sum_i sum_j w[m, i] src[j] [i - j == n]; np.roll wraps around, but the
    # padding (reach) keeps the wrapped part zero.
    b = np.stack([w @ np.roll(src, n) for n in offsets], axis=1)
    keep = np.flatnonzero(np.any(b > 0, axis=1))
    half = int(max(abs(keep[0] - m_half), abs(keep[-1] - m_half)))
    return b[m_half - half : m_half + half + 1]


def _resampled_kernel(
    d_mm: tuple[float, float, float], nuclide: str, medium: str
) -> tuple[np.ndarray, float]:
    sizes = tabulated_voxel_sizes_mm(nuclide, medium)
    a_mm = float(np.clip(min(d_mm), sizes[0], sizes[-1]))
    ref, _ = _isotropic_kernel(a_mm, nuclide, medium)
    fine_half = ref.shape[0] // 2
    bz, by, bx = (_axis_weights(d, a_mm, fine_half) for d in d_mm)
    kernel = np.einsum("an,bo,cp,nop->abc", bz, by, bx, ref, optimize=True)
    scale = (ref.sum() * a_mm**3) / (kernel.sum() * d_mm[0] * d_mm[1] * d_mm[2])
    return kernel * scale, a_mm


def kernel_method(
    voxel_size_mm: float | Sequence[float], nuclide: str = "Lu-177", medium: str = "soft_tissue"
) -> str:
    """How :func:`voxel_kernel` derives the kernel for this voxel size.

    One of ``"tabulated"``, ``"log-interpolated"`` or ``"resampled from a=<side> mm"``.

    >>> kernel_method(4.8), kernel_method(4.6), kernel_method((4.8, 4.8, 3.0))
    ('tabulated', 'log-interpolated', 'resampled from a=3 mm')
    """
    d = as_voxel_size_mm(voxel_size_mm)
    sizes = tabulated_voxel_sizes_mm(nuclide, medium)
    iso = max(d) - min(d) <= _SIZE_TOL_MM
    if iso and sizes[0] - _SIZE_TOL_MM <= d[0] <= sizes[-1] + _SIZE_TOL_MM:
        close = any(abs(s - d[0]) <= _SIZE_TOL_MM for s in sizes)
        return "tabulated" if close else "log-interpolated"
    a = float(np.clip(min(d), sizes[0], sizes[-1]))
    return f"resampled from a={a:g} mm"


@functools.lru_cache(maxsize=64)
def _kernel_cached(d: tuple[float, float, float], nuclide: str, medium: str) -> np.ndarray:
    method = kernel_method(d, nuclide, medium)
    if method.startswith("resampled"):
        kernel, _ = _resampled_kernel(d, nuclide, medium)
    else:
        kernel, _ = _isotropic_kernel(float(np.mean(d)), nuclide, medium)
    kernel.setflags(write=False)
    return kernel


def voxel_kernel(
    voxel_size_mm: float | Sequence[float], nuclide: str = "Lu-177", medium: str = "soft_tissue"
) -> np.ndarray:
    """Dose-voxel kernel (voxel S-values) in mGy/(MBq·s) for a voxel size.

    Parameters
    ----------
    voxel_size_mm : float or (dz, dy, dx)
        Voxel side(s) in mm; a float means isotropic voxels.
    nuclide : str
        Radionuclide; tables exist for Lu-177 only.
    medium : {"soft_tissue", "bone"}
        Kernel medium (densities in :data:`MEDIUM_DENSITY_G_ML`).

    Returns
    -------
    numpy.ndarray
        Odd-sized along every axis, source voxel at the centre, ``S[centre + (i, j, k)]`` the
        dose at offset (i, j, k) per decay in the source voxel. 11×11×11 for sizes 2.21–9.28
        mm; other shapes for resampled kernels. Derivation: see the module docstring and
        :func:`kernel_method`.

    Raises
    ------
    KernelNotAvailableError
        Unknown nuclide, medium or a nuclide without tables.
    DoseInputError
        Invalid voxel size.
    """
    d = as_voxel_size_mm(voxel_size_mm)
    d_key = (round(d[0], 6), round(d[1], 6), round(d[2], 6))
    finest = tabulated_voxel_sizes_mm(nuclide, medium)[0]
    if min(d) < finest - _SIZE_TOL_MM:
        warnings.warn(
            f"voxel side {min(d):g} mm is below the finest tabulated kernel ({finest} mm): the "
            f"kernel is resampled from {finest} mm and underestimates the self-dose of small "
            f"voxels",
            KernelResolutionWarning,
            stacklevel=2,
        )
    _nuclide_key(nuclide)  # validates the nuclide name
    return _kernel_cached(d_key, get_nuclide(nuclide).name, medium).copy()


def kernel_energy_mev(
    kernel: np.ndarray, voxel_size_mm: float | Sequence[float], medium: str = "soft_tissue"
) -> float:
    """Energy per decay (MeV) a kernel deposits in total: ``Σ S·m_voxel``.

    >>> round(kernel_energy_mev(voxel_kernel(4.8), 4.8) * 1000, 1)   # keV
    142.2
    """
    d = as_voxel_size_mm(voxel_size_mm)
    _check_medium(medium)
    mass_kg = MEDIUM_DENSITY_G_ML[medium] * (d[0] * d[1] * d[2] / 1000.0) * 1e-3
    return float(np.sum(kernel) * _S_UNIT_GY_PER_DECAY * mass_kg / MEV_TO_J)


def kernel_photon_capture(voxel_size_mm: float, nuclide: str = "Lu-177") -> float:
    """Fraction of the photon energy per decay deposited inside the kernel cube (soft tissue).

    Estimated with the exponential point kernel (:mod:`harmonize.dose.photons`) for a point
    source at the centre of a soft-tissue cube of side 11 voxels; the Lanconelli tables
    themselves do not separate electrons from photons.

    >>> round(kernel_photon_capture(4.8), 3)
    0.102
    """
    from harmonize.dose.photons import absorbed_fraction_point_in_cube

    nuc = get_nuclide(nuclide)
    a_cm = float(voxel_size_mm) / 10.0
    frac = absorbed_fraction_point_in_cube(
        5.5 * a_cm, nuc.photon_energies_mev, MEDIUM_DENSITY_G_ML["soft_tissue"]
    )
    weights = nuc.photon_energies_mev * nuc.photon_yields
    return float(np.sum(frac * weights) / np.sum(weights))
