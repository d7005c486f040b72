"""Where does each workflow's optimal cutoff land when the true threshold is 35 Gy?

The letter's question (Deshayes 2025) on data whose answer is known. Steps:

1. **Imaged phantom cohort** (``--results DIR``, or a new one of ``--phantom-patients``
   patients, cycle 1, written to a temporary folder and run through every installed
   workflow): the true minimum lesion dose after cycle 1 and each workflow's value of it.
2. **Calibrated error model per workflow** (:func:`harmonize.outcomes.cohort.fit_error_models`):
   ``ln D_w = a + b ln D_true + N(0, σ²)`` fitted on the imaged patients — the workflows'
   *measured* errors, not assumed ones.
3. **Large cohort** (``--patients``, default 240): true doses log-normal with the imaged
   cohort's log-SD and median ``--median-gy`` (default 35 Gy, the threshold at the cohort
   median: the phantom's own median, ≈ 15 Gy with no patient above 35 Gy, could not test a
   35 Gy threshold at all); each workflow's doses drawn from its error model; PFS
   simulated from the *true* dose with a threshold at 35 Gy (HR 2.07, LUMEN's median ratio,
   :class:`harmonize.outcomes.simulate.OutcomeModel`).
4. Per workflow: the optimal cutoff (maximally selected log-rank statistics) with its 95 %
   bootstrap CI and corrected p-values; the published 35 Gy applied raw and translated
   (truth → workflow, Deming on ln doses, :func:`harmonize.compare.translate_cutoff`), with
   HR and log-rank; and, over ``--replicates`` independent cohorts, how often the CI holds
   the threshold expressed in that workflow's scale (35 Gy × the error model's median ratio
   at 35 Gy; 35 Gy for truth) — the coverage of the bootstrap interval.

Run: ``python benchmarks/bench_outcomes.py [--results DIR] [--patients 240]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harmonize.outcomes import optimal_cutoff
from harmonize.outcomes.cohort import (
    fit_error_models,
    fit_log_normal,
    sample_true_doses,
    workflow_doses,
)
from harmonize.outcomes.dose_response import analysis_set, cutoff_survival
from harmonize.outcomes.simulate import OutcomeModel, simulate_outcomes

THRESHOLD_GY = 35.0
INDEX = "lesion_dose_min_gy"


def _imaged_patient_index(results: Path | None, n_patients: int, seed: int) -> pd.DataFrame:
    from harmonize.schema import read_results

    if results is not None:
        return read_results(results, tables=["patient_index"])["patient_index"]
    from harmonize.phantom import PhantomConfig, write_cohort
    from harmonize.runner import run_cohort

    with tempfile.TemporaryDirectory() as tmp:
        cohort = write_cohort(
            Path(tmp) / "cohort",
            n_patients=n_patients,
            seed=seed,
            config=PhantomConfig(cycles=(1,)),
        )
        run_cohort(cohort, "all", Path(tmp) / "results", workers=1, progress=False)
        return read_results(Path(tmp) / "results", tables=["patient_index"])["patient_index"]


def _cohort(models: list, n: int, median: float, log_sd: float, seed: int) -> tuple:
    doses = sample_true_doses(n, median_gy=median, log_sd=log_sd, seed=seed)
    clinical = simulate_outcomes(doses, model=OutcomeModel(threshold_gy=THRESHOLD_GY), seed=seed)
    return workflow_doses(doses, models, seed=seed), clinical


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None, help="imaged cohort results")
    parser.add_argument("--phantom-patients", type=int, default=8)
    parser.add_argument("--patients", type=int, default=240)
    parser.add_argument("--median-gy", type=float, default=THRESHOLD_GY)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    t0 = time.perf_counter()
    imaged = _imaged_patient_index(args.results, args.phantom_patients, args.seed)
    t_imaged = time.perf_counter() - t0
    models = fit_error_models(imaged, INDEX)
    truth = imaged.query("workflow == 'truth' and cycle == 1")[INDEX].dropna().to_numpy()
    median, log_sd = fit_log_normal(truth)
    figures: dict[str, Any] = {
        "imaged_patients": int(truth.size),
        "imaged_cohort_s": round(t_imaged, 1),
        "imaged_truth_median_gy": round(median, 2),
        "imaged_truth_log_sd": round(log_sd, 3),
        "imaged_truth_max_gy": round(float(truth.max()), 2),
        "large_cohort_patients": args.patients,
        "large_cohort_median_gy": args.median_gy,
    }
    print(
        f"imaged cohort: {truth.size} patients, true min lesion dose median {median:.1f} Gy, "
        f"log-SD {log_sd:.3f}, max {truth.max():.1f} Gy ({t_imaged:.0f} s)"
    )
    print("calibrated error models ln D_w = a + b ln D_true + N(0, s²):")
    for m in models:
        print(
            f"  {m.workflow:12s} a={m.intercept:+.3f} b={m.slope:.3f} s={m.sigma:.3f} "
            f"n={m.n_pairs} fitted on {m.dose_range_gy[0]:.1f}–{m.dose_range_gy[1]:.1f} Gy; "
            f"median ratio at 35 Gy {m.median_ratio(THRESHOLD_GY):.3f}"
        )
        figures[f"{m.workflow}_ratio_at_35gy"] = round(m.median_ratio(THRESHOLD_GY), 3)
        figures[f"{m.workflow}_error_sigma"] = round(m.sigma, 3)

    t0 = time.perf_counter()
    pindex, clinical = _cohort(models, args.patients, args.median_gy, log_sd, args.seed)
    data = analysis_set(pindex, clinical, INDEX, "1", "pfs")
    from harmonize import compare

    rows = []
    for to in [m.workflow for m in models]:
        tr = compare.translate_cutoff(
            pindex, "truth", to, THRESHOLD_GY, INDEX, n_boot=1000, seed=args.seed, cycle=1
        )
        rows.append({"cutoff_key": "true_35", "to_workflow": to, "estimate_gy": tr.estimate_gy})
    spec = pd.DataFrame(
        [
            {
                "key": "true_35",
                "centre": "truth",
                "index": INDEX,
                "cycle": "1",
                "operator": ">=",
                "cutoff_gy": THRESHOLD_GY,
            }
        ]
    )
    applied = cutoff_survival(pindex, clinical, cutoffs=spec, translations=pd.DataFrame(rows))
    print(
        f"\nlarge cohort: {args.patients} patients, {int(clinical['pfs_event'].sum())} PFS events"
    )
    print("35 Gy (true threshold) applied to each workflow's doses:")
    for r in applied.itertuples():
        print(
            f"  {r.workflow:12s} {r.variant:10s} cutoff {r.cutoff_gy:6.1f} Gy: "
            f"{r.n_below:3d} below / {r.n_above:3d} above, HR below {r.hr_below:.2f} "
            f"[{r.ci_low:.2f}, {r.ci_high:.2f}], log-rank p {r.logrank_p:.2g} {r.note}"
        )
        figures[f"{r.workflow}_{r.variant}_35gy_hr"] = round(float(r.hr_below), 3)
        figures[f"{r.workflow}_{r.variant}_35gy_n_above"] = int(r.n_above)
    print("optimal cutoff per workflow (maximally selected log-rank, 95 % bootstrap CI):")
    for workflow, part in data.groupby("workflow", sort=True):
        res = optimal_cutoff(
            part,
            "time_months",
            "event",
            "dose_gy",
            n_boot=args.n_boot,
            n_perm=args.n_boot,
            seed=args.seed,
        )
        print(
            f"  {workflow:12s} {res.cutoff:6.1f} Gy [{res.ci[0]:.1f}, {res.ci[1]:.1f}]  "
            f"|Z| {res.statistic:.2f}, p (Lausen–Schumacher) {res.pvalue_adjusted:.2g}, "
            f"p (permutation) {res.pvalue_permutation:.2g}, naive p {res.pvalue_naive:.2g}"
        )
        figures[f"{workflow}_optimal_cutoff_gy"] = round(res.cutoff, 2)
        figures[f"{workflow}_optimal_ci_low_gy"] = round(res.ci[0], 2)
        figures[f"{workflow}_optimal_ci_high_gy"] = round(res.ci[1], 2)
        figures[f"{workflow}_optimal_p_adjusted"] = float(f"{res.pvalue_adjusted:.3g}")
    figures["single_cohort_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    target = {"truth": THRESHOLD_GY} | {
        m.workflow: THRESHOLD_GY * m.median_ratio(THRESHOLD_GY) for m in models
    }
    hits: dict[str, list[bool]] = {w: [] for w in target}
    cuts: dict[str, list[float]] = {w: [] for w in target}
    for rep in range(args.replicates):
        pi, cl = _cohort(models, args.patients, args.median_gy, log_sd, 1000 + rep)
        d = analysis_set(pi, cl, INDEX, "1", "pfs")
        for workflow, part in d.groupby("workflow", sort=True):
            res = optimal_cutoff(
                part, "time_months", "event", "dose_gy", n_boot=300, n_perm=0, seed=rep
            )
            hits[workflow].append(res.ci[0] <= target[workflow] <= res.ci[1])
            cuts[workflow].append(res.cutoff)
    print(f"over {args.replicates} cohorts (300 bootstrap resamples each):")
    for workflow in sorted(target):
        cover = float(np.mean(hits[workflow]))
        print(
            f"  {workflow:12s} threshold in its scale {target[workflow]:5.1f} Gy: CI covers it "
            f"in {cover:.0%}; optimal cutoff median {np.median(cuts[workflow]):.1f} Gy "
            f"(IQR {np.quantile(cuts[workflow], 0.25):.1f}–{np.quantile(cuts[workflow], 0.75):.1f})"
        )
        figures[f"{workflow}_ci_coverage"] = round(cover, 3)
        figures[f"{workflow}_cutoff_median_gy"] = round(float(np.median(cuts[workflow])), 2)
    figures["replicates_s"] = round(time.perf_counter() - t0, 1)
    return figures


if __name__ == "__main__":
    main()
