"""The optimal dose cutoff by maximally selected log-rank statistics, with honest p and CI.

Searching all cutoffs for the one that best separates survival and then testing it as if it
had been fixed in advance inflates the type-I error enormously (Altman et al. 1994, J Natl
Cancer Inst 86:829: a nominal 5 % test rejects in about 40 % of null data sets). The method
of Lausen & Schumacher (1992, Biometrics 48:73) corrects for the search:

* every candidate split "dose ≤ μ vs dose > μ" with between ``min_prop`` and ``max_prop``
  of the patients in the lower group is scored by the standardised linear rank statistic
  with log-rank (Savage) scores ``a_i = δ_i − Λ̂(t_i)`` (Λ̂ the pooled Nelson–Aalen
  cumulative hazard, read off statsmodels' ``SurvfuncRight`` risk sets), with the exact
  permutation mean and variance (Hothorn & Lausen 2003, Comput Stat Data Anal 43:121,
  §2); the numerator Σ_{lower} a_i is the log-rank O − E of the lower group;
* the maximum |Z| over the candidates is compared with the distribution of the maximum of
  a standardised Brownian bridge, P(max |Z| ≥ b) ≈ φ(b)(b − 1/b) log(ε₂(1−ε₁)/((1−ε₂)ε₁))
  + 4φ(b)/b (Miller & Siegmund 1982, Biometrics 38:1011; Lausen & Schumacher 1992, eq. 4),
  reported as ``pvalue_adjusted``;
* the conditional (permutation) distribution of the maximum, Monte Carlo with a seeded
  generator (Hothorn & Lausen 2003, "condMC"), reported as ``pvalue_permutation``; it
  needs no asymptotics and is the one to trust in small samples;
* a percentile bootstrap interval of the cutoff (patients resampled with replacement, the
  whole search repeated). The cutoff is a change-point estimate whose bootstrap is not
  guaranteed to have nominal coverage (its sampling distribution is not normal and
  converges at a rate other than √n); the interval shows how unstable the cutoff is, and
  ``benchmarks/bench_outcomes.py`` measures its coverage on simulated data.

The reported cutoff is the midpoint between the largest dose of the lower group and the
smallest of the upper group at the maximising split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from harmonize.outcomes.survival import OutcomesError, _survival_columns

__all__ = [
    "OptimalCutoff",
    "logrank_scores",
    "max_statistic_pvalue",
    "optimal_cutoff",
]


@dataclass(frozen=True)
class OptimalCutoff:
    """The maximally selected log-rank cutoff of a dose.

    Attributes
    ----------
    cutoff : float
        Dose that best separates survival (midpoint between the groups at the best split).
    ci : (float, float)
        Percentile bootstrap interval of the cutoff at ``ci_level``.
    statistic : float
        Maximum standardised log-rank statistic |Z| over the candidate splits.
    pvalue_adjusted : float
        Lausen & Schumacher (1992) p-value corrected for the search (capped at 1).
    pvalue_permutation : float
        Monte Carlo conditional p-value of the maximum (Hothorn & Lausen 2003).
    pvalue_naive : float
        The uncorrected two-sided p-value of |Z| at the chosen split (shown to be ignored).
    n, n_events, n_low, n_high : int
        Patients, events, patients at or below / above the cutoff.
    min_prop, max_prop : float
        Range of the lower group's share searched.
    n_boot, n_perm : int
        Bootstrap resamples and permutations.
    ci_level : float
        Level of ``ci``.
    candidates : pandas.DataFrame
        ``cutoff``, ``n_low``, ``z`` of every split searched (the statistic profile).
    """

    cutoff: float
    ci: tuple[float, float]
    statistic: float
    pvalue_adjusted: float
    pvalue_permutation: float
    pvalue_naive: float
    n: int
    n_events: int
    n_low: int
    n_high: int
    min_prop: float
    max_prop: float
    n_boot: int
    n_perm: int
    ci_level: float
    candidates: pd.DataFrame


def logrank_scores(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Log-rank (Savage) scores ``δ_i − Λ̂(t_i)`` with Λ̂ the pooled Nelson–Aalen estimate.

    The risk-set counts come from statsmodels' ``SurvfuncRight``; Λ̂(t) = Σ_{s ≤ t} d_s/n_s.
    The scores sum to zero (they are the martingale residuals of the null model).

    Examples
    --------
    >>> a = logrank_scores(np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0]))
    >>> np.round(a, 4).tolist()
    [0.6667, 0.1667, -0.8333]
    """
    from statsmodels.duration.survfunc import SurvfuncRight

    if not np.any(event):
        return np.zeros(len(time))
    sf = SurvfuncRight(time, event)
    cumhaz = np.cumsum(np.asarray(sf.n_events, dtype=float) / np.asarray(sf.n_risk, dtype=float))
    at = np.searchsorted(np.asarray(sf.surv_times, dtype=float), time, side="right")
    hazard = np.where(at > 0, cumhaz[np.maximum(at - 1, 0)], 0.0)
    return event.astype(float) - hazard


def max_statistic_pvalue(b: float, min_prop: float, max_prop: float) -> float:
    """Lausen & Schumacher (1992) approximation of P(max |Z| ≥ b) over [min_prop, max_prop].

    Examples
    --------
    >>> round(max_statistic_pvalue(3.0, 0.1, 0.9), 4)  # φ(3)·(3 − 1/3)·ln 81 + 4φ(3)/3
    0.0578
    """
    if b <= 0:
        return 1.0
    phi = stats.norm.pdf(b)
    span = np.log(max_prop * (1.0 - min_prop) / ((1.0 - max_prop) * min_prop))
    return float(min(1.0, phi * (b - 1.0 / b) * span + 4.0 * phi / b))


def _splits(dose_sorted: np.ndarray, min_prop: float, max_prop: float) -> np.ndarray:
    """Sizes m of the lower group at every admissible split (between distinct doses)."""
    n = dose_sorted.size
    m = np.flatnonzero(np.diff(dose_sorted) > 0) + 1  # lower group = first m sorted doses
    return m[(m >= np.ceil(min_prop * n)) & (m <= np.floor(max_prop * n))]


def _z_profile(scores_sorted: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Standardised linear rank statistics for lower groups of sizes ``m`` (rows: permutations)."""
    n = scores_sorted.shape[-1]
    mean = scores_sorted.mean(axis=-1, keepdims=True)
    ss = ((scores_sorted - mean) ** 2).sum(axis=-1, keepdims=True)
    cum = np.cumsum(scores_sorted, axis=-1)[..., m - 1]
    var = m * (n - m) / (n * (n - 1.0)) * ss
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (cum - m * mean) / np.sqrt(var)
    return np.where(var > 0, z, 0.0)


def _best(
    time: np.ndarray, event: np.ndarray, dose: np.ndarray, min_prop: float, max_prop: float
) -> tuple[float, float, int, np.ndarray, np.ndarray, np.ndarray] | None:
    order = np.argsort(dose, kind="stable")
    d = dose[order]
    m = _splits(d, min_prop, max_prop)
    if m.size == 0:
        return None
    scores = logrank_scores(time[order], event[order])
    z = _z_profile(scores, m)
    k = int(np.argmax(np.abs(z)))
    cut = 0.5 * (d[m[k] - 1] + d[m[k]])
    return float(cut), float(abs(z[k])), int(m[k]), m, z, scores


def optimal_cutoff(
    df: pd.DataFrame,
    duration: str,
    event: str,
    dose: str,
    *,
    min_prop: float = 0.1,
    max_prop: float = 0.9,
    n_boot: int = 1000,
    n_perm: int = 1000,
    ci_level: float = 0.95,
    seed: int = 0,
) -> OptimalCutoff:
    """Optimal dose cutoff by maximally selected log-rank statistics (see module docstring).

    Parameters
    ----------
    df : pandas.DataFrame
        One row per patient.
    duration, event : str
        Follow-up time and event indicator columns.
    dose : str
        Numeric column searched for a cutoff.
    min_prop, max_prop : float
        Smallest and largest share of patients in the lower group (Lausen & Schumacher's
        ε₁ and 1 − ε₂; 0.1 and 0.9 as in their paper).
    n_boot : int
        Bootstrap resamples for ``ci`` (0 disables it: ``ci`` is then (nan, nan)).
    n_perm : int
        Permutations for ``pvalue_permutation`` (0 disables it: NaN).
    ci_level : float
        Level of the bootstrap interval.
    seed : int
        Seed of the bootstrap and permutation generator (results are reproducible).

    Returns
    -------
    OptimalCutoff

    Raises
    ------
    OutcomesError
        Missing or invalid columns, fewer than 10 patients, no event, or no admissible split.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> dose = rng.uniform(10, 60, 120)
    >>> t = rng.exponential(np.where(dose >= 35, 40.0, 15.0))
    >>> d = pd.DataFrame({"t": t, "e": 1, "dose": dose})
    >>> res = optimal_cutoff(d, "t", "e", "dose", n_boot=200, n_perm=200)
    >>> 25 < res.cutoff < 45 and res.pvalue_adjusted < 0.05
    True
    """
    if not 0.0 < min_prop < max_prop < 1.0:
        raise OutcomesError(f"need 0 < min_prop < max_prop < 1, got {min_prop}, {max_prop}")
    if not 0.0 < ci_level < 1.0:
        raise OutcomesError(f"ci_level must be in (0, 1), got {ci_level}")
    data = _survival_columns(df, duration, event, (dose,))
    x = pd.to_numeric(data[dose], errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(x).all():
        raise OutcomesError(f"column {dose!r} must hold finite numbers")
    t = data[duration].to_numpy(dtype=float)
    e = data[event].to_numpy(dtype=int)
    if len(t) < 10:
        raise OutcomesError(f"optimal_cutoff needs at least 10 patients, got {len(t)}")
    if e.sum() == 0:
        raise OutcomesError(f"no events in column {event!r}")
    best = _best(t, e, x, min_prop, max_prop)
    if best is None:
        raise OutcomesError(
            f"no split of {dose!r} leaves between {min_prop:.0%} and {max_prop:.0%} of the "
            "patients in the lower group (too many tied doses?)"
        )
    cut, zmax, m_best, m, z, scores = best
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 15]))
    p_perm = float("nan")
    if n_perm > 0:
        perms = rng.permuted(np.tile(scores, (n_perm, 1)), axis=1)
        zp = np.abs(_z_profile(perms, m)).max(axis=1)
        p_perm = float((1 + np.sum(zp >= zmax - 1e-12)) / (n_perm + 1))
    ci = (float("nan"), float("nan"))
    if n_boot > 0:
        cuts = []
        n = len(t)
        for _ in range(n_boot):
            idx = rng.integers(0, n, n)
            if e[idx].sum() == 0:
                continue
            res = _best(t[idx], e[idx], x[idx], min_prop, max_prop)
            if res is not None:
                cuts.append(res[0])
        if cuts:
            alpha = 1.0 - ci_level
            low, high = np.quantile(cuts, [alpha / 2.0, 1.0 - alpha / 2.0])
            ci = (float(low), float(high))
    xs = np.sort(x)
    return OptimalCutoff(
        cutoff=cut,
        ci=ci,
        statistic=zmax,
        pvalue_adjusted=max_statistic_pvalue(zmax, min_prop, max_prop),
        pvalue_permutation=p_perm,
        pvalue_naive=float(2.0 * stats.norm.sf(zmax)),
        n=len(t),
        n_events=int(e.sum()),
        n_low=m_best,
        n_high=len(t) - m_best,
        min_prop=min_prop,
        max_prop=max_prop,
        n_boot=n_boot,
        n_perm=n_perm,
        ci_level=ci_level,
        candidates=pd.DataFrame({"cutoff": 0.5 * (xs[m - 1] + xs[m]), "n_low": m, "z": z}),
    )
