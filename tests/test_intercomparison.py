"""Intercomparison: exercise package, import of templates and dose maps, round trip."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from harmonize.cli import main
from harmonize.intercomparison import (
    PackageError,
    ResultsImportError,
    import_dose_maps,
    import_results,
    open_package,
    pack,
)
from harmonize.intercomparison.template import (
    TEMPLATE_COLUMNS,
    method_sheet_frame,
    template_frame,
    xlsx_bytes,
)
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.pipeline import compare_results, read_merged
from harmonize.runner import run_cohort
from harmonize.schema import read_results

SMALL = PhantomConfig(
    voxel_size_mm=6.8, fov_mm=(210.0, 258.0, 360.0), cycles=(1, 2), n_lesions=(2, 3)
)
ADAPTERS = ("montpellier", "bordet")
DOSE_COLUMNS = [c.name for c in TEMPLATE_COLUMNS if c.kind == "dose"]
#: The method sheet a participant would fill (values of the Montpellier-style adapter).
METHOD = {
    "software": "harmonize montpellier adapter",
    "software_version": "1.0.0",
    "time_points_h": "4;24;72;192",
    "kinetic_model": "voxel trapezoid + mono-exponential tail",
    "integration": "linear from 0; analytic tail",
    "dose_method": "local energy deposition",
    "cumulative_rule": "sum",
}


@pytest.fixture(scope="module")
def exercise(tmp_path_factory):
    """A packed phantom cohort and the direct run of two adapters on the package's studies."""
    root = tmp_path_factory.mktemp("exercise")
    cohort = write_cohort(root / "cohort", n_patients=2, seed=5, config=SMALL)
    pkg = pack(cohort, root / "pkg", key=b"organiser-key", truth_out=root / "truth")
    report = run_cohort(
        pkg / "studies", list(ADAPTERS), root / "direct", include_truth=False, save_maps="dicom"
    )
    assert report.ok, report.failures
    return root


def _filled(root: Path, workflow: str) -> pd.DataFrame:
    """The template filled from an adapter's direct results (a centre's spreadsheet)."""
    template = pd.read_csv(root / "pkg" / "results_template.csv", dtype=str, keep_default_na=False)
    voi = read_results(root / "direct")["voi_dose"]
    voi = voi[voi["workflow"] == workflow].set_index(["patient_id", "cycle", "voi_id"])
    body = template.iloc[1:].copy().astype(object)
    key = pd.MultiIndex.from_arrays(
        [body["patient_id"], body["cycle"].astype(int), body["voi_id"].astype(int)]
    )
    for column in [*DOSE_COLUMNS, "tia_mbq_h", "mass_g"]:
        body[column] = voi[column].reindex(key).to_numpy()
    return pd.concat([template.iloc[:1].astype(object), body])


def _write_csv(frame: pd.DataFrame, folder: Path, method: dict[str, str] = METHOD) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "results.csv", index=False)
    method_sheet_frame(method).to_csv(folder / "method_sheet.csv", index=False)
    return folder / "results.csv"


def _write_xlsx(frame: pd.DataFrame, path: Path, method: dict[str, str] = METHOD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(xlsx_bytes(frame, method_sheet_frame(method)))
    return path


# --------------------------------------------------------------------------- the package


def test_package_manifest_lists_every_file_with_its_sha256(exercise):
    pkg = exercise / "pkg"
    manifest = json.loads((pkg / "manifest.json").read_text())
    listed = {e["path"]: e["sha256"] for e in manifest["files"]}
    on_disk = {
        p.relative_to(pkg).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in pkg.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert listed == on_disk
    # the phantom's truth covers every planned cycle (1-4, of which 1-2 are imaged): the
    # planned treatment of this exercise
    assert manifest["planned_cycles"] == max(SMALL.all_cycles) == 4
    assert open_package(pkg).planned_cycles == 4
    for name in ("README.md", "vois.csv", "results_template.csv", "method_sheet.csv"):
        assert name in listed
    assert "results_template.xlsx" in listed
    # the truth is the organiser's: never in the package, written beside it on request
    assert not list(pkg.rglob("truth.parquet"))
    truth = read_results(exercise / "truth")["voi_dose"]
    assert set(truth["patient_id"]) == set(open_package(pkg).vois["patient_id"])


def test_package_is_deidentified(exercise):
    pkg = open_package(exercise / "pkg")
    original = {"P001", "P002"}  # the phantom's ids
    assert not original & set(pkg.vois["patient_id"])
    assert all(p.startswith("ANON-") for p in pkg.vois["patient_id"])
    for name in ("vois.csv", "results_template.csv", "README.md"):
        text = (exercise / "pkg" / name).read_text()
        assert not any(p in text for p in original), name


def test_package_vois_are_the_adapters_own_volumes_and_masses(exercise):
    """vois.csv volumes and masses come from workflows._common: equal to Montpellier's."""
    vois = open_package(exercise / "pkg").vois.set_index(["patient_id", "cycle", "voi_id"])
    voi = read_results(exercise / "direct")["voi_dose"]
    mp = voi[voi["workflow"] == "montpellier"].set_index(["patient_id", "cycle", "voi_id"])
    assert len(vois) == len(mp)
    np.testing.assert_array_equal(vois.loc[mp.index, "volume_ml"], mp["volume_ml"])
    np.testing.assert_allclose(vois.loc[mp.index, "mass_g"], mp["mass_g"], rtol=1e-12)


def test_xlsx_template_has_the_csv_cells_and_the_method_sheet(exercise):
    from openpyxl import load_workbook

    pkg = exercise / "pkg"
    book = load_workbook(pkg / "results_template.xlsx", read_only=True)
    assert book.sheetnames == ["results", "method"]
    rows = [
        ["" if v is None else str(v) for v in r]
        for r in book["results"].iter_rows(values_only=True)
    ]
    csv = pd.read_csv(pkg / "results_template.csv", dtype=str, keep_default_na=False)
    assert rows[0] == list(csv.columns)
    assert rows[1:] == csv.to_numpy().tolist()
    items = [r[0] for r in book["method"].iter_rows(values_only=True)][1:]
    assert "cumulative_rule" in items and "software_version" in items
    book.close()
    full = load_workbook(pkg / "results_template.xlsx")["results"]
    assert full.freeze_panes == "A3"  # header and units rows stay visible
    units = {str(v.sqref): v.formula1 for v in full.data_validations.dataValidation}
    assert units["D2"] == '"Gy,GY,cGy,CGY,mGy"'  # dose_mean_gy's unit cell: a drop-down
    vois = open_package(pkg).vois
    # the same inputs give the same bytes (pinned workbook and zip times)
    a = xlsx_bytes(template_frame(vois), method_sheet_frame())
    time.sleep(1.1)  # openpyxl stamps the save time (seconds) unless it is pinned
    assert a == xlsx_bytes(template_frame(vois), method_sheet_frame())


def test_altered_package_is_refused(exercise, tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(exercise / "pkg", copy)
    with open(copy / "vois.csv", "a") as handle:
        handle.write("\n")
    with pytest.raises(PackageError, match="vois.csv: content differs"):
        open_package(copy)


# --------------------------------------------------------------------------- round trip


def test_round_trip_agreement_equals_the_direct_run(exercise, tmp_path):
    """Two centres' templates (CSV and XLSX) filled from two adapters → the same statistics."""
    csv = _write_csv(_filled(exercise, "montpellier"), tmp_path / "centre_a")
    xlsx = _write_xlsx(_filled(exercise, "bordet"), tmp_path / "centre_b" / "results.xlsx")
    out = tmp_path / "imported"
    pkg = str(exercise / "pkg")
    for file, name in ((csv, "montpellier"), (xlsx, "bordet")):
        assert main(["import-results", str(file), "--workflow", name, "--package", pkg,
                     "--out", str(out), "--quiet"]) == 0  # fmt: skip
    direct = compare_results(read_merged([exercise / "direct"]), n_boot=50, seed=1)
    imported = compare_results(read_merged([out]), n_boot=50, seed=1)
    assert len(direct.agreement) > 50
    # the template carries no uncertainty column, so the ISO 13528 En share (which needs the
    # adapters' dose_mean_u_gy) is not estimable for imported rows; every other row is equal
    en = direct.agreement["statistic"] == "en_satisfactory_fraction"
    assert en.any() and imported.agreement.loc[en, "estimate"].isna().all()
    pd.testing.assert_frame_equal(imported.agreement[~en], direct.agreement[~en])
    iso = imported.agreement[imported.agreement["statistic"] == "z_satisfactory_fraction"]
    assert set(iso["workflow_a"]) == set(ADAPTERS)  # ISO 13528 rows in the agreement table
    pd.testing.assert_frame_equal(imported.cutoff_summary, direct.cutoff_summary)
    pd.testing.assert_frame_equal(imported.cutoff_classifications, direct.cutoff_classifications)
    # the patient indices come from the declared rule and equal the direct run's
    cols = ["patient_id", "cycle", "workflow", "global_mean_dose_gy", "cum_lesion_dose_min_gy"]
    a = read_results(out)["patient_index"][cols]
    b = read_results(exercise / "direct")["patient_index"][cols]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    # the method sheet is the provenance of every imported run
    run = read_results(out)["run"]
    params = json.loads(run["parameters_json"].iloc[0])
    assert params["dose_method"] == METHOD["dose_method"] and len(run) == 8


def test_units_are_converted(exercise, tmp_path):
    """A column declared in cGy (values × 100) imports as the same doses in Gy."""
    frame = _filled(exercise, "montpellier")
    frame.iloc[0, frame.columns.get_loc("dose_mean_gy")] = "cGy"
    frame.iloc[0, frame.columns.get_loc("mass_g")] = "kg"
    body = frame.iloc[1:]
    frame.loc[body.index, "dose_mean_gy"] = body["dose_mean_gy"].astype(float) * 100.0
    frame.loc[body.index, "mass_g"] = body["mass_g"].astype(float) / 1000.0
    report = import_results(
        _write_csv(frame, tmp_path / "c"), "centre_a", exercise / "pkg", tmp_path / "out"
    )
    got = report.tables["voi_dose"].set_index(["patient_id", "cycle", "voi_id"]).sort_index()
    ref = _filled(exercise, "montpellier").iloc[1:]
    ref = ref.assign(cycle=ref["cycle"].astype(int), voi_id=ref["voi_id"].astype(int))
    ref = ref.set_index(["patient_id", "cycle", "voi_id"]).sort_index()
    # ×100 then ×0.01 in binary floating point: equal to a few ulp
    np.testing.assert_allclose(got["dose_mean_gy"], ref["dose_mean_gy"].astype(float), rtol=1e-14)
    np.testing.assert_allclose(got["mass_g"], ref["mass_g"].astype(float), rtol=1e-14)


# --------------------------------------------------------------------------- bad templates


def _break(kind: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, int, str]:
    """A template with one defect; returns it, the spreadsheet row and the column to name."""
    frame = frame.copy()
    lesion_rows = [i for i in range(1, len(frame)) if "lesion" in str(frame.iloc[i]["voi_name"])]
    i = lesion_rows[0]
    sheet_row = i + 2  # frame row 0 is the units row = spreadsheet row 2
    if kind == "missing VOI":
        return frame.drop(frame.index[i]), 0, "voi_id"
    if kind == "duplicate row":
        dup = pd.concat([frame.iloc[: i + 1], frame.iloc[[i]], frame.iloc[i + 1 :]])
        return dup, sheet_row + 1, "voi_id"
    if kind == "wrong unit":
        frame.iloc[0, frame.columns.get_loc("dose_max_gy")] = "Gy/GBq"
        return frame, 2, "dose_max_gy"
    if kind == "text in a number cell":
        frame.iloc[i, frame.columns.get_loc("dose_mean_gy")] = "about 40"
        return frame, sheet_row, "dose_mean_gy"
    if kind == "unknown patient":
        # a whole study under an unknown id: its rows are refused, nothing else is missing
        pid, cycle = frame.iloc[i]["patient_id"], frame.iloc[i]["cycle"]
        same = (frame["patient_id"] == pid) & (frame["cycle"] == cycle)
        frame = pd.concat([frame.iloc[:1], frame[same].iloc[:1].assign(patient_id="P999"),
                           frame.iloc[1:][~same.iloc[1:]]])  # fmt: skip
        return frame, 3, "patient_id"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["missing VOI", "duplicate row", "wrong unit", "text in a number cell", "unknown patient"],
)
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_bad_template_gives_one_message_naming_row_and_column(
    exercise, tmp_path, capsys, kind, fmt
):
    frame, row, column = _break(kind, _filled(exercise, "montpellier"))
    if fmt == "csv":
        path = _write_csv(frame, tmp_path / "c")
    else:
        path = _write_xlsx(frame, tmp_path / "c" / "results.xlsx")
    out = tmp_path / "out"
    code = main(["import-results", str(path), "--workflow", "centre_a",
                 "--package", str(exercise / "pkg"), "--out", str(out)])  # fmt: skip
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2
    assert len(errors) == 1, errors
    where = "no row" if row == 0 else f"row {row}"
    assert f"{where}, column {column}:" in errors[0], errors[0]
    assert str(path) in errors[0]
    assert not out.exists()  # nothing half-written


def test_method_sheet_problems_name_row_and_column(exercise, tmp_path):
    method = {
        **METHOD,
        "cumulative_rule": "average",
        "software": "",
        "segmentation": "by Dr X on 2024-03-05",
    }
    path = _write_csv(_filled(exercise, "montpellier"), tmp_path / "c", method=method)
    with pytest.raises(ResultsImportError) as info:
        import_results(path, "centre_a", exercise / "pkg", tmp_path / "out")
    text = str(info.value)
    assert "row 2, column value: 'software' is required" in text
    assert "row 11, column value: cumulative_rule 'average'" in text
    assert "row 10, column value: 'segmentation' looks like it holds a date" in text
    assert not (tmp_path / "out").exists()


def test_unreported_studies_are_noted_not_refused(exercise, tmp_path):
    frame = _filled(exercise, "montpellier")
    keep = (frame["cycle"] != "2") | (frame.index == frame.index[0])
    report = import_results(
        _write_csv(frame[keep], tmp_path / "c"), "centre_a", exercise / "pkg", tmp_path / "o"
    )
    assert report.notes and "2 of 4 studies of the package not reported" in report.notes[0]
    assert set(report.tables["voi_dose"]["cycle"]) == {1}


# --------------------------------------------------------------------------- dose maps


def test_montpellier_rtdose_maps_reproduce_its_indices(exercise, tmp_path):
    """RT Dose maps from ``--save-maps dicom`` → the same VOI indices and DVHs to 1e-6."""
    maps = tmp_path / "maps"
    shutil.copytree(exercise / "direct" / "dose_maps" / "montpellier", maps)
    method_sheet_frame(METHOD).to_csv(maps / "method_sheet.csv", index=False)
    out = tmp_path / "out"
    assert main(["import-dose-maps", str(maps), "--workflow", "montpellier_maps",
                 "--package", str(exercise / "pkg"), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    keys = ["patient_id", "cycle", "voi_id"]
    got = read_results(out)["voi_dose"].set_index(keys).sort_index()
    ref = read_results(exercise / "direct")["voi_dose"]
    ref = ref[ref["workflow"] == "montpellier"].set_index(keys).sort_index()
    assert got.index.equals(ref.index)
    # RT Dose stores uint32 × DoseGridScaling (= map max / (2^32 − 1)): each voxel is within
    # half a step of the map. Every index is a voxel value or a (mass-weighted) average of
    # voxel values, so it is within half a step too — the analytic bound — and the issue's
    # 1e-6 relative holds wherever an index exceeds 1.2e-4 of the map maximum
    scaling = max(
        float(pydicom.dcmread(p, stop_before_pixels=True).DoseGridScaling)
        for p in maps.glob("*.dcm")
    )
    for column in DOSE_COLUMNS:
        assert np.abs(got[column] - ref[column]).max() <= scaling / 2 * (1 + 1e-9), column
        np.testing.assert_allclose(got[column], ref[column], rtol=1e-6, err_msg=column)
    np.testing.assert_array_equal(got["mass_g"], ref["mass_g"])
    dvh_keys = [*keys, "volume_pct"]
    dvh = read_results(out)["dvh"].set_index(dvh_keys).sort_index()["dose_gy"]
    dvh_ref = read_results(exercise / "direct")["dvh"]
    dvh_ref = dvh_ref[dvh_ref["workflow"] == "montpellier"].set_index(dvh_keys).sort_index()
    np.testing.assert_allclose(dvh, dvh_ref["dose_gy"], rtol=1e-6)
    assert read_results(out)["voi_dose"]["tia_mbq_h"].isna().all()  # not in a dose map


def test_dose_map_on_another_grid_is_resampled(exercise, tmp_path):
    """A NIfTI map of a uniform dose on a coarser, shifted grid → that dose in every VOI."""
    import SimpleITK as sitk

    from harmonize.cohort import open_cohort
    from harmonize.io._geometry import grid_of_study

    pkg = open_package(exercise / "pkg")
    key = pkg.study_keys()[0]
    study = open_cohort(pkg.studies)[key]
    grid = grid_of_study(study)
    nz, ny, nx = grid.shape
    image = sitk.Image([nx // 2 + 4, ny // 2 + 4, nz // 2 + 4], sitk.sitkFloat32)
    image += 12.5
    image.SetSpacing([2 * s for s in reversed(grid.spacing_mm)])
    image.SetOrigin([o - 7.0 for o in grid.origin_mm])
    maps = tmp_path / "maps"
    maps.mkdir()
    sitk.WriteImage(image, str(maps / f"{key[0]}_c{key[1]}.nii.gz"))
    method_sheet_frame(METHOD).to_csv(maps / "method_sheet.csv", index=False)
    report = import_dose_maps(maps, "centre_nifti", pkg, tmp_path / "out")
    voi = report.tables["voi_dose"]
    inside = voi["voi_kind"] != "body"  # the body reaches the field edge
    # linear interpolation of a constant is that constant (float32 storage: exact for 12.5)
    np.testing.assert_allclose(voi.loc[inside, "dose_mean_gy"], 12.5, rtol=1e-12)
    assert "3 of 4 studies have no dose map" in report.notes[0]


def test_dose_map_named_for_no_study_is_refused(exercise, tmp_path):
    maps = tmp_path / "maps"
    maps.mkdir()
    first = sorted((exercise / "direct" / "dose_maps" / "montpellier").glob("*.dcm"))[0]
    shutil.copy(first, maps / "P999_c1.dcm")
    method_sheet_frame(METHOD).to_csv(maps / "method_sheet.csv", index=False)
    with pytest.raises(ResultsImportError, match="P999_c1.dcm: file name says patient P999"):
        import_dose_maps(maps, "x", exercise / "pkg", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- ISO 13528


def test_stats_command_scores_participants_against_the_truth(exercise, tmp_path):
    from harmonize.intercomparison.proficiency import algorithm_a

    out = tmp_path / "stats"
    results = [str(exercise / "direct"), str(exercise / "truth")]
    assert main(["intercomparison", "stats", *results, "--out", str(out), "--quiet"]) == 0
    scores = pd.read_csv(out / "proficiency_scores.csv")
    assert set(scores["workflow"]) == set(ADAPTERS)
    assert (scores["assigned_source"] == "reference").all()  # the truth of every lesion
    truth = read_results(exercise / "truth")["voi_dose"].set_index(
        ["patient_id", "cycle", "voi_id"]
    )
    row = scores.iloc[0]
    key = (row["patient_id"], row["cycle"], row["voi_id"])
    assert row["assigned_value"] == pytest.approx(truth.loc[key, "dose_mean_gy"])
    both = scores[(scores[["patient_id", "cycle", "voi_id"]] == list(key)).all(axis=1)]
    s_star = float(algorithm_a(both["value"].to_numpy()).s_star[0])
    assert row["z"] == pytest.approx((row["value"] - row["assigned_value"]) / s_star)
    assert (out / "participants" / "montpellier.md").is_file()
    assert (out / "participants" / "bordet.md").is_file()
    summary = read_results(out / "proficiency_agreement.parquet")["agreement"]
    assert set(summary["workflow_a"]) == set(ADAPTERS)
