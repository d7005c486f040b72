"""Dose–response tables per workflow and their pick-up by ``harmonize compare``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harmonize.compare import load_cutoffs
from harmonize.outcomes.cohort import WorkflowErrorModel, sample_true_doses, workflow_doses
from harmonize.outcomes.dose_response import (
    CYCLE1_LANDMARK_MONTHS,
    TREATMENT_END_LANDMARK_MONTHS,
    analysis_set,
    cutoff_survival,
    dose_response_tables,
    table1,
)
from harmonize.outcomes.simulate import simulate_outcomes

MILEVA = load_cutoffs().query("key == 'mileva2024_min_c1'")
HALF = WorkflowErrorModel("half", "lesion_dose_min_gy", float(np.log(0.5)), 1.0, 0.0, 10, (5, 50))


@pytest.fixture(scope="module")
def cohort() -> tuple[pd.DataFrame, pd.DataFrame]:
    doses = sample_true_doses(240, median_gy=35.0, log_sd=0.35, seed=1)
    clinical = simulate_outcomes(doses, seed=1)
    pindex = workflow_doses(doses, [HALF], seed=1)
    return pindex, clinical


def test_landmark_excludes_patients_not_event_free_at_it(cohort) -> None:
    pindex, clinical = cohort
    c1 = analysis_set(pindex, clinical, "lesion_dose_min_gy", "1")
    assert (c1["landmark_months"] == CYCLE1_LANDMARK_MONTHS).all()
    end = analysis_set(pindex, clinical, "lesion_dose_min_gy", "last")
    assert (end["landmark_months"] == TREATMENT_END_LANDMARK_MONTHS).all()
    early = set(clinical.loc[clinical["pfs_months"] <= 6.0, "patient_id"])
    assert early and not early & set(end["patient_id"])
    row = end.iloc[0]
    original = clinical.set_index("patient_id").loc[row["patient_id"], "pfs_months"]
    assert row["time_months"] == pytest.approx(original - 6.0)


def test_published_cutoff_raw_and_translated(cohort) -> None:
    pindex, clinical = cohort
    # a workflow reading exactly half the true dose: the raw 35 Gy misclassifies, the
    # translated cutoff (17.5 Gy) gives back the truth's split, HR and log-rank exactly
    translations = pd.DataFrame(
        {"cutoff_key": ["mileva2024_min_c1"], "to_workflow": ["half"], "estimate_gy": [17.5]}
    )
    table = cutoff_survival(pindex, clinical, cutoffs=MILEVA, translations=translations)
    truth = table.query("workflow == 'truth' and variant == 'raw'").iloc[0]
    half_raw = table.query("workflow == 'half' and variant == 'raw'").iloc[0]
    half_tr = table.query("workflow == 'half' and variant == 'translated'").iloc[0]
    for col in ("n_below", "n_above", "hr_below", "logrank_chi2"):
        assert half_tr[col] == pytest.approx(truth[col], rel=1e-12)
    assert half_raw["n_above"] < truth["n_above"]
    # the simulated truth: HR below vs above 35 Gy is (48.1/26.2)^1.2 ~ 2.07 (grade adds
    # noise, not bias, as it is independent of dose); 240 patients: SE of ln HR ~ 0.17
    assert truth["ci_low"] > 1.0
    assert truth["hr_below"] == pytest.approx(2.07, rel=0.4)
    assert truth["median_below_months"] < truth["median_above_months"]


def test_all_tables_and_table1(cohort) -> None:
    pindex, clinical = cohort
    tables = dose_response_tables(pindex, clinical, cutoffs=MILEVA, n_boot=100)
    assert sorted(tables) == [
        "outcome_cox",
        "outcome_cutoffs",
        "outcome_km",
        "outcome_optimal_cutoffs",
        "outcome_table1",
    ]
    opt = tables["outcome_optimal_cutoffs"].set_index("workflow")
    # the cutoff is equivariant to the dose scale (same split, half the dose)
    assert opt.loc["half", "cutoff_gy"] == pytest.approx(0.5 * opt.loc["truth", "cutoff_gy"])
    assert opt.loc["truth", "ci_low_gy"] <= 35.0 <= opt.loc["truth", "ci_high_gy"]
    cox = tables["outcome_cox"].set_index(["workflow", "model"])
    # ln HR per 10 Gy of the half-dose workflow is twice the truth's
    assert np.log(cox.loc[("half", "unadjusted"), "hr"]) == pytest.approx(
        2 * np.log(cox.loc[("truth", "unadjusted"), "hr"]), rel=1e-6
    )
    t1 = table1(clinical.assign(center=np.where(np.arange(240) < 100, "A", "B")))
    n = t1.query("characteristic == 'patients'").set_index("group")["n"]
    assert n.to_dict() == {"A": 100, "B": 140, "all": 240}
    grades = t1.query("characteristic == 'grade' and group == 'all'")["n"].sum()
    assert grades == 240


def test_compare_picks_up_a_clinical_table(tmp_path) -> None:
    from harmonize.indices import patient_index
    from harmonize.pipeline import compare_results, write_comparison
    from harmonize.schema import example_frames

    base = example_frames()["voi_dose"]
    rng = np.random.default_rng(0)
    parts = []
    for i in range(30):
        factor = float(rng.lognormal(0.5, 0.4))
        for workflow, scale in (("truth", 1.0), ("bordet", 0.6)):
            rows = base.assign(patient_id=f"P{i:03d}", workflow=workflow)
            lesion = rows["voi_kind"] == "lesion"
            rows.loc[lesion, "dose_mean_gy"] *= factor * scale
            parts.append(rows)
    voi = pd.concat(parts, ignore_index=True)
    pindex = patient_index(voi, cumulative_rule="sum")
    truth = pindex.query("workflow == 'truth'")[["patient_id", "lesion_dose_min_gy"]]
    clinical = simulate_outcomes(truth, dose_column="lesion_dose_min_gy", seed=0)
    tables = compare_results(
        {"voi_dose": voi, "patient_index": pindex, "clinical": clinical}, n_boot=100
    )
    assert set(tables.outcomes) >= {"outcome_cutoffs", "outcome_optimal_cutoffs"}
    written = {p.stem for p in write_comparison(tables, tmp_path / "agreement")}
    assert "outcome_cutoffs" in written and "outcome_table1" in written
    without = compare_results({"voi_dose": voi, "patient_index": pindex}, n_boot=100)
    assert without.outcomes == {}


def test_report_section_renders_the_tables_it_is_given(cohort) -> None:
    from harmonize.report.html import _num
    from harmonize.report.outcomes import _outcomes_section

    pindex, clinical = cohort
    tables = dose_response_tables(pindex, clinical, cutoffs=MILEVA, n_boot=50)
    stored = {f"agreement/{k}.parquet": v for k, v in tables.items()}
    html = _outcomes_section(stored, {"truth": "#222222", "half": "#1f77b4"})
    row = tables["outcome_cutoffs"].query("workflow == 'truth'").iloc[0]
    assert f"{row['n_below']} / {row['n_above']}" in html
    assert _num(row["hr_below"]) in html  # the table's number, not a recomputed one
    opt = tables["outcome_optimal_cutoffs"].query("workflow == 'truth'").iloc[0]
    assert _num(opt["cutoff_gy"]) in html
    assert html.count("<img") == 3  # KM curves, forest plot, optimal cutoffs
    assert "Table 1" in html
    empty = _outcomes_section({}, {})
    assert "harmonize clinical import" in empty and "<img" not in empty


def test_optimal_cutoff_of_a_too_small_cohort_is_a_note_not_a_crash(cohort) -> None:
    from harmonize.outcomes.dose_response import optimal_cutoffs

    pindex, clinical = cohort
    few = clinical.head(8)
    table = optimal_cutoffs(pindex, few, cutoffs=MILEVA, n_boot=10, n_perm=10)
    assert set(table["workflow"]) == {"half", "truth"}
    assert table["note"].str.contains("at least 10 patients").all()
    assert table["n"].max() <= 8
