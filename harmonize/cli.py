"""The ``harmonize`` command line.

Every sub-command exits 0 on success, 2 on bad input (a message naming the file or option,
no traceback) and 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harmonize.errors import HarmonizeError

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CLIError(HarmonizeError):
    """A user error reported as one line on stderr with exit code 2."""


def _cmd_phantom(args: argparse.Namespace) -> int:
    from harmonize.phantom import PhantomConfig, write_cohort

    cycles = _cycles(args.cycles) if args.cycles is not None else (1, 2, 3, 4)
    if args.patients < 1:
        raise CLIError(f"--patients: must be ≥ 1, got {args.patients}")
    workers = _workers(args.workers)
    planned = _planned_cycles(args.planned_cycles)
    if planned is not None and max(cycles) > planned:
        raise CLIError(
            f"--planned-cycles {planned} is below the highest imaged cycle {max(cycles)} (--cycles)"
        )
    from harmonize.imaging import ProfileError

    try:
        config = PhantomConfig(
            noise=not args.no_noise,
            cycles=cycles,
            planned_cycles=planned,
            psf_fwhm_mm=args.fwhm,
            voxel_size_mm=args.voxel_size,
            motion_mm=args.motion,
            imaging_profile=args.imaging_profile,
            imaging_mode=args.imaging_mode,
        )
    except ProfileError as exc:
        raise CLIError(f"--imaging-profile: {exc}") from exc
    out = write_cohort(
        args.out,
        n_patients=args.patients,
        seed=args.seed,
        config=config,
        overwrite=args.overwrite,
        progress=not args.quiet,
        format=args.format,
        workers=workers,
    )
    if not args.quiet:
        n = args.patients * len(cycles)
        print(f"wrote {n} studies and truth.parquet to {out}")
    return EXIT_OK


def _cycles(text: str) -> tuple[int, ...]:
    """``--cycles 1,4`` → (1, 4); a clear message naming the option otherwise."""
    try:
        cycles = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise CLIError(
            f"--cycles: expected comma-separated cycle numbers such as 1,2,3,4, got {text!r}"
        ) from None
    if any(c < 1 for c in cycles) or len(set(cycles)) != len(cycles):
        raise CLIError(f"--cycles: cycles must be distinct integers ≥ 1, got {text!r}")
    return tuple(sorted(cycles))


def _planned_cycles(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise CLIError(f"--planned-cycles: must be an integer ≥ 1, got {value}")
    return value


def _workers(value: int) -> int:
    if value < 1:
        raise CLIError(f"--workers: must be ≥ 1, got {value}")
    return value


def _cutoffs(path: Path | None) -> Any:
    """The cutoff table of ``--cutoffs FILE.csv`` (None: the packaged one), checked now."""
    if path is None:
        return None
    from harmonize.compare import CompareError, load_cutoffs

    if not path.is_file():
        raise CLIError(f"--cutoffs: {path} is not a file")
    try:
        return load_cutoffs(path)
    except CompareError as exc:
        raise CLIError(f"--cutoffs: {exc}") from None


def _check_overrides(overrides: dict[str, dict[str, str]]) -> None:
    """Build every adapter's config with its ``--set`` values before any study is read."""
    from harmonize.registry import get_workflow
    from harmonize.workflow import WorkflowError

    for name, values in overrides.items():
        if name == "truth" or not values:
            continue
        try:
            get_workflow(name).Config().with_overrides(values)
        except WorkflowError as exc:
            keys = ", ".join(f"{name}.{k}={v}" for k, v in values.items())
            raise CLIError(f"--set {keys}: {exc}") from None


def _parse_sets(items: Sequence[str] | None) -> dict[str, dict[str, str]]:
    """``--set workflow.key=value`` or ``--set key=value`` (applies to every workflow)."""
    out: dict[str, dict[str, str]] = {}
    for item in items or ():
        if "=" not in item:
            raise CLIError(f"--set: expected key=value or workflow.key=value, got {item!r}")
        key, value = item.split("=", 1)
        workflow, _, name = key.rpartition(".")
        out.setdefault(workflow or "*", {})[name.strip()] = value.strip()
    return out


def _overrides_for(
    sets: dict[str, dict[str, str]], names: Sequence[str]
) -> dict[str, dict[str, str]]:
    unknown = sorted(set(sets) - {"*", *names})
    if unknown:
        raise CLIError(
            f"--set names workflow(s) {unknown} that are not being run ({', '.join(names)})"
        )
    return {name: {**sets.get("*", {}), **sets.get(name, {})} for name in names}


def _workflow_names(spec: str) -> list[str]:
    from harmonize.registry import get_workflow, list_workflows

    if spec == "all":
        return list(list_workflows())
    names = [w.strip() for w in spec.split(",") if w.strip()]
    for name in names:
        if name != "truth":
            get_workflow(name)
    return names


def _read_key(path: Path | None) -> bytes | None:
    """The secret pseudonymisation key from ``--key KEYFILE`` (None without the option)."""
    if path is None:
        return None
    if not path.is_file():
        raise CLIError(f"--key: {path} is not a file")
    key = path.read_bytes()
    if not key.strip():
        raise CLIError(f"--key: {path} is empty")
    return key


def _cmd_run(args: argparse.Namespace) -> int:
    from harmonize.runner import run_cohort

    names = _workflow_names(args.workflow)
    overrides = _overrides_for(_parse_sets(args.set), names)
    _check_overrides(overrides)
    _workers(args.workers)
    report = run_cohort(
        args.cohort,
        names,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        overrides=overrides,
        overwrite=args.overwrite,
        progress=not args.quiet,
        save_maps=args.save_maps,
        key=_read_key(args.key),
        append=args.append,
        planned_cycles=_planned_cycles(args.planned_cycles),
    )
    for failure in report.failures:
        print(
            f"harmonize run: FAILED patient {failure.patient_id} cycle {failure.cycle} "
            f"workflow {failure.workflow}: {failure.reason}",
            file=sys.stderr,
        )
    _print_skipped(report.skipped, args.cohort)
    if not args.quiet:
        print(
            f"{report.n_runs - len(report.failures)}/{report.n_runs} runs written to {report.out_dir}"
            + (f"; {len(report.skipped)} skipped input(s) listed above" if report.skipped else "")
        )
    return EXIT_OK if report.ok else EXIT_FAILURE


#: Most skipped entries ``harmonize run`` lists one by one (then a count per kind).
MAX_SKIPPED_LISTED = 50


def _print_skipped(skipped: Sequence[Any], cohort: Path, *, header: str | None = None) -> None:
    """List the cohort entries no study used (stderr; not an error: the exit code is unchanged).

    Only on the terminal: relative paths of a raw DICOM folder may hold patient names, so
    the run manifest keeps counts per kind only.
    """
    if not skipped:
        return
    print(
        header or f"harmonize run: skipped {len(skipped)} input(s) of {cohort} that no study uses:",
        file=sys.stderr,
    )
    for item in skipped[:MAX_SKIPPED_LISTED]:
        print(f"  {item}", file=sys.stderr)
    rest = skipped[MAX_SKIPPED_LISTED:]
    if rest:
        kinds = Counter(item.kind for item in rest)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        print(
            f"  ... and {len(rest)} more ({counts}); 'harmonize inspect {cohort}' lists the "
            "DICOM ones",
            file=sys.stderr,
        )


def _cmd_deidentify(args: argparse.Namespace) -> int:
    from harmonize.deid import deidentify

    key = _read_key(args.key)
    skipped: list[Any] = []
    out = deidentify(args.input, args.output, key=key, overwrite=args.overwrite, skipped=skipped)
    # listed even with --quiet: an export missing an input without a word is a silent loss
    _print_skipped(
        skipped,
        args.input,
        header=f"harmonize deidentify: {len(skipped)} input(s) of {args.input} are NOT in the "
        "de-identified copy (no study uses them):",
    )
    if not args.quiet:
        print(
            f"de-identified copy written to {out}"
            + (f"; {len(skipped)} input(s) not in it, listed above" if skipped else "")
        )
        if key is None:
            print(
                "no --key given: a random key was used, so these pseudonyms link to no other export"
            )
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from harmonize.io.inspect import format_inspection, inspect_folder

    report = inspect_folder(args.folder)
    print(json.dumps(report, indent=2) if args.json else format_inspection(report))
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from harmonize.cohort import TRUTH_FILE
    from harmonize.schema import table_names, validate_path

    path: Path = args.path
    if path.is_dir() and not any((path / t).is_dir() for t in table_names()):
        studies = (path / TRUTH_FILE).exists() or any(path.glob("*.nc"))
        if studies:
            raise CLIError(
                f"{path} is a cohort folder (studies), not a results folder; validate checks "
                f"the results that `harmonize run --cohort {path} --out RESULTS` writes"
            )
    problems = validate_path(args.path)
    for problem in problems:
        print(f"harmonize validate: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"{args.path}: valid harmonize results")
    return EXIT_OK


def _cmd_workflows(args: argparse.Namespace) -> int:
    from harmonize.registry import format_rows, list_workflows, workflows_rows

    rows = workflows_rows()
    if args.verbose:
        for name, cls in list_workflows().items():
            print(f"== {name} ({cls.center}) v{cls.version}: {cls.description}")
            print(cls.Config.describe().to_string(index=False))
            print()
    else:
        # formatted without pandas: the listing must start fast (issue #17)
        columns = ["name", "center", "version", "voxel_level", "min_time_points", "references"]
        print(format_rows(rows, columns) if rows else "no workflows installed")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from harmonize.pipeline import compare_results, read_merged, write_comparison

    cutoffs = _cutoffs(args.cutoffs)
    tables = compare_results(
        read_merged(args.results),
        n_boot=args.n_boot,
        seed=args.seed,
        cutoffs=cutoffs,
    )
    files = write_comparison(tables, args.out, overwrite=args.overwrite)
    for note in tables.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {len(files)} comparison tables to {args.out}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harmonize.report import write_report

    path = write_report(
        args.results,
        args.out,
        agreement_dir=args.agreement,
        overwrite=args.overwrite,
        cutoffs=_cutoffs(args.cutoffs),
    )
    if not args.quiet:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_clinical_import(args: argparse.Namespace) -> int:
    from harmonize.outcomes.clinical import import_clinical

    key = _read_key(args.key)
    if key is None:
        raise CLIError("--key: a key file is required")
    path = import_clinical(args.file, key, args.out, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_clinical_simulate(args: argparse.Namespace) -> int:
    from harmonize.cohort import TRUTH_FILE
    from harmonize.outcomes.clinical import write_clinical
    from harmonize.outcomes.simulate import OutcomeModel, simulate_outcomes, true_patient_dose

    truth_path = args.cohort / TRUTH_FILE
    if not truth_path.is_file():
        raise CLIError(f"--cohort: {truth_path} not found (a phantom cohort carries its truth)")
    import pandas as pd

    doses = true_patient_dose(pd.read_parquet(truth_path), cycle=1, aggregate="min")
    model = OutcomeModel(threshold_gy=args.threshold)
    clinical = simulate_outcomes(doses, model=model, seed=args.seed)
    meta = {
        "source": "harmonize clinical simulate",
        "model": model.as_dict(),
        "dose": "true minimum lesion dose, cycle 1",
        "seed": args.seed,
    }
    path = write_clinical(clinical, args.out, metadata=meta, overwrite=args.overwrite)
    if not args.quiet:
        print(f"wrote {path} ({len(clinical)} patients)")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from harmonize.demo import run_demo

    if args.patients < 1:
        raise CLIError(f"--patients: must be ≥ 1, got {args.patients}")
    return run_demo(
        args.out,
        patients=args.patients,
        seed=args.seed,
        workers=_workers(args.workers),
        overwrite=args.overwrite,
        quiet=args.quiet,
        cutoffs=_cutoffs(args.cutoffs),
        planned_cycles=_planned_cycles(args.planned_cycles),
    )


def _cmd_pack(args: argparse.Namespace) -> int:
    from harmonize.intercomparison import pack

    key = _read_key(args.key)
    out = pack(args.cohort, args.out, key=key, truth_out=args.truth_out, overwrite=args.overwrite)
    from harmonize.cohort import TRUTH_FILE

    if not args.quiet:
        print(f"wrote the exercise package {out}")
        if args.truth_out is not None:
            print(
                f"wrote the truth (assigned values) to {args.truth_out}; keep it from participants"
            )
        if key is None:
            print(
                "no --key given: a random key was used, so these pseudonyms link to no other export"
            )
    if args.truth_out is None and (Path(args.cohort) / TRUTH_FILE).is_file():
        print(
            "harmonize intercomparison pack: note: the cohort's truth is not in the package "
            "and was not written (use --truth-out DIR to keep it as the assigned values)",
            file=sys.stderr,
        )
    return EXIT_OK


def _cmd_proficiency(args: argparse.Namespace) -> int:
    from harmonize import compare
    from harmonize._fs import write_bytes_atomic
    from harmonize.intercomparison.proficiency import (
        proficiency_scores,
        proficiency_summary,
        write_participant_reports,
    )
    from harmonize.pipeline import read_merged

    voi = read_merged(args.results).get("voi_dose")
    if voi is None:
        raise CLIError("the results hold no voi_dose table")
    reference = None if args.reference == "consensus" else args.reference
    scores = proficiency_scores(voi, index=args.index, reference=reference)
    out = Path(args.out)
    for name in ("proficiency_scores.csv", "proficiency_agreement.parquet", "participants"):
        if (out / name).exists() and not args.overwrite:
            raise FileExistsError(f"{out / name} already exists; pass --overwrite to replace it")
    write_bytes_atomic(
        out / "proficiency_scores.csv",
        scores.to_csv(index=False, lineterminator="\n").encode("utf-8"),
        args.overwrite,
    )
    compare.write_agreement(
        proficiency_summary(scores, args.index), out / "proficiency_agreement.parquet"
    )
    reports = write_participant_reports(scores, out / "participants", overwrite=args.overwrite)
    if not args.quiet:
        print(
            f"wrote ISO 13528 scores of {scores['workflow'].nunique()} participants and "
            f"{len(reports)} participant reports to {out}"
        )
    return EXIT_OK


def _print_import(command: str, report: object, quiet: bool) -> None:
    for note in getattr(report, "notes", []):
        print(f"harmonize {command}: note: {note}", file=sys.stderr)
    if not quiet:
        print(f"imported {getattr(report, 'n_rows', 0)} VOI rows")


def _import_errors(command: str, func: Callable[[], object], quiet: bool) -> int:
    from harmonize.intercomparison import ResultsImportError

    try:
        report = func()
    except ResultsImportError as exc:
        for problem in exc.problems:
            print(f"harmonize {command}: error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _print_import(command, report, quiet)
    return EXIT_OK


def _cmd_import_results(args: argparse.Namespace) -> int:
    from harmonize.intercomparison import import_results

    return _import_errors(
        "import-results",
        lambda: import_results(
            args.file,
            args.workflow,
            args.package,
            args.out,
            method_sheet=args.method_sheet,
            overwrite=args.overwrite,
        ),
        args.quiet,
    )


def _cmd_import_dose_maps(args: argparse.Namespace) -> int:
    from harmonize.intercomparison import import_dose_maps

    return _import_errors(
        "import-dose-maps",
        lambda: import_dose_maps(
            args.directory,
            args.workflow,
            args.package,
            args.out,
            method_sheet=args.method_sheet,
            overwrite=args.overwrite,
        ),
        args.quiet,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harmonize",
        description="Compare dosimetry workflows on the same patients.",
    )
    from harmonize import __version__

    parser.add_argument("--version", action="version", version=f"harmonize {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("phantom", help="write a synthetic cohort with ground truth")
    p.add_argument("--patients", type=int, default=5, help="number of patients (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--cycles", default=None, help="comma-separated cycles (default 1,2,3,4)")
    p.add_argument(
        "--planned-cycles",
        type=int,
        default=None,
        help="cycles of the planned treatment; the truth covers all of them (default 4)",
    )
    p.add_argument("--no-noise", action="store_true", help="no counting noise")
    p.add_argument(
        "--fwhm",
        type=float,
        default=11.0,
        help="PSF FWHM of the ideal scanner in mm (default 11; without --imaging-profile)",
    )
    p.add_argument(
        "--imaging-profile",
        default="",
        help="centre imaging profile (bordet, montpellier, milan or a profile .json): "
        "clinical noise and resolution; default: the ideal scanner",
    )
    p.add_argument(
        "--imaging-mode",
        choices=("fast", "full"),
        default="fast",
        help="with --imaging-profile: calibrated fast mode or full projection/OSEM",
    )
    p.add_argument("--voxel-size", type=float, default=4.8, help="voxel size in mm (default 4.8)")
    p.add_argument(
        "--motion",
        type=float,
        default=0.0,
        help="max rigid patient shift between time points, mm (default 0)",
    )
    p.add_argument(
        "--format",
        choices=("bundle", "dicom"),
        default="bundle",
        help="study format (default bundle)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes over patients (default 1)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_phantom)

    p = sub.add_parser(
        "deidentify", help="de-identified copy of a study or cohort (DICOM PS3.15 Annex E)"
    )
    p.add_argument("input", type=Path, help="DICOM folder, cohort folder or exchange bundle")
    p.add_argument("output", type=Path, help="destination (must not exist unless --overwrite)")
    p.add_argument(
        "--key", type=Path, default=None, help="file holding the secret pseudonymisation key"
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_deidentify)

    p = sub.add_parser("run", help="run workflow adapters over a cohort")
    p.add_argument("--workflow", default="all", help="NAME, NAME,NAME or all (default all)")
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder")
    p.add_argument("--out", type=Path, required=True, help="results folder (Parquet dataset)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local worker processes, each pinned to its share of the cores (default 1)",
    )
    p.add_argument("--scheduler", default=None, help="dask.distributed scheduler address")
    p.add_argument(
        "--set", action="append", metavar="[WORKFLOW.]KEY=VALUE", help="override a parameter"
    )
    p.add_argument(
        "--save-maps",
        choices=("dicom", "nifti"),
        default=None,
        help="also write each dose map (DICOM RT Dose or NIfTI) under OUT/dose_maps/",
    )
    p.add_argument(
        "--key",
        type=Path,
        default=None,
        help="key file to pseudonymise studies that still carry original patient IDs",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace these workflows' results in OUT (all their previous files are removed)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="add this cohort's results to an OUT holding another cohort's",
    )
    p.add_argument(
        "--planned-cycles",
        type=int,
        default=None,
        metavar="N",
        help="cycles of the planned treatment: cumulative indices are totals over N cycles "
        "(default: the cohort's, else 4)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "inspect",
        help="what a DICOM folder holds, per patient/cycle/time point, and why "
        "anything is skipped or unusable",
    )
    p.add_argument("folder", type=Path, help="folder of DICOM files (any layout)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("validate", help="check a results file or folder against the schema")
    p.add_argument("path", type=Path)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("workflows", help="list installed workflow adapters")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="also list every parameter and its source"
    )
    p.set_defaults(func=_cmd_workflows)

    p = sub.add_parser("compare", help="agreement statistics between workflows")
    p.add_argument("results", type=Path, nargs="+", help="results folder(s)")
    p.add_argument("--out", type=Path, required=True, help="folder for the agreement tables")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--cutoffs",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="cutoff table (columns of harmonize/data/CUTOFFS.md; default the published five)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", help="self-contained HTML report of a results folder")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("--out", type=Path, required=True, help="report file (.html)")
    p.add_argument(
        "--agreement", type=Path, default=None, help="folder written by harmonize compare"
    )
    p.add_argument(
        "--cutoffs",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="cutoff table (columns of harmonize/data/CUTOFFS.md; default the published five)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("clinical", help="clinical data: import a centre's CSV, or simulate")
    clinical = p.add_subparsers(dest="clinical_command", required=True)
    c = clinical.add_parser(
        "import", help="check, pseudonymise and add a clinical CSV to a results folder"
    )
    c.add_argument("file", type=Path, help="CSV, one row per patient (hospital patient IDs)")
    c.add_argument(
        "--key", type=Path, required=True, help="file holding the secret pseudonymisation key"
    )
    c.add_argument("--out", type=Path, required=True, help="results folder of the cohort")
    c.add_argument("--overwrite", action="store_true", help="replace an existing clinical table")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_clinical_import)
    c = clinical.add_parser(
        "simulate", help="simulated outcomes of a phantom cohort from its true doses"
    )
    c.add_argument("--cohort", type=Path, required=True, help="phantom cohort folder")
    c.add_argument("--out", type=Path, required=True, help="results folder of the cohort")
    c.add_argument(
        "--threshold",
        type=float,
        default=35.0,
        help="true minimum lesion dose (Gy) of the simulated PFS threshold (default 35)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    c.add_argument("--overwrite", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cmd_clinical_simulate)

    p = sub.add_parser("demo", help="synthetic cohort → all workflows → comparison → report")
    p.add_argument("--out", type=Path, default=Path("harmonize-demo"), help="output folder")
    p.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--cutoffs",
        type=Path,
        default=None,
        metavar="FILE.csv",
        help="cutoff table (columns of harmonize/data/CUTOFFS.md; default the published five)",
    )
    p.add_argument(
        "--planned-cycles",
        type=int,
        default=None,
        metavar="N",
        help="cycles of the planned treatment: cumulative indices are totals over N cycles "
        "(default: the cohort's, else 4)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("intercomparison", help="multicentre exercise: package, statistics")
    inter = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = inter.add_parser("pack", help="exercise package of a cohort for the participants")
    q.add_argument("cohort", type=Path, help="cohort folder")
    q.add_argument("--out", type=Path, required=True, help="package folder to create")
    q.add_argument(
        "--key", type=Path, default=None, help="file holding the secret pseudonymisation key"
    )
    q.add_argument(
        "--truth-out",
        type=Path,
        default=None,
        help="also write the cohort's truth as a results folder (never into the package)",
    )
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_cmd_pack)
    q = inter.add_parser(
        "stats", help="ISO 13528 scores (z, z', En) and one report per participant"
    )
    q.add_argument("results", type=Path, nargs="+", help="results folder(s)")
    q.add_argument("--out", type=Path, required=True, help="folder for the scores and reports")
    q.add_argument(
        "--reference",
        default="truth",
        help="workflow giving the assigned value where present (default truth); "
        "'consensus' = always the Algorithm A robust mean",
    )
    q.add_argument("--index", default="dose_mean_gy", help="dose index (default dose_mean_gy)")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=_cmd_proficiency)

    for name, what, target, func in (
        (
            "import-results",
            "a centre's filled results template (CSV or XLSX) into a results folder",
            "file",
            _cmd_import_results,
        ),
        (
            "import-dose-maps",
            "a centre's dose maps (RT Dose, NIfTI), reduced on the package's VOIs",
            "directory",
            _cmd_import_dose_maps,
        ),
    ):
        p = sub.add_parser(name, help=f"import {what}")
        p.add_argument(
            target,
            type=Path,
            help="FILE.csv or FILE.xlsx" if target == "file" else "folder of dose maps",
        )
        p.add_argument("--workflow", required=True, help="name of the centre's results")
        p.add_argument("--package", type=Path, required=True, help="the exercise package")
        p.add_argument("--out", type=Path, required=True, help="results folder")
        p.add_argument(
            "--method-sheet",
            type=Path,
            default=None,
            help="filled method sheet (default: the XLSX sheet 'method' or method_sheet.csv)",
        )
        p.add_argument("--overwrite", action="store_true")
        p.add_argument("--quiet", action="store_true")
        p.set_defaults(func=func)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except Exception as exc:
        if not isinstance(exc, _bad_input_errors()):
            raise
        print(f"harmonize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    """Error types reported as bad input (exit 2).

    The study and cohort modules import xarray and pandas (seconds); they are not imported
    just to name their errors: a module that was never imported cannot have raised one.
    """
    errors: list[type[BaseException]] = [CLIError, OSError, KeyError, ValueError]
    for module, name in (("harmonize.cohort", "CohortError"), ("harmonize.study", "StudyError")):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
