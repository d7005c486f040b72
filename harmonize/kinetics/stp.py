"""Single-time-point (STP) estimates of the time-integrated activity.

Both methods assume a mono-exponential curve through the one measurement and no uptake
phase. For a mono-exponential with effective decay constant ``λ`` the exact TIA from a
measurement ``A(t)`` is ``A(t)·e^(λt)/λ``.

Hänscheid (Hanscheid2018: Hänscheid H et al. J Nucl Med 2018;59:75,
doi:10.2967/jnumed.117.193706) replaces the unknown ``λ`` by the approximation
``TIA ≈ 2·A(t)·t/ln 2``, recommended for a measurement at about 72–96 h. Its ratio to the
exact value is ``(2/ln 2)·x·e^(−x)`` with ``x = λt = ln 2·t/T_eff``: it is exact when
``T_eff = t`` or ``T_eff = t/2`` (``x = ln 2`` and ``x = 2 ln 2``), overestimates in
between by at most ``2/(e·ln 2) − 1 ≈ 6.1 %`` (at ``T_eff = t·ln 2``), and underestimates
outside that range.

Madsen (Madsen2018: Madsen MT et al. Med Phys 2018;45:2318, doi:10.1002/mp.12886) uses
a prior effective half-life ``T_eff`` (e.g. a population value):
``TIA = A(t)·e^(λ t)/λ`` with ``λ = ln 2/T_eff``; exact when the prior is the true value.

Examples
--------
>>> from harmonize.kinetics import stp_hanscheid, stp_madsen
>>> round(float(stp_hanscheid(96.0, 10.0)), 3)  # 2·10·96/ln 2
2769.974
>>> round(float(stp_madsen(96.0, 10.0, t_eff_h=96.0)), 3)  # 10·2·96/ln 2: same when t = T_eff
2769.974
"""

from __future__ import annotations

import math

import numpy as np

from harmonize.kinetics._validate import KineticsError

__all__ = [
    "HANSCHEID2018_VALID_TIME_RANGE_H",
    "stp_hanscheid",
    "stp_madsen",
]

#: Measurement times for which Hanscheid2018 (doi:10.2967/jnumed.117.193706) recommends the
#: approximation, in hours (3–4 days after administration).
HANSCHEID2018_VALID_TIME_RANGE_H = (72.0, 96.0)


def _as_array(name: str, value: object, *, positive: bool) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise KineticsError(f"{name} must be numbers: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise KineticsError(f"{name} contains NaN or infinite values")
    if positive and np.any(arr <= 0):
        raise KineticsError(f"{name} must be > 0, got {arr.tolist()}")
    return arr


def stp_hanscheid(t_h: object, activity: object) -> np.ndarray:
    """Hänscheid's single-time-point TIA: ``2·A(t)·t/ln 2`` (activity unit·h).

    Parameters
    ----------
    t_h : array_like
        Measurement time(s) after administration, h (> 0); recommended 72–96 h
        (:data:`HANSCHEID2018_VALID_TIME_RANGE_H`).
    activity : array_like
        Activity at ``t_h``, broadcast against ``t_h``.

    Returns
    -------
    numpy.ndarray
        TIA, broadcast shape of the inputs.

    Raises
    ------
    KineticsError
        On non-finite input or a time ``<= 0``.
    """
    t = _as_array("t_h", t_h, positive=True)
    a = _as_array("activity", activity, positive=False)
    return 2.0 * a * t / math.log(2.0)


def stp_madsen(t_h: object, activity: object, t_eff_h: object) -> np.ndarray:
    """Madsen's single-time-point TIA with a prior effective half-life.

    ``TIA = A(t)·exp(λ_eff·t)/λ_eff`` with ``λ_eff = ln 2 / t_eff_h``.

    Parameters
    ----------
    t_h : array_like
        Measurement time(s) after administration, h (>= 0).
    activity : array_like
        Activity at ``t_h``.
    t_eff_h : array_like
        Prior effective half-life(s), h (> 0). All three broadcast together.

    Returns
    -------
    numpy.ndarray
        TIA in activity unit·h.

    Raises
    ------
    KineticsError
        On non-finite input, a negative time or a half-life ``<= 0``.
    """
    t = _as_array("t_h", t_h, positive=False)
    if np.any(t < 0):
        raise KineticsError(f"t_h must be >= 0, got {t.tolist()}")
    a = _as_array("activity", activity, positive=False)
    t_eff = _as_array("t_eff_h", t_eff_h, positive=True)
    lam = math.log(2.0) / t_eff
    return a * np.exp(lam * t) / lam
