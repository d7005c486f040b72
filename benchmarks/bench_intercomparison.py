"""Benchmark of the results-template validation and of Algorithm A on many items.

A synthetic exercise of 200 patients × 4 cycles × 20 VOIs (16 000 template rows) is
validated cell by cell against its VOI table (:func:`harmonize.intercomparison.
results_import._validate`, the step ``harmonize import-results`` spends its time in), and
ISO 13528 Algorithm A runs on 16 000 items × 12 participants at once. Run:
``python benchmarks/bench_intercomparison.py [--patients N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harmonize.intercomparison.package import Package
from harmonize.intercomparison.proficiency import algorithm_a
from harmonize.intercomparison.results_import import _validate
from harmonize.intercomparison.template import TEMPLATE_COLUMNS, template_frame


def synthetic_package(n_patients: int, n_cycles: int = 4, n_vois: int = 20) -> Package:
    """A package's VOI table only (what the validation reads)."""
    patients = np.repeat([f"ANON-{i:012d}" for i in range(n_patients)], n_cycles * n_vois)
    cycles = np.tile(np.repeat(np.arange(1, n_cycles + 1), n_vois), n_patients)
    vois = np.tile(np.arange(1, n_vois + 1), n_patients * n_cycles)
    table = pd.DataFrame(
        {
            "patient_id": patients,
            "cycle": cycles,
            "center": "phantom",
            "voi_id": vois,
            "voi_name": [f"lesion_{v:02d}" for v in vois],
            "voi_kind": "lesion",
            "parent_voi_id": 0,
            "n_voxels": 100,
            "volume_ml": 10.0,
            "mass_g": 10.4,
            "injected_activity_mbq": 7400.0,
            "study_path": "studies/x.nc",
        }
    )
    return Package(root=Path("."), vois=table, manifest={})


def filled_cells(package: Package, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """The template of the package filled with plausible numbers, as raw cells."""
    rng = np.random.default_rng(seed)
    template = template_frame(package.vois)
    body = template.iloc[1:].copy()
    n = len(body)
    mean = rng.lognormal(np.log(20.0), 0.5, n)
    body["dose_mean_gy"] = mean
    body["dose_min_gy"] = mean * 0.5
    body["dose_median_gy"] = mean
    body["dose_max_gy"] = mean * 2.0
    body["mass_g"] = 10.4
    cells = pd.concat([template.iloc[:1], body]).astype(object)
    header = [c.name for c in TEMPLATE_COLUMNS]
    cells.columns = range(len(header))
    cells.index = np.arange(2, 2 + len(cells))
    return cells, header


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--participants", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    package = synthetic_package(args.patients)
    cells, header = filled_cells(package)
    validate_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rows, problems = _validate(cells, header, package, "bench.csv")
        validate_s.append(time.perf_counter() - t0)
        assert not problems and len(rows) == len(package.vois), problems[:3]
    rng = np.random.default_rng(1)
    values = rng.normal(30.0, 3.0, size=(len(package.vois), args.participants))
    values[:, 0] *= 3.0  # one participant far off on every item
    robust_s = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = algorithm_a(values)
        robust_s.append(time.perf_counter() - t0)
    figures = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "template_rows": len(package.vois),
        "validate_seconds_median": float(np.median(validate_s)),
        "algorithm_a_items": values.shape[0],
        "algorithm_a_participants": values.shape[1],
        "algorithm_a_iterations": out.n_iter,
        "algorithm_a_seconds_median": float(np.median(robust_s)),
    }
    for k, v in figures.items():
        print(f"{k:>28}: {v}")
    return figures


if __name__ == "__main__":
    main()
