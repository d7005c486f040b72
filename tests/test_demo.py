"""``harmonize demo``: the README's main job, end to end on a small cohort."""

from __future__ import annotations

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
    # a second run into the same folder is refused rather than overwriting
    assert main(["demo", "--out", str(out), "--patients", "3", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
