"""``harmonize demo``: the README's main job, end to end on a small cohort."""

from __future__ import annotations

import pandas as pd
import pytest

from harmonize import schema
from harmonize.cli import main


@pytest.mark.slow
def test_demo_writes_results_comparison_and_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--patients", "3", "--workers", "1", "--quiet"]) == 0
    assert schema.validate_path(out / "results") == []
    results = schema.read_results(out / "results")
    assert set(results["voi_dose"]["workflow"]) == {"bordet", "milan", "montpellier", "truth"}
    # 3 patients × cycles 1–4, Milan indices from its imaged cycles 1 and 4 only
    counts = results["patient_index"].groupby("workflow").size().to_dict()
    assert counts == {"bordet": 12, "montpellier": 12, "truth": 12, "milan": 6}
    agreement = schema.read_results(out / "agreement" / "agreement.parquet")["agreement"]
    pairs = set(zip(agreement["workflow_a"], agreement["workflow_b"], strict=True))
    assert ("bordet", "montpellier") in pairs and ("milan", "truth") in pairs
    page = (out / "report.html").read_text(encoding="utf-8")
    assert (
        "harmonize" in page
        and "http://" not in page
        and "https://" not in page.split("References")[0]
    )
    # the key findings the page opens with are cells of the comparison tables: every
    # extrapolated translation is said to be one
    import html

    from harmonize.report import key_findings

    tables = {p.stem: pd.read_parquet(p) for p in (out / "agreement").glob("*.parquet")}
    lines = key_findings(results, comparison=tables)
    assert lines and all(html.escape(line) in page for line in lines)
    tr = tables["cutoff_translation"]
    for key, rows in tr.groupby("cutoff_key"):
        line = next(x for x in lines if f"({key}) ≈" in x)
        assert ("Extrapolated:" in line) == bool(rows["extrapolated"].any()), line
    # a second run into the same folder is refused rather than overwriting
    assert main(["demo", "--out", str(out), "--patients", "3", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_default_demo_cohort_spans_every_published_cutoff_in_truth():
    # the demo's designed dose spread (harmonize.demo) puts, in truth, patients on both
    # sides of each of the five published cutoffs, so every kappa can be defined; computed
    # from the phantom's truth alone (no imaging, no workflow)
    from harmonize import compare
    from harmonize.demo import demo_config
    from harmonize.indices import patient_index
    from harmonize.phantom import make_patient, truth_table

    config = demo_config(6)
    rows = [
        truth_table(make_patient(i, 0, config), cycle, config)
        for i in range(6)
        for cycle in config.all_cycles
    ]
    truth = pd.concat(rows, ignore_index=True).assign(
        center="phantom", workflow="truth", workflow_version="1"
    )
    pindex = patient_index(truth, "sum", 4)
    assert (pindex["cum_basis"] == "measured_sum").all()
    for cut in compare.load_cutoffs().itertuples(index=False):
        if cut.cycle == "end":
            values = pindex.groupby("patient_id")[cut.index].first()
        else:
            values = pindex.loc[pindex["cycle"] == int(cut.cycle)].set_index("patient_id")[
                cut.index
            ]
        above = values >= cut.cutoff_gy if cut.direction == ">=" else values > cut.cutoff_gy
        assert 0 < int(above.sum()) < len(values), (cut.key, values.round(1).tolist())
