"""Cohort throughput: thread shares of the workers, parallel patient indices, same bytes.

The speed itself is measured in ``benchmarks/bench_workflows.py`` (never asserted here);
these tests pin what the parallel run must keep: the files of 1 and 2 workers are identical
byte for byte (patient indices included, whose Monte Carlo is drawn per workflow with one
seed), a study that fails fails alone, and each worker's voxel work runs on its share of
the cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from threadpoolctl import threadpool_info

from harmonize import dose
from harmonize._threads import THREADS_ENV, available_cores, pinned, thread_share
from harmonize.cohort import bundle_attrs, open_cohort
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.runner import _run_study, _worker_threads, run_cohort
from harmonize.workflow import WorkflowAdapter
from workflows.milan import MilanWorkflow

# 20 × 28 × 40 voxels of 9.28 mm (a tabulated kernel size), 2 patients × 2 cycles
SMALL = PhantomConfig(
    voxel_size_mm=9.28, fov_mm=(185.6, 259.84, 371.2), cycles=(1, 2), n_lesions=(2, 3)
)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, seed=3, config=SMALL)


def _digests(root):
    """SHA-256 of every file of a results folder (Parquet and the run manifest)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_one_and_two_workers_write_identical_files_with_a_failing_study(cohort_dir, tmp_path):
    # the cohort is listed, then one bundle is damaged: its study task fails every adapter
    # with one reason, the other studies and every workflow's patient indices are written
    folder = tmp_path / "cohort"
    shutil.copytree(cohort_dir, folder)
    cohort = open_cohort(folder)
    assert len(cohort) == 4
    (folder / "P002_C2.nc").write_bytes(b"not a bundle")
    one = run_cohort(cohort, "all", tmp_path / "one", workers=1)
    two = run_cohort(cohort, "all", tmp_path / "two", workers=2)
    assert one.failures == two.failures
    assert {(f.patient_id, f.cycle) for f in one.failures} == {("P002", 2)}
    assert {f.workflow for f in one.failures} == {"montpellier", "bordet", "milan"}
    assert len({f.reason for f in one.failures}) == 1 and "P002_C2.nc" in one.failures[0].reason
    assert one.n_runs == two.n_runs == 12
    digests = _digests(tmp_path / "one")
    assert digests == _digests(tmp_path / "two")
    assert "_harmonize_manifest.json" in digests
    index_files = [k for k in digests if k.startswith("patient_index/")]
    # truth + 3 workflows, each with one file per patient (P002 from its cycle 1 alone)
    assert len(index_files) == 4 * 2
    assert [p.relative_to(tmp_path / "one") for p in one.files] == [
        p.relative_to(tmp_path / "two") for p in two.files
    ]


class _Probe(WorkflowAdapter):
    """Fails on purpose, reporting the threads its process may use for voxel work."""

    name = "probe"
    Config = MilanWorkflow.Config

    def run(self, study: xr.Dataset):  # type: ignore[override]
        blas = max((p["num_threads"] for p in threadpool_info()), default=0)
        raise RuntimeError(
            f"threads={os.environ.get(THREADS_ENV)} share={thread_share()} blas={blas}"
        )


def test_worker_task_is_pinned_to_its_share_and_restores(cohort_dir, tmp_path, monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    source = open_cohort(cohort_dir).paths[("P001", 1)]
    (result,) = _run_study(source, [_Probe()], str(tmp_path), False, None, threads=1)
    assert not result["ok"]
    assert "threads=1 share=1" in result["reason"]
    if threadpool_info():  # a BLAS/OpenMP pool is loaded (numpy's OpenBLAS): capped too
        assert "blas=1" in result["reason"]
    assert THREADS_ENV not in os.environ  # the process's setting is restored after the task
    # in-process (one worker): no pinning, every core
    (result,) = _run_study(source, [_Probe()], str(tmp_path), False, None, threads=None)
    assert f"threads=None share={available_cores()}" in result["reason"]


def test_a_workflow_imaging_some_cycles_waits_for_those_studies_only(cohort_dir, tmp_path):
    # Milan images cycles 1 and 4: its patient-index task depends on the cycle-1 studies
    # of this cohort only (so it can run while the cycle-2 studies do) and writes the
    # same bytes as from every study's results; packed results (worker processes) too
    from harmonize.runner import _needed, _workflow_indices

    cohort = open_cohort(cohort_dir)
    milan = MilanWorkflow()
    imaged = milan.config.imaged_cycles
    assert set(imaged) == {1, 4}
    keys = list(cohort.paths)
    assert _needed(keys, cohort, imaged) == [k for k in keys if k[1] == 1]
    assert _needed(keys, cohort, None) == keys
    per_study = [
        _run_study(source, [milan], str(tmp_path / "studies"), False, pack=True)
        for source in cohort.paths.values()
    ]
    args = ("milan", 0)
    rest = (milan.cumulative_rule, imaged, 4)
    every, _ = _workflow_indices(*args, per_study, *rest, str(tmp_path / "every"), False)
    subset = _needed(per_study, cohort, imaged)
    assert len(subset) == 2
    needed, _ = _workflow_indices(*args, subset, *rest, str(tmp_path / "needed"), False)
    assert len(every) == len(needed) == 2  # one patient_index file per patient
    assert _digests(tmp_path / "every") == _digests(tmp_path / "needed")


def test_thread_shares():
    cores = available_cores()
    assert _worker_threads(1, None) is None  # one worker: this process, every core
    assert _worker_threads(2, None) == max(1, cores // 2)
    assert _worker_threads(4 * cores, None) == 1
    assert _worker_threads(2, "tcp://cluster:8786") is None  # cluster workers size themselves
    with pinned(3):
        assert thread_share() == 3
    with pytest.raises(ValueError, match="positive integer"):
        with pinned(0):
            pass
    # the voxel fit, where it is threaded, reads the same variable
    from harmonize.kinetics import voxel

    assert getattr(voxel, "THREADS_ENV", THREADS_ENV) == THREADS_ENV


def test_fft_threads_do_not_change_the_dose():
    # the default (every core) and one thread give the same bits: pocketfft only splits
    # the independent 1-D transforms between threads
    tia = np.random.default_rng(0).uniform(0.0, 1.0, (23, 30, 41))
    one = dose.convolve_kernel(tia, 4.8, workers=1)
    assert np.array_equal(dose.convolve_kernel(tia, 4.8), one)
    with pinned(1):
        assert np.array_equal(dose.convolve_kernel(tia, 4.8), one)
    assert np.array_equal(dose.convolve_kernel(tia, 4.8, workers=2), one)


def test_bundle_attrs_match_xarray(cohort_dir):
    for path in sorted(cohort_dir.glob("*.nc")):
        with xr.open_dataset(path, engine="h5netcdf") as handle:
            expected = dict(handle.attrs)
        got = bundle_attrs(path)
        # CF decoding moves the global "coordinates" attribute into xarray's encoding
        assert got.keys() - {"coordinates"} == expected.keys()
        assert {"patient_id", "cycle"} <= expected.keys()
        for key, value in expected.items():
            assert type(got[key]) is type(value), key
            assert np.array_equal(got[key], value), key


def test_bundle_attrs_are_read_again_when_the_file_changes(cohort_dir, tmp_path):
    # the attributes are cached per version of the file (the PHI gate reads them): a
    # bundle replaced by another, even of the same size, is read again; callers get copies
    import harmonize as hz

    path = tmp_path / "s.nc"
    shutil.copy(sorted(cohort_dir.glob("*.nc"))[0], path)
    first = bundle_attrs(path)
    first["patient_id"] = "changed by the caller"
    assert bundle_attrs(path)["patient_id"] != "changed by the caller"
    study = hz.open_study(path)
    study.attrs["identified"] = 1
    before = os.stat(path)
    hz.save_study(study, path, overwrite=True, allow_identified=True)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # even the same time stamp
    assert bundle_attrs(path)["identified"] == 1


def test_calibration_tables_measured_ahead_are_the_ones_the_run_writes(cohort_dir, tmp_path):
    # the run measures, while the studies run, the calibration tables the bundles'
    # attributes announce; they are exactly the tables written after the studies
    from harmonize.calibration import (
        CALIBRATION_DIR,
        _voxel_tag,
        calibration_table,
        write_calibration,
    )
    from harmonize.runner import _adapters, _expected_calibration

    cohort = open_cohort(cohort_dir)
    run_cohort(cohort, "all", tmp_path / "res", workers=1)
    written = sorted(p.name for p in (tmp_path / "res" / CALIBRATION_DIR).glob("*.parquet"))
    expected = _expected_calibration(cohort, _adapters("all", None))
    assert expected  # Milan's recovery curve comes from a calibration phantom by default
    names = sorted(f"{p}_{m}_{_voxel_tag(v)}mm.parquet" for p, m, v in expected)
    assert names == [name for name in written if name != "used_by.parquet"]
    # a table given to write_calibration is written as given, not measured again
    key = sorted(expected)[0]
    table = calibration_table(key[0], key[2], key[1]).assign(curve_source="given")
    files = write_calibration(tmp_path / "other", [(*key, "test")], tables={key: table})
    given = [f for f in files if f.name.startswith(f"{key[0]}_{key[1]}_")]
    assert len(given) == 1 and set(pd.read_parquet(given[0])["curve_source"]) == {"given"}
