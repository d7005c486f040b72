"""`harmonize inspect` and tag grouping on a mixed folder: every file is used or skipped
with its reason, and `harmonize run` writes every usable study."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

import harmonize as hz
from harmonize.cli import main
from harmonize.io.inspect import inspect_folder


@pytest.fixture
def mixed(tmp_path, make_tiny_study, make_dicom_variant):
    """Two patients' SPECT/CT studies, a planar image, projections, an orphan CT, another
    patient's CT without UIDs in the first study's folder, and an unreadable file."""
    root = tmp_path / "mixed"
    a = hz.io.write_study_dicom(make_tiny_study(patient_id="PA"), root / "A")
    hz.io.write_study_dicom(make_tiny_study(patient_id="PB"), root / "B")
    nm = a / "NM" / "T01.dcm"
    ct = sorted((a / "CT").glob("*.dcm"))[0]
    make_dicom_variant(
        nm, a / "NM" / "planar.dcm", ImageType=["ORIGINAL", "PRIMARY", "STATIC", "EMISSION"]
    )
    make_dicom_variant(
        nm, a / "NM" / "projections.dcm", ImageType=["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    )
    make_dicom_variant(
        ct,
        root / "orphan" / "ct.dcm",
        StudyInstanceUID=generate_uid(),
        FrameOfReferenceUID=generate_uid(),
    )
    make_dicom_variant(
        ct, a / "NM" / "stray_ct.dcm", PatientID="PC", StudyInstanceUID="", FrameOfReferenceUID=""
    )
    (a / "NM" / "broken.dcm").write_bytes(b"\x00" * 200)
    return root


def test_inspect_lists_every_study_and_every_skipped_file_with_its_reason(mixed):
    report = inspect_folder(mixed)
    assert [(s["patient"], s["cycle"], s["status"]) for s in report["studies"]] == [
        ("PA", 1, "usable"),
        ("PB", 1, "usable"),
    ]
    assert report["studies"][0]["time_points_h"] == [4.0, 24.0, 72.0]
    reasons = {Path(s["file"]).name: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {"planar.dcm", "projections.dcm", "ct.dcm", "stray_ct.dcm", "broken.dcm"}
    assert "planar image" in reasons["planar.dcm"]
    assert "projections" in reasons["projections.dcm"]
    assert "belongs to no SPECT/PET study" in reasons["ct.dcm"]
    assert "another patient" in reasons["stray_ct.dcm"]
    assert "DICM" in reasons["broken.dcm"] or "corrupt" in reasons["broken.dcm"]
    spect = [r for r in report["studies"][0]["series"] if r["kind"] == "SPECT"]
    assert [r["time_h"] for r in spect] == [4.0, 24.0, 72.0]
    assert {r["units"] for r in spect} == {"Bq/mL"}


def test_inspect_cli_text_and_json(mixed, capsys):
    assert main(["inspect", str(mixed)]) == 0
    text = capsys.readouterr().out
    assert "2 studies, 5 file(s) skipped" in text and "planar image" in text
    assert main(["inspect", str(mixed), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["skipped"]) == 5
    assert main(["inspect", str(mixed / "nowhere")]) == 2


def test_run_writes_every_usable_study_of_the_mixed_folder(mixed, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--cohort", str(mixed), "--workflow", "bordet", "--out", str(out), "--quiet"]
    assert main([*args, "--set", "bordet.time_points_h=4,24,72"]) == 0
    voi = hz.schema.read_results(out)["voi_dose"]
    assert sorted(set(voi["patient_id"])) == ["PA", "PB"]


def test_empty_uids_never_join(tmp_path, make_tiny_study, make_dicom_variant):
    """An emission study without frame of reference and a CT elsewhere without one either
    (and of another DICOM study) must not be grouped together through the empty UID."""
    from harmonize.io import find_dicom_studies, skipped_files

    a = hz.io.write_study_dicom(make_tiny_study(patient_id="PA"), tmp_path / "A")
    for path in (a / "NM").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.FrameOfReferenceUID = ""
        ds.save_as(path)
    ct = sorted((a / "CT").glob("*.dcm"))[0]
    make_dicom_variant(
        ct,
        tmp_path / "elsewhere" / "ct.dcm",
        StudyInstanceUID=generate_uid(),
        FrameOfReferenceUID="",
    )
    studies = find_dicom_studies(tmp_path)
    assert list(studies) == [("PA", 1)]
    assert not any("elsewhere" in str(p) for p in studies[("PA", 1)])
    skipped = skipped_files(tmp_path)
    assert [(s.path.name, s.what) for s in skipped] == [("ct.dcm", "CT")]
    assert "belongs to no SPECT/PET study" in skipped[0].reason


def test_inspect_lists_exchange_bundles_instead_of_an_empty_folder(
    tmp_path, make_tiny_study, capsys
):
    # a cohort folder of harmonize bundles holds no DICOM: it is not "empty"
    for cycle in (1, 2):
        hz.save_study(make_tiny_study(cycle=cycle), tmp_path / "P001" / f"P001_C{cycle}.nc")
    report = inspect_folder(tmp_path)
    assert report["studies"] == [] and report["skipped"] == []
    assert report["bundles"] == ["P001/P001_C1.nc", "P001/P001_C2.nc"]
    assert main(["inspect", str(tmp_path)]) == 0
    assert "2 harmonize exchange bundle(s)" in capsys.readouterr().out
