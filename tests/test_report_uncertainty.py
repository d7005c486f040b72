"""The report's uncertainty section renders the budget, coverage and error bars."""

from __future__ import annotations

import pandas as pd

from harmonize.report.figures import _colours
from harmonize.report.uncertainty import uncertainty_section
from harmonize.schema import example_frames


def test_section_renders_budget_and_coverage_from_the_tables():
    frames = example_frames()
    voi = frames["voi_dose"]
    truth = voi.assign(workflow="truth", dose_mean_u_gy=float("nan"))
    # the truth equals the example's doses + 1.5 u for lesion 10 and + 2.5 u for lesion 11
    lesion = truth["voi_kind"] == "lesion"
    shift = voi["dose_mean_u_gy"].fillna(0.0) * truth["voi_id"].map({10: 1.5, 11: 2.5}).fillna(0)
    truth.loc[lesion, "dose_mean_gy"] = voi.loc[lesion, "dose_mean_gy"] + shift[lesion]
    results = {**frames, "voi_dose": pd.concat([voi, truth], ignore_index=True)}
    html = uncertainty_section(results, _colours(["example", "truth"]), "6b")
    assert "6b. Uncertainty of the doses" in html
    assert "<td>volume</td>" in html  # the budget table
    assert "50 %" in html  # one of the two lesions within 2u of the truth
    assert "data:image/png;base64," in html  # the error-bar figure


def test_section_says_when_there_is_no_uncertainty():
    frames = example_frames()
    voi = frames["voi_dose"].drop(columns=["dose_mean_u_gy", "tia_u_mbq_h"])
    html = uncertainty_section({"voi_dose": voi}, _colours(["example"]), "6b")
    assert "carry no uncertainty" in html
