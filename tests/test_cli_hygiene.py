"""Command-line mistakes a new user makes: each gets one line naming the option, exit 2,
and nothing written (issue #10, item 6)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harmonize.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "data_schema" / "examples"


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line
    assert "Traceback" not in err and "harmonize.kinetics" not in err and "Error:" not in err
    return err


def test_run_set_with_a_bad_value_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "results"
    code = main(
        ["run", "--workflow", "bordet", "--cohort", str(tmp_path / "cohort"), "--out", str(out),
         "--set", "bordet.weighting=banana"]
    )  # fmt: skip
    assert code == 2
    err = _error_line(capsys)
    assert "--set bordet.weighting=banana" in err
    assert "must be one of ['none', 'relative', 'poisson']" in err
    assert not out.exists()  # no study was run


def test_run_set_with_a_bad_type_names_the_type_not_a_class_path(tmp_path, capsys):
    code = main(
        ["run", "--workflow", "bordet", "--cohort", str(tmp_path), "--out", str(tmp_path / "r"),
         "--set", "bordet.organ_includes_lesions=perhaps"]
    )  # fmt: skip
    assert code == 2
    err = _error_line(capsys)
    assert "cannot read 'perhaps' as bool" in err and "<class" not in err


def test_report_into_a_missing_folder_is_refused(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(EXAMPLES, results)
    target = tmp_path / "nonexistent" / "dir" / "r.html"
    assert main(["report", str(results), "--out", str(target)]) == 2
    err = _error_line(capsys)
    assert "--out" in err and "does not exist" in err
    assert not target.parent.exists()


def test_phantom_cycles_not_numbers_names_the_option(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["phantom", "--cycles", "abc", "--out", str(out), "--quiet"]) == 2
    err = _error_line(capsys)
    assert "--cycles" in err and "'abc'" in err
    assert not out.exists()


def test_demo_workers_zero_is_refused_before_the_phantom(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--workers", "0", "--quiet"]) == 2
    err = _error_line(capsys)
    assert "--workers" in err and "got 0" in err
    assert not out.exists()  # nothing generated


def test_phantom_workers_zero_is_refused(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["phantom", "--out", str(out), "--workers", "0", "--quiet"]) == 2
    err = _error_line(capsys)
    assert "--workers" in err and "got 0" in err
    assert not out.exists()


def test_validate_on_a_cohort_folder_says_it_is_not_results(tmp_path, capsys):
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    shutil.copy(EXAMPLES / "voi_dose.parquet", cohort / "truth.parquet")
    (cohort / "P001_C1.nc").write_bytes(b"")
    assert main(["validate", str(cohort)]) == 2
    err = _error_line(capsys)
    assert "is a cohort folder" in err and "not a results folder" in err
    assert "schema_version None" not in err


def test_planned_cycles_must_be_positive(tmp_path, capsys):
    code = main(
        ["run", "--workflow", "bordet", "--cohort", str(tmp_path), "--out", str(tmp_path / "r"),
         "--planned-cycles", "0"]
    )  # fmt: skip
    assert code == 2
    assert "--planned-cycles" in _error_line(capsys)


def test_compare_with_a_bad_cutoff_file_names_file_and_column(tmp_path, capsys):
    bad = tmp_path / "mine.csv"
    bad.write_text("key,index,cycle,direction,value\nx,global_mean_dose_gy,1,=>,10\n")
    results = tmp_path / "results"
    shutil.copytree(EXAMPLES, results)
    assert main(["compare", str(results), "--out", str(tmp_path / "a"), "--cutoffs", str(bad)]) == 2
    err = _error_line(capsys)
    assert "--cutoffs" in err and str(bad) in err and "missing column(s)" in err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("setting", "allowed"),
    [
        ("milan.rc_source=banana", "['calibration_phantom', 'table', 'gaussian_psf']"),
        ("milan.rc_imaging_mode=slow", "['fast', 'full']"),
        ("montpellier.segmentation=manual", "['given', 'observer']"),
    ],
)
def test_run_refuses_the_imaging_and_segmentation_choices_before_any_study(
    tmp_path, capsys, setting, allowed
):
    # these parameters came with the imaging chain (issue #13): a typo used to fail every
    # study one by one with a ValueError
    out = tmp_path / "results"
    code = main(
        ["run", "--workflow", "all", "--cohort", str(tmp_path), "--out", str(out), "--set", setting]
    )
    assert code == 2
    err = _error_line(capsys)
    assert f"--set {setting}" in err and f"must be one of {allowed}" in err
    assert not out.exists()
