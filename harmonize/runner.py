"""Run workflow adapters over a cohort with Dask and write the common Parquet dataset.

A cohort is a list of independent studies, so the work is an embarrassingly parallel map
over studies. Locally Dask's multiprocessing scheduler runs it on ``workers`` forked
processes, one task at a time each, every process pinned to its share of the cores
(:mod:`harmonize._threads`; ``workers=1`` runs in this process and uses every core for
the threaded voxel work); with ``scheduler="tcp://host:8786"`` the tasks go to a
``dask.distributed`` cluster. One task per study opens it from disk once (only paths
travel to the workers) and runs every adapter on its own copy; each writes its own files
and returns its small ``voi_dose`` and ``uncertainty`` tables. One task per workflow then
computes and writes that workflow's patient indices, in parallel with the others (the
truth's runs while the studies do); each calibration table of the profiles used is
measured by a task of its own, handed out before the studies (costliest first), so that
the run ends on the short index tasks rather than on a phantom simulation, and this
process writes them once the studies have said which profiles they used:

* ``OUT/voi_dose/workflow=NAME/<patient>_c<cycle>.parquet``, likewise ``tac``, ``run`` and,
  for adapters with a voxel dose map, ``dvh``;
* ``OUT/patient_index/workflow=NAME/<patient>.parquet`` — computed from all cycles of the
  patient in this run with the adapter's cumulative rule.

The files are the same bytes whatever the number of workers.

File names are deterministic, so a re-run replaces its own files instead of adding rows,
and runs of other workflows, patients or centres merge into the same dataset without
coordination. A failing study is reported with its id and reason; the others complete.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import pickle
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harmonize import indices, runfolder, schema
from harmonize._fs import write_bytes_atomic
from harmonize.cohort import Cohort, SkippedInput, open_cohort
from harmonize.registry import get_workflow, list_workflows
from harmonize.workflow import WorkflowAdapter

__all__ = ["RunFailure", "RunReport", "run_cohort", "truth_tables"]

TRUTH_WORKFLOW = "truth"


@dataclass(frozen=True)
class RunFailure:
    """One (study, workflow) that failed, with the reason."""

    patient_id: str
    cycle: int
    workflow: str
    reason: str


@dataclass
class RunReport:
    """What a run did: files written, failures, and the tables in memory."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    failures: list[RunFailure] = field(default_factory=list)
    n_runs: int = 0
    #: Entries of the cohort folder no study uses, with the reason (:attr:`Cohort.skipped`):
    #: relative paths, which the caller prints; the manifest records only their counts.
    skipped: list[SkippedInput] = field(default_factory=list)
    #: The manifest records (relative path → SHA-256, rows) the worker tasks computed for
    #: the files they wrote, so the caller does not read every file again.
    _records: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when every (study, workflow) succeeded."""
        return not self.failures


def _adapters(
    workflows: str | Sequence[str | WorkflowAdapter],
    overrides: Mapping[str, Mapping[str, str]] | None,
) -> list[WorkflowAdapter]:
    if isinstance(workflows, str):
        names: list[str | WorkflowAdapter] = (
            list(list_workflows())
            if workflows == "all"
            else [w.strip() for w in workflows.split(",")]
        )
    else:
        names = list(workflows)
    out = []
    overrides = overrides or {}
    for item in names:
        if isinstance(item, WorkflowAdapter):
            out.append(item)
            continue
        if item == TRUTH_WORKFLOW:
            continue
        cls = get_workflow(item)
        out.append(cls(**dict(overrides.get(item, {}))))
    return out


def _run_one(
    study: Any,
    adapter: WorkflowAdapter,
    out: str,
    overwrite: bool,
    save_maps: str | None = None,
) -> dict[str, Any]:
    """Run one adapter on an opened study and write its files; never raises.

    Each (study, adapter) writes its own ``voi_dose``/``tac``/``run`` (and ``dvh``,
    ``uncertainty``) files (distinct names per study and workflow), so writing is parallel
    too; only the small ``voi_dose`` and ``uncertainty`` tables travel back for the patient
    indices (``"tables"``).
    """
    try:
        result = adapter.run(study)
        patient_id, cycle = str(study.attrs["patient_id"]), int(study.attrs["cycle"])
        prov = result.provenance
        tables = {
            "voi_dose": result.voi_dose,
            "tac": result.tac,
            "run": _run_row(result.voi_dose, prov),
        }
        if len(result.dvh):  # adapters with voxel doses only (not the sphere model)
            tables["dvh"] = result.dvh
        if len(result.uncertainty):  # adapters that compute an uncertainty budget
            tables["uncertainty"] = result.uncertainty
        meta = {k: prov[k] for k in ("workflow", "input_sha256", "software")}
        files = schema.write_results(
            tables, Path(out), metadata=meta, basename=f"{patient_id}_c{cycle}", overwrite=overwrite
        )
        if save_maps and result.dose_map_gy is not None:
            files.append(
                _write_map(result.dose_map_gy, study, Path(out), adapter.name, save_maps, overwrite)
            )
        return {
            "ok": True,
            "tables": (result.voi_dose, result.uncertainty),
            "files": files,
            "records": _records(files, Path(out)),
            "calibration": _calibration_used(study, adapter),
        }
    except Exception as exc:  # reported per study; the other studies go on
        return {"ok": False, "reason": _reason(exc)}


def _records(files: Sequence[Path], out: Path) -> dict[str, dict[str, Any]]:
    """Manifest records of files this task wrote (hashed where the files were written)."""
    return dict(runfolder.file_record(Path(f), out) for f in files)


def _record(
    path: Path, out: Path, known: Mapping[str, dict[str, Any]]
) -> tuple[str, dict[str, Any]]:
    """A file's manifest record: the one its task computed, else read from the file."""
    rel = path.relative_to(out).as_posix()
    return (rel, known[rel]) if rel in known else runfolder.file_record(path, out)


def _reason(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _run_study(
    source: Any,
    adapters: Sequence[WorkflowAdapter],
    out: str,
    overwrite: bool,
    save_maps: str | None = None,
    threads: int | None = None,
    key: bytes | None = None,
    pack: bool = False,
) -> list[dict[str, Any]]:
    """Worker task: open one study once and run every adapter on it; never raises.

    The study is opened (and its content hash verified) once, and each adapter gets its
    own deep copy, so an adapter sees exactly what a fresh ``open_source`` gives. Returns
    one :func:`_run_one` result per adapter, in order; a study that cannot be opened fails
    every adapter with the same reason. In a worker process (``threads`` given) the voxel
    work is pinned to the worker's share of the cores (:func:`harmonize._threads.pinned`).

    With ``pack`` each adapter's ``"tables"`` are pickled here, in the worker: Dask sends
    every study result to each task that depends on it, and each workflow's patient-index
    task then unpickles only its own workflow's tables (:func:`_unpack`), while the
    scheduling process forwards bytes instead of pickling and unpickling every table.
    """
    results: list[dict[str, Any]] = _in_share(
        threads, _run_adapters, source, adapters, out, overwrite, save_maps, key
    )
    if pack:
        for result in results:
            if "tables" in result:
                result["tables"] = pickle.dumps(result["tables"], pickle.HIGHEST_PROTOCOL)
    return results


def _unpack(tables: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A study result's ``(voi_dose, uncertainty)``, unpickled if :func:`_run_study` packed it."""
    if isinstance(tables, bytes):
        tables = pickle.loads(tables)  # bytes our own worker task pickled
    voi_dose, uncertainty = tables
    return voi_dose, uncertainty


def _run_adapters(
    source: Any,
    adapters: Sequence[WorkflowAdapter],
    out: str,
    overwrite: bool,
    save_maps: str | None,
    key: bytes | None,
) -> list[dict[str, Any]]:
    from harmonize.cohort import open_source

    try:
        study = _pseudonymised(open_source(source), key)
    except Exception as exc:  # every adapter of this study fails with the same reason
        failed = {"ok": False, "reason": _reason(exc)}
        return [dict(failed) for _ in adapters]
    return [_run_one(study.copy(deep=True), a, out, overwrite, save_maps) for a in adapters]


def _pseudonymised(study: Any, key: bytes | None) -> Any:
    """A study that still carries an original patient ID is de-identified with the key, or refused.

    DICOM read without de-identification (no ``PatientIdentityRemoved = YES``, no sidecar
    pseudonym) is flagged ``identified`` by the reader. Results never carry such data: with
    a key the study goes through :func:`harmonize.deid.deidentify_study` (the keyed
    pseudonym ``harmonize deidentify`` gives, VOI names that are not anatomical words
    replaced, centre pseudonymised); without one the study is not processed.
    """
    if not study.attrs.get("identified"):
        return study
    if key is None:
        raise PermissionError(
            "the study carries the original patient ID (DICOM not de-identified): run "
            "'harmonize deidentify' first, or pass a pseudonymisation key (--key KEYFILE)"
        )
    from harmonize.deid import deidentify_study

    return deidentify_study(study, key)


def _calibration_used(study: Any, adapter: WorkflowAdapter) -> list[tuple[str, str, float, str]]:
    """(profile, mode, voxel side, user) of the centre profiles this task used.

    The camera that imaged the study (a shipped profile; calibrated in fast mode) and the
    calibration phantom an adapter took its RC curve from (``calibration_phantom``).
    """
    from harmonize.imaging import available_profiles
    from harmonize.study import voxel_size_mm

    used = []
    profile = str(study.attrs.get("imaging_profile", ""))
    if profile in available_profiles():
        side = round(math.prod(voxel_size_mm(study)) ** (1.0 / 3.0), 4)
        used.append((profile, "fast", side, "studies"))
    hook = getattr(adapter, "calibration_phantom", None)
    phantom = hook(study) if callable(hook) else None
    if phantom is not None:
        used.append((str(phantom[0]), str(phantom[1]), float(phantom[2]), adapter.name))
    return used


def _worker_threads(workers: int, scheduler: str | None) -> int | None:
    """Threads of each local worker process (its share of the cores); None in-process."""
    if scheduler or workers <= 1:
        return None  # one process uses every core; a cluster's workers size themselves
    from harmonize._threads import available_cores

    return max(1, available_cores() // workers)


def _compute(delayed: list[Any], workers: int, scheduler: str | None, progress: int) -> list[Any]:
    """Compute dask tasks: in this process, in ``workers`` local processes, or on a cluster.

    ``progress``: 0 for none, else the number of study tasks a progress bar counts.
    """
    if scheduler:
        from distributed import Client

        with Client(scheduler) as client:
            futures = client.compute(delayed)
            if progress:
                from distributed import progress as dprogress

                dprogress(futures)
            return list(client.gather(futures))
    mode = "processes" if workers > 1 else "synchronous"
    # Local processes are forked where the OS can (Linux): a spawned worker re-imports
    # numpy/scipy/xarray/harmonize (≈ 2 s each) and re-runs an unguarded user script;
    # on 2 cores a 10-study cohort ran 1.05× faster with 2 spawned workers, 1.5× forked.
    if mode == "processes" and "fork" in multiprocessing.get_all_start_methods():
        import dask

        with dask.config.set({"multiprocessing.context": "fork"}):
            return _local_compute(delayed, mode, workers, progress)
    return _local_compute(delayed, mode, workers, progress)


def _local_compute(delayed: list[Any], mode: str, workers: int, progress: int) -> list[Any]:
    import dask

    # one task at a time to each process: dask's multiprocessing default (chunksize 6)
    # hands 10 ready studies to 2 workers as batches of 6 and 4, capping the speed-up at 1.67
    options: dict[str, Any] = {"chunksize": 1} if mode == "processes" else {}
    if mode == "processes":
        # the workers start from this process: threadpoolctl, which pins each worker task
        # to its share, is loaded once here (≈ 40 ms every worker's first task paid)
        from threadpoolctl import threadpool_info

        threadpool_info()
    if progress:
        from harmonize._progress import DaskRichProgress

        with DaskRichProgress("run", progress, "_run_study"):
            return list(dask.compute(*delayed, scheduler=mode, num_workers=workers, **options))
    return list(dask.compute(*delayed, scheduler=mode, num_workers=workers, **options))


def _run_row(voi_dose: pd.DataFrame, prov: dict[str, Any]) -> pd.DataFrame:
    first = voi_dose.iloc[0]
    return pd.DataFrame(
        {
            "patient_id": [first["patient_id"]],
            "cycle": [int(first["cycle"])],
            "workflow": [prov["workflow"]["name"]],
            "workflow_version": [prov["workflow"]["version"]],
            "schema_version": [schema.SCHEMA_VERSION],
            "parameters_json": [json.dumps(prov["workflow"]["parameters"], sort_keys=True)],
            "overrides_json": [json.dumps(prov["workflow"]["overrides"], sort_keys=True)],
            "input_sha256": [prov["input_sha256"]],
            "software_json": [json.dumps(prov["software"], sort_keys=True)],
        }
    )


def _with_index_uncertainty(
    index: pd.DataFrame, voi_dose: pd.DataFrame, budget: pd.DataFrame, rule: str, planned: int
) -> pd.DataFrame:
    """Patient indices with their standard uncertainties (Monte Carlo, seeded per workflow)."""
    from harmonize.uncertainty import patient_index_uncertainty

    budget = budget[budget["cycle"].isin(voi_dose["cycle"].unique())]
    u = patient_index_uncertainty(
        voi_dose,
        budget,
        lambda frame: indices.patient_index(frame, cumulative_rule=rule, planned_cycles=planned),
    )
    if u.empty:
        return index
    return index.merge(u, on=["patient_id", "cycle", "workflow"], how="left")


def _write_map(
    dose_gy: Any, study: Any, out: Path, workflow: str, fmt: str, overwrite: bool
) -> Path:
    from harmonize.io import write_dose_map

    suffix = ".dcm" if fmt == "dicom" else ".nii.gz"
    name = f"{study.attrs['patient_id']}_c{int(study.attrs['cycle'])}{suffix}"
    path = out / "dose_maps" / workflow / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # written to a hidden temporary name, then through the shared atomic writer: an identical
    # map from a re-run is kept, a different one is replaced only with overwrite
    tmp = path.with_name(f".{name}.{os.getpid()}.map{suffix}")
    try:
        write_dose_map(dose_gy, study, tmp, format=fmt, overwrite=True)
        data = tmp.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return write_bytes_atomic(path, data, overwrite)


def _planned_cycles(cohort: Cohort, planned_cycles: int | None) -> int:
    """The planned number of cycles: given, else the phantom truth's, else 4 (or more)."""
    highest = max((int(c) for _, c in cohort.paths), default=1)
    if planned_cycles is not None:
        if isinstance(planned_cycles, bool) or int(planned_cycles) < 1:
            raise ValueError(f"planned_cycles must be an integer >= 1, got {planned_cycles!r}")
        if highest > int(planned_cycles):
            raise ValueError(
                f"cohort {cohort.root} holds cycle {highest} but --planned-cycles is "
                f"{planned_cycles}: the plan must cover every cycle"
            )
        return int(planned_cycles)
    if cohort.truth is not None and len(cohort.truth):
        highest = max(highest, int(cohort.truth["cycle"].max()))
    return max(indices.DEFAULT_PLANNED_CYCLES, highest)


def truth_tables(cohort: Cohort, *, imaged_only: bool = True) -> pd.DataFrame:
    """The phantom's ground truth as ``voi_dose`` rows of a workflow named ``truth``.

    With ``imaged_only`` (default) only the cycles that have a study; otherwise every
    cycle of the truth table (a phantom cohort holds the truth of every planned cycle,
    column ``imaged``).
    """
    if cohort.truth is None:
        raise ValueError(f"cohort {cohort.root} has no truth table")
    t = cohort.truth
    if imaged_only and "imaged" in t.columns:
        t = t.loc[t["imaged"].astype(bool)].reset_index(drop=True)
    nan = float("nan")
    return pd.DataFrame(
        {
            "patient_id": t["patient_id"].astype(str),
            "cycle": t["cycle"].astype("int32"),
            "center": "phantom",
            "workflow": TRUTH_WORKFLOW,
            "workflow_version": "1",
            "voi_id": t["voi_id"].astype("int32"),
            "voi_name": t["voi_name"].astype(str),
            "voi_kind": t["voi_kind"].astype(str),
            "parent_voi_id": pd.array(
                t["parent_voi_id"].where(t["parent_voi_id"] > 0), dtype="Int32"
            ),
            "volume_ml": t["volume_ml"].astype(float),
            "mass_g": t["mass_g"].astype(float),
            "tia_mbq_h": t["tia_mbq_h"].astype(float),
            "tia_coefficient_h": (t["tia_mbq_h"] / t["injected_activity_mbq"]).astype(float),
            "tac_model": "truth:biexp_uptake",
            # the truth is analytic; this is the number of images the phantom rendered
            "n_time_points": t["n_time_points"].astype("int32"),
            "dose_mean_gy": t["dose_mean_gy"].astype(float),
            **{
                c: nan
                for c in (
                    "dose_min_gy",
                    "dose_median_gy",
                    "dose_max_gy",
                    "dose_d2_gy",
                    "dose_d50_gy",
                    "dose_d98_gy",
                    "fit_r2",
                    "fit_aicc",
                    "recovery_coefficient",
                )
            },
            "flags": "",
        }
    )


def run_cohort(
    cohort: Cohort | str | os.PathLike[str],
    workflows: str | Sequence[str | WorkflowAdapter],
    out_dir: str | os.PathLike[str],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    overrides: Mapping[str, Mapping[str, str]] | None = None,
    include_truth: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    save_maps: str | None = None,
    key: bytes | None = None,
    append: bool = False,
    planned_cycles: int | None = None,
) -> RunReport:
    """Run adapters over every study of a cohort and write the results dataset.

    The run is a transaction on the folder (:mod:`harmonize.runfolder`): it holds the
    folder's lock, removes stale temporary files, checks up front that the folder holds
    results of the same parameters and inputs (else :class:`~harmonize.runfolder.RunFolderError`
    naming ``--overwrite``/``--append``), and writes a manifest (files, SHA-256, rows,
    status). Re-running the same call after a kill completes the folder.

    Parameters
    ----------
    cohort : Cohort or path
        The studies.
    workflows : "all", a comma-separated string, or a sequence of names/adapters
        Which adapters to run ("all" = every installed one).
    out_dir : path
        Root of the results dataset.
    workers : int
        Local worker processes (1 = in this process).
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler; overrides ``workers``.
    overrides : mapping workflow → {parameter: value}
        Parameter overrides per workflow (recorded in provenance).
    include_truth : bool
        Also write the phantom's truth as workflow ``truth`` when the cohort has one.
    overwrite : bool
        Replace the results of these workflows: all their previous files are removed first
        (results made with other parameters or of another cohort need it).
    append : bool
        Add this cohort's results to a folder holding another cohort's.
    progress : bool
        Show progress.
    key : bytes, optional
        Pseudonymisation key for studies that still carry an original patient ID (DICOM
        not de-identified): their results get :func:`harmonize.deid.pseudonym` ids.
        Without a key such studies are refused before any computation
        (:class:`harmonize.io.phi.IdentifiedStudyError`, naming their folders only); a
        sidecar ``patient_id`` does not make a study de-identified (:mod:`harmonize.io.phi`).
    save_maps : {"dicom", "nifti"}, optional
        Also write each dose map as ``OUT/dose_maps/<workflow>/<patient>_c<cycle>`` (DICOM
        RT Dose or NIfTI) for viewing in the centre's own software.
    planned_cycles : int, optional
        Cycles of the planned treatment, over which every cumulative index is a total
        (:func:`harmonize.indices.patient_index`). Default: the cohort's own (a phantom
        cohort's truth table covers its planned cycles), else
        :data:`harmonize.indices.DEFAULT_PLANNED_CYCLES` (4), or the highest cycle present
        if larger.

    Returns
    -------
    RunReport
        Files written, failures (studies that could not be read or processed), and
        ``skipped``: the entries of the cohort folder no study used, with the reason
        (:attr:`harmonize.cohort.Cohort.skipped`; the manifest records their counts only).
    """
    if save_maps not in (None, "dicom", "nifti"):
        raise ValueError(f"save_maps must be 'dicom', 'nifti' or None, got {save_maps!r}")
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    cohort = cohort if isinstance(cohort, Cohort) else open_cohort(cohort)
    planned = _planned_cycles(cohort, planned_cycles)
    # the PHI gate, before any computation: raw studies are refused without a key (once
    # each, naming the folder only); with a key their failures are reported by pseudonym
    from harmonize.io.phi import require_deidentified

    raw = set(require_deidentified(cohort.paths, key))
    adapters = _adapters(workflows, overrides)
    out = Path(out_dir)
    with runfolder.locked(out):
        runfolder.remove_stale_temporaries(out)
        specs = {
            a.name: {
                "version": a.version,
                "parameters": a.config.to_dict(),
                "overrides": a.overrides,
                # the cumulative indices depend on the planned treatment too
                "planned_cycles": planned,
            }
            for a in adapters
        }
        if include_truth and cohort.truth is not None:
            specs[TRUTH_WORKFLOW] = {
                "version": "1",
                "parameters": {},
                "overrides": {},
                "planned_cycles": planned,
            }
        inputs = runfolder.input_hashes(cohort.paths)
        old = runfolder.check_folder(out, specs, inputs, overwrite=overwrite, append=append)
        old_files: dict[str, Any] = dict(old.get("files", {})) if old else {}
        if overwrite:
            for name in specs:
                runfolder.remove_workflow_files(out, name)
            old_files = {k: v for k, v in old_files.items() if (out / k).is_file()}
        manifest: dict[str, Any] = {
            "format": 1,
            "status": "running",
            "workflows": {**(old.get("workflows", {}) if old else {}), **specs},
            "inputs": sorted({*(old.get("inputs", []) if old and append else []), *inputs}),
            "files": old_files,
        }
        runfolder.write_manifest(out, manifest)
        report = _run_locked(
            cohort, adapters, out, workers, scheduler, include_truth, overwrite, progress,
            save_maps, key, raw, planned,
        )  # fmt: skip
        manifest["files"] = {
            **old_files,
            **dict(_record(Path(f), out, report._records) for f in report.files),
        }
        manifest["failures"] = [
            {"patient_id": f.patient_id, "cycle": f.cycle, "workflow": f.workflow,
             "reason": f.reason}
            for f in report.failures
        ]  # fmt: skip
        # counts per kind only: the file names of a raw DICOM folder may be patient names
        manifest["skipped"] = cohort.skipped_counts()
        manifest["status"] = "complete"
        runfolder.write_manifest(out, manifest)
    return report


def _run_locked(
    cohort: Cohort,
    adapters: list[WorkflowAdapter],
    out: Path,
    workers: int,
    scheduler: str | None,
    include_truth: bool,
    overwrite: bool,
    progress: bool,
    save_maps: str | None,
    key: bytes | None,
    raw: set[tuple[str, int]],
    planned: int,
) -> RunReport:
    """One task graph: a task per study, then a task per workflow for its patient indices.

    Each study task opens its study once and runs every adapter on it; each workflow's
    patient-index task waits for the studies and computes and writes that workflow's
    indices (and their Monte Carlo uncertainty, drawn over all the workflow's patients
    with one seed), so the workflows' indices are computed and written in parallel, and
    the truth's (which needs no study) while the studies run; each calibration table the
    bundles announce is a task, and this process writes the tables of the profiles the
    studies used once the graph has finished. Every file goes through the atomic writer;
    the caller's manifest lists them once the graph has finished.
    """
    import dask

    report = RunReport(out_dir=out, skipped=list(cohort.skipped))
    for path, reason in sorted(cohort.unreadable.items()):
        # a study that cannot even be opened fails alone; the others are written
        for adapter in adapters:
            report.failures.append(RunFailure(Path(path).stem, 0, adapter.name, reason))
    threads = _worker_threads(workers, scheduler)
    # results travel between processes unless one worker runs everything in this one
    pack = bool(scheduler) or workers > 1
    studies = [
        dask.delayed(_run_study, pure=False)(
            source, adapters, str(out), overwrite, save_maps, threads, key, pack
        )
        for source in cohort.paths.values()
    ]
    index_tasks = [
        dask.delayed(_workflow_indices, pure=False)(
            adapter.name,
            position,
            _needed(studies, cohort, getattr(adapter.config, "imaged_cycles", None)),
            adapter.cumulative_rule,
            # a workflow that images only some cycles (Milan: 1 and 4) builds its patient
            # indices from those cycles only, whatever else the cohort holds
            getattr(adapter.config, "imaged_cycles", None),
            planned,
            str(out),
            overwrite,
            threads,
        )
        for position, adapter in enumerate(adapters)
    ]
    if include_truth and cohort.truth is not None:
        index_tasks.append(
            dask.delayed(_truth_files, pure=False)(
                Cohort(cohort.root, {}, cohort.truth), planned, str(out), overwrite, threads
            )
        )
    # each centre profile's calibration phantom (RC curve, calibration factor), for the
    # report: the tables the bundles' attributes announce are measured one task each.
    # Nothing in the graph depends on them (this process writes them after the graph), so
    # Dask hands them out first, like the truth's task: the run then ends on the short index
    # tasks instead of a phantom simulation that keeps one worker busy while the other waits
    # (the graph run with sleeping tasks of the cohort benchmark's measured durations on 2
    # processes, six draws: makespan over half the work, median 1.048 before, 1.033 now).
    # Dask breaks the tie between such equal tasks by key name, the first name first: named
    # by the rank of their expected cost, the costliest goes first (ordering only, never a
    # number)
    token = uuid.uuid4().hex
    measured = [
        dask.delayed(_calibration_tables, pure=False)(
            [wanted], threads, dask_key_name=f"_calibration_tables-{rank:03d}-{token}"
        )
        for rank, wanted in enumerate(
            sorted(_expected_calibration(cohort, adapters), key=_calibration_cost, reverse=True)
        )
    ]
    computed = _compute(
        [*studies, *index_tasks, *measured], workers, scheduler, len(studies) if progress else 0
    )
    n_tasks = len(studies) + len(index_tasks)
    per_study, per_index = computed[: len(studies)], computed[len(studies) : n_tasks]
    # the calibration tables of the profiles the studies used: written here (a table no
    # bundle announced, e.g. a DICOM study's profile, is measured here)
    per_index.append(_calibration_files(per_study, str(out), overwrite, None, computed[n_tasks:]))
    report.n_runs = (len(cohort.paths) + len(cohort.unreadable)) * len(adapters)
    for (patient_id, cycle), results in zip(cohort.paths, per_study, strict=True):
        for adapter, result in zip(adapters, results, strict=True):
            if result["ok"]:
                report.files += result["files"]
                report._records.update(result["records"])
                continue
            shown = patient_id
            if (patient_id, cycle) in raw and key is not None:
                from harmonize.deid import pseudonym

                shown = pseudonym(patient_id, key)
            report.failures.append(RunFailure(shown, cycle, adapter.name, result["reason"]))
    for files, records in per_index:
        report.files += files
        report._records.update(records)
    report.files = sorted(set(report.files))
    return report


def _needed(
    studies: Sequence[Any], cohort: Cohort, imaged_cycles: Sequence[int] | None
) -> list[Any]:
    """The study tasks a workflow's patient indices need, in cohort order.

    All of them, or for a workflow that images only some cycles (Milan: 1 and 4) the
    studies of those cycles: its index task then starts as soon as they are done, while
    the studies of the other cycles still run (the indices ignore those cycles' rows, so
    the result is the same).
    """
    if not imaged_cycles:
        return list(studies)
    wanted = {int(c) for c in imaged_cycles}
    return [task for (_, cycle), task in zip(cohort.paths, studies, strict=True) if cycle in wanted]


def _workflow_indices(
    name: str,
    position: int,
    per_study: list[list[dict[str, Any]]],
    rule: str,
    imaged_cycles: Sequence[int] | None,
    planned: int,
    out: str,
    overwrite: bool,
    threads: int | None = None,
) -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """Worker task: one workflow's patient indices from its studies' results, written.

    ``per_study`` holds the results of the study tasks this workflow needs
    (:func:`_needed`); this workflow's are at ``position``. Returns the files written and
    their manifest records.
    """
    done = [
        _unpack(results[position]["tables"]) for results in per_study if results[position]["ok"]
    ]
    if not done:
        return [], {}
    table = pd.concat([voi_dose for voi_dose, _ in done], ignore_index=True)
    if imaged_cycles:
        table = table[table["cycle"].isin(imaged_cycles)]
        if table.empty:
            return [], {}
    budgets = [budget for _, budget in done if len(budget)]
    budget = pd.concat(budgets, ignore_index=True) if budgets else None
    index = _in_share(threads, _index_table, table, budget, rule, planned)
    files = _write_patient_indices(index, name, rule, Path(out), overwrite)
    return files, _records(files, Path(out))


def _in_share(threads: int | None, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, pinned to ``threads`` threads in a worker process (None: as is)."""
    if threads is None:
        return func(*args)
    from harmonize._threads import pinned

    with pinned(threads):
        return func(*args)


def _expected_calibration(
    cohort: Cohort, adapters: Sequence[WorkflowAdapter]
) -> set[tuple[str, str, float]]:
    """The calibration tables a run will write, as far as the bundles' attributes tell.

    :func:`_calibration_used` on each bundle's attributes alone (imaging profile, voxel
    size; the adapters' ``calibration_phantom`` read nothing else), and every shipped
    profile in fast mode at those voxel sizes, as :func:`harmonize.calibration.
    write_calibration` measures them. Studies that are not bundles are not predicted;
    an unreadable attribute predicts nothing. Empty when no profile would be used.
    """
    import xarray as xr

    from harmonize.cohort import bundle_attrs
    from harmonize.imaging import available_profiles

    used: set[tuple[str, str, float]] = set()
    for source in cohort.paths.values():
        if isinstance(source, list) or Path(source).is_dir():
            continue
        try:
            shell = xr.Dataset(attrs=bundle_attrs(source))
            for adapter in adapters:
                used |= {
                    (p, m, round(float(v), 4)) for p, m, v, _ in _calibration_used(shell, adapter)
                }
        except Exception:  # the study task reports it; the tables are then measured later
            continue
    if not used:
        return set()
    voxels = {v for _, _, v in used}
    return used | {(p, "fast", v) for p in available_profiles() for v in voxels}


def _calibration_cost(key: tuple[str, str, float]) -> tuple[float, tuple[str, str, float]]:
    """Sort key: the expected cost of measuring a calibration table, then the table itself.

    Only orders the tasks (never changes a number): a fast-mode phantom costs about its
    Richardson-Lucy iterations times the blur kernel's length in voxels (each iteration
    is two separable Gaussian filters); an unreadable profile counts as cheap.
    """
    profile, mode, voxel = key
    try:
        from harmonize.imaging import load_profile

        fast = load_profile(profile).fast
        if mode != "fast" or fast is None:
            return (math.inf, key)  # the full chain: costlier than any fast mode
        cost = (float(fast.rl_iterations) + 1.0) * float(fast.effective_fwhm_mm) / voxel
    except Exception:  # ordering only
        cost = 0.0
    return (cost, key)


def _calibration_tables(
    wanted: Sequence[tuple[str, str, float]], threads: int | None = None
) -> dict[tuple[str, str, float], pd.DataFrame]:
    """Worker task: calibration tables measured ahead (a pure function of their key)."""
    from harmonize.calibration import calibration_table

    return {(p, m, v): _in_share(threads, calibration_table, p, v, m) for p, m, v in wanted}


def _calibration_files(
    per_study: list[list[dict[str, Any]]],
    out: str,
    overwrite: bool,
    threads: int | None = None,
    measured: Sequence[Mapping[tuple[str, str, float], pd.DataFrame]] = (),
) -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """The calibration tables of the centre profiles the studies used, written.

    ``measured``: the tables measured ahead (:func:`_calibration_tables`, one mapping per
    task); the others are measured here.
    """
    from harmonize.calibration import write_calibration

    tables = {key: table for part in measured for key, table in part.items()}
    used = [
        item
        for results in per_study
        for result in results
        if result["ok"]
        for item in result.get("calibration", [])
    ]
    files: list[Path] = _in_share(
        threads, lambda: write_calibration(Path(out), used, overwrite=overwrite, tables=tables)
    )
    return files, _records(files, Path(out))


def _truth_files(
    cohort: Cohort, planned: int, out: str, overwrite: bool, threads: int | None = None
) -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """Worker task: the phantom truth's ``voi_dose`` rows and patient indices, written.

    The truth's ``voi_dose`` rows are those of the imaged cycles; its cumulative is the
    sum over every planned cycle the phantom simulated, imaged or not.
    """
    files: list[Path] = []
    truth_all_cycles = truth_tables(cohort, imaged_only=False)
    truth_all_cycles = truth_all_cycles.loc[truth_all_cycles["cycle"] <= planned]
    truth = truth_tables(cohort)
    for patient_id, rows in truth.groupby("patient_id", sort=True):
        files += schema.write_results(
            {"voi_dose": rows},
            Path(out),
            metadata={"workflow": {"name": TRUTH_WORKFLOW, "definition": "phantom ground truth"}},
            basename=str(patient_id),
            overwrite=overwrite,
        )
    index = _in_share(threads, indices.patient_index, truth_all_cycles, "sum", planned)
    index = index.loc[index["cycle"].isin(set(truth["cycle"]))]
    files += _write_patient_indices(index, TRUTH_WORKFLOW, "sum", Path(out), overwrite)
    return files, _records(files, Path(out))


def _index_table(
    table: pd.DataFrame, budget: pd.DataFrame | None, rule: str, planned: int
) -> pd.DataFrame:
    """One workflow's patient indices (with their uncertainties when it has a budget)."""
    index = indices.patient_index(table, cumulative_rule=rule, planned_cycles=planned)
    if budget is not None and len(budget):
        index = _with_index_uncertainty(index, table, budget, rule, planned)
    return index


def _write_patient_indices(
    index: pd.DataFrame, name: str, rule: str, out: Path, overwrite: bool
) -> list[Path]:
    """One ``patient_index`` file per patient (atomic writes)."""
    files: list[Path] = []
    for patient_id, rows in index.groupby("patient_id", sort=True):
        files += schema.write_results(
            {"patient_index": rows},
            out,
            metadata={"workflow": {"name": name, "cumulative_rule": rule}},
            basename=str(patient_id),
            overwrite=overwrite,
        )
    return files
