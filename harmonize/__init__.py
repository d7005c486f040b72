"""harmonize: compare the absorbed doses that different dosimetry workflows compute for the
same patients.

The public API is listed in ``__all__``; sub-packages (``kinetics``, ``dose``, ``compare``,
``indices``, ``schema``, ``phantom``, ``outcomes``) are imported on first use.

>>> import harmonize as hz
>>> round(hz.get_nuclide("Lu-177").half_life_h / 24, 3)  # days, ICRP-107
6.647
"""

from __future__ import annotations

import importlib
from typing import Any

from harmonize import nuclides
from harmonize._warnings import HarmonizeWarning
from harmonize.bundle import open_study, save_study
from harmonize.cohort import Cohort, CohortError, open_cohort
from harmonize.nuclides import NuclideError, get_nuclide
from harmonize.registry import get_workflow, list_workflows, register_workflow
from harmonize.runner import run_cohort
from harmonize.schema import SchemaError, read_results, write_results
from harmonize.study import StudyError, make_study, validate_study, voi_mask, voi_table
from harmonize.workflow import (
    WorkflowAdapter,
    WorkflowConfig,
    WorkflowError,
    WorkflowResult,
    WorkflowTags,
    param,
)

__version__ = "0.1.0"

__all__ = [
    "Cohort",
    "CohortError",
    "HarmonizeWarning",
    "NuclideError",
    "SchemaError",
    "StudyError",
    "WorkflowAdapter",
    "WorkflowConfig",
    "WorkflowError",
    "WorkflowResult",
    "WorkflowTags",
    "__version__",
    "get_nuclide",
    "get_workflow",
    "list_workflows",
    "make_study",
    "nuclides",
    "open_cohort",
    "open_study",
    "param",
    "read_results",
    "register_workflow",
    "run_cohort",
    "save_study",
    "validate_study",
    "voi_mask",
    "voi_table",
    "write_results",
]

_LAZY_SUBMODULES = {
    "compare",
    "deid",
    "dose",
    "indices",
    "io",
    "kinetics",
    "outcomes",
    "phantom",
    "pipeline",
    "pvc",
    "registration",
    "report",
    "schema",
    "testing",
    "truth",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"harmonize.{name}")
    raise AttributeError(f"module 'harmonize' has no attribute {name!r}")
