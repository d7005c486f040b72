"""Comparison engine: agreement statistics, cutoff agreement and cutoff translation.

Every function reads tables only (``voi_dose``, ``patient_index``), never images. Sign
convention: pair statistics are of ``a − b`` (``workflow_a − workflow_b``); ground truth
of a phantom is just the workflow ``"truth"``, so accuracy is ``reference="truth"``.
"""

from harmonize.compare._common import CompareError, UnpairedRowsWarning
from harmonize.compare.agreement import (
    AGREEMENT_COLUMNS,
    agreement,
    align,
    write_agreement,
)
from harmonize.compare.blandaltman import (
    BlandAltmanRegressionResult,
    BlandAltmanResult,
    RepeatedBlandAltmanResult,
    bland_altman,
    bland_altman_regression,
    bland_altman_repeated,
)
from harmonize.compare.concordance import ConcordanceResult, lin_ccc
from harmonize.compare.cutoffs import (
    END_OF_TREATMENT,
    CutoffAgreement,
    CutoffTranslation,
    cutoff_agreement,
    load_cutoffs,
    translate_cutoff,
    treatment_end,
)
from harmonize.compare.icc import icc, icc_mixed
from harmonize.compare.kappa import (
    CohenKappaResult,
    FleissKappaResult,
    cohen_kappa,
    fleiss_kappa,
)
from harmonize.compare.regression import (
    DemingResult,
    PassingBablokResult,
    deming,
    passing_bablok,
)
from harmonize.compare.variance import (
    WithinSubjectResult,
    variance_components,
    within_subject,
)

__all__ = [
    "AGREEMENT_COLUMNS",
    "END_OF_TREATMENT",
    "BlandAltmanRegressionResult",
    "BlandAltmanResult",
    "CohenKappaResult",
    "CompareError",
    "ConcordanceResult",
    "CutoffAgreement",
    "CutoffTranslation",
    "DemingResult",
    "FleissKappaResult",
    "PassingBablokResult",
    "RepeatedBlandAltmanResult",
    "UnpairedRowsWarning",
    "WithinSubjectResult",
    "agreement",
    "align",
    "bland_altman",
    "bland_altman_regression",
    "bland_altman_repeated",
    "cohen_kappa",
    "cutoff_agreement",
    "deming",
    "fleiss_kappa",
    "icc",
    "icc_mixed",
    "lin_ccc",
    "load_cutoffs",
    "passing_bablok",
    "translate_cutoff",
    "treatment_end",
    "variance_components",
    "within_subject",
    "write_agreement",
]
