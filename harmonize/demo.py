"""``harmonize demo``: the embedded default job, from nothing to a report.

Synthetic cohort (seeded) → every installed workflow plus the phantom's truth → Parquet
results → agreement tables → ``report.html`` (rendering those tables), then the report's
key findings on the terminal.

**A cohort that spans the cutoffs.** A cutoff comparison says something only when patients
fall on both sides of the cutoff; with the phantom's default spread (lesion specific dose
3.41 Gy/GBq, log-normal between lesions) every patient's global mean dose lies above
10.6 Gy and no minimum lesion dose reaches 35 Gy, so several kappas are not estimable. The
demo therefore designs its cohort: patient ``i`` of ``n`` has its lesions' specific dose
multiplied by :func:`demo_dose_scales` — a geometric grid from
:data:`DEMO_DOSE_SCALE_RANGE` ``[0]`` to ``[1]`` (×0.3 to ×4: cycle-1 lesion doses of about
2 to 100 Gy) — through :attr:`harmonize.phantom.PhantomConfig.lesion_dose_scale`. The grid
is a design of the *true* doses only: it is set before any workflow runs, is the same for
every workflow, and nothing in it depends on what a workflow reads. Whether every cutoff is
spanned is a property of the truth (``tests/test_demo.py`` checks it for the default demo).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DEMO_DOSE_SCALE_RANGE",
    "DEMO_IMAGING_PROFILE",
    "demo_config",
    "demo_dose_scales",
    "run_demo",
    "summary_lines",
]

#: Lowest and highest per-patient factor on the lesions' specific dose in the demo cohort
#: (a design choice, see the module docstring): ×0.3 puts the global mean dose of cycle 1
#: below 10.6 Gy, ×4 lifts a patient's minimum lesion dose above 35 Gy.
DEMO_DOSE_SCALE_RANGE = (0.3, 4.0)


#: Imaging profile of the demo cohort (harmonize.imaging; its published values are Marin2017).
DEMO_IMAGING_PROFILE = "bordet"


def demo_dose_scales(patients: int) -> tuple[float, ...]:
    """Per-patient lesion dose factors of the demo: geometric from 0.3 to 4.

    >>> [round(v, 2) for v in demo_dose_scales(6)]
    [0.3, 0.5, 0.85, 1.42, 2.38, 4.0]
    """
    import numpy as np

    if patients < 2:
        return (1.0,)
    low, high = DEMO_DOSE_SCALE_RANGE
    return tuple(float(v) for v in np.geomspace(low, high, patients))


def demo_config(patients: int, planned_cycles: int | None = None) -> Any:
    """The demo's :class:`harmonize.phantom.PhantomConfig` (cycles 1-4, designed dose spread)."""
    from harmonize.phantom import PhantomConfig

    # imaged by one centre's camera (fast mode calibrated on the full simulation): clinical
    # noise and resolution, not the ideal scanner; clinical kinetics (harmonize.imaging)
    return PhantomConfig(
        lesion_dose_scale=demo_dose_scales(patients),
        planned_cycles=planned_cycles,
        imaging_profile=DEMO_IMAGING_PROFILE,
        kinetics="clinical",
    )


def summary_lines(tables: object, results: object = None) -> list[str]:
    """The report's key findings for a comparison (the same sentences as the report).

    Parameters
    ----------
    tables : harmonize.pipeline.ComparisonTables
        What ``compare`` computed.
    results : mapping of str to pandas.DataFrame
        The results tables (``voi_dose``, ``patient_index``) the comparison was made from.
    """
    from harmonize.pipeline import ComparisonTables
    from harmonize.report import key_findings

    if not isinstance(tables, ComparisonTables) or results is None:
        raise TypeError("summary_lines needs the ComparisonTables and the results tables")
    return key_findings(results, comparison=tables.as_dict())  # type: ignore[arg-type]


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    patients: int = 6,
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    quiet: bool = False,
    cutoffs: pd.DataFrame | None = None,
    planned_cycles: int | None = None,
) -> int:
    """Run the whole demo into ``out_dir``; return the exit code (0 on success).

    Arguments are checked before anything is written (``workers`` ≥ 1, ``patients`` ≥ 1).
    """
    if int(workers) < 1:
        raise ValueError(f"workers must be ≥ 1 (CLI: --workers), got {workers}")
    if int(patients) < 1:
        raise ValueError(f"patients must be ≥ 1 (CLI: --patients), got {patients}")
    from harmonize.phantom import write_cohort
    from harmonize.pipeline import compare_results, read_merged, write_comparison
    from harmonize.report import write_report
    from harmonize.runner import run_cohort

    out = Path(out_dir)
    cohort_dir, results_dir, agreement_dir = out / "cohort", out / "results", out / "agreement"
    report_path = out / "report.html"
    say = (lambda *a: None) if quiet else print
    say(f"[1/4] synthetic cohort: {patients} patients × cycles 1–4 → {cohort_dir}")
    write_cohort(
        cohort_dir,
        n_patients=patients,
        seed=seed,
        config=demo_config(patients, planned_cycles),
        overwrite=overwrite,
        progress=not quiet,
        workers=workers,
    )
    say(f"[2/4] workflows (all installed) + truth → {results_dir}")
    report = run_cohort(
        cohort_dir, "all", results_dir, workers=workers, overwrite=overwrite, progress=not quiet
    )
    for failure in report.failures:
        say(
            f"  FAILED {failure.patient_id} cycle {failure.cycle} {failure.workflow}: {failure.reason}"
        )
    say(f"[3/4] comparison → {agreement_dir}")
    merged = read_merged([results_dir])
    tables = compare_results(merged, seed=seed, cutoffs=cutoffs)
    write_comparison(tables, agreement_dir, overwrite=overwrite)
    say(f"[4/4] report → {report_path}")
    write_report(
        results_dir, report_path, agreement_dir=agreement_dir, overwrite=overwrite, cutoffs=cutoffs
    )
    if not quiet:
        with pd.option_context("display.width", 120):
            print()
            for line in summary_lines(tables, merged):
                print("  " + line)
            print(
                f"\nresults: {results_dir}\nagreement tables: {agreement_dir}\nreport: {report_path}"
            )
    return 0 if report.ok else 1
