"""A cohort knows what it skipped, and ``harmonize run`` says so (never a patient identifier
in the manifest; noise files not listed; exit code unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

import harmonize as hz
from harmonize.cli import main
from harmonize.cohort import open_cohort
from harmonize.runfolder import MANIFEST_NAME

PATIENT_A, PATIENT_B = "PAT-ALPHA-0001", "PAT-BRAVO-0002"
BAD_DATE = "XX20230517"


def _noise(root: Path, *, noise_only_folder: bool = False) -> None:
    """What an operating system, a zip tool or harmonize itself leave in a folder."""
    for rel in (".DS_Store", "A/.DS_Store", "A/NM/._T01.dcm", "Thumbs.db", "B/desktop.ini"):
        (root / rel).write_bytes(b"noise")
    (root / "__MACOSX" / "A").mkdir(parents=True, exist_ok=True)
    (root / "__MACOSX" / "A" / "._notes.pdf").write_bytes(b"noise")
    (root / ".hidden_folder").mkdir(exist_ok=True)
    (root / ".hidden_folder" / "x.txt").write_text("noise")
    if noise_only_folder:  # a folder with nothing but noise counts as empty
        (root / "only_noise").mkdir()
        (root / "only_noise" / ".DS_Store").write_bytes(b"noise")


@pytest.fixture
def clean(tmp_path, make_tiny_study):
    """Two de-identified DICOM studies (with harmonize's own sidecars) and noise only."""
    root = tmp_path / "cohort"
    hz.io.write_study_dicom(make_tiny_study(patient_id=PATIENT_A), root / "A")
    hz.io.write_study_dicom(make_tiny_study(patient_id=PATIENT_B), root / "B")
    (root / "B" / "truth.parquet").write_bytes(b"harmonize's own phantom truth beside DICOM")
    _noise(root)
    return root


@pytest.fixture
def messy(clean, make_dicom_variant):
    """The clean folder plus what a user drops beside the studies by mistake."""
    a = clean / "A"
    nm, ct = a / "NM" / "T01.dcm", sorted((a / "CT").glob("*.dcm"))[0]
    make_dicom_variant(
        nm, a / "NM" / "planar.dcm", ImageType=["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    )
    make_dicom_variant(
        ct, clean / "orphan" / "ct.dcm", StudyInstanceUID=generate_uid(),
        FrameOfReferenceUID=generate_uid(),
    )  # fmt: skip
    (a / "NM" / "broken.dcm").write_bytes(b"\x00" * 200)
    # no cycle anywhere and an invalid injection date: skipped, the value never repeated
    bad = make_dicom_variant(nm, clean / "E" / "nm.dcm", StudyInstanceUID=generate_uid())
    ds = pydicom.dcmread(bad)
    del ds.ClinicalTrialTimePointID
    with pytest.warns(UserWarning, match="Invalid value for VR DT"):  # pydicom, as meant
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = BAD_DATE
    ds.save_as(bad, enforce_file_format=True)
    (a / "notes.pdf").write_bytes(b"%PDF-1.4")
    (clean / "C").mkdir()
    (clean / "C" / "spect.nii.gz").write_bytes(b"an image without its sidecar")
    (clean / "D" / "cycle1").mkdir(parents=True)  # a study that was never copied
    _noise(clean, noise_only_folder=True)
    return clean


def test_a_clean_cohort_skips_nothing_and_noise_is_not_listed(clean):
    cohort = open_cohort(clean)
    assert sorted(cohort) == [(PATIENT_A, 1), (PATIENT_B, 1)]
    assert cohort.skipped == []
    assert "skipped" not in repr(cohort)


def test_the_cohort_lists_every_skipped_entry_with_its_reason(messy):
    cohort = open_cohort(messy)
    assert sorted(cohort) == [(PATIENT_A, 1), (PATIENT_B, 1)]
    got = {s.path: (s.kind, s.reason) for s in cohort.skipped}
    assert sorted(got) == [
        "A/NM/broken.dcm",
        "A/NM/planar.dcm",
        "A/notes.pdf",
        "C/spect.nii.gz",
        "D/",
        "E/nm.dcm",
        "only_noise/",
        "orphan/ct.dcm",
    ]
    assert got["A/NM/planar.dcm"][0] == "NM STATIC" and "planar" in got["A/NM/planar.dcm"][1]
    assert got["A/NM/broken.dcm"][0] == "unreadable"
    assert "belongs to no SPECT/PET study" in got["orphan/ct.dcm"][1]
    assert got["A/notes.pdf"][0] == "other file"
    assert got["C/spect.nii.gz"][0] == "image file" and "time_points" in got["C/spect.nii.gz"][1]
    assert got["D/"][0] == got["only_noise/"][0] == "empty folder"
    assert got["E/nm.dcm"] == ("SPECT", "invalid RadiopharmaceuticalStartDateTime")
    assert cohort.skipped_counts() == {
        "CT": 1, "NM STATIC": 1, "SPECT": 1, "empty folder": 2, "image file": 1, "other file": 1,
        "unreadable": 1,
    }  # fmt: skip
    assert repr(cohort).endswith("8 skipped (see .skipped)>")  # what a notebook shows
    text = "\n".join(str(s) for s in cohort.skipped)
    assert PATIENT_A not in text and PATIENT_B not in text and "20230517" not in text


def test_run_prints_the_skipped_entries_and_the_manifest_counts_them(messy, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--cohort", str(messy), "--workflow", "bordet", "--out", str(out)]
    # exit 0: every study succeeded; skipped inputs are reported, not failures
    assert main([*args, "--set", "bordet.time_points_h=4,24,72"]) == 0
    captured = capsys.readouterr()
    assert f"skipped 8 input(s) of {messy} that no study uses" in captured.err
    listed = [line.split(" (")[0].strip() for line in captured.err.splitlines() if line[:2] == "  "]
    # one line each, in path order; no noise file (.DS_Store, Thumbs.db, desktop.ini,
    # __MACOSX/, hidden folders, harmonize.json, truth.parquet) among them
    assert listed == [s.path for s in open_cohort(messy).skipped]
    assert "A/notes.pdf" in listed and "D/" in listed and len(listed) == 8
    assert "8 skipped input(s) listed above" in captured.out
    voi = hz.schema.read_results(out)["voi_dose"]
    assert sorted(set(voi["patient_id"])) == [PATIENT_A, PATIENT_B]
    manifest_text = (out / MANIFEST_NAME).read_text()
    manifest = json.loads(manifest_text)
    assert manifest["skipped"] == open_cohort(messy).skipped_counts()
    # the manifest holds counts only: no name of a skipped entry (raw DICOM folder names may
    # be patient names)
    for name in ("planar", "notes", "spect.nii", "orphan", "broken", '"D/"', "nm.dcm", "2023"):
        assert name not in manifest_text


def test_quiet_run_still_lists_skipped_and_a_clean_run_prints_none(
    messy, make_tiny_study, tmp_path, capsys
):
    args = ["--workflow", "bordet", "--set", "bordet.time_points_h=4,24,72", "--quiet"]
    assert main(["run", "--cohort", str(messy), "--out", str(tmp_path / "m"), *args]) == 0
    assert "skipped 8 input(s)" in capsys.readouterr().err
    # the truth and sidecars harmonize wrote and the noise files: nothing to say
    other = tmp_path / "clean_copy"
    hz.io.write_study_dicom(make_tiny_study(patient_id=PATIENT_A), other / "A")
    hz.io.write_study_dicom(make_tiny_study(patient_id=PATIENT_B), other / "B")
    _noise(other)
    assert main(["run", "--cohort", str(other), "--out", str(tmp_path / "c"), *args]) == 0
    captured = capsys.readouterr()
    assert "skipped" not in captured.err
    assert json.loads((tmp_path / "c" / MANIFEST_NAME).read_text())["skipped"] == {}
