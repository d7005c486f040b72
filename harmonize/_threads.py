"""How many threads the voxel work of this process may use: its share of the cores.

One process alone (``harmonize run --workers 1``) uses every core it may run on for the
voxel work that is threaded (the voxel fit of :func:`harmonize.kinetics.fit_voxels`, the
FFT of :func:`harmonize.dose.convolve_kernel`, BLAS). With ``N`` local worker processes the
cohort runner gives each ``cores // N`` threads (:func:`pinned`), so ``N`` processes ×
threads never oversubscribe the cores: the variable :data:`THREADS_ENV` caps the threads
harmonize starts itself, and :func:`threadpoolctl.threadpool_limits` the pools of the
native libraries (OpenBLAS/MKL, OpenMP) already loaded in the process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["THREADS_ENV", "available_cores", "pinned", "thread_share"]

#: Environment variable capping the threads harmonize's own voxel work starts (the same
#: name :mod:`harmonize.kinetics.voxel` reads for the voxel fit).
THREADS_ENV = "HARMONIZE_NUM_THREADS"


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def thread_share() -> int:
    """Threads for this process's voxel work: :data:`THREADS_ENV` when set, else every core."""
    capped = os.environ.get(THREADS_ENV, "").strip()
    if capped.isdigit() and int(capped) >= 1:
        return int(capped)
    return available_cores()


@contextmanager
def pinned(threads: int) -> Iterator[None]:
    """Within the block this process uses ``threads`` threads for its voxel work.

    Sets :data:`THREADS_ENV` (restored afterwards) and limits the thread pools of the
    native libraries loaded in the process with :func:`threadpoolctl.threadpool_limits`.

    Parameters
    ----------
    threads : int
        Threads (>= 1).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    from threadpoolctl import threadpool_limits

    before = os.environ.get(THREADS_ENV)
    os.environ[THREADS_ENV] = str(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        if before is None:
            os.environ.pop(THREADS_ENV, None)
        else:
            os.environ[THREADS_ENV] = before
