"""harmonize: compare the absorbed doses that different dosimetry workflows compute for the
same patients.

The public API is listed in ``__all__``; every name and sub-package (``kinetics``, ``dose``,
``compare``, ``indices``, ``schema``, ``phantom``, ``outcomes``) is imported on first use, so that
``import harmonize`` costs no more than the standard library.

>>> import harmonize as hz
>>> round(hz.get_nuclide("Lu-177").half_life_h / 24, 3)  # days, ICRP-107
6.647
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, imported on first use at run time (see __getattr__)
    from harmonize import nuclides
    from harmonize._warnings import HarmonizeWarning
    from harmonize.bundle import open_study, save_study
    from harmonize.cohort import Cohort, CohortError, open_cohort
    from harmonize.errors import HarmonizeError
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
    "HarmonizeError",
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

#: Public name → the module that defines it. ``import harmonize`` imports none of them (pandas,
#: xarray, pyarrow and scipy cost seconds); each is imported on first attribute access.
_LAZY_ATTRIBUTES = {
    "HarmonizeError": "harmonize.errors",
    "HarmonizeWarning": "harmonize._warnings",
    "open_study": "harmonize.bundle",
    "save_study": "harmonize.bundle",
    "Cohort": "harmonize.cohort",
    "CohortError": "harmonize.cohort",
    "open_cohort": "harmonize.cohort",
    "NuclideError": "harmonize.nuclides",
    "get_nuclide": "harmonize.nuclides",
    "get_workflow": "harmonize.registry",
    "list_workflows": "harmonize.registry",
    "register_workflow": "harmonize.registry",
    "run_cohort": "harmonize.runner",
    "SchemaError": "harmonize.schema",
    "read_results": "harmonize.schema",
    "write_results": "harmonize.schema",
    "StudyError": "harmonize.study",
    "make_study": "harmonize.study",
    "validate_study": "harmonize.study",
    "voi_mask": "harmonize.study",
    "voi_table": "harmonize.study",
    "WorkflowAdapter": "harmonize.workflow",
    "WorkflowConfig": "harmonize.workflow",
    "WorkflowError": "harmonize.workflow",
    "WorkflowResult": "harmonize.workflow",
    "WorkflowTags": "harmonize.workflow",
    "param": "harmonize.workflow",
}

_LAZY_SUBMODULES = {
    "compare",
    "deid",
    "dose",
    "indices",
    "io",
    "kinetics",
    "nuclides",
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
    if name in _LAZY_ATTRIBUTES:
        value = getattr(importlib.import_module(_LAZY_ATTRIBUTES[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"harmonize.{name}")
    raise AttributeError(f"module 'harmonize' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_LAZY_SUBMODULES})
