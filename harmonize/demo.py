"""``harmonize demo``: the embedded default job, from nothing to a report.

Synthetic cohort (seeded) → every installed workflow plus the phantom's truth → Parquet
results → agreement tables → ``report.html``, then a short summary on the terminal.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

__all__ = ["DEMO_IMAGING_PROFILE", "run_demo", "summary_lines"]

#: Imaging profile of the demo cohort (harmonize.imaging; its published values are Marin2017).
DEMO_IMAGING_PROFILE = "bordet"


def summary_lines(tables: object) -> list[str]:
    """A few sentences summarising a comparison (bias/LoA of lesion mean dose, cutoffs)."""
    from harmonize.pipeline import ComparisonTables

    assert isinstance(tables, ComparisonTables)
    lines = []
    ag = tables.agreement
    sel = ag[(ag["index"] == "dose_mean_gy") & (ag["level"] == "lesion") & (ag["workflow_b"] != "")]
    for (wa, wb), rows in sel.groupby(["workflow_a", "workflow_b"], sort=True):
        stats = rows.set_index("statistic")
        if {"ratio_bias", "ratio_loa_lower", "ratio_loa_upper"} <= set(stats.index):
            lines.append(
                f"{wa} vs {wb}, lesion mean dose: ratio {stats.at['ratio_bias', 'estimate']:.2f}, "
                f"95% limits {stats.at['ratio_loa_lower', 'estimate']:.2f}–"
                f"{stats.at['ratio_loa_upper', 'estimate']:.2f} (n={int(stats['n_pairs'].max())})"
            )
        elif {"bias", "loa_lower", "loa_upper"} <= set(stats.index):
            lines.append(
                f"{wa} vs {wb}, lesion mean dose: bias {stats.at['bias', 'estimate']:.1f} Gy, "
                f"LoA {stats.at['loa_lower', 'estimate']:.1f} to {stats.at['loa_upper', 'estimate']:.1f} Gy"
            )
    summary = tables.cutoff_summary
    fleiss = summary[(summary["statistic"] == "fleiss_kappa")]
    for row in fleiss.itertuples(index=False):
        n_disc = int((tables.cutoff_discordant["cutoff_key"] == row.cutoff_key).sum())
        kappa = "undefined" if math.isnan(row.estimate) else f"{row.estimate:.2f}"
        lines.append(f"cutoff {row.cutoff_key}: Fleiss κ = {kappa}, {n_disc} discordant patient(s)")
    from harmonize.report import UNSTABLE_CI_FACTOR

    for row in tables.cutoff_translation.itertuples(index=False):
        wide = row.ci_low_gy <= 0 or row.ci_high_gy / row.ci_low_gy > UNSTABLE_CI_FACTOR
        lines.append(row.sentence + (" (CI not informative: too few patients)" if wide else ""))
    return lines


def run_demo(
    out_dir: str | os.PathLike[str],
    *,
    patients: int = 6,
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    quiet: bool = False,
) -> int:
    """Run the whole demo into ``out_dir``; return the exit code (0 on success)."""
    from harmonize.phantom import PhantomConfig, write_cohort
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
        # imaged by one centre's camera (fast mode calibrated on the full simulation):
        # clinical noise and resolution, not the ideal scanner; clinical kinetics
        config=PhantomConfig(imaging_profile=DEMO_IMAGING_PROFILE, kinetics="clinical"),
        overwrite=overwrite,
        progress=not quiet,
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
    tables = compare_results(read_merged([results_dir]), seed=seed)
    write_comparison(tables, agreement_dir, overwrite=overwrite)
    say(f"[4/4] report → {report_path}")
    write_report(results_dir, report_path, agreement_dir=agreement_dir, overwrite=overwrite)
    if not quiet:
        with pd.option_context("display.width", 120):
            print()
            for line in summary_lines(tables):
                print("  " + line)
            print(
                f"\nresults: {results_dir}\nagreement tables: {agreement_dir}\nreport: {report_path}"
            )
    return 0 if report.ok else 1
