"""A results folder as the target of runs that are transactions: lock, manifest, checks.

:func:`harmonize.runner.run_cohort` writes into a folder ``OUT`` with these rules:

* **one run at a time** — a lock file ``OUT/.harmonize.lock`` (:mod:`filelock`); a second
  ``run`` into the same folder exits at once with :class:`RunFolderError` (CLI exit 2);
* **stale temporary files** (``.<name>.tmp`` of the atomic writers, left by a killed run)
  are removed once the lock is held — nobody else can be writing them;
* **a manifest** ``OUT/_harmonize_manifest.json`` (the leading ``_`` keeps readers away from
  it, SPEC.md §4.5) records, per workflow, its version and parameters, the cohort's inputs
  (SHA-256 of each study's source files, no patient id), and when the run ends every file written (SHA-256,
  rows), the failures, the number of the cohort folder's skipped entries per kind
  (:attr:`harmonize.cohort.Cohort.skipped`; counts only, no file name: the names in a raw
  DICOM folder may be patient names) and the status ``complete``. It is written with status ``running`` before any result
  file, and again atomically at the end; a killed run leaves ``running``, which
  ``harmonize validate`` reports;
* **the folder's meaning is checked up front**: results of a workflow made with other
  parameters are replaced only with ``--overwrite`` (else one error naming ``--overwrite``),
  and a folder holding another cohort's results (other inputs) is refused unless
  ``--append`` (add this cohort) or ``--overwrite`` (replace the workflow's results);
  ``--overwrite`` removes all of the workflow's previous files first, so no stale file of
  the old run survives.

Re-running the same command after a kill or after a finished run recomputes and finds every
file identical (deterministic results, atomic writers that keep identical files), so it
completes without ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harmonize._fs import write_bytes_atomic
from harmonize.errors import HarmonizeError

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "RunFolderError",
    "check_folder",
    "file_record",
    "folder_problems",
    "input_hashes",
    "locked",
    "read_manifest",
    "remove_stale_temporaries",
    "remove_workflow_files",
    "write_manifest",
]

MANIFEST_NAME = "_harmonize_manifest.json"
LOCK_NAME = ".harmonize.lock"


def _table_dirs() -> tuple[str, ...]:
    """The result tables a run writes per workflow (partitioned by ``workflow``)."""
    from harmonize.schema import _tables  # local: the schema module loads pyarrow

    return tuple(name for name, t in _tables().items() if "workflow" in t.partition_by)


class RunFolderError(HarmonizeError, ValueError):
    """The results folder cannot take this run as asked (the message says which flag)."""


@contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the folder's lock for the block; refuse at once if another run holds it."""
    from filelock import FileLock, Timeout

    out.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise RunFolderError(
            f"{out}: another harmonize run is writing into this folder (lock {out / LOCK_NAME}); "
            "wait for it to finish or choose another --out"
        ) from None
    try:
        yield
    finally:
        lock.release()


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete ``.<name>.tmp`` files of the atomic writers under ``out`` (call under the lock)."""
    stale = [p for p in out.rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_hashes(paths: Mapping[tuple[str, int], Any]) -> list[str]:
    """Sorted SHA-256 of each study's source file(s).

    Only hashes: the manifest names no patient (a raw DICOM study's key is an original ID).
    """
    out: list[str] = []
    for source in paths.values():
        files: Sequence[Path] = (
            [Path(p) for p in source]
            if isinstance(source, list)
            else sorted(q for q in Path(source).rglob("*") if q.is_file())
            if Path(source).is_dir()
            else [Path(source)]
        )
        digest = hashlib.sha256()
        for f in sorted(files):
            digest.update(f.name.encode())
            digest.update(_sha256_file(f).encode() if f.exists() else b"missing")
        out.append(digest.hexdigest())
    return sorted(out)


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when there is none (or it is unreadable)."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_manifest(out: Path, manifest: Mapping[str, Any]) -> Path:
    """Write the manifest atomically (canonical JSON: the same run gives the same bytes)."""
    text = json.dumps(manifest, sort_keys=True, indent=1, ensure_ascii=False) + "\n"
    return write_bytes_atomic(out / MANIFEST_NAME, text.encode("utf-8"), overwrite=True)


def file_record(path: Path, out: Path) -> tuple[str, dict[str, Any]]:
    """``(relative path, {"sha256", "rows"})`` of one written file (rows for Parquet only)."""
    rows: int | None = None
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = int(pq.ParquetFile(path).metadata.num_rows)
    return path.relative_to(out).as_posix(), {"sha256": _sha256_file(path), "rows": rows}


def check_folder(
    out: Path,
    workflows: Mapping[str, Mapping[str, Any]],
    inputs: Sequence[str],
    *,
    overwrite: bool,
    append: bool,
) -> dict[str, Any] | None:
    """Refuse a run whose results would mix with different ones; return the old manifest.

    Parameters
    ----------
    workflows : mapping name → {"version", "parameters"}
        What this run will write.
    inputs : sequence of str
        Source hashes of this run's cohort (:func:`input_hashes`).

    Raises
    ------
    RunFolderError
        Naming ``--overwrite`` (other parameters) or ``--append`` (another cohort).
    """
    old = read_manifest(out)
    if old is None:
        if not overwrite and _has_results(out, workflows):
            raise RunFolderError(
                f"{out} already holds results of {sorted(workflows)} but no harmonize run "
                "manifest, so they cannot be checked; pass --overwrite to replace them, or "
                "choose another --out"
            )
        return None
    old_workflows = old.get("workflows", {})
    changed = sorted(
        name
        for name, spec in workflows.items()
        if name in old_workflows and old_workflows[name] != dict(spec)
    )
    if changed and not overwrite:
        raise RunFolderError(
            f"{out} holds results of workflow(s) {changed} made with other parameters or "
            "versions; pass --overwrite to replace them (all of that workflow's files), or "
            "choose another --out"
        )
    other = sorted(set(old.get("inputs", [])) - set(inputs))
    if other and not (append or overwrite):
        raise RunFolderError(
            f"{out} holds results of other inputs than this cohort ({len(other)} studies "
            "whose source files this cohort does not have); pass --append to add this "
            "cohort's results beside them, --overwrite to replace them, or choose another --out"
        )
    return old


def _has_results(out: Path, workflows: Iterable[str]) -> bool:
    return any(
        any((out / table / f"workflow={name}").glob("*.parquet"))
        for table in _table_dirs()
        for name in workflows
    )


def remove_workflow_files(out: Path, workflow: str) -> None:
    """Delete every result file of ``workflow`` in ``out`` (tables and dose maps)."""
    for table in _table_dirs():
        shutil.rmtree(out / table / f"workflow={workflow}", ignore_errors=True)
    shutil.rmtree(out / "dose_maps" / workflow, ignore_errors=True)


def folder_problems(out: Path) -> list[str]:
    """What the manifest says is wrong with a results folder (empty without a manifest)."""
    manifest = read_manifest(out)
    if manifest is None:
        if (out / MANIFEST_NAME).exists():
            return [f"{out / MANIFEST_NAME}: unreadable run manifest"]
        return []
    problems: list[str] = []
    if manifest.get("status") != "complete":
        problems.append(
            f"{out}: the last run did not finish (manifest status {manifest.get('status')!r}); "
            "re-run the same command to complete it"
        )
        return problems
    listed: dict[str, Any] = manifest.get("files", {})
    for rel, record in sorted(listed.items()):
        path = out / rel
        if not path.is_file():
            problems.append(f"{path}: listed in the run manifest but missing")
        elif _sha256_file(path) != record.get("sha256"):
            problems.append(
                f"{path}: content differs from the run manifest (changed after the run)"
            )
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        hidden = any(part.startswith((".", "_")) for part in path.relative_to(out).parts)
        if path.is_file() and not hidden and rel not in listed and _is_result(rel):
            problems.append(f"{path}: not listed in the run manifest (from another run?)")
    return problems


def _is_result(rel: str) -> bool:
    first = rel.split("/", 1)[0]
    return first in (*_table_dirs(), "dose_maps")
