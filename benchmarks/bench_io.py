"""Benchmark of the real-data I/O: DICOM/NIfTI write and read, de-identification, registration.

Runs on one noise-free phantom study at the default 4.8 mm voxels (64 × 72 × 96 voxels,
7 time points); the truth dose is replaced by zeros (this benchmark is about I/O).

    python benchmarks/bench_io.py
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return the figures (seconds, MB)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--voxel-size", type=float, default=4.8)
    args = parser.parse_args(argv)

    import harmonize as hz
    import harmonize.phantom as phantom
    from harmonize.deid import deidentify
    from harmonize.io import write_study_dicom, write_study_nifti
    from harmonize.registration import move_study, register_time_points

    config = phantom.PhantomConfig(voxel_size_mm=args.voxel_size, cycles=(1,), noise=False)
    original = phantom.reference_dose_gy
    phantom.reference_dose_gy = lambda tia, *a, **k: np.zeros_like(np.asarray(tia, dtype=float))
    try:
        study, _ = phantom.simulate_study(phantom.make_patient(0, 0, config), 1, 0, config)
    finally:
        phantom.reference_dose_gy = original
    figures: dict = {
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "grid": list(config.shape),
        "time_points": len(config.times_h),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, figures["dicom_write_s"] = _timed(write_study_dicom, study, root / "dicom")
        figures["dicom_size_mb"] = sum(p.stat().st_size for p in folder.rglob("*")) / 1e6
        _, figures["dicom_read_s"] = _timed(hz.open_study, folder)
        _, figures["deidentify_s"] = _timed(deidentify, folder, root / "deid", key=b"bench")
        nifti, figures["nifti_write_s"] = _timed(write_study_nifti, study, root / "nifti")
        _, figures["nifti_read_s"] = _timed(hz.open_study, nifti)
    shifts = np.zeros((study.sizes["time"], 3))
    shifts[1:] = [6.0, -4.0, 3.0]
    moved = move_study(study, shifts)
    _, figures["register_activity_s"] = _timed(register_time_points, moved, on="activity")
    _, figures["register_ct_s"] = _timed(register_time_points, moved, on="ct")
    for key, value in figures.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")
    return figures


if __name__ == "__main__":
    main()
