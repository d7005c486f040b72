"""De-identification: no seeded identifier survives in any output; kinetics survive."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import xarray as xr

import harmonize as hz
import harmonize.phantom as phantom
from harmonize.cli import main
from harmonize.deid import date_offset, deidentify, pseudonym
from harmonize.io import write_study_dicom, write_study_nifti
from harmonize.io.phi import IdentifiedStudyError

KEY = b"centre-secret-key"
PATIENT_ID = "HOSPMRN5566778"
INJECTION = "2023-05-17T10:15:30.482913"
PHI_NAME = "lesion JOHNATHAN"
#: Identifying values seeded into every DICOM file (keyword → value); more are added below
#: (the original UIDs, dates and times).
SEEDED_TAGS = {
    "PatientName": "DOE^JOHNATHAN^QUENTIN",
    "PatientID": PATIENT_ID,
    "IssuerOfPatientID": "ISSUER-HOSP-ZZ",
    "OtherPatientIDs": "OTHERID-99417",
    "PatientBirthDate": "19610417",
    "PatientBirthTime": "071245.5",
    "PatientAddress": "42 WALLABY WAY SYDNEY",
    "PatientTelephoneNumbers": "+32-2-555-01-99",
    "PatientMotherBirthName": "MAIDENNAME^ROSALIND",
    "Occupation": "LIGHTHOUSE KEEP",
    "AdditionalPatientHistory": "HISTORY OF APPENDICITIS 1999",
    "PatientComments": "PATIENT IS ANXIOUS ZX81",
    "MedicalRecordLocator": "MRL-ARCHIVE-5521",
    "AccessionNumber": "ACC99812345",
    "StudyID": "STUDY4471X",
    "InstitutionName": "SAINT EXAMPLE HOSPITAL",
    "InstitutionAddress": "1 HOSPITAL ROAD GHENT",
    "InstitutionalDepartmentName": "NUCLEAR MEDICINE WING B7",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "PerformingPhysicianName": "QUINN^MICHAELA",
    "NameOfPhysiciansReadingStudy": "WATSON^JOAN",
    "PhysiciansOfRecord": "KILDARE^JAMES",
    "OperatorsName": "TECHNICIAN^TERRY",
    "RequestingPhysician": "CASEY^BENEDICT",
    "StationName": "SPECTCAM07",
    "DeviceSerialNumber": "SN-88213-XQ",
    "StudyDescription": "LU177 DOTATATE FOR DOE",
    "SeriesDescription": "SPECT DAY1 JOHNATHAN",
    "ImageComments": "CALLED WIFE AT 555-0199",
    "RequestedProcedureDescription": "PRRT DOSIMETRY FOR J QUENTIN",
    "ProtocolName": "QUENTIN-PROTOCOL-77",
    "PerformedProcedureStepDescription": "PPS DESCRIPTION ZEBRA",
}
PRIVATE_VALUE = "PRIVATE-SECRET-7731"
#: Name components and date/time forms that must not survive either.
EXTRA_SEEDS = [
    "JOHNATHAN",
    "QUENTIN",
    "GREGORY",
    "MICHAELA",
    "ROSALIND",
    "20230517",
    "2023-05-17",
    "101530.482913",
    "141530.482913",
    "19610417",
]


def _cheap_dose(tia_mbq_h, voxel_size_mm, density_g_ml, nuclide="Lu-177"):
    return np.zeros_like(np.asarray(tia_mbq_h, dtype=np.float64))


def _seed(ds: pydicom.Dataset) -> None:
    # a clinical export: harmonize's writer marks its pseudonymous studies de-identified
    for keyword in ("PatientIdentityRemoved", "DeidentificationMethod"):
        if keyword in ds:
            delattr(ds, keyword)
    for keyword, value in SEEDED_TAGS.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0011, "HOSPITAL PRIVATE", create=True)
    block.add_new(0x01, "LO", PRIVATE_VALUE)
    block.add_new(0x02, "LT", "private note about JOHNATHAN")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A DICOM study folder full of identifiers, and the list of every seeded value."""
    config = phantom.PhantomConfig(
        voxel_size_mm=9.28,
        fov_mm=(150.0, 170.0, 220.0),
        times_h=(4.0, 24.0, 72.0),
        cycles=(1,),
        noise=False,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(phantom, "reference_dose_gy", _cheap_dose)
        study, truth = phantom.simulate_study(phantom.make_patient(0, 5, config), 1, 5, config)
    names = [PHI_NAME if n == "lesion_02" else str(n) for n in study["voi_name"].values]
    study = study.assign_coords(voi_name=("voi", np.array(names, dtype=object)))
    study.attrs.update(
        patient_id=PATIENT_ID, injection_time=INJECTION, center="SAINT EXAMPLE HOSPITAL"
    )
    root = tmp_path_factory.mktemp("phi")
    folder = write_study_dicom(study, root / "cohort" / "raw_study", truth=truth)
    seeds = [*SEEDED_TAGS.values(), PRIVATE_VALUE, *EXTRA_SEEDS, PHI_NAME]
    for path in sorted(folder.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        _seed(ds)
        ds.save_as(path)
        for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
            seeds.append(str(ds[keyword].value))
        if "FrameOfReferenceUID" in ds:
            seeds.append(str(ds.FrameOfReferenceUID))
    seeds = sorted(set(seeds))
    assert len(seeds) >= 30
    return study, folder, seeds


def _texts(path: Path) -> list[bytes]:
    """The raw bytes of a file, plus the decoded content of compressed containers."""
    out = [path.read_bytes()]
    if path.suffix == ".parquet":
        out.append(pd.read_parquet(path).to_csv().encode())
    if path.suffix == ".nc":
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            out.append(repr(ds.to_dict(data=False)).encode())
            for name in ds.coords:
                if ds[name].dtype == object:
                    out.append(" ".join(map(str, ds[name].values)).encode())
    return out


def _hits(paths: list[Path], seeds: list[str]) -> list[tuple[str, str]]:
    found = []
    for path in paths:
        for blob in _texts(path):
            for seed in seeds:
                if seed.encode() in blob:
                    found.append((path.name, seed))
    return found


def _all_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def test_seeded_identifiers_are_present_before(seeded, tmp_path):
    _, folder, seeds = seeded
    # the check below is only meaningful if the seeds are findable in the inputs (the DICOM
    # folder, and a bundle of the study read from it: ISO dates appear only there)
    raw_bundle = hz.save_study(hz.open_study(folder), tmp_path / "raw.nc", allow_identified=True)
    hits = {seed for _, seed in _hits([*_all_files(folder), raw_bundle], seeds)}
    assert hits == set(seeds)


def test_no_identifier_survives_in_any_output(seeded, tmp_path):
    _study, folder, seeds = seeded
    outputs = []
    # 1. the DICOM study folder
    deid_folder = deidentify(folder, tmp_path / "deid_study", key=KEY)
    outputs += _all_files(deid_folder)
    # 2. a bundle written from the de-identified study
    clean = hz.open_study(deid_folder)
    outputs.append(hz.save_study(clean, tmp_path / "from_deid.nc"))
    # 3. a bundle of the raw study (identifying), de-identified
    raw_bundle = hz.save_study(
        hz.open_study(folder), tmp_path / "raw" / "raw.nc", allow_identified=True
    )
    outputs.append(deidentify(raw_bundle, tmp_path / "deid_bundle.nc", key=KEY))
    # 4. a cohort folder holding the DICOM study and a raw bundle of the same patient (as
    # another cycle: two studies of one patient and cycle are refused, as by open_cohort)
    cohort_in = folder.parent
    hz.save_study(
        hz.open_study(raw_bundle).assign_attrs(cycle=2), cohort_in / "raw.nc", allow_identified=True
    )
    try:
        cohort_out = deidentify(cohort_in, tmp_path / "deid_cohort", key=KEY)
    finally:
        (cohort_in / "raw.nc").unlink()
    outputs += _all_files(cohort_out)
    assert len(outputs) > 30
    assert _hits(outputs, seeds) == []


def test_kinetics_and_labels_survive(seeded, tmp_path):
    study, folder, _ = seeded
    clean = hz.open_study(deidentify(folder, tmp_path / "d", key=KEY))
    assert clean.attrs["patient_id"] == pseudonym(PATIENT_ID, KEY)
    # hours after injection are kept exactly (to the microsecond of DICOM TM)
    np.testing.assert_allclose(clean["time"].values, study["time"].values, atol=1e-9)
    np.testing.assert_array_equal(clean["labels"].values, study["labels"].values)
    shift = datetime.fromisoformat(clean.attrs["injection_time"]) - datetime.fromisoformat(
        INJECTION
    )
    assert shift == date_offset(PATIENT_ID, KEY)
    assert timedelta(days=-3651) < shift <= timedelta(days=-365)
    # the identifying VOI name is replaced by a clean one of the same kind
    names = dict(zip(clean["voi_name"].values, clean["voi_kind"].values, strict=True))
    assert PHI_NAME not in names
    assert sum(kind == "lesion" for kind in names.values()) == 2
    ds = pydicom.dcmread(next(p for p in (tmp_path / "d").glob("NM_*.dcm")))
    assert ds.PatientIdentityRemoved == "YES"
    assert not any(element.tag.is_private for element in ds.iterall())


def test_same_key_same_pseudonym_and_uids(seeded, tmp_path):
    _, folder, _ = seeded
    first = deidentify(folder, tmp_path / "a", key=KEY)
    second = deidentify(folder, tmp_path / "b", key=KEY)
    other = deidentify(folder, tmp_path / "c", key=b"another key")
    assert sorted(p.name for p in first.iterdir()) == sorted(p.name for p in second.iterdir())

    def uids(out):
        return sorted(
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in out.glob("*.dcm")
        )

    assert uids(first) == uids(second)
    assert set(uids(first)).isdisjoint(uids(other))
    assert hz.open_study(other).attrs["patient_id"] != hz.open_study(first).attrs["patient_id"]
    # bundle and DICOM exports of one patient with one key agree
    bundle = deidentify(
        hz.save_study(hz.open_study(folder), tmp_path / "raw.nc", allow_identified=True),
        tmp_path / "x.nc",
        key=KEY,
    )
    from_bundle = hz.open_study(bundle)
    from_dicom = hz.open_study(first)
    assert from_bundle.attrs["patient_id"] == from_dicom.attrs["patient_id"]
    assert from_bundle.attrs["injection_time"][:19] == from_dicom.attrs["injection_time"][:19]


def test_cohort_output_readable_and_overwrite_refused(seeded, tmp_path):
    _, folder, _ = seeded
    out = deidentify(folder.parent, tmp_path / "cohort", key=KEY)
    cohort = hz.open_cohort(out)
    assert list(cohort) == [(pseudonym(PATIENT_ID, KEY), 1)]
    assert cohort.truth is not None
    assert set(cohort.truth["patient_id"]) == {pseudonym("P001", KEY)}
    with pytest.raises(FileExistsError):
        deidentify(folder.parent, out, key=KEY)
    deidentify(folder.parent, out, key=KEY, overwrite=True)
    with pytest.raises(ValueError, match="out_path"):
        deidentify(folder, folder / "inside", key=KEY)


def test_no_identifier_in_results_comparison_or_report(seeded, tmp_path):
    """Workflows run on the de-identified data: Parquet results, agreement tables and the
    HTML report hold none of the seeded identifiers either."""
    from harmonize.pipeline import compare_results, read_merged, write_comparison
    from harmonize.report import write_report
    from harmonize.runner import run_cohort

    _, folder, seeds = seeded
    deid = deidentify(folder.parent, tmp_path / "deid_cohort", key=KEY)
    results = tmp_path / "results"
    # the seeded study has 4, 24 and 72 h only: fit each workflow to that schedule
    overrides = {
        "montpellier": {"time_points_h": "4,24,72", "tail_points": "2"},
        "bordet": {"time_points_h": "4,24,72"},
        "milan": {"time_points_h": "24,72"},
    }
    report = run_cohort(deid, ["montpellier", "bordet", "milan"], results, overrides=overrides)
    assert report.ok, report.failures
    tables = compare_results(read_merged([results]), n_boot=20)
    agreement = tmp_path / "agreement"
    write_comparison(tables, agreement)
    page = write_report(results, tmp_path / "report.html", agreement_dir=agreement)
    outputs = [*_all_files(results), *_all_files(agreement), page]
    assert any(p.suffix == ".parquet" for p in outputs) and page.stat().st_size > 10_000
    assert _hits(outputs, seeds) == []
    # the pseudonym, not the original id, identifies the patient in the results
    # (the phantom's truth table was made for the phantom's own id, so truth rows differ)
    voi = hz.schema.read_results(results)["voi_dose"]
    measured = voi[voi["workflow"] != "truth"]
    assert set(measured["patient_id"]) == {pseudonym(PATIENT_ID, KEY)}


def test_raw_dicom_is_refused_without_a_key_and_pseudonymised_with_one(seeded, tmp_path):
    """A clinical DICOM study (no sidecar, not de-identified) never puts its identifiers in
    the results: refused without a key; with a key, the same pseudonym as deidentify."""
    from harmonize.runner import run_cohort

    _, folder, seeds = seeded
    raw = tmp_path / "raw"
    shutil.copytree(folder, raw)
    (raw / "harmonize.json").unlink()  # clinical DICOM comes without our sidecar
    overrides = {"bordet": {"time_points_h": "4,24,72"}}
    with pytest.raises(IdentifiedStudyError, match="not de-identified"):
        run_cohort(raw, ["bordet"], tmp_path / "r0", overrides=overrides)
    assert not (tmp_path / "r0").exists()
    done = run_cohort(raw, ["bordet"], tmp_path / "r1", overrides=overrides, key=KEY)
    assert done.ok, done.failures
    voi = hz.schema.read_results(tmp_path / "r1")["voi_dose"]
    assert set(voi.loc[voi["workflow"] == "bordet", "patient_id"]) == {pseudonym(PATIENT_ID, KEY)}
    assert _hits(_all_files(tmp_path / "r1"), seeds) == []


def test_sidecar_never_opens_the_phi_gate(seeded, tmp_path, capsys):
    """The sidecar-bypass case: a raw DICOM study whose harmonize.json names a patient_id,
    the centre and VOI names (one with a surname) is refused without --key, once, before any
    computation, exit 2, naming the folder and no identifier; with --key every output
    (Parquet, DICOM dose maps, HTML report) holds none of the seeded identifiers."""
    import json

    from harmonize.report import write_report

    _, folder, seeds = seeded
    raw = tmp_path / "raw"
    shutil.copytree(folder, raw)
    sidecar = json.loads((raw / "harmonize.json").read_text())
    assert sidecar["patient_id"] == PATIENT_ID and sidecar["center"] == "SAINT EXAMPLE HOSPITAL"
    assert PHI_NAME in {v["name"] for v in sidecar["vois"]}
    args = ["run", "--cohort", str(raw), "--workflow", "bordet", "--quiet"]
    args += ["--set", "bordet.time_points_h=4,24,72"]
    assert main([*args, "--out", str(tmp_path / "r0")]) == 2
    err = capsys.readouterr().err
    assert err.count("not de-identified") == 1 and str(raw) in err
    assert [s for s in seeds if s in err] == []
    assert not (tmp_path / "r0").exists()  # nothing computed, nothing written

    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    out = tmp_path / "r1"
    code = main([*args, "--out", str(out), "--key", str(key_file), "--save-maps", "dicom"])
    assert code == 0, capsys.readouterr().err
    page = write_report(out, tmp_path / "report.html")
    outputs = [*_all_files(out), page]
    assert any(p.suffix == ".dcm" for p in outputs)
    assert any(p.suffix == ".parquet" for p in outputs)
    assert _hits(outputs, seeds) == []


def test_save_study_refuses_an_identified_study(seeded, tmp_path):
    _, folder, _ = seeded
    raw = tmp_path / "raw"
    shutil.copytree(folder, raw)
    study = hz.open_study(raw)
    assert study.attrs.get("identified")
    with pytest.raises(IdentifiedStudyError, match="allow_identified"):
        hz.save_study(study, tmp_path / "s.nc")
    assert not (tmp_path / "s.nc").exists()
    assert hz.save_study(study, tmp_path / "s.nc", allow_identified=True).is_file()


# --------------------------------------------------------------------------- mixed folders


def _mixed_folder(seeded, root: Path) -> Path:
    """The reported case: one DICOM study and one NIfTI study (same patient, cycles 1 and 2)
    in one cohort folder, both full of identifiers, plus two files no study uses."""
    study, folder, _ = seeded
    mixed = root / "mixed"
    shutil.copytree(folder, mixed / "dicom_study")
    nifti = write_study_nifti(study.assign_attrs(cycle=2), mixed / "nifti_study")
    (nifti / "scan_notes.txt").write_text("not an image")
    (mixed / "README.txt").write_text("cohort notes")
    return mixed


def test_mixed_dicom_and_nifti_folder_exports_both_studies(seeded, tmp_path, capsys):
    """Regression: the NIfTI study beside a DICOM study was dropped without a word (the
    folder discovery knew only DICOM and bundles; one DICOM study was then written flat)."""
    study, _, seeds = seeded
    mixed = _mixed_folder(seeded, tmp_path)
    sidecar = (mixed / "nifti_study" / "harmonize.json").read_text()
    assert PATIENT_ID in sidecar and PHI_NAME in sidecar  # the NIfTI input is identifying
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    out = tmp_path / "out"
    assert main(["deidentify", str(mixed), str(out), "--key", str(key_file), "--quiet"]) == 0
    alias = pseudonym(PATIENT_ID, KEY)
    cohort = hz.open_cohort(out)
    assert list(cohort) == [(alias, 1), (alias, 2)]
    assert cohort.skipped == []
    # each study keeps its kind: a DICOM folder and an image (NIfTI) folder
    assert {p.suffix for p in (out / f"{alias}_C1").iterdir()} == {".dcm", ".json", ".parquet"}
    assert sorted(p.name for p in (out / f"{alias}_C2").iterdir()) == [
        "ct.nii.gz",
        "harmonize.json",
        "labels.nii.gz",
        "spect_t01.nii.gz",
        "spect_t02.nii.gz",
        "spect_t03.nii.gz",
    ]
    clean = cohort[(alias, 2)]
    # images written as float32 (write_study_nifti): exact to float32 rounding
    np.testing.assert_allclose(clean["activity"].values, study["activity"].values, rtol=1e-6)
    np.testing.assert_array_equal(clean["labels"].values, study["labels"].values)
    np.testing.assert_allclose(clean["time"].values, study["time"].values, atol=1e-9)
    shift = datetime.fromisoformat(clean.attrs["injection_time"]) - datetime.fromisoformat(
        INJECTION
    )
    assert shift == date_offset(PATIENT_ID, KEY)
    assert _hits(_all_files(out), seeds) == []
    # what the folder held that is not exported is listed: relative path, kind, reason
    err = capsys.readouterr().err
    assert f"2 input(s) of {mixed} are NOT in the de-identified copy" in err
    assert "  README.txt (other file): not a study file" in err
    assert "  nifti_study/scan_notes.txt (image folder file): not referred to" in err
    assert [s for s in seeds if s in err] == []


def test_skipped_inputs_reach_the_api_caller(seeded, tmp_path):
    from harmonize.deid import DeidSkippedWarning

    mixed = _mixed_folder(seeded, tmp_path)
    skipped: list = []
    deidentify(mixed, tmp_path / "a", key=KEY, skipped=skipped)
    assert [(s.path, s.kind) for s in skipped] == [
        ("README.txt", "other file"),
        ("nifti_study/scan_notes.txt", "image folder file"),
    ]
    with pytest.warns(DeidSkippedWarning, match="2 input"):
        deidentify(mixed, tmp_path / "b", key=KEY)


def test_mixed_folder_refused_whole_when_one_input_is_bad(seeded, tmp_path, capsys):
    """A corrupt bundle, or a second study of the same patient and cycle: exit 2, naming the
    input, and nothing written (no output, no temporary folder left beside it)."""
    mixed = _mixed_folder(seeded, tmp_path)
    out = tmp_path / "out"
    (mixed / "broken.nc").write_bytes(b"not a bundle")
    assert main(["deidentify", str(mixed), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "broken.nc" in err and "nothing written" in err
    (mixed / "broken.nc").unlink()
    corrupt = mixed / "dicom_study" / "NM" / "T01.dcm"
    saved = corrupt.read_bytes()
    corrupt.write_bytes(b"not DICOM")  # a time point of the DICOM study
    assert main(["deidentify", str(mixed), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "nothing written" in err
    corrupt.write_bytes(saved)
    study, _, seeds = seeded
    write_study_nifti(study, mixed / "nifti_cycle1")  # same patient and cycle as the DICOM
    assert main(["deidentify", str(mixed), str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "two studies for the same patient and cycle 1" in err and "nifti_cycle1" in err
    assert [s for s in seeds if s in err] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mixed"]


def test_nifti_only_folders(make_tiny_study, tmp_path):
    """Several NIfTI studies → one image folder each; one NIfTI study folder → written flat
    (as a single DICOM study folder is); formats other than .nii.gz are kept."""
    niis = tmp_path / "niis"
    write_study_nifti(make_tiny_study(patient_id="NII-A"), niis / "a")
    write_study_nifti(make_tiny_study(patient_id="NII-B"), niis / "b", suffix=".nrrd")
    out = deidentify(niis, tmp_path / "out", key=KEY)
    assert list(hz.open_cohort(out)) == sorted(
        [(pseudonym("NII-A", KEY), 1), (pseudonym("NII-B", KEY), 1)]
    )
    assert (out / f"{pseudonym('NII-B', KEY)}_C1" / "labels.nrrd").is_file()
    single = deidentify(niis / "a", tmp_path / "single", key=KEY)
    assert (single / "harmonize.json").is_file()
    assert hz.open_study(single).attrs["patient_id"] == pseudonym("NII-A", KEY)
    assert "NII-A" not in (single / "harmonize.json").read_text()


def test_dicom_and_bundle_folder_still_exports_both(make_tiny_study, tmp_path):
    folder = tmp_path / "in"
    write_study_dicom(make_tiny_study(patient_id="DCM-A"), folder / "dicom_study")
    hz.save_study(make_tiny_study(patient_id="NC-B"), folder / "b.nc", allow_identified=True)
    out = deidentify(folder, tmp_path / "out", key=KEY)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{pseudonym('DCM-A', KEY)}_C1", f"{pseudonym('NC-B', KEY)}_C1.nc"]
    )
