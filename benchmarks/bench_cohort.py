"""Benchmark: cohort throughput with 1 and 2 worker processes (``harmonize run --workers``).

A 10-study cohort (5 patients × 2 cycles, the default phantom grid, 64 × 72 × 96 voxels of
4.8 mm) through montpellier, bordet and milan (+ the phantom truth), as
:func:`harmonize.runner.run_cohort` runs it: one task per study (opened once for the three
adapters), then each workflow's patient indices, in ``workers`` forked processes each
pinned to its share of the cores. One worker runs in-process and uses every core where
the voxel work is threaded (voxel fit, FFT), so the ratio is the honest wall-time gain.

Printed: the machine; the load average before and after (the 1-minute figure before
includes this benchmark's own phantom generation); the cores other jobs kept busy during
each timed run (the machine's busy CPU time from ``/proc/stat`` minus this process's and
its workers'); each wall time (median of ``--repeats`` runs, 1 and 2 workers
alternating, the order reversed every other repeat); the ratio 1 → 2 workers, as the
median over the repeats of each repeat's own ratio (the two runs of a repeat share the
machine's state of the moment: on this VM the same work takes up to ±20 % longer from
one minute to the next), with the lowest and highest, beside its ceiling (the cores the
processes may use, at most 2) and beside the **machine's own ratio for this work**: the
same ten study tasks alone (no task graph, no patient indices or calibration tables),
one after the other in this process against two forked processes of a
:class:`multiprocessing.Pool` each pinned to one thread, timed in the same repeats —
what two processes gain on this machine at that moment, which no scheduling can exceed;
the cores each run kept busy on average (its CPU time over its wall time: the one-worker
run exceeds 1 where its threads pay, which lowers what a second worker can add) and its
CPU seconds, with the CPU time of two workers over one's (the same work costs more CPU
when two processes run at once: shared caches and memory bandwidth, results passed
between processes); each run split into its serial set-up (until the first task is
handed out), the task phase until the last study returns (calibration tables, the
truth's task, the studies) and the tail after the last study (patient indices,
calibration files, manifest); and whether both runs wrote identical files. Before the
timed runs one untimed run of a one-study cohort warms the imports and caches, so that
neither configuration pays them alone (forked workers inherit them). On a machine shared
with other jobs the ratio is not meaningful: the load is printed beside it for that
reason.

Run: ``python benchmarks/bench_cohort.py [--patients 5] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from harmonize import runner
from harmonize._threads import available_cores
from harmonize.cohort import open_cohort
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.runner import run_cohort

WORKFLOWS = ["montpellier", "bordet", "milan"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> str:
    return (
        f"{platform.platform()}, {_cpu_model()}, {os.cpu_count()} CPUs "
        f"({available_cores()} usable), Python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )


def _load() -> tuple[float, float, float]:
    return tuple(round(x, 2) for x in os.getloadavg())  # type: ignore[return-value]


def _busy_cpu_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``), or None."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and its reaped children (the forked workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _digest(root: Path) -> str:
    """One SHA-256 over every results file (names and bytes), the run manifest included."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


class _StudyPhase:
    """Dask callbacks (run in the calling process): when the first task was handed out
    and when the last study result came back, to split a run into its serial set-up, the
    task phase up to the last study and the tail (patient indices, calibration files,
    manifest)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None

    def callback(self) -> Any:
        from dask.callbacks import Callback

        def pretask(key: object, dsk: object, state: object) -> None:
            if self.first is None:
                self.first = time.perf_counter()

        def posttask(key: object, result: object, dsk: object, state: object, wid: object) -> None:
            if "_run_study" in str(key):
                self.last = time.perf_counter()

        return Callback(pretask=pretask, posttask=posttask)


def _study_tasks_alone(sources: list[Any], out: Path, workers: int) -> float:
    """Wall time of the cohort's study tasks alone, in this process or ``workers`` forked ones.

    Each task is :func:`harmonize.runner._run_study` as the runner calls it (one study
    opened once, the three adapters, their files written): in this process with every core
    for one worker, or in a fork :class:`multiprocessing.Pool` of ``workers`` processes,
    each task pinned to its share of the cores and handed out one at a time. Nothing else
    of the run: no task graph, patient indices, calibration tables or manifest.
    """
    adapters = runner._adapters(WORKFLOWS, None)
    start = time.perf_counter()
    if workers == 1:
        for source in sources:
            runner._run_study(source, adapters, str(out), False)
    else:
        task = functools.partial(
            runner._run_study,
            adapters=adapters,
            out=str(out),
            overwrite=False,
            threads=max(1, available_cores() // workers),
            pack=True,
        )
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            pool.map(task, sources, chunksize=1)
    return time.perf_counter() - start


def cohort_scaling(
    n_patients: int = 5, cycles: tuple[int, ...] = (1, 2), repeats: int = 5, seed: int = 0
) -> dict[str, float | str]:
    """Wall time of the cohort with 1 and 2 worker processes; the ratios and the load."""
    config = PhantomConfig(cycles=cycles)
    n_studies = n_patients * len(cycles)
    figures: dict[str, float | str] = {
        "studies": float(n_studies),
        "grid_voxels": float(np.prod(config.shape)),
        "usable_cores": float(available_cores()),
    }
    times: dict[int, list[float]] = {1: [], 2: []}
    digests: dict[int, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cohort = write_cohort(root / "cohort", n_patients=n_patients, seed=seed, config=config)
        warm = write_cohort(
            root / "warm", n_patients=1, seed=seed + 1, config=PhantomConfig(cycles=(1,))
        )
        run_cohort(warm, WORKFLOWS, root / "warm_out", workers=1)  # imports, caches
        sources = list(open_cohort(cohort).paths.values())
        alone: dict[int, list[float]] = {1: [], 2: []}
        load_before = _load()
        other: dict[int, list[float]] = {1: [], 2: []}
        split: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        used: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        for repeat in range(repeats):
            order = (1, 2) if repeat % 2 == 0 else (2, 1)
            for workers in order:
                out = root / f"out{workers}_{repeat}"
                busy, own = _busy_cpu_s(), _own_cpu_s()
                phase = _StudyPhase()
                start = time.perf_counter()
                with phase.callback():
                    report = run_cohort(cohort, WORKFLOWS, out, workers=workers)
                end = time.perf_counter()
                seconds = end - start
                times[workers].append(seconds)
                if phase.first is not None and phase.last is not None:
                    split[workers].append(
                        (phase.first - start, phase.last - phase.first, end - phase.last)
                    )
                busy_after, own_after = _busy_cpu_s(), _own_cpu_s()
                # cores this run kept busy on average (1 worker: > 1 where its threads pay)
                used[workers].append((own_after - own) / seconds)
                cpu[workers].append(own_after - own)
                if busy is not None and busy_after is not None:
                    # cores kept busy by other jobs during this run (machine minus ours)
                    other[workers].append(
                        max(0.0, (busy_after - busy) - (own_after - own)) / seconds
                    )
                if not report.ok:
                    raise RuntimeError(f"cohort run failed: {report.failures}")
                digests.setdefault(workers, _digest(out))
            for workers in order:
                alone[workers].append(
                    _study_tasks_alone(sources, root / f"alone{workers}_{repeat}", workers)
                )
        load_after = _load()
    for workers in (1, 2):
        seconds = statistics.median(times[workers])
        figures[f"workers{workers}_s"] = seconds
        figures[f"workers{workers}_studies_per_min"] = n_studies * 60.0 / seconds
        figures[f"workers{workers}_cores_used"] = statistics.median(used[workers])
        figures[f"workers{workers}_cpu_s"] = statistics.median(cpu[workers])
        if split[workers]:  # the run closest to the median
            parts = min(split[workers], key=lambda p: abs(sum(p) - seconds))
            for name, value in zip(("setup", "studies", "tail"), parts, strict=True):
                figures[f"workers{workers}_{name}_s"] = value
    # each repeat's own ratio (its two runs share the machine's state of the moment)
    pairs = [one / two for one, two in zip(times[1], times[2], strict=True)]
    figures["speedup_2_vs_1"] = statistics.median(pairs)
    figures["speedup_2_vs_1_lowest"] = min(pairs)
    figures["speedup_2_vs_1_highest"] = max(pairs)
    figures["speedup_2_vs_1_all"] = " ".join(f"{x:.2f}" for x in pairs)
    # the machine's own ratio for this work: the study tasks alone, in the same repeats
    machine = [one / two for one, two in zip(alone[1], alone[2], strict=True)]
    figures["study_tasks_alone_1_s"] = statistics.median(alone[1])
    figures["study_tasks_alone_2_s"] = statistics.median(alone[2])
    figures["study_tasks_alone_ratio"] = statistics.median(machine)
    figures["study_tasks_alone_ratio_all"] = " ".join(f"{x:.2f}" for x in machine)
    figures["speedup_over_study_tasks_alone"] = statistics.median(
        [c / m for c, m in zip(pairs, machine, strict=True)]
    )
    # the CPU the same work costs with two processes at once (> 1: contention, transfers)
    figures["cpu_2_vs_1"] = figures["workers2_cpu_s"] / figures["workers1_cpu_s"]  # type: ignore[operator]
    # the ceiling: two processes cannot gain more than the cores they may run on
    figures["speedup_ceiling"] = float(min(2, available_cores()))
    figures["identical_files_1_vs_2"] = "yes" if digests[1] == digests[2] else "NO"
    for workers in (1, 2):
        if other[workers]:
            figures[f"other_jobs_cores_during_workers{workers}"] = max(other[workers])
    figures["load_before_1_5_15min"] = " ".join(f"{x:.2f}" for x in load_before)
    figures["load_after_1_5_15min"] = " ".join(f"{x:.2f}" for x in load_after)
    figures["repeats"] = float(repeats)
    return figures


def main(argv: list[str] | None = None) -> dict[str, float | str]:
    """Run the benchmark; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=5)
    parser.add_argument("--cycles", default="1,2", help="imaged cycles per patient")
    parser.add_argument("--repeats", type=int, default=5, help="runs per worker count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cycles = tuple(int(c) for c in args.cycles.split(","))
    figures = cohort_scaling(args.patients, cycles, args.repeats, args.seed)
    print(f"machine: {_machine()}")
    print(
        f"{int(figures['studies'])} studies ({args.patients} patients × cycles {args.cycles}), "
        f"{int(figures['grid_voxels'])} voxels, {', '.join(WORKFLOWS)} + truth; median of "
        f"{args.repeats} run(s) per worker count"
    )
    print(f"load average before: {figures['load_before_1_5_15min']}")
    for workers in (1, 2):
        line = f"{workers} worker{'s' if workers > 1 else ' '}: {figures[f'workers{workers}_s']:8.2f} s"
        line += (
            f", CPU {figures[f'workers{workers}_cpu_s']:.2f} s = "
            f"{figures[f'workers{workers}_cores_used']:.2f} cores busy"
        )
        if f"workers{workers}_setup_s" in figures:
            line += (
                f"  (run closest to the median: set-up "
                f"{figures[f'workers{workers}_setup_s']:.2f} s, tasks up to the last study "
                f"{figures[f'workers{workers}_studies_s']:.2f} s, indices/calibration files/"
                f"manifest after it {figures[f'workers{workers}_tail_s']:.2f} s)"
            )
        print(line)
    print(
        f"ratio 1 → 2 workers: {figures['speedup_2_vs_1']:.2f}× (median of the repeats' own "
        f"ratios: {figures['speedup_2_vs_1_all']}; ceiling {figures['speedup_ceiling']:.0f}×: "
        "the usable cores)"
    )
    print(
        f"the study tasks alone (no graph, indices, calibration or manifest), same repeats: "
        f"{figures['study_tasks_alone_1_s']:.2f} s in this process, "
        f"{figures['study_tasks_alone_2_s']:.2f} s in 2 forked processes: "
        f"{figures['study_tasks_alone_ratio']:.2f}× ({figures['study_tasks_alone_ratio_all']}) — "
        f"what two processes gain on this machine for this work; the cohort reaches "
        f"{figures['speedup_over_study_tasks_alone']:.2f} of it (median per repeat)"
    )
    # wall 1 = CPU 1 / cores busy 1 and wall 2 >= CPU 2 / 2: with perfect balance and no
    # serial part the ratio reaches 2 / (CPU 2 / CPU 1 × cores busy 1) (cores busy 1 below
    # 1 only when other jobs took the core: counted as 1)
    bound = figures["speedup_ceiling"] / (  # type: ignore[operator]
        figures["cpu_2_vs_1"] * max(1.0, float(figures["workers1_cores_used"]))  # type: ignore[operator]
    )
    print(
        f"CPU time 2 workers / 1 worker: {figures['cpu_2_vs_1']:.3f}; with perfect balance and "
        f"no serial part the ratio would be {bound:.2f}×"
    )
    print(f"identical files (1 vs 2 workers): {figures['identical_files_1_vs_2']}")
    print(f"load average after:  {figures['load_after_1_5_15min']}")
    others = [float(v) for k, v in figures.items() if k.startswith("other_jobs_cores")]
    if others:
        print(
            "cores kept busy by other jobs during the timed runs (machine's busy time minus "
            f"this benchmark's): {', '.join(f'{x:.2f}' for x in others)} (1, 2 workers)"
        )
    # the load average before includes this benchmark's own phantom generation: the busy
    # time of other processes during the timed runs is the better witness where available
    shared = (
        max(others) > 0.1 if others else float(str(figures["load_before_1_5_15min"]).split()[0]) > 1
    )
    if shared:
        print("the machine was shared with other jobs: this ratio is not the machine's own")
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
