"""Benchmark: phantom generation and exchange-bundle I/O.

Run: ``python benchmarks/bench_phantom.py`` — prints the figures and the machine.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harmonize import open_study, save_study
from harmonize.phantom import PhantomConfig, make_patient, simulate_study, write_cohort


def _machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Time a default 5-patient × 2-cycle cohort, one large study, and bundle I/O."""
    del argv
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_cohort(
            Path(tmp) / "cohort", n_patients=5, seed=0, config=PhantomConfig(cycles=(1, 2))
        )
        figures["cohort_5x2_default_s"] = time.perf_counter() - start

        big = PhantomConfig(
            voxel_size_mm=1.8, fov_mm=(360.0, 460.8, 460.8), cycles=(1,), noise=True
        )
        start = time.perf_counter()
        patient = make_patient(0, 0, big)
        study, _ = simulate_study(patient, 1, 0, big)
        figures["study_256x256x200_s"] = time.perf_counter() - start
        figures["study_256x256x200_shape"] = float(np.prod(big.shape))

        path = Path(tmp) / "big.nc"
        start = time.perf_counter()
        save_study(study, path)
        figures["bundle_write_s"] = time.perf_counter() - start
        figures["bundle_size_mb"] = path.stat().st_size / 1e6
        start = time.perf_counter()
        open_study(path)
        figures["bundle_read_s"] = time.perf_counter() - start
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"machine: {_machine()}")
    for key, value in figures.items():
        print(f"{key:32s} {value:12.2f}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
