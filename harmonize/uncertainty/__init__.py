"""Uncertainty of every dose: the EANM 2018 chain, by two independent methods.

Gear JD et al., EANM practical guidance on uncertainty analysis for molecular radiotherapy
absorbed dose calculations, Eur J Nucl Med Mol Imaging 2018;45:2456–2474 (Gear2018) defines
the chain ``A = C/(Q·R)``, ``Ã = ∫A dt``, ``D = Ã·S``. This package propagates it per VOI:

* :mod:`~harmonize.uncertainty.chain` — the measurement model and its inputs;
* :mod:`~harmonize.uncertainty.tia` — the workflows' TIA rules, vectorised, with their
  sensitivity vectors;
* :mod:`~harmonize.uncertainty.boundary` — segmentation: how VOI sums change with volume;
* :mod:`~harmonize.uncertainty.analytic` — GUM law of propagation (JCGM 100:2008);
* :mod:`~harmonize.uncertainty.montecarlo` — GUM Supplement 1 (JCGM 101:2008);
* :mod:`~harmonize.uncertainty.patient` — patient indices (min/median/max lesion dose,
  global mean, cumulative) by Monte Carlo over the VOI budgets;
* :mod:`~harmonize.uncertainty.config` — what an adapter declares.
"""

from harmonize.uncertainty.analytic import analytic_budget, summarise_budget
from harmonize.uncertainty.boundary import boundary_slopes
from harmonize.uncertainty.chain import COMPONENTS, SHARED_COMPONENTS, ComponentValues, VoiChain
from harmonize.uncertainty.config import UncertaintyConfig
from harmonize.uncertainty.montecarlo import monte_carlo
from harmonize.uncertainty.patient import INDEX_COLUMNS, patient_index_uncertainty
from harmonize.uncertainty.tia import (
    TiaRule,
    head_bounds,
    integral_sensitivity,
    parameter_covariance,
    tia_columns,
    tia_gradient,
)

__all__ = [
    "COMPONENTS",
    "INDEX_COLUMNS",
    "SHARED_COMPONENTS",
    "ComponentValues",
    "TiaRule",
    "UncertaintyConfig",
    "VoiChain",
    "analytic_budget",
    "boundary_slopes",
    "head_bounds",
    "integral_sensitivity",
    "monte_carlo",
    "parameter_covariance",
    "patient_index_uncertainty",
    "summarise_budget",
    "tia_columns",
    "tia_gradient",
]
