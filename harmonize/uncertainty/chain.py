"""The per-VOI measurement model A = C/(Q·R), Ã = ∫A dt, D = Ã·S (Gear 2018) and its inputs.

For one study and one workflow, each VOI's mean absorbed dose is modelled as

.. math:: D = \\frac{T(y)}{q\\,R(V)} \\; \\Big(\\frac{V}{V_0}\\Big)^{c_C} \\;
          \\frac{S(\\rho V)}{S(\\rho_0 V_0)} \\; f \\; D_0/T_0 ,

with ``y`` the VOI activities measured at the time points (MBq, before any recovery
correction), ``T`` the workflow's TIA rule (:mod:`harmonize.uncertainty.tia`), ``q`` the
calibration factor relative to its nominal value (1 ± u_Q), ``R(V)`` the recovery
coefficient the workflow applies (1 for workflows without partial-volume correction),
``(V/V₀)^c_C`` how the activity gathered by the VOI grows with its volume (``c_C`` measured
on the image, :mod:`harmonize.uncertainty.boundary`), ``S(m)`` the dose per unit TIA as a
function of mass (``∂ln S/∂ln m = c_S``: −1 for local deposition and kernel doses of
electrons, the sphere model's own slope for Milan), ``ρ`` the density relative to its
nominal value and ``f`` the dose-conversion factor (S-value, kernel or LDM model) relative
to its nominal value. ``D₀/T₀`` carries the workflow's own result, so that the budget is
relative to what the workflow reported. Volume enters R, the gathered activity and S at
once: one input, three correlated paths, combined in one sensitivity coefficient
``∂ln D/∂ln V = c_C − ∂ln R/∂ln V + c_S``, which is how the correlation of R and S through V
(Gear 2018) is kept.

Voxel-level workflows (Montpellier) are propagated at VOI level: the VOI's summed TAC goes
through the VOI-level equivalent of the voxel rule (trapezoid + mono-exponential tail) and
the relative uncertainty is applied to the voxel-level result. The approximation is that the
relative uncertainty of a sum of voxel TIAs equals that of the TIA of the summed TAC.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from harmonize.uncertainty.tia import TiaRule

__all__ = ["COMPONENTS", "SHARED_COMPONENTS", "ComponentValues", "VoiChain"]

#: Components of the budget, in the order of the chain (the ``uncertainty`` table's enum).
COMPONENTS: tuple[str, ...] = (
    "counts",
    "fit",
    "head",
    "calibration",
    "recovery",
    "volume",
    "density",
    "dose_factor",
)

#: Components fully correlated between the VOIs (and cycles) of a patient in one workflow
#: [assumed: one camera calibration, one CT density calibration, one dose engine].
SHARED_COMPONENTS = frozenset({"calibration", "density", "dose_factor"})


@dataclass(frozen=True)
class ComponentValues:
    """Declared relative standard uncertainties (k = 1) of the Type B inputs.

    Attributes
    ----------
    calibration_u_rel : float
        Calibration factor Q.
    rc_curve_u_rel : float
        The recovery curve's own uncertainty (at fixed volume).
    density_u_rel : float
        Mass density (CT calibration, or the assumed 1.04 g/mL).
    dose_factor_u_rel : float
        S-value / kernel / local-deposition factor.
    """

    calibration_u_rel: float
    rc_curve_u_rel: float
    density_u_rel: float
    dose_factor_u_rel: float

    def __post_init__(self) -> None:
        for name in ("calibration_u_rel", "rc_curve_u_rel", "density_u_rel", "dose_factor_u_rel"):
            value = getattr(self, name)
            if not (np.isfinite(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be a relative uncertainty in [0, 1), got {value!r}")


@dataclass
class VoiChain:
    """Inputs of the chain for the VOIs of one study (arrays of length ``n_voi``).

    Attributes
    ----------
    times_h : ndarray (n_t,)
        Time points used.
    measured_mbq : ndarray (n_voi, n_t)
        VOI activities as measured (before recovery correction), MBq.
    rule : TiaRule
        The workflow's TIA rule.
    lambda_phys_per_h : float
        Physical decay constant (lower bound of every fitted λ).
    tia_mbq_h, dose_gy, volume_ml : ndarray
        The workflow's TIA, mean dose and VOI volume.
    counts_per_mbq : float
        Detected counts per MBq present during one acquisition (sensitivity × time): the
        Poisson variance of a VOI activity y is y / counts_per_mbq.
    capture_slope : ndarray
        ``c_C = ∂ln(Σ activity)/∂ln V`` measured on the image.
    volume_u_rel : ndarray
        Relative standard uncertainty of the volume (segmentation).
    dose_mass_slope : ndarray
        ``c_S = ∂ln S/∂ln m``.
    values : ComponentValues
        Declared Type B values.
    components : sequence of str
        Components that apply to the workflow (others are not written).
    recovery_curve : callable, optional
        ``R(volume_ml)`` the workflow applies to the VOIs in ``rc_applied``.
    rc_min : float
        Lower clip of R.
    rc_applied : ndarray of bool
        VOIs whose activity was divided by R.
    """

    times_h: np.ndarray
    measured_mbq: np.ndarray
    rule: TiaRule
    lambda_phys_per_h: float
    tia_mbq_h: np.ndarray
    dose_gy: np.ndarray
    volume_ml: np.ndarray
    counts_per_mbq: float
    capture_slope: np.ndarray
    volume_u_rel: np.ndarray
    dose_mass_slope: np.ndarray
    values: ComponentValues
    components: Sequence[str] = COMPONENTS
    recovery_curve: Callable[[np.ndarray], np.ndarray] | None = None
    rc_min: float = 0.0
    rc_applied: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def __post_init__(self) -> None:
        self.measured_mbq = np.atleast_2d(np.asarray(self.measured_mbq, dtype=np.float64))
        n = self.measured_mbq.shape[0]
        unknown = sorted(set(self.components) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown uncertainty component(s) {unknown}; known: {COMPONENTS}")
        if not self.counts_per_mbq > 0:
            raise ValueError(f"counts_per_mbq must be > 0, got {self.counts_per_mbq!r}")
        if self.rc_applied.size == 0:
            self.rc_applied = np.zeros(n, dtype=bool)
        for name in (
            "tia_mbq_h",
            "dose_gy",
            "volume_ml",
            "capture_slope",
            "volume_u_rel",
            "dose_mass_slope",
            "rc_applied",
        ):
            value = np.asarray(getattr(self, name))
            if value.shape != (n,):
                raise ValueError(f"VoiChain.{name} must have shape ({n},), got {value.shape}")
            setattr(self, name, value)

    @property
    def n_voi(self) -> int:
        """Number of VOIs."""
        return int(self.measured_mbq.shape[0])

    def recovery_slope(self) -> np.ndarray:
        """``∂ln R/∂ln V`` of the applied recovery curve (0 where none; central difference)."""
        out = np.zeros(self.n_voi)
        if self.recovery_curve is None or not self.rc_applied.any():
            return out
        v = self.volume_ml[self.rc_applied]
        step = 1e-3  # relative step; the curve is smooth (monotone interpolation / Hill)
        hi = np.maximum(self.recovery_curve(v * (1 + step)), self.rc_min)
        lo = np.maximum(self.recovery_curve(v * (1 - step)), self.rc_min)
        out[self.rc_applied] = (np.log(hi) - np.log(lo)) / (np.log1p(step) - np.log1p(-step))
        return out

    def recovery_ratio(self, index: int, volume_ml: np.ndarray) -> np.ndarray:
        """``R(V₀)/R(V)`` of VOI ``index`` at sampled volumes (1 when no RC is applied)."""
        if self.recovery_curve is None or not self.rc_applied[index]:
            return np.ones_like(volume_ml)
        r0 = max(float(self.recovery_curve(np.array([self.volume_ml[index]]))[0]), self.rc_min)
        return r0 / np.maximum(self.recovery_curve(volume_ml), self.rc_min)
