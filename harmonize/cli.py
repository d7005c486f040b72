"""The ``harmonize`` command line.

Every sub-command exits 0 on success, 2 on bad input (a message naming the file or option,
no traceback) and 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class CLIError(Exception):
    """A user error reported as one line on stderr with exit code 2."""


def _cmd_phantom(args: argparse.Namespace) -> int:
    from harmonize.phantom import PhantomConfig, write_cohort

    cycles = tuple(int(c) for c in args.cycles.split(",")) if args.cycles else (1, 2, 3, 4)
    if any(c < 1 for c in cycles):
        raise CLIError(f"--cycles: cycles must be integers ≥ 1, got {args.cycles!r}")
    if args.patients < 1:
        raise CLIError(f"--patients: must be ≥ 1, got {args.patients}")
    from harmonize.imaging import ProfileError

    try:
        config = PhantomConfig(
            noise=not args.no_noise,
            cycles=cycles,
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
    )
    if not args.quiet:
        n = args.patients * len(cycles)
        print(f"wrote {n} studies and truth.parquet to {out}")
    return EXIT_OK


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
    )
    for failure in report.failures:
        print(
            f"harmonize run: FAILED patient {failure.patient_id} cycle {failure.cycle} "
            f"workflow {failure.workflow}: {failure.reason}",
            file=sys.stderr,
        )
    if not args.quiet:
        print(
            f"{report.n_runs - len(report.failures)}/{report.n_runs} runs written to {report.out_dir}"
        )
    return EXIT_OK if report.ok else EXIT_FAILURE


def _cmd_deidentify(args: argparse.Namespace) -> int:
    from harmonize.deid import deidentify

    key = _read_key(args.key)
    out = deidentify(args.input, args.output, key=key, overwrite=args.overwrite)
    if not args.quiet:
        print(f"de-identified copy written to {out}")
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
    from harmonize.schema import validate_path

    problems = validate_path(args.path)
    for problem in problems:
        print(f"harmonize validate: {problem}", file=sys.stderr)
    if problems:
        return EXIT_BAD_INPUT
    print(f"{args.path}: valid harmonize results")
    return EXIT_OK


def _cmd_workflows(args: argparse.Namespace) -> int:
    from harmonize.registry import list_workflows, workflows_table

    table = workflows_table()
    if args.verbose:
        for name, cls in list_workflows().items():
            print(f"== {name} ({cls.center}) v{cls.version}: {cls.description}")
            print(cls.Config.describe().to_string(index=False))
            print()
    else:
        columns = ["name", "center", "version", "voxel_level", "min_time_points", "references"]
        print(table[columns].to_string(index=False) if len(table) else "no workflows installed")
    return EXIT_OK


def _cmd_compare(args: argparse.Namespace) -> int:
    from harmonize.pipeline import compare_results, read_merged, write_comparison

    tables = compare_results(read_merged(args.results), n_boot=args.n_boot, seed=args.seed)
    files = write_comparison(tables, args.out, overwrite=args.overwrite)
    for note in tables.notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"wrote {len(files)} comparison tables to {args.out}")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harmonize.report import write_report

    path = write_report(
        args.results, args.out, agreement_dir=args.agreement, overwrite=args.overwrite
    )
    if not args.quiet:
        print(f"wrote {path}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from harmonize.demo import run_demo

    return run_demo(
        args.out,
        patients=args.patients,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        quiet=args.quiet,
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
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
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
    p.add_argument("--overwrite", action="store_true", help="replace result files that differ")
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
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("report", help="self-contained HTML report of a results folder")
    p.add_argument("results", type=Path, help="results folder")
    p.add_argument("--out", type=Path, required=True, help="report file (.html)")
    p.add_argument(
        "--agreement", type=Path, default=None, help="folder written by harmonize compare"
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("demo", help="synthetic cohort → all workflows → comparison → report")
    p.add_argument("--out", type=Path, default=Path("harmonize-demo"), help="output folder")
    p.add_argument("--patients", type=int, default=6, help="number of patients (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    from harmonize.cohort import CohortError
    from harmonize.study import StudyError

    try:
        return func(args)
    except (CLIError, StudyError, CohortError, OSError, KeyError) as exc:
        print(f"harmonize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:
        print(f"harmonize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
