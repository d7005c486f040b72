"""Benchmark: what the uncertainty budget costs, and whether it covers the phantom truth.

* **cost**: each adapter on one noisy phantom patient-cycle (4.8 mm voxels), with and
  without the budget (``uncertainty=False``), best of 3 runs; the overhead in %;
* **coverage**: the k = 2 coverage of every workflow's lesion mean doses on a noisy
  phantom cohort (seeded) — the fraction of lesions with ``|dose − truth| <= 2u`` — overall
  and by true lesion volume; the mean signed ``(dose − truth)/u``; the analytic/Monte Carlo
  ratio of u (median and range over lesions);
* **diagnostics** (which component is missing or overstated; nothing is tuned): the same
  coverage on the same cohort imaged *without* the PSF (``psf_fwhm_mm = 0``) — the
  phantom's chain is Poisson noise + a Gaussian PSF, so if coverage rises to ≈ 95 % without
  it, the missing component is the uncorrected partial-volume (spill-out) loss; and the
  coverage with the budget's volume (segmentation) component left out — the adapters are
  given the phantom's *true* labels, so on this phantom a declared boundary uncertainty
  describes an error that is not there, and coverage near 100 % with it but ≈ 95 %
  without it says that component is what is overstated here; likewise the coverage with
  only the components whose error source the phantom simulates (counts, fit, head).

The realistic imaging chain (issue #13: projection, OSEM, calibration phantom, observer
segmentation) had not landed when this was written: the figures are for the current
parametric phantom. Run: ``python benchmarks/bench_uncertainty.py [--patients N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from harmonize.phantom import PhantomConfig, make_patient, simulate_study
from harmonize.registry import get_workflow
from harmonize.uncertainty import monte_carlo

WORKFLOWS = ("milan", "bordet", "montpellier")
BASE = PhantomConfig(cycles=(1,))
BANDS_ML = (0.0, 10.0, 50.0, np.inf)
#: Components whose error source the current phantom simulates (Poisson noise, the
#: kinetics the workflows fit, the unmeasured head); calibration, segmentation, density,
#: dose-factor and recovery-curve errors are not simulated (exact Q, true labels, ...).
SIMULATED = ("counts", "fit", "head")


def _machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    )


def cost(repeats: int = 5) -> dict[str, float]:
    """Cost of the budget in each adapter's run (median of ``repeats`` runs).

    Two measures: the time spent inside the budget (``workflows._common.voi_uncertainty``,
    timed in the same run, so the machine's load affects both parts alike) over the rest
    of the run; and best-of runs with and without the budget (``uncertainty=False``),
    which on a shared machine is noisier.
    """
    from workflows import _common

    study, _ = simulate_study(make_patient(0, 2024, BASE), 1, 2024, BASE)
    spent: list[float] = []
    original = _common.voi_uncertainty

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t0)

    out: dict[str, float] = {}
    _common.voi_uncertainty = timed  # type: ignore[assignment]
    try:
        for name in WORKFLOWS:
            cls = get_workflow(name)
            with_u, without_u = cls(), cls(uncertainty=False)
            with_u.run(study)  # warm caches (kernels, RC curve)
            shares, budget_s, times_on, times_off = [], [], [], []
            for _ in range(repeats):
                spent.clear()
                t0 = time.perf_counter()
                with_u.run(study)
                t1 = time.perf_counter()
                without_u.run(study)
                times_on.append(t1 - t0)
                times_off.append(time.perf_counter() - t1)
                budget_s.append(spent[0])
                shares.append(spent[0] / (t1 - t0 - spent[0]))
            out[f"{name}_run_s_with_uncertainty_median"] = float(np.median(times_on))
            out[f"{name}_budget_s_median"] = float(np.median(budget_s))
            out[f"{name}_uncertainty_overhead_pct_inside_run"] = 100.0 * float(np.median(shares))
            out[f"{name}_uncertainty_overhead_pct_best_of_runs"] = 100.0 * (
                min(times_on) / min(times_off) - 1.0
            )
    finally:
        _common.voi_uncertainty = original  # type: ignore[assignment]
    return out


def _lesion_rows(config: PhantomConfig, patients: int, seed: int, mc: bool) -> pd.DataFrame:
    rows = []
    for index in range(patients):
        patient = make_patient(index, seed, config)
        study, truth = simulate_study(patient, 1, seed, config)
        truth = truth.set_index("voi_id")
        for name in WORKFLOWS:
            result = get_workflow(name)().run(study)
            voi = result.voi_dose.set_index("voi_id")
            lesion = voi["voi_kind"] == "lesion"
            frame = pd.DataFrame(
                {
                    "workflow": name,
                    "patient": index,
                    "volume_ml": truth.loc[voi.index[lesion], "volume_ml"].to_numpy(),
                    "dose_gy": voi.loc[lesion, "dose_mean_gy"].to_numpy(),
                    "truth_gy": truth.loc[voi.index[lesion], "dose_mean_gy"].to_numpy(),
                    "u_gy": voi.loc[lesion, "dose_mean_u_gy"].to_numpy(),
                }
            )
            # diagnostic: u without the volume (segmentation) component, from the budget
            budget = result.uncertainty.set_index(["voi_id", "component"])["dose_u_rel"]
            rel = budget.unstack("component").fillna(0.0)
            no_volume = np.sqrt((rel.drop(columns="volume") ** 2).sum(axis=1))
            simulated = [c for c in SIMULATED if c in rel.columns]
            phantom_only = np.sqrt((rel[simulated] ** 2).sum(axis=1))
            ids = voi.index[lesion]
            frame["u_no_volume_gy"] = no_volume.reindex(ids).to_numpy() * frame["dose_gy"]
            frame["u_simulated_gy"] = phantom_only.reindex(ids).to_numpy() * frame["dose_gy"]
            if mc:
                u_mc = monte_carlo(result.uncertainty_chain, 2000, seed=index)["dose_mean_u_gy"]
                frame["mc_over_analytic"] = u_mc.to_numpy()[lesion.to_numpy()] / frame["u_gy"]
            rows.append(frame)
    table = pd.concat(rows, ignore_index=True)
    table["z"] = (table["dose_gy"] - table["truth_gy"]) / table["u_gy"]
    table["covered"] = table["z"].abs() <= 2.0
    error = (table["dose_gy"] - table["truth_gy"]).abs()
    table["covered_no_volume"] = error <= 2.0 * table["u_no_volume_gy"]
    table["covered_simulated"] = error <= 2.0 * table["u_simulated_gy"]
    return table


def coverage(patients: int = 6, seed: int = 2024) -> tuple[dict[str, float], pd.DataFrame]:
    """k = 2 coverage per workflow (and by volume band), with and without the PSF."""
    figures: dict[str, float] = {}
    tables = []
    for label, config in (("psf", BASE), ("no_psf", replace(BASE, psf_fwhm_mm=0.0))):
        table = _lesion_rows(config, patients, seed, mc=label == "psf")
        table["phantom"] = label
        tables.append(table)
        for name, group in table.groupby("workflow"):
            figures[f"{label}_{name}_coverage_k2"] = float(group["covered"].mean())
            figures[f"{label}_{name}_coverage_k2_without_volume_component"] = float(
                group["covered_no_volume"].mean()
            )
            figures[f"{label}_{name}_coverage_k2_simulated_components_only"] = float(
                group["covered_simulated"].mean()
            )
            figures[f"{label}_{name}_mean_z"] = float(group["z"].mean())
            figures[f"{label}_{name}_n_lesions"] = float(len(group))
            if label == "psf":
                ratio = group["mc_over_analytic"]
                figures[f"{name}_mc_over_analytic_median"] = float(ratio.median())
                figures[f"{name}_mc_over_analytic_min"] = float(ratio.min())
                figures[f"{name}_mc_over_analytic_max"] = float(ratio.max())
                figures[f"{name}_share_within_10pct"] = float(((ratio - 1).abs() <= 0.1).mean())
    all_rows = pd.concat(tables, ignore_index=True)
    all_rows["band"] = pd.cut(
        all_rows["volume_ml"], BANDS_ML, labels=["<10 mL", "10-50 mL", ">50 mL"]
    )
    by_band = (
        all_rows.groupby(["phantom", "workflow", "band"], observed=True)
        .agg(lesions=("covered", "size"), coverage_k2=("covered", "mean"), mean_z=("z", "mean"))
        .reset_index()
    )
    return figures, by_band


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Run the benchmark; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args(argv)
    print(f"machine: {_machine()}")
    from harmonize.uncertainty.example import worked_example

    _, example = worked_example()
    print("worked example (harmonize.uncertainty.example, Gear 2018 structure):")
    print(example.drop(columns="voi_index").round(4).to_string(index=False))
    figures = cost()
    cov, by_band = coverage(args.patients, args.seed)
    figures.update(cov)
    for key, value in figures.items():
        print(f"{key}: {value:.4g}")
    print(by_band.to_string(index=False))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
