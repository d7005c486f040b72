"""Partial-volume correction by recovery coefficients (RC) as a function of VOI volume.

A SPECT image blurs activity: the mean activity measured in a small VOI is ``RC(V)`` times
the true one. The correction divides by RC: ``A_true = A_measured / RC(V)``.

Three ways to obtain an RC curve, all returning a :class:`RecoveryCurve`:

* :meth:`RecoveryCurve.from_table` — measured sphere-phantom values (volume_ml, rc),
  interpolated monotonically (PCHIP, Fritsch & Carlson, SIAM J Numer Anal 1980;17:238–246,
  doi:10.1137/0717021) in log volume; outside the table the end values are kept.
* :meth:`RecoveryCurve.fit` — the parametric curve ``RC(V) = rc_max / (1 + (V½/V)^n)``
  fitted to phantom data. This logistic-in-log-volume form has the limits of a blurred
  uniform sphere: RC → 0 as V → 0 (∝ Vⁿ; n ≈ 1 for spheres much smaller than the PSF,
  whose recovered counts are spread over the PSF volume) and RC → rc_max (1 for a
  calibrated system) for large V, with a single half-recovery volume V½ that scales with
  the PSF volume. It is an empirical form, not a physical law.
* :func:`recovery_curve_from_psf` — simulated: a voxelised uniform sphere is blurred with
  a Gaussian PSF of the given FWHM and the mean in the (unblurred) sphere VOI divided by
  the true concentration.
* :func:`read_rc_table` — a centre's measured sphere-phantom curve from a CSV file
  (columns ``volume_ml,rc``), validated line by line, as a :meth:`RecoveryCurve.from_table`
  curve with the file's name and SHA-256 for provenance (:class:`MeasuredRcTable`).

:func:`apply_rc` divides by ``max(RC, min_rc)``: RCs below ``min_rc`` (default 0.25, i.e.
a correction of at most ×4 — an assumed, user-adjustable bound) are raised to it, because
dividing by small, uncertain RCs amplifies noise and segmentation errors without bound.

Examples
--------
>>> from harmonize import pvc
>>> curve = pvc.RecoveryCurve.parametric(v_half_ml=5.0, n=1.0)
>>> round(float(curve(5.0)), 3), round(float(curve(500.0)), 3)
(0.5, 0.99)
>>> round(float(pvc.apply_rc(50.0, 5.0, curve)), 1)
100.0
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from harmonize.errors import HarmonizeError

if TYPE_CHECKING:
    from scipy import optimize as _optimize
else:
    from harmonize._lazy import lazy_module

    _optimize = lazy_module("scipy.optimize")

__all__ = [
    "DEFAULT_MIN_RC",
    "RC_MAX",
    "RC_TABLE_COLUMNS",
    "MeasuredRcTable",
    "PVCInputError",
    "RcTableError",
    "RecoveryCurve",
    "apply_rc",
    "gaussian_sphere_rc",
    "read_rc_table",
    "recovery_curve_from_psf",
]

#: Default lower bound of the RC used in corrections (max. correction ×4) [assumed].
DEFAULT_MIN_RC = 0.25
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Largest recovery coefficient accepted [assumed]. Above 1 is real: reconstruction with
#: resolution modelling overshoots at sphere edges (Gibbs ringing), so mid-size spheres can
#: recover more than their concentration; a value above 1.5 is taken for a units or column
#: mix-up (an RC in per cent, a volume in the RC column) rather than a measurement.
RC_MAX = 1.5
#: Header names of a measured RC table (:func:`read_rc_table`): sphere volume in mL, RC.
RC_TABLE_COLUMNS = ("volume_ml", "rc")


class PVCInputError(HarmonizeError, ValueError):
    """Invalid input to a partial-volume-correction function."""


class RcTableError(PVCInputError):
    """A measured RC table file cannot be read (the message names the file, line and field)."""


def _volumes(name: str, values: npt.ArrayLike) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise PVCInputError(f"{name} must be finite and > 0 (mL), got {values!r}")
    return v


def _hill(volume_ml: np.ndarray, v_half_ml: float, n: float, rc_max: float) -> np.ndarray:
    return rc_max / (1.0 + (v_half_ml / volume_ml) ** n)


@dataclass(frozen=True)
class RecoveryCurve:
    """Recovery coefficient as a function of VOI volume; call it with volumes in mL.

    Build it with :meth:`from_table`, :meth:`parametric`, :meth:`fit` or
    :func:`recovery_curve_from_psf`, not directly.

    Attributes
    ----------
    kind : {"table", "parametric"}
    volumes_ml, rc : numpy.ndarray
        The table (for ``kind="table"``) or the data a parametric curve was fitted to
        (empty if it was given directly).
    params : dict
        ``{"v_half_ml", "n", "rc_max"}`` for a parametric curve, else empty.
    source : str
        Where the curve comes from (free text for provenance).
    """

    kind: str
    volumes_ml: np.ndarray
    rc: np.ndarray
    params: dict[str, float] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_table(
        cls, volumes_ml: npt.ArrayLike, rc: npt.ArrayLike, source: str = "table"
    ) -> RecoveryCurve:
        """RC curve from measured points; PCHIP in log volume, monotone if the data are.

        Raises
        ------
        PVCInputError
            Fewer than 2 points, non-increasing volumes, RC outside (0, 1.5], or RC values
            that decrease with volume (a curve that is not monotone is almost always a
            data-entry error).
        """
        v = _volumes("volumes_ml", volumes_ml)
        r = np.asarray(rc, dtype=float)
        if v.ndim != 1 or r.shape != v.shape or v.size < 2:
            raise PVCInputError("volumes_ml and rc must be 1-D of equal length >= 2")
        order = np.argsort(v)
        v, r = v[order], r[order]
        if np.any(np.diff(v) <= 0):
            raise PVCInputError("volumes_ml must not contain duplicates")
        if not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(r > RC_MAX):
            raise PVCInputError(f"rc values must lie in (0, {RC_MAX}], got {r.tolist()}")
        if np.any(np.diff(r) < 0):
            raise PVCInputError(
                f"rc must not decrease with volume; got rc={r.tolist()} at V={v.tolist()}"
            )
        v.setflags(write=False)
        r.setflags(write=False)
        return cls("table", v, r, {}, source)

    @classmethod
    def parametric(
        cls, v_half_ml: float, n: float, rc_max: float = 1.0, source: str = "parametric"
    ) -> RecoveryCurve:
        """The curve ``RC(V) = rc_max / (1 + (v_half_ml / V)^n)`` with given parameters."""
        if not (v_half_ml > 0 and n > 0 and 0 < rc_max <= 1.5):
            raise PVCInputError(
                f"need v_half_ml > 0, n > 0, 0 < rc_max <= 1.5; got {v_half_ml}, {n}, {rc_max}"
            )
        empty = np.empty(0)
        empty.setflags(write=False)
        params = {"v_half_ml": float(v_half_ml), "n": float(n), "rc_max": float(rc_max)}
        return cls("parametric", empty, empty, params, source)

    @classmethod
    def fit(
        cls,
        volumes_ml: npt.ArrayLike,
        rc: npt.ArrayLike,
        *,
        fit_rc_max: bool = False,
        source: str = "fitted",
    ) -> RecoveryCurve:
        """Least-squares fit of ``rc_max/(1 + (V½/V)^n)`` to phantom data.

        Parameters
        ----------
        volumes_ml, rc : array_like
            Sphere volumes (mL) and measured recovery coefficients (at least 2 points,
            3 with ``fit_rc_max``).
        fit_rc_max : bool
            Fit the plateau too (default: fixed at 1, a calibrated system).
        """
        v = _volumes("volumes_ml", volumes_ml)
        r = np.asarray(rc, dtype=float)
        n_par = 3 if fit_rc_max else 2
        if v.ndim != 1 or r.shape != v.shape or v.size < n_par:
            raise PVCInputError(f"need 1-D volumes_ml and rc of equal length >= {n_par}")
        if not np.all(np.isfinite(r)) or np.any(r <= 0) or np.any(r > 1.5):
            raise PVCInputError(f"rc values must lie in (0, 1.5], got {r.tolist()}")
        rc_max0 = 1.0
        if not fit_rc_max and np.any(r >= 1.0):
            raise PVCInputError("rc >= 1 cannot be fitted with rc_max fixed at 1; pass fit_rc_max")
        # Start: V½ at the point nearest RC = rc_max/2, n = 1.
        v_half0 = float(v[np.argmin(np.abs(r - 0.5 * max(rc_max0, r.max())))])

        def model(logv: np.ndarray, log_vh: float, log_n: float, *rest: float) -> np.ndarray:
            rcm = rest[0] if rest else 1.0
            return _hill(np.exp(logv), math.exp(log_vh), math.exp(log_n), rcm)

        p0 = [math.log(v_half0), 0.0] + ([max(r.max(), 1.0)] if fit_rc_max else [])
        try:
            popt, _ = _optimize.curve_fit(model, np.log(v), r, p0=p0, maxfev=10_000)
        except RuntimeError as exc:
            raise PVCInputError(f"the RC fit did not converge: {exc}") from exc
        rc_max = float(popt[2]) if fit_rc_max else 1.0
        curve = cls.parametric(math.exp(popt[0]), math.exp(popt[1]), rc_max, source)
        v.setflags(write=False)
        r = r.copy()
        r.setflags(write=False)
        return cls("parametric", v, r, curve.params, source)

    def __call__(self, volume_ml: npt.ArrayLike) -> np.ndarray:
        """Recovery coefficient at ``volume_ml`` (mL), vectorised."""
        v = _volumes("volume_ml", volume_ml)
        if self.kind == "parametric":
            p = self.params
            return _hill(v, p["v_half_ml"], p["n"], p["rc_max"])
        from scipy.interpolate import PchipInterpolator  # here: ~0.5 s of start-up

        interp = PchipInterpolator(np.log(self.volumes_ml), self.rc, extrapolate=False)
        logv = np.clip(np.log(v), math.log(self.volumes_ml[0]), math.log(self.volumes_ml[-1]))
        return np.asarray(interp(logv), dtype=float)


def apply_rc(
    activity_or_tia: npt.ArrayLike,
    volume_ml: npt.ArrayLike,
    curve: RecoveryCurve,
    min_rc: float = DEFAULT_MIN_RC,
) -> np.ndarray:
    """Correct VOI activities (or TIAs) for partial volume: ``value / max(RC(V), min_rc)``.

    Parameters
    ----------
    activity_or_tia : array_like
        Measured VOI activity or TIA (any unit; the result has the same unit).
    volume_ml : array_like
        VOI volumes (mL), broadcastable against the values.
    curve : RecoveryCurve
        The recovery curve.
    min_rc : float
        Lower bound of the RC used (0 < min_rc <= 1); default 0.25 (max. correction ×4).
    """
    if not (0 < min_rc <= 1):
        raise PVCInputError(f"min_rc must lie in (0, 1], got {min_rc!r}")
    x = np.asarray(activity_or_tia, dtype=float)
    if not np.all(np.isfinite(x)):
        raise PVCInputError("activity_or_tia contains NaN or infinite values")
    rc = np.maximum(curve(volume_ml), min_rc)
    return x / rc


def gaussian_sphere_rc(radius_mm: npt.ArrayLike, fwhm_mm: float) -> np.ndarray:
    """Analytic RC of a continuous uniform sphere blurred by an isotropic 3-D Gaussian.

    ``RC = ∫₀^{2R} V_ov(r)/V · p(r) dr``, where ``V_ov(r) = π/12·(4R + r)(2R − r)²`` is the
    overlap volume of two spheres of radius R at distance r and ``p(r)`` the Maxwell
    (χ₃) density of the Gaussian displacement length. Used to check
    :func:`recovery_curve_from_psf`.

    >>> round(float(gaussian_sphere_rc(1000.0, 10.0)), 3)
    0.995
    """
    r_sph = np.atleast_1d(np.asarray(radius_mm, dtype=float))
    if not np.all(np.isfinite(r_sph)) or np.any(r_sph <= 0) or not fwhm_mm > 0:
        raise PVCInputError("radius_mm and fwhm_mm must be > 0")
    sigma = fwhm_mm * _FWHM_TO_SIGMA
    t = np.linspace(0.0, 1.0, 4001)  # r = 2R t
    out = np.empty_like(r_sph)
    for i, big_r in enumerate(r_sph):  # a handful of radii
        r = 2.0 * big_r * t
        overlap = (math.pi / 12.0) * (4 * big_r + r) * (2 * big_r - r) ** 2
        vol = 4.0 / 3.0 * math.pi * big_r**3
        p = math.sqrt(2 / math.pi) * r**2 / sigma**3 * np.exp(-(r**2) / (2 * sigma**2))
        out[i] = np.trapezoid(overlap / vol * p, r)
    return out.reshape(np.shape(radius_mm))


def recovery_curve_from_psf(
    fwhm_mm: float | Sequence[float],
    voxel_size_mm: float | Sequence[float],
    volumes_ml: npt.ArrayLike,
) -> RecoveryCurve:
    """Simulated RC curve: blur voxelised uniform spheres with a Gaussian PSF.

    For each volume a sphere centred on a voxel centre is voxelised (voxels whose centres lie
    inside), filled with unit concentration, blurred with a Gaussian of the given FWHM
    (:func:`scipy.ndimage.gaussian_filter`, zero outside) and the mean of the blurred image
    over the sphere's voxels is the RC. The table's volumes are the voxelised volumes
    (number of voxels × voxel volume), which is what a VOI of that sphere measures.

    Parameters
    ----------
    fwhm_mm : float or (z, y, x)
        PSF full width at half maximum, mm (> 0).
    voxel_size_mm : float or (dz, dy, dx)
        Voxel size, mm.
    volumes_ml : array_like
        Nominal sphere volumes (a handful), mL.

    Returns
    -------
    RecoveryCurve
        A ``"table"`` curve.
    """
    fwhm = np.broadcast_to(np.asarray(fwhm_mm, dtype=float), (3,))
    vox = np.broadcast_to(np.asarray(voxel_size_mm, dtype=float), (3,))
    if not np.all(np.isfinite(fwhm)) or np.any(fwhm <= 0):
        raise PVCInputError(f"fwhm_mm must be > 0, got {fwhm_mm!r}")
    if not np.all(np.isfinite(vox)) or np.any(vox <= 0):
        raise PVCInputError(f"voxel_size_mm must be > 0, got {voxel_size_mm!r}")
    vols = np.unique(_volumes("volumes_ml", volumes_ml).ravel())
    sigma_vox = fwhm * _FWHM_TO_SIGMA / vox
    voxel_ml = float(np.prod(vox)) / 1000.0
    out_v, out_rc = [], []
    from scipy import ndimage  # here, not at module level: ~0.3 s of start-up

    for vol in vols:  # a handful of sphere volumes
        radius_mm = (3.0 * vol * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
        half = np.ceil((radius_mm + 4.0 * fwhm * _FWHM_TO_SIGMA * 2.0) / vox).astype(int)
        axes = [np.arange(-h, h + 1) * d for h, d in zip(half, vox, strict=True)]
        zz, yy, xx = np.meshgrid(*axes, indexing="ij", sparse=True)
        mask = zz**2 + yy**2 + xx**2 <= radius_mm**2
        if not mask.any():
            raise PVCInputError(f"volume {vol} mL is smaller than one voxel")
        blurred = ndimage.gaussian_filter(
            mask.astype(float), sigma_vox, mode="constant", truncate=4.0
        )
        out_v.append(mask.sum() * voxel_ml)
        out_rc.append(float(blurred[mask].mean()))
    v_arr, rc_arr = np.array(out_v), np.array(out_rc)
    v_arr, first = np.unique(v_arr, return_index=True)
    return RecoveryCurve.from_table(
        v_arr,
        rc_arr[first],
        source=f"Gaussian PSF FWHM {fwhm.tolist()} mm, voxel {vox.tolist()} mm (simulated)",
    )


@dataclass(frozen=True)
class MeasuredRcTable:
    """A centre's measured RC curve read from a CSV file (:func:`read_rc_table`).

    Attributes
    ----------
    curve : RecoveryCurve
        The points as a ``"table"`` curve (PCHIP in log volume between them, the end values
        kept outside them: :meth:`RecoveryCurve.from_table`).
    file_name : str
        The file's name without its folder (a path may name a person; the name and the
        hash identify the table).
    sha256 : str
        SHA-256 of the file's bytes.
    """

    curve: RecoveryCurve
    file_name: str
    sha256: str

    def record(self) -> dict[str, Any]:
        """JSON-ready provenance: file name, SHA-256 and the points (volume mL, RC)."""
        return {
            "file": self.file_name,
            "sha256": self.sha256,
            "volume_ml": [float(v) for v in self.curve.volumes_ml],
            "rc": [float(r) for r in self.curve.rc],
        }


def read_rc_table(path: str | Path) -> MeasuredRcTable:
    """Read a centre's measured recovery curve from a CSV file.

    The file holds one sphere per line under a header naming the columns ``volume_ml``
    (sphere volume, mL, > 0) and ``rc`` (recovery coefficient, dimensionless, in
    (0, :data:`RC_MAX`]); other columns (e.g. ``diameter_mm``) are ignored, lines starting
    with ``#`` and blank lines are skipped, the order of the lines does not matter. At
    least two spheres, no volume twice, and RC must not decrease with volume (as
    :meth:`RecoveryCurve.from_table` requires)::

        # NEMA IEC spheres, our camera, 2026 acceptance test
        volume_ml,rc
        0.52,0.21
        26.5,0.78

    Raises
    ------
    RcTableError
        The file is missing or unreadable, or a line breaks a rule; the message names the
        file, the line and the column and says what was expected.
    """
    file = Path(path)
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise RcTableError(f"{file}: RC table file not found") from None
    except OSError as exc:
        raise RcTableError(f"{file}: cannot read the RC table ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RcTableError(f"{file}: not a UTF-8 text (CSV) file") from None
    lines = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    expected = ",".join(RC_TABLE_COLUMNS)
    if not lines:
        raise RcTableError(f"{file}: no header; expected a header line '{expected}'")
    header_line, header_text = lines[0]
    header = [h.strip().lower() for h in next(csv.reader(io.StringIO(header_text)))]
    for column in RC_TABLE_COLUMNS:
        if header.count(column) != 1:
            problem = "lacks" if column not in header else "repeats"
            raise RcTableError(
                f"{file}, line {header_line}: the header {problem} column {column!r}; expected "
                f"the columns '{expected}' (volume in mL, dimensionless RC), got {header}"
            )
    at = {column: header.index(column) for column in RC_TABLE_COLUMNS}
    rows: list[tuple[int, float, float]] = []
    for number, line in lines[1:]:
        fields = next(csv.reader(io.StringIO(line)))
        if len(fields) != len(header):
            raise RcTableError(
                f"{file}, line {number}: expected {len(header)} fields like the header "
                f"({','.join(header)}), got {len(fields)}"
            )
        volume = _table_number(file, number, "volume_ml", fields[at["volume_ml"]])
        rc = _table_number(file, number, "rc", fields[at["rc"]])
        if volume <= 0:
            raise RcTableError(
                f"{file}, line {number}, column 'volume_ml': expected a sphere volume > 0 mL, "
                f"got {volume:g}"
            )
        if not 0 < rc <= RC_MAX:
            hint = " (a percentage? give RC as a fraction)" if 1 < rc <= 100 * RC_MAX else ""
            raise RcTableError(
                f"{file}, line {number}, column 'rc': expected a recovery coefficient in "
                f"(0, {RC_MAX}], got {rc:g}{hint}"
            )
        rows.append((number, volume, rc))
    if len(rows) < 2:
        raise RcTableError(
            f"{file}: {len(rows)} sphere(s) under the header; expected at least 2 lines of "
            f"'{expected}'"
        )
    rows.sort(key=lambda row: row[1])
    for (n0, v0, r0), (n1, v1, r1) in itertools.pairwise(rows):
        if v1 == v0:
            raise RcTableError(
                f"{file}, lines {min(n0, n1)} and {max(n0, n1)}, column 'volume_ml': the "
                f"volume {v0:g} mL appears twice; expected one RC per sphere volume"
            )
        if r1 < r0:
            raise RcTableError(
                f"{file}, lines {n0} and {n1}, column 'rc': RC falls from {r0:g} at "
                f"{v0:g} mL to {r1:g} at {v1:g} mL; expected RC not to decrease with volume "
                "(a curve that is not monotone is almost always a data-entry error)"
            )
    volumes = np.array([row[1] for row in rows])
    rcs = np.array([row[2] for row in rows])
    sha = hashlib.sha256(data).hexdigest()
    source = f"measured RC table {file.name} (sha256 {sha}, {len(rows)} spheres)"
    return MeasuredRcTable(RecoveryCurve.from_table(volumes, rcs, source=source), file.name, sha)


def _table_number(file: Path, line: int, column: str, text: str) -> float:
    """A finite number from one field of an RC table, or an error naming file, line, column."""
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise RcTableError(
            f"{file}, line {line}, column {column!r}: expected a finite number, got {text.strip()!r}"
        )
    return value
