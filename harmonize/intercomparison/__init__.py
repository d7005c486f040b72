"""Intercomparison exercises: what centres' own clinical software produces, on one footing.

In a multicentre exercise (the SNMMI Lu-177 dosimetry challenge is the model) each centre
runs its *own* software on one shared, de-identified dataset and sends back numbers or dose
maps. This package serves the organiser:

* :func:`pack` — the exercise package: de-identified studies, shared VOIs, a results
  template (CSV and XLSX), a method sheet (EANM reporting items), a SHA-256 manifest;
* :func:`import_results` — a filled template, validated cell by cell against the package,
  written as ``voi_dose`` / ``patient_index`` / ``run`` tables;
* :func:`import_dose_maps` — RT Dose or NIfTI dose maps, reduced on the shared VOIs with
  the code the built-in adapters use;
* :mod:`harmonize.intercomparison.proficiency` — ISO 13528 statistics (assigned value,
  Algorithm A, z-scores, En numbers) and the participant reports.

The imported results are ordinary results folders: ``harmonize compare`` and ``harmonize
report`` treat a centre's own software like any adapter.
"""

from __future__ import annotations

from harmonize.intercomparison.dose_maps import import_dose_maps, read_dose_map
from harmonize.intercomparison.package import Package, PackageError, open_package, pack
from harmonize.intercomparison.results_import import (
    ImportReport,
    ResultsImportError,
    import_results,
)

__all__ = [
    "ImportReport",
    "Package",
    "PackageError",
    "ResultsImportError",
    "import_dose_maps",
    "import_results",
    "open_package",
    "pack",
    "read_dose_map",
]
