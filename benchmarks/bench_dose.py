"""Benchmark of the dose engines: FFT kernel convolution and local deposition.

Figures: wall time (best of ``--repeat`` runs) and peak memory allocated during one call
(``tracemalloc``, which sees numpy's buffers; scipy's internal FFT scratch space is not
included, so the process peak RSS is printed as well) for TIA maps of 128³ and
256×256×200 voxels at 4.8 mm, plus the kernel derivation time for a non-tabulated
anisotropic voxel, and the floors: of the convolution ``scipy.signal.fftconvolve`` alone with
the same kernel and FFT threads (``conv/fft`` is the ratio to it), of the local deposition
one memory pass over the map (``np.multiply`` by a constant; ``LDM/pass``). Run
``python benchmarks/bench_dose.py``; ``main(argv)`` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc

import numpy as np
import scipy.fft
from scipy.signal import fftconvolve

from harmonize import dose

SHAPES = {"128^3": (128, 128, 128), "256x256x200": (200, 256, 256)}
VOXEL_MM = 4.8


def _timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall time (s) over ``repeat`` calls and tracemalloc peak (MiB) of one call."""
    fn()  # warm-up (kernel cache, FFT plans)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return best, peak / 2**20


def machine() -> dict[str, str | int]:
    """Platform, CPU count and numpy version."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 0,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the figures and return them."""
    parser = argparse.ArgumentParser(description="Benchmark harmonize.dose")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="FFT threads (default: convolve_kernel's, every core of this process)",
    )
    args = parser.parse_args(argv)
    from harmonize._threads import thread_share

    fft_threads = args.workers if args.workers is not None else thread_share()
    rng = np.random.default_rng(0)
    out: dict = {"machine": machine(), "voxel_mm": VOXEL_MM, "workers": fft_threads}
    for name, shape in SHAPES.items():
        tia = rng.uniform(0.0, 1.0, shape)
        input_mib = tia.nbytes / 2**20
        t_conv, m_conv = _timed(
            lambda tia=tia: dose.convolve_kernel(tia, VOXEL_MM, workers=args.workers), args.repeat
        )
        t_ldm, m_ldm = _timed(
            lambda tia=tia: dose.local_deposition(tia, (VOXEL_MM / 10) ** 3), args.repeat
        )
        # Floor: the FFT convolution alone with the same kernel (no checks, no units).
        kernel = dose.voxel_kernel(VOXEL_MM)

        def bare(tia: np.ndarray = tia, kernel: np.ndarray = kernel) -> None:
            with scipy.fft.set_workers(fft_threads):
                fftconvolve(tia, kernel, mode="same")

        t_fft, _ = _timed(bare, args.repeat)
        # Floor of the local deposition: one memory pass (read the map, write the dose).
        t_pass, _ = _timed(lambda tia=tia: np.multiply(tia, 0.5), args.repeat)
        out[name] = {
            "voxels": int(np.prod(shape)),
            "input_mib": round(input_mib, 1),
            # each figure with its floor beside it
            "convolve_s": round(t_conv, 3),
            "fftconvolve_floor_s": round(t_fft, 3),
            "convolve_ratio_to_floor": round(t_conv / t_fft, 2),
            "convolve_peak_mib": round(m_conv, 1),
            "ldm_s": round(t_ldm, 4),
            "one_memory_pass_floor_s": round(t_pass, 4),
            "ldm_ratio_to_floor": round(t_ldm / t_pass, 2),
            "ldm_peak_mib": round(m_ldm, 1),
        }
    from harmonize.dose import kernels

    kernels._kernel_cached.cache_clear()
    t0 = time.perf_counter()
    dose.voxel_kernel((3.3, 3.3, 5.1))
    out["aniso_kernel_derivation_s"] = round(time.perf_counter() - t0, 4)
    out["process_peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    m = out["machine"]
    print(
        f"machine: {m['platform']} | {m['processor']} | {m['cpu_count']} CPUs | "
        f"Python {m['python']} | numpy {m['numpy']}"
    )
    print(f"voxel {VOXEL_MM} mm, FFT workers {fft_threads}, best of {args.repeat}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"{'map':>12} {'voxels':>10} {'input MiB':>9} {'conv s':>7} {'conv peak MiB':>13} "
        f"{'fftconvolve s':>13} {'conv/fft':>8} {'LDM s':>7} {'LDM peak MiB':>12} "
        f"{'1 pass s':>8} {'LDM/pass':>8}"
    )
    for name in SHAPES:
        r = out[name]
        print(
            f"{name:>12} {r['voxels']:>10} {r['input_mib']:>9} {r['convolve_s']:>7} "
            f"{r['convolve_peak_mib']:>13} {r['fftconvolve_floor_s']:>13} "
            f"{r['convolve_ratio_to_floor']:>8} {r['ldm_s']:>7} {r['ldm_peak_mib']:>12} "
            f"{r['one_memory_pass_floor_s']:>8} {r['ldm_ratio_to_floor']:>8}"
        )
    print(f"anisotropic kernel (3.3, 3.3, 5.1) mm derived in {out['aniso_kernel_derivation_s']} s")
    print(f"process peak RSS: {out['process_peak_rss_mib']} MiB")
    return out


if __name__ == "__main__":
    main()
