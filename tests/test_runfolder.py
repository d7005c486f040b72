"""Runs as transactions: run-folder semantics, lock, stale temporaries, manifest, SIGKILL.

Reproducers of issue 12: ``run --save-maps dicom`` could not be repeated (FileExistsError,
exit 1); incomplete or mixed folders validated clean; a killed ``save_study`` left hidden
``.tmp`` files; one truncated bundle made ``run`` exit 2 and write nothing. Issue 10 item 6:
a folder of other parameters → one error naming ``--overwrite`` (exit 2); ``--overwrite``
leaves no stale file; another cohort's folder refused unless ``--append``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from harmonize import runfolder, schema
from harmonize.cli import main
from harmonize.phantom import PhantomConfig, write_cohort

TINY = PhantomConfig(
    voxel_size_mm=9.28, fov_mm=(185.6, 259.84, 371.2), cycles=(1,), n_lesions=(1, 2)
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, seed=0, config=TINY)


@pytest.fixture(scope="module")
def other_cohort(tmp_path_factory):
    """Another cohort: one patient of another seed, pseudonym Q001 (no truth table)."""
    import harmonize as hz

    source = write_cohort(tmp_path_factory.mktemp("seed5"), n_patients=1, seed=5, config=TINY)
    study = hz.open_study(sorted(source.rglob("*.nc"))[0])
    study.attrs["patient_id"] = "Q001"
    folder = tmp_path_factory.mktemp("other")
    hz.save_study(study, folder / "Q001_c1.nc")
    return folder


def _run(cohort, out, *extra):
    return main(["run", "--workflow", "milan", "--cohort", str(cohort), "--out", str(out),
                 "--quiet", *extra])  # fmt: skip


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != runfolder.LOCK_NAME
    }


def test_rerun_of_a_finished_run_completes_and_changes_nothing(cohort, tmp_path):
    out = tmp_path / "out"
    assert _run(cohort, out) == 0
    first = _digests(out)
    manifest = runfolder.read_manifest(out)
    assert manifest["status"] == "complete"
    listed = set(manifest["files"])
    assert listed == {k for k in first if not k.startswith("_")}
    assert all(len(r["sha256"]) == 64 for r in manifest["files"].values())
    assert _run(cohort, out) == 0
    assert _digests(out) == first
    assert schema.validate_path(out) == []


def test_other_parameters_are_one_up_front_error_naming_overwrite(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(cohort, out) == 0
    before = _digests(out)
    capsys.readouterr()
    assert _run(cohort, out, "--set", "milan.rc_min=0.5") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "overwrite=True" not in err
    assert "other parameters" in err and err.count("\n") == 1  # one message, not per study
    assert _digests(out) == before  # nothing written


def test_overwrite_replaces_the_workflow_files_leaving_no_stale_file(
    cohort, other_cohort, tmp_path
):
    out = tmp_path / "out"
    assert _run(cohort, out) == 0
    assert _run(other_cohort, out, "--set", "milan.rc_min=0.5", "--overwrite") == 0
    milan = [k for k in _digests(out) if "workflow=milan" in k]
    # only the new cohort's patient is left: P001/P002's milan files are gone, not stale
    assert milan and all("Q001" in k for k in milan), milan
    voi = schema.read_results(out)["voi_dose"]
    assert set(voi.loc[voi["workflow"] == "milan", "patient_id"]) == {"Q001"}
    assert schema.validate_path(out) == []


def test_another_cohort_is_refused_unless_append(cohort, other_cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(cohort, out) == 0
    capsys.readouterr()
    assert _run(other_cohort, out) == 2
    err = capsys.readouterr().err
    assert "other inputs" in err and "--append" in err
    assert _run(other_cohort, out, "--append") == 0
    voi = schema.read_results(out)["voi_dose"]
    assert voi["patient_id"].nunique() == 3
    assert schema.validate_path(out) == []


def test_a_second_run_into_a_locked_folder_exits_2(cohort, tmp_path, capsys):
    from filelock import FileLock

    out = tmp_path / "out"
    out.mkdir()
    with FileLock(str(out / runfolder.LOCK_NAME)):
        assert _run(cohort, out) == 2
    assert "another harmonize run is writing into this folder" in capsys.readouterr().err


def test_stale_temporary_files_are_removed(cohort, tmp_path):
    out = tmp_path / "out"
    stale = out / "voi_dose" / "workflow=milan" / ".P001_c1.parquet.abc123.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    assert _run(cohort, out, "--overwrite") == 0
    assert not stale.exists()


def test_one_truncated_bundle_fails_itself_only(cohort, tmp_path, capsys):
    broken = tmp_path / "cohort"
    shutil.copytree(cohort, broken)
    victim = sorted(broken.rglob("*.nc"))[0]
    victim.write_bytes(victim.read_bytes()[:1000])
    out = tmp_path / "out"
    assert _run(broken, out) == 1
    assert victim.name in capsys.readouterr().err
    voi = schema.read_results(out)["voi_dose"]
    assert voi[voi["workflow"] == "milan"]["patient_id"].nunique() == 1


def test_validate_reports_unfinished_runs_and_unlisted_or_missing_files(cohort, tmp_path):
    out = tmp_path / "out"
    assert _run(cohort, out) == 0
    manifest = runfolder.read_manifest(out)
    listed = sorted(manifest["files"])
    (out / listed[0]).unlink()
    extra = out / "voi_dose" / "workflow=milan" / "PZZZ_c1.parquet"
    shutil.copy(out / listed[-1], extra)
    problems = schema.validate_path(out)
    assert any("listed in the run manifest but missing" in p for p in problems)
    assert any("not listed in the run manifest" in p for p in problems)
    runfolder.write_manifest(out, {**manifest, "status": "running"})
    assert any("did not finish" in p for p in schema.validate_path(out))


# -- SIGKILL -----------------------------------------------------------------------------------
def _cli(cohort, out):
    return [sys.executable, "-m", "harmonize.cli", "run", "--workflow", "bordet", "--cohort",
            str(cohort), "--out", str(out), "--save-maps", "dicom", "--quiet"]  # fmt: skip


def _files(out):
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


@pytest.fixture(scope="module")
def one_patient(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("one"), n_patients=1, seed=0, config=TINY)


@pytest.mark.slow
def test_sigkill_then_rerun_gives_the_files_of_an_uninterrupted_run(one_patient, tmp_path):
    """Kill ``harmonize run --save-maps dicom`` at several points, re-run the same command:
    the folder is byte-identical to an uninterrupted run's (lock file aside)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    reference = tmp_path / "reference"
    cohort = one_patient
    subprocess.run(_cli(cohort, reference), check=True, env=env)
    expected = _digests(reference)
    assert any(k.endswith(".dcm") for k in expected)
    # kill points: as soon as the folder exists (lock, running manifest), after some files
    for i, n_files in enumerate((0, 3)):
        out = tmp_path / f"killed{i}"
        proc = subprocess.Popen(_cli(cohort, out), env=env)
        deadline = time.monotonic() + 600
        while len(_files(out)) <= n_files and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if n_files and proc.returncode == 0:
            continue  # finished before the kill point: nothing to resume
        manifest = runfolder.read_manifest(out)
        if manifest is not None and len(_files(out)) > 2:
            assert manifest["status"] == "running"
            assert any("did not finish" in p for p in schema.validate_path(out))
        subprocess.run(_cli(cohort, out), check=True, env=env)
        assert _digests(out) == expected, f"kill point {i}"
        assert not [p for p in _files(out) if p.name.endswith(".tmp")]
        assert json.loads((out / runfolder.MANIFEST_NAME).read_text())["status"] == "complete"
