"""Dose–response per workflow: clinical data, survival analysis and published cutoffs.

``harmonize.outcomes`` reads tables only (``patient_index`` and the ``clinical`` table),
never images. Its functions:

* :mod:`~harmonize.outcomes.survival` — Kaplan–Meier, log-rank, Cox (statsmodels), Harrell's
  concordance index, landmark sets;
* :mod:`~harmonize.outcomes.cutoff` — the optimal cutoff by maximally selected log-rank
  statistics with a corrected p-value and a bootstrap interval;
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
