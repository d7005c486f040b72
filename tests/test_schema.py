"""Tests of harmonize.schema: generated Arrow schemas, deterministic Parquet I/O, validation."""

from __future__ import annotations

import json
import os
import shutil
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from harmonize import schema as hs
from harmonize.indices import fill_cumulative_basis
from harmonize.schema import (
    SCHEMA_VERSION,
    SchemaError,
    SchemaVersionError,
    arrow_schema,
    example_frames,
    load_schema_document,
    read_results,
    to_arrow_table,
    validate_path,
    write_examples,
    write_results,
    write_table,
)

#: Column names other components rely on (issue 4 item 5 and the helpers' brief).
CONTRACT = {
    "voi_dose": "patient_id cycle center workflow workflow_version voi_id voi_name voi_kind "
    "parent_voi_id volume_ml mass_g tia_mbq_h tia_coefficient_h tac_model n_time_points "
    "dose_mean_gy dose_min_gy dose_median_gy dose_max_gy dose_d2_gy dose_d50_gy dose_d98_gy "
    "fit_r2 fit_aicc recovery_coefficient flags",
    "patient_index": "patient_id cycle center workflow workflow_version n_lesions "
    "lesion_dose_min_gy lesion_dose_median_gy lesion_dose_mean_gy lesion_dose_max_gy "
    "global_mean_dose_gy cum_n_cycles cum_lesion_dose_min_gy cum_lesion_dose_median_gy "
    "cum_lesion_dose_mean_gy cum_lesion_dose_max_gy cum_global_mean_dose_gy cum_rule "
    "cum_cycles_planned cum_cycles_measured cum_basis",
    "tac": "patient_id cycle workflow voi_id time_h activity_measured_mbq activity_fitted_mbq "
    "recovery_corrected",
    "agreement": "index level cycle workflow_a workflow_b statistic estimate ci_low ci_high "
    "ci_level n_pairs unit method",
    "run": "patient_id cycle workflow workflow_version schema_version parameters_json "
    "overrides_json input_sha256 software_json",
    "dvh": "patient_id cycle center workflow workflow_version voi_id volume_pct dose_gy",
    "uncertainty": "patient_id cycle center workflow workflow_version voi_id component u_rel "
    "sensitivity dose_u_rel tia_u_rel shared",
    "clinical": "patient_id center sex age_band primary_site grade ki67_pct stage prior_lines "
    "sstr_uptake_score pfs_months pfs_event os_months os_event follow_up_months best_response "
    "response_criteria egfr_change_pct kidney_ctcae_grade haem_ctcae_grade",
}
#: Golden files of schema 1.0.0 (the committed examples before the dvh table, 1.1.0).
SCHEMA_1_0_0 = Path(__file__).parent / "data" / "schema-1.0.0"
#: Golden files of schema 1.1.0 (before the 1.2.0 additions: uncertainty, clinical,
#: cumulative basis).
SCHEMA_1_1_0 = Path(__file__).parent / "data" / "schema-1.1.0"
META = {"workflow": "example", "workflow_version": "1.0.0", "parameters": {"a": 1}}


@pytest.fixture
def frames():
    return example_frames()


def _rewrite(src: Path, dst: Path, table: pa.Table | None = None, meta: dict | None = None):
    """Write a Parquet file bypassing harmonize (to forge non-conformant files)."""
    original = pq.read_table(src)
    table = original if table is None else table
    metadata = dict(original.schema.metadata)
    if meta is not None:
        metadata[b"harmonize"] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(metadata), dst)


# --------------------------------------------------------------------------------------------
# The document and the generated Arrow schema
# --------------------------------------------------------------------------------------------


def test_document_is_complete_and_pins_a_semver():
    doc = load_schema_document()
    assert doc["schema_version"] == SCHEMA_VERSION
    assert hs._parse_version(SCHEMA_VERSION) is not None
    for table, names in CONTRACT.items():
        cols = {c["name"]: c for c in doc["tables"][table]["columns"]}
        assert set(names.split()) <= set(cols), table
        for col in cols.values():
            assert {"name", "type", "nullable", "unit", "required", "description"} <= set(col)
            assert col["type"] in doc["arrow_types"] and col["description"]
        assert set(doc["tables"][table]["primary_key"]) <= set(cols)
    # privacy: no date/time column anywhere
    names = [c["name"] for t in doc["tables"].values() for c in t["columns"]]
    assert not [n for n in names if any(w in n for w in ("date", "time_of", "started", "birth"))]


def test_arrow_schema_is_generated_with_units():
    doc = load_schema_document()
    for table, tdoc in doc["tables"].items():
        schema = arrow_schema(table)
        assert schema.names == [c["name"] for c in tdoc["columns"]]
        for col in tdoc["columns"]:
            field = schema.field(col["name"])
            assert str(field.type) == {"float64": "double", "bool": "bool"}.get(
                col["type"], col["type"]
            )
            assert field.nullable == col["nullable"]
            assert field.metadata[b"unit"].decode() == col["unit"]
            assert field.metadata[b"description"].decode() == col["description"]
    dvh = arrow_schema("dvh")
    assert [f.metadata[b"unit"].decode() for f in dvh][-2:] == ["%", "Gy"]
    assert not any(f.nullable for f in dvh)
    units = {f.name: f.metadata[b"unit"].decode() for f in arrow_schema("voi_dose")}
    assert units["tia_mbq_h"] == "MBq·h" and units["mass_g"] == "g" and units["volume_ml"] == "mL"
    assert units["dose_d98_gy"] == "Gy" and units["tia_coefficient_h"] == "h"
    with pytest.raises(SchemaError, match="unknown table"):
        arrow_schema("doses")


def test_metadata_json_schema_accepts_example_metadata(tmp_path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema not installed")
    meta_schema = load_schema_document()["file_metadata_schema"]
    jsonschema.Draft202012Validator.check_schema(meta_schema)
    for path in write_examples(tmp_path):
        value = json.loads(pq.read_schema(path).metadata[b"harmonize"])
        jsonschema.validate(value, meta_schema)
        assert value["schema_version"] == SCHEMA_VERSION and value["table"] == path.stem


# --------------------------------------------------------------------------------------------
# Round trip, determinism, golden files
# --------------------------------------------------------------------------------------------


def test_round_trip_is_exact(tmp_path, frames):
    write_results(frames, tmp_path, metadata=META)
    back = read_results(tmp_path)
    assert sorted(back) == sorted(frames)
    for name, df in frames.items():
        pd.testing.assert_frame_equal(back[name], df, check_exact=True)
    assert back["voi_dose"]["parent_voi_id"].dtype == pd.Int32Dtype()
    assert back["voi_dose"]["workflow"].dtype == pd.StringDtype(na_value=np.nan)
    assert back["tac"]["recovery_corrected"].dtype == np.bool_


def test_lenient_input_dtypes_are_coerced(tmp_path, frames):
    df = frames["voi_dose"]
    loose = df.astype({"cycle": np.int64, "voi_id": object, "voi_kind": "category"})
    loose["parent_voi_id"] = loose["parent_voi_id"].astype("float64")  # NaN for missing
    loose["n_time_points"] = loose["n_time_points"].astype(float)
    write_table(loose.iloc[::-1], tmp_path / "v.parquet", "voi_dose")  # reversed rows too
    pd.testing.assert_frame_equal(read_results(tmp_path / "v.parquet")["voi_dose"], df)


def test_same_frame_same_bytes(tmp_path, frames):
    df = frames["voi_dose"]
    a = write_table(df, tmp_path / "a.parquet", "voi_dose", META)
    b = write_table(df.sample(frac=1.0, random_state=1), tmp_path / "b.parquet", "voi_dose", META)
    c = write_table(df, tmp_path / "c.parquet", "voi_dose", {**META, "parameters": {"a": 2}})
    assert a.read_bytes() == b.read_bytes()  # row order does not matter: sorted by key
    assert a.read_bytes() != c.read_bytes()  # metadata is part of the content
    raw = pq.ParquetFile(a).metadata.metadata
    assert set(raw) == {b"harmonize", b"ARROW:schema"}  # one namespaced key, no pandas key


def test_golden_examples_regenerate_identically(tmp_path):
    committed = files("harmonize.data_schema").joinpath("examples")
    written = write_examples(tmp_path)
    # one golden file per table, dvh included, and no stale file beside them
    assert [p.stem for p in written] == list(hs.table_names())
    assert "dvh" in hs.table_names()
    assert sorted(p.name for p in committed.iterdir() if p.name.endswith(".parquet")) == sorted(
        p.name for p in written
    )
    for path in written:
        golden = committed.joinpath(path.name)
        # logical equality always: data, schema with field metadata, harmonize key
        new, old = pq.read_table(path), pq.read_table(golden)
        assert new.equals(old, check_metadata=True), path.name
        writer = pq.ParquetFile(path).metadata.created_by
        golden_writer = pq.read_metadata(golden).created_by
        if writer != golden_writer:
            pytest.skip(
                f"golden files written by {golden_writer!r}, this is {writer!r}: the footer "
                "differs by construction; regenerate with "
                "`python -m harmonize.schema write-examples data_schema/examples --overwrite`"
            )
        assert path.read_bytes() == golden.read_bytes(), path.name
    assert validate_path(committed) == []


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


@pytest.fixture
def voi_file(tmp_path, frames):
    return write_table(frames["voi_dose"], tmp_path / "ok" / "voi.parquet", "voi_dose", META)


def test_schema_version_is_1_2_with_dvh_and_uncertainty_as_minor_additions():
    # dvh (1.1.0), and the flag tokens, cumulative-basis columns and uncertainty (1.2.0) are
    # optional additions: minor changes of major version 1 (SPEC.md §5); the 1.2.0 columns of
    # older tables are optional and nullable
    assert hs._parse_version(SCHEMA_VERSION)[:2] == (1, 2)
    tables = load_schema_document()["tables"]
    added = [
        c
        for t in ("voi_dose", "patient_index")
        for c in tables[t]["columns"]
        if c["name"].endswith("_u_gy") or c["name"] == "tia_u_mbq_h"
    ]
    assert len(added) == 12 and all(c["nullable"] and not c["required"] for c in added)


def test_schema_version_is_1_2_with_dvh_and_clinical_as_minor_additions():
    # dvh (1.1) and clinical (1.2) are new optional tables: minor changes of major 1 (SPEC §5)
    assert hs._parse_version(SCHEMA_VERSION)[:2] == (1, 2)
    clinical = load_schema_document()["tables"]["clinical"]
    assert clinical["primary_key"] == ["patient_id"] and clinical["partition_by"] == []
    units = {c["name"]: c["unit"] for c in clinical["columns"]}
    assert units["pfs_months"] == units["os_months"] == "month"
    assert not {"birth_date", "age", "date_of_birth"} & set(units)
    doc = load_schema_document()["tables"]["dvh"]
    assert doc["primary_key"] == ["patient_id", "cycle", "workflow", "voi_id", "volume_pct"]
    assert doc["partition_by"] == ["workflow"]
    pct = next(c for c in doc["columns"] if c["name"] == "volume_pct")
    assert (pct["minimum"], pct["maximum"], pct["unit"]) == (0, 100, "%")


def test_golden_uncertainty_adds_up_to_golden_voi_dose():
    # SPEC §2: dose_mean_u_gy = dose_mean_gy × √Σ dose_u_rel² over the VOI's budget rows
    back = read_results(files("harmonize.data_schema").joinpath("examples"))
    budget, voi = back["uncertainty"], back["voi_dose"].set_index("voi_id")
    rss = budget.groupby("voi_id")["dose_u_rel"].apply(lambda s: float(np.sqrt((s**2).sum())))
    expected = voi.loc[rss.index, "dose_mean_u_gy"] / voi.loc[rss.index, "dose_mean_gy"]
    np.testing.assert_allclose(rss.to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert voi.loc[~voi.index.isin(rss.index), "dose_mean_u_gy"].isna().all()


def test_golden_dvh_agrees_with_golden_voi_dose():
    back = read_results(files("harmonize.data_schema").joinpath("examples"))
    dvh, voi = back["dvh"], back["voi_dose"].set_index("voi_id")
    wide = dvh.pivot(index="voi_id", columns="volume_pct", values="dose_gy")
    assert wide.columns.tolist() == [float(x) for x in range(101)]
    assert wide.index.tolist() == voi.index.tolist()
    assert (np.diff(wide.to_numpy(), axis=1) <= 0).all()
    for pct, column in [(0, "max"), (2, "d2"), (50, "d50"), (98, "d98"), (100, "min")]:
        np.testing.assert_array_equal(wide[float(pct)], voi[f"dose_{column}_gy"])


def test_files_of_schema_1_0_0_are_read(tmp_path):
    # a 1.1.0 reader reads 1.0.0 files (an older minor of its major) as before: the five
    # tables of 1.0.0, the same rows as today's examples, and no dvh table
    versions = {
        json.loads(pq.read_schema(f).metadata[b"harmonize"])["schema_version"]
        for f in SCHEMA_1_0_0.glob("*.parquet")
    }
    assert versions == {"1.0.0"}
    assert validate_path(SCHEMA_1_0_0) == []
    old, new = read_results(SCHEMA_1_0_0), example_frames()
    assert sorted(old) == sorted(set(new) - {"dvh", "uncertainty", "clinical"})
    for name, df in old.items():
        expected = _without_1_2_0_columns(new[name], df)
        if name == "run":  # the run row records the schema version its writer followed
            assert df["schema_version"].tolist() == ["1.0.0"]
            df = df.drop(columns="schema_version")
            expected = expected.drop(columns="schema_version")
        if name == "patient_index":
            # 1.2.0 changed the cumulative columns from "cycles 1..cycle" to "the planned
            # treatment" and added three optional columns, read as null from older files
            # and derived by fill_cumulative_basis (SPEC.md §2)
            assert df[["cum_cycles_planned", "cum_cycles_measured", "cum_basis"]].isna().all().all()
            filled = fill_cumulative_basis(df)
            assert filled["cum_cycles_planned"].tolist() == df["cycle"].tolist()
            assert set(filled["cum_basis"]) <= {"measured_sum", "incomplete"}
            same = [c for c in df.columns if not c.startswith("cum_")]
            df, expected = df[same], expected[same]
        pd.testing.assert_frame_equal(df, expected, check_exact=True)
    # and a 1.0.0 dataset merges with 1.1.0 dvh files of the same study
    root = tmp_path / "mixed"
    for table in old:
        (root / table).mkdir(parents=True)
        (root / table / f"{table}.parquet").write_bytes(
            (SCHEMA_1_0_0 / f"{table}.parquet").read_bytes()
        )
    write_results({"dvh": new["dvh"]}, root)
    assert validate_path(root) == []
    assert sorted(read_results(root)) == sorted(set(new) - {"uncertainty", "clinical"})


def _without_1_2_0_columns(expected: pd.DataFrame, old: pd.DataFrame) -> pd.DataFrame:
    """The example as an older file reads: the 1.2.0 uncertainty columns null."""
    added = [c for c in expected.columns if c.endswith("_u_gy") or c == "tia_u_mbq_h"]
    assert old[added].isna().all().all()  # read as "not computed"
    return expected.assign(**{c: np.nan for c in added})


def test_files_of_schema_1_1_0_are_read(tmp_path):
    # a 1.2.0 reader reads the 1.1.0 golden files: every 1.1.0 table, the uncertainty
    # columns null, everything else as today's examples
    versions = {
        json.loads(pq.read_schema(f).metadata[b"harmonize"])["schema_version"]
        for f in SCHEMA_1_1_0.glob("*.parquet")
    }
    assert versions == {"1.1.0"}
    assert validate_path(SCHEMA_1_1_0) == []
    old, new = read_results(SCHEMA_1_1_0), example_frames()
    assert sorted(old) == sorted(set(new) - {"uncertainty", "clinical"})
    for name, df in old.items():
        expected = _without_1_2_0_columns(new[name], df)
        if name == "run":
            assert df["schema_version"].tolist() == ["1.1.0"]
            df = df.drop(columns="schema_version")
            expected = expected.drop(columns="schema_version")
        if name == "patient_index":
            # 1.2.0 changed the cumulative columns to "the planned treatment" (derived from
            # older files by fill_cumulative_basis, tested with the 1.0.0 files above)
            assert df[["cum_cycles_planned", "cum_cycles_measured", "cum_basis"]].isna().all().all()
            same = [c for c in df.columns if not c.startswith("cum_")]
            df, expected = df[same], expected[same]
        pd.testing.assert_frame_equal(df, expected, check_exact=True)
    # and a 1.1.0 dataset takes a 1.2.0 clinical table of the same patients
    root = tmp_path / "mixed"
    for table in old:
        (root / table).mkdir(parents=True)
        (root / table / f"{table}.parquet").write_bytes(
            (SCHEMA_1_1_0 / f"{table}.parquet").read_bytes()
        )
    write_results({"clinical": new["clinical"]}, root, partition_cols=())
    assert validate_path(root) == []
    assert sorted(read_results(root)) == sorted(set(new) - {"uncertainty"})


def test_table_of_a_newer_minor_is_ignored_older_unknown_refused(tmp_path, voi_file):
    # SPEC.md §5 readers 2: tables a newer minor adds are ignored, whether their folder sits
    # in a results directory or the file is read on its own
    future = tmp_path / "future" / "dose_rate" / "x.parquet"
    future.parent.mkdir(parents=True)
    _rewrite(voi_file, future, meta={"schema_version": "1.9.0", "table": "dose_rate"})
    (tmp_path / "future" / "voi_dose").mkdir()
    shutil.copy(voi_file, tmp_path / "future" / "voi_dose" / "v.parquet")
    assert validate_path(tmp_path / "future") == []
    assert sorted(read_results(tmp_path / "future")) == ["voi_dose"]
    assert read_results(future) == {}
    # the same unknown table name under this reader's own minor is an error
    _rewrite(voi_file, future, meta={"schema_version": SCHEMA_VERSION, "table": "dose_rate"})
    assert "is not one of" in validate_path(future)[0]


def test_volume_pct_outside_0_100_refused(tmp_path, frames):
    dvh = frames["dvh"]
    with pytest.raises(SchemaError, match="above the maximum 100"):
        to_arrow_table(dvh.assign(volume_pct=dvh["volume_pct"] + 0.5), "dvh")
    with pytest.raises(SchemaError, match="below the minimum 0"):
        to_arrow_table(dvh.assign(volume_pct=dvh["volume_pct"] - 0.5), "dvh")
    path = write_table(dvh, tmp_path / "d.parquet", "dvh", META)
    table = pq.read_table(path)
    i = table.schema.get_field_index("volume_pct")
    forged = table.set_column(i, table.schema.field(i), pc.multiply(table["volume_pct"], 2.0))
    bad = tmp_path / "bad.parquet"
    _rewrite(path, bad, table=forged)
    assert any("above the maximum 100" in p for p in validate_path(bad))


def test_newer_major_refused_newer_minor_accepted(tmp_path, voi_file):
    bad = tmp_path / "v2.parquet"
    _rewrite(voi_file, bad, meta={"schema_version": "2.0.0", "table": "voi_dose"})
    with pytest.raises(SchemaVersionError) as err:
        read_results(bad)
    assert str(bad) in str(err.value) and "2.0.0" in str(err.value)
    assert SCHEMA_VERSION in str(err.value)
    problems = validate_path(bad)
    assert len(problems) == 1 and "2.0.0" in problems[0]

    # newer minor with an unknown column and an unknown key: accepted, extras ignored
    original = pq.read_table(voi_file)
    extra = original.append_column("dose_d10_gy", pa.array(np.ones(original.num_rows)))
    minor = tmp_path / "minor" / "v.parquet"
    minor.parent.mkdir()
    newer = {"schema_version": "1.7.3", "table": "voi_dose", "future_key": [1, 2]}
    _rewrite(voi_file, minor, table=extra, meta=newer)
    assert validate_path(minor) == []
    back = read_results(minor)["voi_dose"]
    assert "dose_d10_gy" not in back.columns
    pd.testing.assert_frame_equal(back, read_results(voi_file)["voi_dose"])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.drop_columns(["dose_mean_gy"]), "missing required column 'dose_mean_gy'"),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("dose_mean_gy"),
                t.schema.field("dose_mean_gy").with_type(pa.float32()),
                t["dose_mean_gy"].cast(pa.float32()),
            ),
            "column 'dose_mean_gy' has Arrow type float, expected double",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("mass_g"),
                t.schema.field("mass_g").with_metadata({"unit": "kg"}),
                t["mass_g"],
            ),
            "column 'mass_g' has unit 'kg', expected 'g'",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("tia_mbq_h"),
                t.schema.field("tia_mbq_h").remove_metadata(),
                t["tia_mbq_h"],
            ),
            "column 'tia_mbq_h' has no unit",
        ),
        (
            lambda t: t.set_column(
                t.schema.get_field_index("voi_kind"),
                t.schema.field("voi_kind"),
                pa.array(["tumour"] * t.num_rows),
            ),
            "column 'voi_kind' has 4 value",
        ),
    ],
    ids=["missing", "type", "unit", "no-unit", "enum"],
)
def test_bad_file_refused_naming_column(tmp_path, voi_file, mutate, message):
    bad = tmp_path / "bad.parquet"
    _rewrite(voi_file, bad, table=mutate(pq.read_table(voi_file)))
    with pytest.raises(SchemaError, match=message) as err:
        read_results(bad)
    assert str(bad) in str(err.value)
    assert any(message in p for p in validate_path(bad))


def test_missing_metadata_and_unknown_path(tmp_path, voi_file):
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(voi_file).replace_schema_metadata(None), plain)
    assert "no 'harmonize' key" in validate_path(plain)[0]
    assert "does not exist" in validate_path(tmp_path / "nope")[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no harmonize Parquet file" in validate_path(empty)[0]
    (empty / "broken.parquet").write_bytes(b"PAR1 not really")
    (empty / "notes.txt").write_text("ignored: not a .parquet file")
    (empty / ".partial.parquet.tmp").write_bytes(b"ignored: hidden temporary file")
    problems = validate_path(empty)
    assert len(problems) == 1 and "broken.parquet: not a readable Parquet file" in problems[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns="flags"), "lacks required column"),
        (lambda df: df.assign(dose_mean_gy="high"), "must be numeric"),
        (lambda df: df.assign(dose_max_Gy=1.0), "does not define"),
        (lambda df: df.assign(dose_mean_gy=np.nan), "not nullable"),
        (lambda df: df.assign(dose_min_gy=np.inf), "infinite"),
        (lambda df: df.assign(voi_id=df.voi_id + 0.5), "fractional"),
        (lambda df: df.assign(voi_kind="tumour"), "outside"),
        (lambda df: df.assign(voi_id=1), "duplicate primary keys"),
        (lambda df: df.assign(patient_id="1.2.840.113619.2.55.3.4"), "DICOM UID"),
        (lambda df: df.assign(patient_id="P-1956-03-14"), "calendar date"),
        (lambda df: df.assign(flags=3), "must hold strings"),
    ],
)
def test_bad_frame_refused_and_nothing_written(tmp_path, frames, change, message):
    target = tmp_path / "out" / "v.parquet"
    with pytest.raises(SchemaError, match=message):
        write_table(change(frames["voi_dose"]), target, "voi_dose")
    assert not target.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize(
    "metadata",
    [{"patient_name": "Doe^John"}, {"parameters": {"injection_time": "x"}}, {"note": "2024-01-31"}],
)
def test_private_metadata_refused(tmp_path, frames, metadata):
    with pytest.raises(SchemaError, match="Privacy"):
        write_table(frames["tac"], tmp_path / "t.parquet", "tac", metadata)
    with pytest.raises(SchemaError, match="harmonize writes them"):
        write_table(frames["tac"], tmp_path / "t.parquet", "tac", {"schema_version": "9.0.0"})


def test_extra_column_kept_only_on_request(tmp_path, frames):
    df = frames["tac"].assign(note="x")
    path = write_table(df, tmp_path / "t.parquet", "tac", allow_extra=True)
    assert "note" in pq.read_schema(path).names
    assert "note" not in read_results(path)["tac"].columns  # readers ignore unknown columns


def test_atomic_write_leaves_no_file_when_the_writer_fails(tmp_path, frames, monkeypatch):
    target = tmp_path / "t.parquet"
    write_table(frames["tac"], target, "tac", META)
    before = target.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        write_table(frames["tac"], target, "tac", {"other": 1}, overwrite=True)
    with pytest.raises(OSError, match="simulated"):
        write_table(frames["tac"], tmp_path / "new.parquet", "tac")
    monkeypatch.undo()
    assert target.read_bytes() == before  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no temp, no new file


def test_overwrite_protection(tmp_path, frames):
    target = tmp_path / "t.parquet"
    write_table(frames["tac"], target, "tac", META)
    write_table(frames["tac"], target, "tac", META)  # identical content: fine
    changed = frames["tac"].assign(time_h=frames["tac"]["time_h"] + 1.0)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_table(changed, target, "tac", META)
    assert read_results(target)["tac"]["time_h"].equals(frames["tac"]["time_h"])
    write_table(changed, target, "tac", META, overwrite=True)
    assert read_results(target)["tac"]["time_h"].equals(changed["time_h"])


# --------------------------------------------------------------------------------------------
# Partitioned datasets
# --------------------------------------------------------------------------------------------


def _two_workflows(tmp_path, frames):
    out = tmp_path / "results"
    for wf in ("montpellier", "milan"):
        tables = {
            name: df.assign(workflow=wf)
            for name, df in frames.items()
            if name not in ("agreement", "clinical")  # per-patient tables, no workflow
        }
        write_results(tables, out, metadata={"workflow": wf})
    write_results({"agreement": frames["agreement"]}, out, metadata={}, basename="compare")
    return out


def test_partitioned_dataset_merges_workflows(tmp_path, frames):
    out = _two_workflows(tmp_path, frames)
    assert (out / "voi_dose" / "workflow=milan" / "PX001_c1.parquet").is_file()
    assert (out / "agreement" / "compare.parquet").is_file()
    back = read_results(out)
    voi = back["voi_dose"]
    assert len(voi) == 2 * len(frames["voi_dose"])
    assert voi["workflow"].dtype == pd.StringDtype(na_value=np.nan)  # not categorical
    assert voi["workflow"].tolist() == ["milan"] * 4 + ["montpellier"] * 4  # key order
    assert validate_path(out) == []
    only = read_results(out, tables=["tac"])
    assert list(only) == ["tac"]
    with pytest.raises(FileNotFoundError, match="nothing"):
        read_results(out / "voi_dose" / "workflow=nothing")
    # a table directory alone reads too
    assert len(read_results(out / "voi_dose")["voi_dose"]) == len(voi)


def test_rerun_replaces_its_files_duplicates_are_reported(tmp_path, frames):
    out = _two_workflows(tmp_path, frames)
    doses = [c for c in frames["voi_dose"].columns if c.startswith("dose_")]
    # every dose doubled (not only the mean: min ≤ mean ≤ max is checked)
    changed = frames["voi_dose"].assign(
        workflow="milan", **{c: frames["voi_dose"][c] * 2 for c in doses}
    )
    with pytest.raises(FileExistsError):
        write_results({"voi_dose": changed}, out, metadata={"workflow": "milan"})
    write_results({"voi_dose": changed}, out, metadata={"workflow": "milan"}, overwrite=True)
    voi = read_results(out)["voi_dose"]
    assert len(voi) == 8  # replaced, not added
    # the same rows under another file name are duplicates across files
    write_results({"voi_dose": changed}, out, metadata={}, basename="again")
    problems = validate_path(out)
    assert len(problems) == 1 and "same primary key" in problems[0]
    with pytest.raises(SchemaError, match="same primary key"):
        read_results(out)


def test_partition_column_restored_from_path(tmp_path, frames):
    root = tmp_path / "tac"
    src = write_table(frames["tac"], tmp_path / "src.parquet", "tac")
    table = pq.read_table(src)
    (root / "workflow=bordet").mkdir(parents=True)
    pq.write_table(table.drop_columns(["workflow"]), root / "workflow=bordet" / "x.parquet")
    back = read_results(root)["tac"]
    assert back["workflow"].tolist() == ["bordet"] * len(back)
    assert back["workflow"].dtype == pd.StringDtype(na_value=np.nan)
    (root / "workflow=other").mkdir()
    pq.write_table(table, root / "workflow=other" / "y.parquet")  # column says 'example'
    assert any("disagrees with its partition" in p for p in validate_path(root))


def test_unsafe_partition_value_refused(tmp_path, frames):
    with pytest.raises(SchemaError, match="safe directory name"):
        write_results({"tac": frames["tac"].assign(workflow="../x")}, tmp_path)


def test_polars_reads_the_same_rows(tmp_path, frames):
    pl = pytest.importorskip("polars", reason="polars not installed")
    out = _two_workflows(tmp_path, frames)
    expected = read_results(out)["voi_dose"]
    got = (
        pl.read_parquet(str(out / "voi_dose" / "**" / "*.parquet"), hive_partitioning=True)
        .sort(["patient_id", "cycle", "workflow", "voi_id"])
        .to_pandas()
    )
    assert got.shape == expected.shape
    for col in ("workflow", "voi_name", "dose_mean_gy", "dose_d98_gy", "voi_id"):
        assert got[col].tolist() == expected[col].tolist(), col


def test_duckdb_reads_the_same_rows(tmp_path, frames):
    duckdb = pytest.importorskip("duckdb", reason="duckdb not installed")
    out = _two_workflows(tmp_path, frames)
    expected = read_results(out)["patient_index"]
    glob = str(out / "patient_index" / "*" / "*.parquet")
    got = duckdb.sql(
        f"select * from read_parquet('{glob}', hive_partitioning=true) "
        "order by patient_id, cycle, workflow"
    ).df()
    assert len(got) == len(expected)
    for col in ("workflow", "global_mean_dose_gy", "n_lesions", "cum_rule"):
        assert got[col].tolist() == expected[col].tolist(), col


def test_named_index_of_schema_columns_becomes_columns(frames):
    df = frames["voi_dose"]
    indexed = df.set_index(["voi_id"])
    assert to_arrow_table(indexed, "voi_dose").equals(to_arrow_table(df, "voi_dose"))
    # any other index is dropped, never written as a column
    relabelled = df.set_axis(pd.Index(range(10, 10 + len(df)), name="row"))
    assert to_arrow_table(relabelled, "voi_dose").column_names == arrow_schema("voi_dose").names
