"""Benchmark: voxel-level TIA fitting throughput of :func:`harmonize.kinetics.fit_voxels`.

A synthetic 128³ study at the Montpellier time points 4, 24, 72, 192 h: per-voxel amplitudes
log-normally distributed over three decades, effective half-lives 30–150 h (177Lu-DOTATATE
range), 10 % multiplicative noise plus additive background noise (which makes some low voxels
zero or negative, as real SPECT does). Timed:

* ``fit_voxels(model="monoexp")`` and ``fit_voxels(model="trapezoid", tail="monoexp")`` on
  the whole volume (float32 input, as SPECT images are stored);
* a per-voxel :func:`scipy.optimize.curve_fit` loop (the way per-voxel tools are usually
  written) on a random subset, extrapolated to the whole volume;
* peak memory of the vectorised fit (``tracemalloc``, numpy allocations included) and the
  process's maximum resident set size;
* the **floors**, timed in the same rounds (paired, medians): one memory pass over the
  series (``sum`` over time), a closed-form log-linear fit of every voxel (the floor of the
  mono-exponential) and the trapezoid's own passes (``np.trapezoid`` plus a physical tail,
  the floor of the trapezoid); each fit's ratio to its floor is printed (the median of the
  rounds' paired ratios, with the lowest and highest), with the default thread count and
  with one thread (and the speed-up of the threads over one); and like with like, the
  trapezoid with a physical tail against those passes, and the trapezoid with its
  mono-exponential tail against the same passes with a closed-form two-point tail;
* single TACs side by side: :func:`harmonize.kinetics.fit_tac` against a bare
  :func:`scipy.optimize.curve_fit` of the same model (no bounds, checks, integral or flags),
  per TAC, paired rounds, medians: the mono-exponential on 4 points and the bi-exponential
  with uptake on 7.

Run ``python benchmarks/bench_kinetics.py [--size 128] [--subset 2000] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc
import warnings

import numpy as np
import scipy
from scipy.optimize import OptimizeWarning, curve_fit

from harmonize import kinetics
from harmonize.nuclides import get_nuclide

TIMES_H = np.array([4.0, 24.0, 72.0, 192.0])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def make_study(size: int, seed: int = 0) -> np.ndarray:
    """Synthetic (time, z, y, x) float32 activity series (MBq per voxel scale)."""
    rng = np.random.default_rng(seed)
    shape = (size, size, size)
    a0 = np.exp(rng.normal(np.log(0.05), 1.2, shape))
    t_eff = rng.uniform(30.0, 150.0, shape)
    lam = np.log(2.0) / t_eff
    out = np.empty((TIMES_H.size, *shape), dtype=np.float32)
    for i, t in enumerate(TIMES_H):
        clean = a0 * np.exp(-lam * t)
        noisy = clean * (1.0 + 0.1 * rng.standard_normal(shape)) + 0.002 * rng.standard_normal(
            shape
        )
        out[i] = noisy
    return out


def _monoexp(t: np.ndarray, a: float, lam: float) -> np.ndarray:
    return a * np.exp(-lam * t)


def curve_fit_loop(activity_2d: np.ndarray, lam_phys: float) -> np.ndarray:
    """Per-voxel reference: ``curve_fit`` with bounds λ >= λ_phys; rows a, λ (NaN if failed)."""
    out = np.full((2, activity_2d.shape[1]), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        for j in range(activity_2d.shape[1]):  # the per-voxel loop being benchmarked
            y = activity_2d[:, j].astype(float)
            try:
                (a, lam), _ = curve_fit(
                    _monoexp,
                    TIMES_H,
                    y,
                    p0=(max(float(y[0]), 1e-6) * 1.1, 0.01),
                    bounds=([0.0, lam_phys], [np.inf, np.inf]),
                )
                out[:, j] = a, lam
            except RuntimeError:
                pass
    return out


def loglin_floor(study: np.ndarray) -> np.ndarray:
    """Closed-form log-linear mono-exponential TIA of every voxel (no weights, no checks)."""
    y = study.reshape(study.shape[0], -1).astype(float)
    z = np.log(np.maximum(y, 1e-30))
    tc = TIMES_H - TIMES_H.mean()
    slope = tc @ z / (tc @ tc)
    intercept = z.mean(axis=0) - slope * TIMES_H.mean()
    return np.exp(intercept) / np.maximum(-slope, 1e-12)


def trapezoid_floor(study: np.ndarray, lam_phys: float) -> np.ndarray:
    """Trapezoid with a linear head and a physical tail: the trapezoid's own memory passes."""
    y = study.reshape(study.shape[0], -1).astype(float)
    return np.trapezoid(y, TIMES_H, axis=0) + 0.5 * y[0] * TIMES_H[0] + y[-1] / lam_phys


def trapezoid_two_point_tail_floor(study: np.ndarray, lam_phys: float) -> np.ndarray:
    """Trapezoid with a linear head and a closed-form mono-exponential tail through the last
    two points (λ from their log ratio, at least λ_phys): the passes of
    ``fit_voxels(model="trapezoid", tail="monoexp")`` without its weights, checks or flags."""
    y = study.reshape(study.shape[0], -1).astype(float)
    body = np.trapezoid(y, TIMES_H, axis=0) + 0.5 * y[0] * TIMES_H[0]
    last = np.maximum(y[-2:], 1e-30)
    lam = np.maximum(np.log(last[0] / last[1]) / (TIMES_H[-1] - TIMES_H[-2]), lam_phys)
    return body + y[-1] / lam


def _paired(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Wall times of every function, interleaved round by round (same load in a round)."""
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def _ratio(times: dict[str, list[float]], num: str, den: str) -> float:
    """Median over rounds of the paired ratio num/den."""
    return float(np.median(np.array(times[num]) / np.array(times[den])))


def _ratio_range(times: dict[str, list[float]], num: str, den: str) -> str:
    """Lowest and highest of the rounds' paired ratios num/den, as text."""
    ratios = np.array(times[num]) / np.array(times[den])
    return f"{ratios.min():.2f}-{ratios.max():.2f}"


def _biexp_uptake(t: np.ndarray, a: float, l1: float, l2: float) -> np.ndarray:
    return a * (np.exp(-l1 * t) - np.exp(-l2 * t))


def single_tac_side_by_side(rounds: int, n_tacs: int = 100) -> dict:
    """fit_tac against a bare curve_fit per TAC (seconds per TAC, paired medians)."""
    rng = np.random.default_rng(5)
    t7 = np.array([1.0, 4.0, 24.0, 48.0, 72.0, 120.0, 192.0])
    lam = rng.uniform(np.log(2) / 150, np.log(2) / 30, n_tacs)
    mono = 50.0 * np.exp(-np.outer(lam, TIMES_H)) * (1 + 0.05 * rng.standard_normal((n_tacs, 4)))
    clean = 80.0 * (np.exp(-np.outer(lam, t7)) - np.exp(-0.3 * t7))
    bi = clean * (1 + 0.05 * rng.standard_normal((n_tacs, 7)))

    def loop(fn, data):
        return lambda: [fn(row) for row in data]

    fns = {
        "fit_tac_monoexp": loop(lambda y: kinetics.fit_tac(TIMES_H, y, model="monoexp"), mono),
        "curve_fit_monoexp": loop(
            lambda y: curve_fit(_monoexp, TIMES_H, y, p0=(float(y[0]), 0.01)), mono
        ),
        "fit_tac_biexp_uptake": loop(lambda y: kinetics.fit_tac(t7, y, model="biexp_uptake"), bi),
        "curve_fit_biexp_uptake": loop(
            lambda y: curve_fit(_biexp_uptake, t7, y, p0=(2 * float(y.max()), 0.01, 0.2)), bi
        ),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OptimizeWarning)
        times = _paired(fns, rounds)
    out = {f"{k}_ms_per_tac": 1e3 * float(np.median(v)) / n_tacs for k, v in times.items()}
    out["n_tacs"] = n_tacs
    out["load_average_1min"] = os.getloadavg()[0]
    out["monoexp_ratio_to_curve_fit"] = _ratio(times, "fit_tac_monoexp", "curve_fit_monoexp")
    out["biexp_uptake_ratio_to_curve_fit"] = _ratio(
        times, "fit_tac_biexp_uptake", "curve_fit_biexp_uptake"
    )
    return out


def _time(fn, repeat: int) -> tuple[float, float]:
    """Best wall time over ``repeat`` runs and the process CPU time of that run."""
    best, cpu = np.inf, np.inf
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        wall = time.perf_counter() - t0
        if wall < best:
            best, cpu = wall, time.process_time() - c0
    return best, cpu


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark, print the figures and return them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="edge of the cubic volume")
    parser.add_argument("--subset", type=int, default=2000, help="voxels in the curve_fit loop")
    parser.add_argument(
        "--repeat",
        type=int,
        default=7,
        help="timing repeats (best kept) and paired rounds of the floors (median kept)",
    )
    parser.add_argument("--threads", type=int, default=None, help="fit_voxels n_threads")
    args = parser.parse_args(argv)

    lam_phys = get_nuclide("Lu-177").decay_constant_per_h
    study = make_study(args.size)
    n_vox = int(np.prod(study.shape[1:]))
    figures: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus_available": _n_cpus(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scipy": scipy.__version__,
        },
        "shape": list(study.shape),
        "n_voxels": n_vox,
    }

    runs = {
        "monoexp": lambda: kinetics.fit_voxels(
            TIMES_H, study, model="monoexp", n_threads=args.threads
        ),
        "trapezoid_monoexp_tail": lambda: kinetics.fit_voxels(
            TIMES_H, study, model="trapezoid", tail="monoexp", n_threads=args.threads
        ),
    }
    for name, fn in runs.items():
        seconds, cpu_seconds = _time(fn, args.repeat)
        tracemalloc.start()
        fn()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        figures[name] = {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "voxels_per_s": n_vox / seconds,
            "peak_traced_mib": peak / 2**20,
        }

    rng = np.random.default_rng(1)
    flat = study.reshape(study.shape[0], -1)
    cols = rng.choice(n_vox, size=min(args.subset, n_vox), replace=False)
    sub = flat[:, cols]
    t0 = time.perf_counter()
    a_loop, lam_loop = curve_fit_loop(sub, lam_phys)
    loop_s = time.perf_counter() - t0
    loop_rate = cols.size / loop_s
    figures["curve_fit_loop"] = {
        "subset_voxels": int(cols.size),
        "seconds_subset": loop_s,
        "voxels_per_s": loop_rate,
        "extrapolated_seconds_full_volume": n_vox / loop_rate,
    }
    for name in runs:
        figures[name]["speedup_vs_curve_fit_loop"] = figures[name]["voxels_per_s"] / loop_rate

    floors = _paired(
        {
            **runs,
            "monoexp_1_thread": lambda: kinetics.fit_voxels(
                TIMES_H, study, model="monoexp", n_threads=1
            ),
            "trapezoid_1_thread": lambda: kinetics.fit_voxels(
                TIMES_H, study, model="trapezoid", tail="monoexp", n_threads=1
            ),
            "memory_pass": lambda: study.sum(axis=0),
            "loglin_closed_form": lambda: loglin_floor(study),
            "trapezoid_floor": lambda: trapezoid_floor(study, lam_phys),
            "trapezoid_physical_tail": lambda: kinetics.fit_voxels(
                TIMES_H, study, model="trapezoid", tail="physical", n_threads=args.threads
            ),
            "trapezoid_two_point_tail_floor": lambda: trapezoid_two_point_tail_floor(
                study, lam_phys
            ),
        },
        args.repeat,
    )
    figures["floors"] = {
        **{f"{k}_seconds_median": float(np.median(v)) for k, v in floors.items()},
        "monoexp_ratio_to_loglin": _ratio(floors, "monoexp", "loglin_closed_form"),
        "monoexp_ratio_to_loglin_rounds_range": _ratio_range(
            floors, "monoexp", "loglin_closed_form"
        ),
        "monoexp_ratio_to_memory_pass": _ratio(floors, "monoexp", "memory_pass"),
        "trapezoid_ratio_to_floor": _ratio(floors, "trapezoid_monoexp_tail", "trapezoid_floor"),
        "trapezoid_ratio_to_floor_rounds_range": _ratio_range(
            floors, "trapezoid_monoexp_tail", "trapezoid_floor"
        ),
        # like with like: each trapezoid model against the closed form of its own tail
        "trapezoid_physical_tail_ratio_to_floor": _ratio(
            floors, "trapezoid_physical_tail", "trapezoid_floor"
        ),
        "trapezoid_physical_tail_ratio_to_floor_rounds_range": _ratio_range(
            floors, "trapezoid_physical_tail", "trapezoid_floor"
        ),
        "trapezoid_monoexp_tail_ratio_to_two_point_floor": _ratio(
            floors, "trapezoid_monoexp_tail", "trapezoid_two_point_tail_floor"
        ),
        "trapezoid_monoexp_tail_ratio_to_two_point_floor_rounds_range": _ratio_range(
            floors, "trapezoid_monoexp_tail", "trapezoid_two_point_tail_floor"
        ),
        "monoexp_1_thread_ratio_to_loglin": _ratio(
            floors, "monoexp_1_thread", "loglin_closed_form"
        ),
        "trapezoid_1_thread_ratio_to_floor": _ratio(
            floors, "trapezoid_1_thread", "trapezoid_floor"
        ),
        "threads": kinetics.voxel._n_threads(args.threads),
        "monoexp_speedup_threads_over_1": _ratio(floors, "monoexp_1_thread", "monoexp"),
        "trapezoid_speedup_threads_over_1": _ratio(
            floors, "trapezoid_1_thread", "trapezoid_monoexp_tail"
        ),
        "rounds": args.repeat,
        "load_average_1min": os.getloadavg()[0],
    }
    figures["single_tac"] = single_tac_side_by_side(args.repeat)

    # Agreement on the subset (voxels with four positive points, where both fit the same data):
    # TIA difference, and whether our least-squares optimum is at least as good (RSS).
    det = kinetics.fit_voxels(
        TIMES_H, sub.reshape(4, 1, 1, -1), model="monoexp", return_details=True
    )
    a_vec, lam_vec = det.a0.reshape(-1), det.lambda_eff_per_h.reshape(-1)
    ok = np.all(sub > 0, axis=0) & np.isfinite(lam_loop)
    y = sub[:, ok].astype(float)

    def rss(a: np.ndarray, lam: np.ndarray) -> np.ndarray:
        return np.sum((y - a * np.exp(-np.outer(TIMES_H, lam))) ** 2, axis=0)

    rss_vec, rss_loop = rss(a_vec[ok], lam_vec[ok]), rss(a_loop[ok], lam_loop[ok])
    rel = np.abs((a_vec[ok] / lam_vec[ok]) / (a_loop[ok] / lam_loop[ok]) - 1)
    figures["agreement_vs_curve_fit"] = {
        "voxels_compared": int(ok.sum()),
        "median_rel_diff": float(np.median(rel)),
        "p99_rel_diff": float(np.quantile(rel, 0.99)),
        "fraction_rss_not_worse": float(np.mean(rss_vec <= rss_loop * (1 + 1e-9))),
    }
    figures["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    m = figures["machine"]
    print(f"machine: {m['platform']} | {m['cpu']} | {m['cpus_available']} CPUs available")
    print(f"python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}")
    print(f"study: {figures['shape']} (time, z, y, x) float32, {n_vox:,} voxels")
    for name in runs:
        f = figures[name]
        print(
            f"fit_voxels {name:24s}: {f['seconds']:.3f} s (CPU {f['cpu_seconds']:.2f} s)  "
            f"{f['voxels_per_s']:,.0f} voxels/s  "
            f"x{f['speedup_vs_curve_fit_loop']:,.0f} vs curve_fit loop  "
            f"peak traced {f['peak_traced_mib']:.0f} MiB"
        )
    c = figures["curve_fit_loop"]
    print(
        f"curve_fit loop on {c['subset_voxels']} voxels: {c['seconds_subset']:.2f} s, "
        f"{c['voxels_per_s']:,.0f} voxels/s -> {c['extrapolated_seconds_full_volume']:,.0f} s "
        f"for the volume"
    )
    a = figures["agreement_vs_curve_fit"]
    print(
        f"TIA agreement with curve_fit on {a['voxels_compared']} voxels: median rel diff "
        f"{a['median_rel_diff']:.1e}, 99th percentile {a['p99_rel_diff']:.1e}; our RSS <= "
        f"curve_fit's in {100 * a['fraction_rss_not_worse']:.1f} % of them"
    )
    print(f"max RSS of the process: {figures['max_rss_mib']:.0f} MiB")
    fl = figures["floors"]
    print(
        f"floors (paired, median of {fl['rounds']} rounds, load {fl['load_average_1min']:.1f}): "
        f"memory pass {fl['memory_pass_seconds_median']:.3f} s, closed-form log-linear "
        f"{fl['loglin_closed_form_seconds_median']:.3f} s, trapezoid passes "
        f"{fl['trapezoid_floor_seconds_median']:.3f} s"
    )
    print(
        f"  fit_voxels monoexp {fl['monoexp_seconds_median']:.3f} s = "
        f"{fl['monoexp_ratio_to_loglin']:.1f}x log-linear (rounds "
        f"{fl['monoexp_ratio_to_loglin_rounds_range']}), "
        f"{fl['monoexp_ratio_to_memory_pass']:.0f}x one memory pass; trapezoid "
        f"{fl['trapezoid_monoexp_tail_seconds_median']:.3f} s = "
        f"{fl['trapezoid_ratio_to_floor']:.1f}x its own passes (rounds "
        f"{fl['trapezoid_ratio_to_floor_rounds_range']}) ({fl['threads']} threads)"
    )
    print(
        f"  1 thread: monoexp {fl['monoexp_1_thread_seconds_median']:.3f} s = "
        f"{fl['monoexp_1_thread_ratio_to_loglin']:.1f}x log-linear, trapezoid "
        f"{fl['trapezoid_1_thread_seconds_median']:.3f} s = "
        f"{fl['trapezoid_1_thread_ratio_to_floor']:.1f}x its passes; {fl['threads']} threads "
        f"over 1: monoexp {fl['monoexp_speedup_threads_over_1']:.2f}x, trapezoid "
        f"{fl['trapezoid_speedup_threads_over_1']:.2f}x"
    )
    print(
        f"  like with like: trapezoid + physical tail "
        f"{fl['trapezoid_physical_tail_seconds_median']:.3f} s = "
        f"{fl['trapezoid_physical_tail_ratio_to_floor']:.1f}x the same passes (rounds "
        f"{fl['trapezoid_physical_tail_ratio_to_floor_rounds_range']}); trapezoid + "
        f"mono-exponential tail = {fl['trapezoid_monoexp_tail_ratio_to_two_point_floor']:.1f}x "
        f"the passes with a closed-form two-point tail "
        f"{fl['trapezoid_two_point_tail_floor_seconds_median']:.3f} s (rounds "
        f"{fl['trapezoid_monoexp_tail_ratio_to_two_point_floor_rounds_range']})"
    )
    st = figures["single_tac"]
    print(
        f"single TAC (per TAC, {st['n_tacs']} TACs, paired, median of {args.repeat} rounds, "
        f"load {st['load_average_1min']:.1f}): fit_tac monoexp "
        f"{st['fit_tac_monoexp_ms_per_tac']:.3f} ms vs bare curve_fit "
        f"{st['curve_fit_monoexp_ms_per_tac']:.3f} ms ({st['monoexp_ratio_to_curve_fit']:.2f}x); "
        f"biexp_uptake {st['fit_tac_biexp_uptake_ms_per_tac']:.3f} ms vs "
        f"{st['curve_fit_biexp_uptake_ms_per_tac']:.3f} ms "
        f"({st['biexp_uptake_ratio_to_curve_fit']:.2f}x)"
    )
    return figures


if __name__ == "__main__":
    main()
