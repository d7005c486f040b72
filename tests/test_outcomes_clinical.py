"""``harmonize clinical import``: a good file is pseudonymised and written; each bad file is
refused with one message per problem naming the file, line and field, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harmonize.cli import main
from harmonize.deid import pseudonym
from harmonize.outcomes.clinical import ClinicalError, validate_clinical
from harmonize.schema import example_frames, read_results, write_results

KEY = b"centre-secret-key"
HOSPITAL_IDS = ["H-1001", "H-1002", "H-1003"]
HEADER = "patient_id,sex,age_band,grade,ki67_pct,pfs_months,pfs_event,os_months,os_event,follow_up_months"
GOOD_ROWS = [
    "H-1001,F,60-69,G2,5.5,26.5,1,41.0,0,41.0",
    "H-1002,M,70-79,G1,1.2,48.0,0,48.0,0,48.0",
    "H-1003,M,50-59,G3,25,6.0,yes,14.0,true,14.0",
]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder whose patient_index holds the three patients' pseudonyms."""
    base = example_frames()["patient_index"]
    rows = pd.concat(
        [base.assign(patient_id=pseudonym(h, KEY)) for h in HOSPITAL_IDS], ignore_index=True
    )
    out = tmp_path / "results"
    write_results({"patient_index": rows}, out, basename="cohort")
    return out


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    path.write_bytes(KEY)
    return path


def _run(
    tmp_path: Path, lines: list[str], results: Path, key_file: Path, capsys
) -> tuple[int, str]:
    csv = tmp_path / "clinical.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code = main(
        ["clinical", "import", str(csv), "--key", str(key_file), "--out", str(results), "--quiet"]
    )
    return code, capsys.readouterr().err


def test_good_file_is_pseudonymised_and_written(tmp_path, results, key_file, capsys) -> None:
    code, err = _run(tmp_path, [HEADER, *GOOD_ROWS], results, key_file, capsys)
    assert code == 0, err
    clinical = read_results(results)["clinical"]
    assert sorted(clinical["patient_id"]) == sorted(pseudonym(h, KEY) for h in HOSPITAL_IDS)
    raw = (results / "clinical" / "clinical.parquet").read_bytes()
    assert not any(h.encode() in raw for h in HOSPITAL_IDS)  # no hospital ID anywhere
    row = clinical.set_index("patient_id").loc[pseudonym("H-1003", KEY)]
    assert bool(row["pfs_event"]) and row["ki67_pct"] == 25.0 and row["grade"] == "G3"
    # the same file again is a no-op; a different one is refused without --overwrite
    assert _run(tmp_path, [HEADER, *GOOD_ROWS], results, key_file, capsys)[0] == 0
    changed = [HEADER, GOOD_ROWS[0].replace("26.5", "20.0"), *GOOD_ROWS[1:]]
    code, err = _run(tmp_path, changed, results, key_file, capsys)
    assert code == 2 and "overwrite" in err


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [
                HEADER.replace(",os_event", ""),
                *(r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in GOOD_ROWS),
            ],
            "missing required column(s) ['os_event']",
        ),
        (
            [
                HEADER,
                GOOD_ROWS[0],
                GOOD_ROWS[1].replace("48.0,0,48.0", "-3.0,0,48.0"),
                GOOD_ROWS[2],
            ],
            "line 3, field 'pfs_months': expected a number in [0, 600] (month), got '-3.0'",
        ),
        (
            [HEADER, GOOD_ROWS[0], GOOD_ROWS[1], GOOD_ROWS[0].replace("26.5", "27.5")],
            "line 4, field 'patient_id': the same patient as line 2 (one row per patient)",
        ),
        (
            [HEADER, *GOOD_ROWS, "H-9999,F,60-69,G2,5.5,10,1,20,1,20"],
            f"line 5, field 'patient_id': patient {pseudonym('H-9999', KEY)} has no dosimetry",
        ),
        (
            [
                HEADER,
                GOOD_ROWS[0].replace("26.5,1,41.0,0,41.0", "26.5,1,45.0,1,41.0"),
                *GOOD_ROWS[1:],
            ],
            "line 2, field 'os_months': 45 > follow_up_months 41 (an event time must not exceed the follow-up)",
        ),
        (
            [HEADER + ",birth_date", *(r + ",1950-01-01" for r in GOOD_ROWS)],
            "column 'birth_date' would identify a patient",
        ),
    ],
    ids=[
        "missing-column",
        "negative-time",
        "duplicate-patient",
        "unknown-patient",
        "event-after-follow-up",
        "birth-date",
    ],
)
def test_bad_file_one_clear_message_exit_2(
    tmp_path, results, key_file, capsys, lines, expected
) -> None:
    code, err = _run(tmp_path, lines, results, key_file, capsys)
    assert code == 2
    assert expected in err
    assert str(tmp_path / "clinical.csv") in err  # names the file
    assert err.count("\n") == 1  # exactly one problem reported, on one line
    assert "H-1001" not in err and "H-9999" not in err  # no hospital ID echoed
    assert not (results / "clinical").exists()  # nothing written


def test_every_bad_row_is_reported(tmp_path) -> None:
    raw = pd.DataFrame(
        [["A", "-1", "1", "5", "1", "5"], ["B", "2", "maybe", "5", "0", "1"]],
        columns=[
            "patient_id",
            "pfs_months",
            "pfs_event",
            "os_months",
            "os_event",
            "follow_up_months",
        ],
    )
    with pytest.raises(ClinicalError) as info:
        validate_clinical(raw, source="x.csv")
    problems = info.value.problems
    assert any("line 2, field 'pfs_months'" in p for p in problems)
    assert any("line 3, field 'pfs_event'" in p for p in problems)
    assert any("line 3, field 'os_months': 5 > follow_up_months 1" in p for p in problems)


def test_missing_key_file_and_results_without_dosimetry(
    tmp_path, results, key_file, capsys
) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("\n".join([HEADER, *GOOD_ROWS]) + "\n")
    assert (
        main(
            [
                "clinical",
                "import",
                str(csv),
                "--key",
                str(tmp_path / "nokey"),
                "--out",
                str(results),
            ]
        )
        == 2
    )
    assert "--key" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["clinical", "import", str(csv), "--key", str(key_file), "--out", str(empty)]) == 2
    assert "no patient_index" in capsys.readouterr().err


def test_clinical_simulate_from_a_cohort_truth(tmp_path, capsys) -> None:
    cohort = tmp_path / "cohort"
    cohort.mkdir()
    truth = pd.DataFrame(
        {
            "patient_id": ["P001", "P001", "P002", "P003"],
            "cycle": 1,
            "voi_kind": ["lesion", "lesion", "lesion", "organ"],
            "dose_mean_gy": [20.0, 40.0, 50.0, 3.0],
        }
    )
    truth.to_parquet(cohort / "truth.parquet")
    out = tmp_path / "results"
    args = ["clinical", "simulate", "--cohort", str(cohort), "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = (out / "clinical" / "clinical.parquet").read_bytes()
    clinical = read_results(out)["clinical"]
    assert clinical["patient_id"].tolist() == ["P001", "P002"]  # P003 has no lesion
    assert main(args) == 0  # same seed: identical bytes, nothing to overwrite
    assert (out / "clinical" / "clinical.parquet").read_bytes() == first
    assert main([*args, "--seed", "1"]) == 2  # different content, no --overwrite
    assert "overwrite" in capsys.readouterr().err
    assert main(["clinical", "simulate", "--cohort", str(tmp_path), "--out", str(out)]) == 2
    assert "truth.parquet" in capsys.readouterr().err
