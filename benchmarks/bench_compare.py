"""Benchmark of :func:`harmonize.compare.agreement` on a large synthetic cohort.

100 000 lesions × 3 workflows (300 000 ``voi_dose`` rows), lesion level, all pairs,
default options (no bootstrap; Passing–Bablok skipped above its size limit). Target:
under 2 s on 2 cores. Run: ``python benchmarks/bench_compare.py [--lesions N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd

from harmonize import compare


def synthetic_voi_dose(n_lesions: int, workflows: tuple[str, ...], seed: int = 0) -> pd.DataFrame:
    """A voi_dose-like table: 5 lesions per patient, multiplicative workflow errors."""
    rng = np.random.default_rng(seed)
    n_pat = max(n_lesions // 5, 1)
    patient = np.arange(n_lesions) // 5
    truth = rng.lognormal(np.log(30.0), 0.6, n_lesions)
    parts = []
    for i, w in enumerate(workflows):
        dose = truth * (1.0 + 0.05 * i) * rng.lognormal(0.0, 0.1, n_lesions)
        parts.append(
            pd.DataFrame(
                {
                    "patient_id": np.char.add("P", patient.astype(str)),
                    "cycle": 1,
                    "center": "synthetic",
                    "workflow": w,
                    "workflow_version": "0",
                    "voi_id": np.arange(n_lesions) % 5 + 1,
                    "voi_name": "lesion",
                    "voi_kind": "lesion",
                    "dose_mean_gy": dose,
                }
            )
        )
    del n_pat
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lesions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    workflows = ("bordet", "milan", "montpellier")
    df = synthetic_voi_dose(args.lesions, workflows)
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fully paired table must not warn
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = compare.agreement(df, index="dose_mean_gy", level="lesion")
            times.append(time.perf_counter() - t0)
    figures = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "n_lesions": args.lesions,
        "n_workflows": len(workflows),
        "n_rows_in": len(df),
        "n_rows_out": len(out),
        "seconds_min": min(times),
        "seconds_median": float(np.median(times)),
        "target_seconds": 2.0,
    }
    for k, v in figures.items():
        print(f"{k:>16}: {v}")
    return figures


if __name__ == "__main__":
    main()
