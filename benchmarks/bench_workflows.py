"""Benchmark: the three adapters on one 128³ patient-cycle.

One patient-cycle (128³ voxels, noisy phantom) through montpellier, bordet and milan:
wall time of each ``run`` and the peak memory of the process (registration excluded: the
study has one CT, so the voxel workflow does not register). Beside them, the floors of
the voxel work on the same grid: one memory pass over the study's activity frames (a
sum over time), and ``scipy.signal.fftconvolve`` alone with the dose kernel of the grid
(bordet's convolution step without checks or units). The cohort throughput with 1 and 2
worker processes is ``bench_cohort.py``.

Run: ``python benchmarks/bench_workflows.py`` — prints the figures, the machine and the
load average.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import xarray as xr

from harmonize.phantom import PhantomConfig, make_patient, simulate_study
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
    floors = _floors(study)
    # the floor of each voxel workflow's main voxel step, printed beside its figure
    beside = {
        "montpellier": "floor_one_memory_pass_s",  # voxel fit: a pass over the frames
        "bordet": "floor_fftconvolve_s",  # kernel convolution: fftconvolve alone
    }
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
        if adapter.name in beside:
            figures[f"{adapter.name}_{beside[adapter.name]}"] = floors[beside[adapter.name]]
        figures[f"{adapter.name}_peak_traced_mb"] = peak / 1e6
        total += seconds
    figures["three_adapters_s"] = total
    figures["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    fn()  # warm-up (FFT plans, caches)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _floors(study: xr.Dataset) -> dict[str, float]:
    """The floors of the voxel work on the study's grid (best of 3)."""
    import scipy.fft
    from scipy.signal import fftconvolve

    from harmonize._threads import thread_share
    from harmonize.dose import voxel_kernel

    frames = np.ascontiguousarray(study["activity"].values, dtype=float)
    tia = frames[0]
    kernel = voxel_kernel(tuple(float(v) for v in study.attrs["voxel_size_mm"]))

    def fft() -> None:
        with scipy.fft.set_workers(thread_share()):
            fftconvolve(tia, kernel, mode="same")

    return {
        "floor_one_memory_pass_s": _best(lambda: frames.sum(axis=0)),
        "floor_fftconvolve_s": _best(fft),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run both benchmarks; print and return the figures."""
    del argv
    load_before = os.getloadavg()
    figures = {f"one_study_128_{k}": v for k, v in one_study().items()}
    print(f"machine: {_machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load_before)}")
    for key, value in figures.items():
        print(f"{key:52s} {value:12.4f}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
