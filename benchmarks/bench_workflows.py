"""Benchmark: the three adapters on one 128³ patient-cycle, and cohort throughput.

* one patient-cycle (4 time points, 128³ voxels, noisy phantom) through montpellier,
  bordet and milan: wall time of each ``run`` and the peak memory of the process
  (registration excluded: the study has one CT, so the voxel workflow does not register);
* a 10-study cohort (5 patients × 2 cycles) through all three adapters with 1 and 2
  worker processes: throughput and speed-up.

Run: ``python benchmarks/bench_workflows.py`` — prints the figures and the machine.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from harmonize.phantom import PhantomConfig, make_patient, simulate_study, write_cohort
from harmonize.runner import run_cohort
from workflows.bordet import BordetWorkflow
from workflows.milan import MilanWorkflow
from workflows.montpellier import MontpellierWorkflow

#: 128 voxels of 3.59 mm (a tabulated kernel size) = 459.5 mm on each side.
GRID_128 = PhantomConfig(
    voxel_size_mm=3.59, fov_mm=(459.52,) * 3, times_h=(4.0, 24.0, 72.0, 168.0, 192.0), cycles=(1,)
)


def _machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    )


def one_study() -> dict[str, float]:
    """Time each adapter on one 128³ study with 5 time points (each uses 2–4 of them)."""
    study, _ = simulate_study(make_patient(0, 0, GRID_128), 1, 0, GRID_128)
    figures: dict[str, float] = {"grid_voxels": float(np.prod(GRID_128.shape))}
    total = 0.0
    for adapter in (MontpellierWorkflow(), BordetWorkflow(), MilanWorkflow()):
        adapter.run(study)  # warm caches (kernels, RC curve) so the figure is the steady cost
        tracemalloc.start()
        start = time.perf_counter()
        adapter.run(study)
        seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures[f"{adapter.name}_s"] = seconds
        figures[f"{adapter.name}_peak_traced_mb"] = peak / 1e6
        total += seconds
    figures["three_adapters_s"] = total
    figures["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def cohort_throughput() -> dict[str, float]:
    """10 studies × 3 adapters with 1 and 2 worker processes."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cohort = write_cohort(
            Path(tmp) / "cohort", n_patients=5, seed=0, config=PhantomConfig(cycles=(1, 2))
        )
        for workers in (1, 2):
            start = time.perf_counter()
            report = run_cohort(
                cohort,
                ["montpellier", "bordet", "milan"],
                Path(tmp) / f"out{workers}",
                workers=workers,
            )
            seconds = time.perf_counter() - start
            assert report.ok, report.failures
            figures[f"workers{workers}_s"] = seconds
            figures[f"workers{workers}_studies_per_min"] = 10 * 60.0 / seconds
    figures["speedup_2_vs_1"] = figures["workers1_s"] / figures["workers2_s"]
    return figures


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run both benchmarks; print and return the figures."""
    del argv
    figures = {f"one_study_128_{k}": v for k, v in one_study().items()}
    figures.update({f"cohort10_{k}": v for k, v in cohort_throughput().items()})
    print(f"machine: {_machine()}")
    for key, value in figures.items():
        print(f"{key:44s} {value:12.3f}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
