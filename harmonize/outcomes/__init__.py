"""Dose–response per workflow: clinical data, survival analysis and published cutoffs.

``harmonize.outcomes`` reads tables only (``patient_index`` and the ``clinical`` table),
never images. Its functions:

* :mod:`~harmonize.outcomes.survival` — Kaplan–Meier, log-rank, Cox (statsmodels), Harrell's
  concordance index, landmark sets;
* :mod:`~harmonize.outcomes.cutoff` — the optimal cutoff by maximally selected log-rank
  statistics with a corrected p-value and a bootstrap interval;
* :mod:`~harmonize.outcomes.clinical` — the ``clinical`` table: import of a centre's CSV
  (checked, pseudonymised with :func:`harmonize.deid.pseudonym`), writing;
* :mod:`~harmonize.outcomes.simulate` — simulated outcomes from the phantom's true doses;
* :mod:`~harmonize.outcomes.cohort` — calibrated workflow error models and large simulated
  cohorts;
* :mod:`~harmonize.outcomes.dose_response` — the per-workflow tables ``harmonize compare``
  writes when a clinical table is present (published cutoffs raw and translated, Cox per
  10 Gy, optimal cutoffs, Kaplan–Meier, Table 1), with landmarks.
"""

from harmonize.outcomes.cutoff import (
    OptimalCutoff,
    logrank_scores,
    max_statistic_pvalue,
    optimal_cutoff,
)
from harmonize.outcomes.survival import (
    LogRankResult,
    OutcomesError,
    concordance_index,
    cox,
    kaplan_meier,
    landmark,
    logrank,
)

__all__ = [
    "LogRankResult",
    "OptimalCutoff",
    "OutcomesError",
    "concordance_index",
    "cox",
    "kaplan_meier",
    "landmark",
    "logrank",
    "logrank_scores",
    "max_statistic_pvalue",
    "optimal_cutoff",
]
