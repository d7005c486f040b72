"""Milan's recovery curve on real data: a centre's measured RC table, and honest labels.

``rc_table=FILE.csv`` (``volume_ml,rc``) gives the curve the centre measured on its own
camera (:func:`harmonize.pvc.read_rc_table`); without it, a study that records no imaging
profile (real data) is corrected with a simulated camera's curve, which is warned about and
flagged ``rc_simulated_camera`` on the lesion rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest

import harmonize as hz
from harmonize import pvc, runfolder, schema
from harmonize._warnings import RecoveryCurveRangeWarning, SimulatedCalibrationWarning
from harmonize.cli import main
from harmonize.runner import _calibration_used
from harmonize.workflow import WorkflowError
from workflows.milan import RC_SIMULATED_CAMERA_FLAG, MilanWorkflow

#: Milan's time points (24 h, 168 h) are in the study; 4 h is not used.
TIMES_H = [4.0, 24.0, 168.0]


@pytest.fixture
def make(make_tiny_study):
    """``make(**attrs)``: the tiny study (a 0.18 mL lesion) with Milan's time points."""

    def build(**attrs: object):
        study = make_tiny_study(times_h=TIMES_H)
        study.attrs.update(attrs)
        return study

    return build


def _table(tmp_path, text: str, name: str = "rc.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _by_kind(result, kind: str) -> pd.DataFrame:
    return result.voi_dose[result.voi_dose["voi_kind"] == kind].reset_index(drop=True)


# -- the curve applied -------------------------------------------------------------------


def test_rc_of_one_half_doubles_the_lesion_activity_and_nothing_else(tmp_path, make):
    # RC = 0.5 at every volume (the end values are kept outside the table): the corrected
    # lesion activity is exactly 2x the measured one, and so is its mono-exponential TIA
    # (the fitted decay constant does not change when both points are doubled).
    path = _table(tmp_path, "volume_ml,rc\n0.01,0.5\n1000,0.5\n")
    study = make()
    table = MilanWorkflow(rc_table=str(path)).run(study)
    none = MilanWorkflow(recovery_correction=False).run(study)
    psf = MilanWorkflow(rc_source="gaussian_psf").run(study)

    lesion = _by_kind(table, "lesion")
    assert lesion["recovery_coefficient"].tolist() == [0.5]
    tac, tac0 = table.tac, none.tac
    is_lesion = tac["voi_id"].isin(lesion["voi_id"])
    np.testing.assert_allclose(
        tac.loc[is_lesion, "activity_measured_mbq"],
        2.0 * tac0.loc[is_lesion, "activity_measured_mbq"],
        rtol=1e-14,  # one division by 0.5: exact up to round-off
    )
    assert tac.loc[is_lesion, "recovery_corrected"].all()
    np.testing.assert_allclose(
        lesion["tia_mbq_h"], 2.0 * _by_kind(none, "lesion")["tia_mbq_h"], rtol=1e-12
    )
    # the RC curve touches lesions only: every non-lesion row is identical to another curve's
    for kind in ("body", "organ"):
        pd.testing.assert_frame_equal(_by_kind(table, kind), _by_kind(psf, kind))
    pd.testing.assert_frame_equal(tac[~is_lesion], psf.tac[~is_lesion])


def test_between_two_spheres_rc_is_linear_in_log_volume(tmp_path, make):
    # PCHIP through two points is the straight line through them (in log volume here):
    # RC(V) = 0.3 + 0.3 * log10(V / 0.1 mL) between 0.1 and 1 mL; the lesion has 0.18 mL
    # (2 x 3 x 1 voxels of 4 x 4.5 x 5 mm), so RC = 0.3 + 0.3 log10(1.8) = 0.37658...
    path = _table(tmp_path, "# two spheres\nvolume_ml,rc\n1.0,0.6\n0.1,0.3\n")
    curve = pvc.read_rc_table(path).curve
    assert float(curve(math.sqrt(0.1))) == pytest.approx(0.45, rel=1e-12)  # log midpoint
    assert float(curve(0.01)) == 0.3 and float(curve(100.0)) == 0.6  # end values kept
    result = MilanWorkflow(rc_table=str(path)).run(make())
    lesion = _by_kind(result, "lesion")
    assert lesion["volume_ml"].tolist() == pytest.approx([0.18])
    expected = 0.3 + 0.3 * math.log10(1.8)
    assert lesion["recovery_coefficient"].iloc[0] == pytest.approx(expected, rel=1e-12)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("volume,rc\n1,0.5\n2,0.6\n", "line 1", "lacks column 'volume_ml'"),
        ("volume_ml,rc,rc\n1,0.5,0.5\n2,0.6,0.6\n", "line 1", "repeats column 'rc'"),
        ("volume_ml,rc\n1,0.5\n2,abc\n", "line 3, column 'rc'", "expected a finite number"),
        ("volume_ml,rc\n1,nan\n2,0.6\n", "line 2, column 'rc'", "expected a finite number"),
        ("volume_ml,rc\n0,0.5\n2,0.6\n", "line 2, column 'volume_ml'", "volume > 0 mL"),
        ("volume_ml,rc\n1,0.5\n-2,0.6\n", "line 3, column 'volume_ml'", "volume > 0 mL"),
        ("volume_ml,rc\n1,45\n2,60\n", "line 2, column 'rc'", "(0, 1.5], got 45 (a percentage?"),
        ("volume_ml,rc\n1,0\n2,0.6\n", "line 2, column 'rc'", "(0, 1.5], got 0"),
        ("volume_ml,rc\n1,0.5\n", "rc.csv:", "expected at least 2 lines"),
        ("# only a comment\n\n", "rc.csv:", "no header"),
        ("volume_ml,rc\n1,0.5\n2\n", "line 3", "expected 2 fields"),
        (
            "volume_ml,rc\n2,0.6\n1,0.5\n2,0.7\n",
            "lines 2 and 4, column 'volume_ml'",
            "appears twice",
        ),
        ("volume_ml,rc\n1,0.6\n2,0.5\n", "lines 2 and 3, column 'rc'", "not to decrease"),
    ],
)
def test_a_bad_table_is_refused_naming_file_line_and_field(tmp_path, text, where, expected):
    path = _table(tmp_path, text)
    with pytest.raises(WorkflowError) as info:
        MilanWorkflow(rc_table=str(path))
    message = str(info.value)
    assert message.startswith("parameter 'rc_table': ")
    assert str(path) in message and where in message and expected in message


def test_missing_file_and_contradicting_parameters_are_refused(tmp_path):
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(WorkflowError, match=rf"{missing}: RC table file not found"):
        MilanWorkflow(rc_table=str(missing))
    with pytest.raises(WorkflowError, match="'table' needs rc_table"):
        MilanWorkflow(rc_source="table")
    path = _table(tmp_path, "volume_ml,rc\n1,0.5\n2,0.6\n")
    with pytest.raises(WorkflowError, match="'gaussian_psf' takes no table"):
        MilanWorkflow(rc_source="gaussian_psf", rc_table=str(path))


def test_comments_extra_columns_and_any_line_order_are_read(tmp_path):
    path = _table(
        tmp_path,
        "# camera X, 2026\nVolume_ML , diameter_mm, RC\n26.5,37,0.78\n\n0.52,10,0.21\n# end\n",
    )
    measured = pvc.read_rc_table(path)
    assert measured.curve.volumes_ml.tolist() == [0.52, 26.5]
    assert measured.curve.rc.tolist() == [0.21, 0.78]
    assert measured.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_readme_example_table_reads(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split("```text\n# NEMA IEC spheres", 1)[1].split("```", 1)[0]
    measured = pvc.read_rc_table(_table(tmp_path, "# NEMA IEC spheres" + block))
    assert measured.curve.volumes_ml.size == 6


# -- provenance and calibration records ----------------------------------------------------


def test_provenance_records_name_hash_and_points_never_the_folder(tmp_path, make):
    folder = tmp_path / "Rossi_Mario"  # a path may name a person
    folder.mkdir()
    path = _table(folder, "volume_ml,rc\n0.52,0.21\n26.5,0.78\n", name="camera_rc.csv")
    adapter = MilanWorkflow(rc_table=str(path))
    study = make()
    assert adapter.calibration_phantom(study) is None  # no simulated phantom to measure
    # the 0.18 mL lesion is smaller than the smallest sphere: it gets that sphere's RC
    with pytest.warns(RecoveryCurveRangeWarning, match=r"camera_rc.csv \(0.52-26.5 mL\)"):
        result = adapter.run(study)
    assert _by_kind(result, "lesion")["recovery_coefficient"].tolist() == [0.21]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    prov = result.provenance
    recorded = {"file": "camera_rc.csv", "sha256": sha}
    assert prov["workflow"]["parameters"]["rc_table"] == recorded
    assert prov["workflow"]["parameters"]["rc_source"] == "table"  # as applied
    assert prov["workflow"]["overrides"]["rc_table"] == recorded
    points = {"volume_ml": [0.52, 26.5], "rc": [0.21, 0.78], "lesions_outside_range": 1}
    assert prov["rc_table"] == {**recorded, **points}
    assert f"measured RC table camera_rc.csv (sha256 {sha}" in prov["rc_curve"]
    assert "Rossi" not in json.dumps(prov, default=str)
    # the runner records no calibration phantom for Milan (the camera of a profile study
    # is still recorded as the studies')
    assert _calibration_used(study, adapter) == []
    profiled = make(imaging_profile="milan")
    assert [u[-1] for u in _calibration_used(profiled, adapter)] == ["studies"]


def test_no_range_warning_inside_the_table(tmp_path, make):
    path = _table(tmp_path, "volume_ml,rc\n0.1,0.3\n1,0.6\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecoveryCurveRangeWarning)
        result = MilanWorkflow(rc_table=str(path)).run(make())
    assert result.provenance["rc_table"]["lesions_outside_range"] == 0


def test_a_changed_table_at_the_same_path_changes_the_recorded_parameters(tmp_path):
    path = _table(tmp_path, "volume_ml,rc\n1,0.5\n2,0.6\n")
    first = MilanWorkflow(rc_table=str(path)).config.to_dict()
    path.write_text("volume_ml,rc\n1,0.5\n2,0.7\n", encoding="utf-8")
    second = MilanWorkflow(rc_table=str(path)).config.to_dict()
    assert first["rc_table"]["file"] == second["rc_table"]["file"] == "rc.csv"
    assert first["rc_table"]["sha256"] != second["rc_table"]["sha256"]
    # without a table nothing is recorded: results and run folders of before stay identical
    default = MilanWorkflow()
    assert "rc_table" not in default.config.to_dict()
    assert set(default.config.to_dict()) == set(default.config.sources())


# -- the label on real data ----------------------------------------------------------------


def test_simulated_camera_on_real_data_is_warned_and_flagged(tmp_path, make):
    real = make()  # records no imaging_profile, as a DICOM or NIfTI study
    with pytest.warns(SimulatedCalibrationWarning, match="records no imaging profile"):
        result = MilanWorkflow().run(real)
    flags = result.voi_dose.set_index("voi_kind")["flags"]
    assert RC_SIMULATED_CAMERA_FLAG in flags["lesion"].split(";")
    assert RC_SIMULATED_CAMERA_FLAG not in flags["organ"] + flags["body"]
    assert "not the camera that acquired the study" in result.provenance["rc_curve"]
    # the token is one of the schema's: the written file validates
    schema.write_results({"voi_dose": result.voi_dose}, tmp_path / "out", basename="r")
    assert schema.validate_path(tmp_path / "out") == []


def test_no_label_with_a_measured_table_or_on_a_simulated_camera_study(tmp_path, make):
    path = _table(tmp_path, "volume_ml,rc\n0.1,0.3\n1,0.6\n")
    cases = [
        (MilanWorkflow(rc_table=str(path)), make()),  # real data, measured curve
        (MilanWorkflow(), make(imaging_profile="milan")),  # imaged by that camera
        (MilanWorkflow(rc_source="gaussian_psf"), make()),  # the oracle, asked for
    ]
    for adapter, study in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("error", SimulatedCalibrationWarning)
            result = adapter.run(study)
        assert not result.voi_dose["flags"].str.contains(RC_SIMULATED_CAMERA_FLAG).any()
        assert "not the camera" not in result.provenance.get("rc_curve", "")


# -- command line -----------------------------------------------------------------------------


@pytest.fixture
def real_cohort(tmp_path, make):
    folder = tmp_path / "cohort"
    folder.mkdir()
    hz.save_study(make(), folder / "P001_c1.nc")
    return folder


def _run(cohort, out, *extra: str) -> int:
    return main(["run", "--workflow", "milan", "--cohort", str(cohort), "--out", str(out),
                 "--quiet", *extra])  # fmt: skip


def test_cli_set_rc_table_runs_and_records_the_hash(real_cohort, tmp_path, capsys):
    path = _table(tmp_path, "volume_ml,rc\n0.1,0.3\n1,0.6\n")
    out = tmp_path / "out"
    assert _run(real_cohort, out, "--set", f"milan.rc_table={path}") == 0
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    run = pd.read_parquet(next((out / "run").rglob("*.parquet")))
    parameters = json.loads(run["parameters_json"].iloc[0])
    assert parameters["rc_table"] == {"file": "rc.csv", "sha256": sha}
    assert str(tmp_path) not in run["parameters_json"].iloc[0] + run["overrides_json"].iloc[0]
    manifest = runfolder.read_manifest(out)
    assert manifest["workflows"]["milan"]["parameters"]["rc_table"]["sha256"] == sha
    voi = pd.read_parquet(next((out / "voi_dose").rglob("*.parquet")))
    lesion = voi[voi["voi_kind"] == "lesion"]
    assert lesion["recovery_coefficient"].iloc[0] == pytest.approx(0.3 + 0.3 * math.log10(1.8))
    assert schema.validate_path(out) == []
    assert not (out / "calibration").exists()  # no simulated phantom used or measured
    # the same table again: nothing to do; a table changed at the same path: refused
    assert _run(real_cohort, out, "--set", f"milan.rc_table={path}") == 0
    path.write_text("volume_ml,rc\n0.1,0.35\n1,0.6\n", encoding="utf-8")
    capsys.readouterr()
    assert _run(real_cohort, out, "--set", f"milan.rc_table={path}") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_cli_bad_table_exits_2_naming_the_file_and_writes_nothing(real_cohort, tmp_path, capsys):
    path = _table(tmp_path, "volume_ml,rc\n0.1,0.3\n1,oops\n")
    out = tmp_path / "out"
    assert _run(real_cohort, out, "--set", f"milan.rc_table={path}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--set milan.rc_table=" in err[0]
    assert f"{path}, line 3, column 'rc': expected a finite number, got 'oops'" in err[0]
    assert not out.exists()
