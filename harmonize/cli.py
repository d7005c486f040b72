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
    config = PhantomConfig(
        noise=not args.no_noise,
        cycles=cycles,
        psf_fwhm_mm=args.fwhm,
        voxel_size_mm=args.voxel_size,
    )
    out = write_cohort(
        args.out,
        n_patients=args.patients,
        seed=args.seed,
        config=config,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    if not args.quiet:
        n = args.patients * len(cycles)
        print(f"wrote {n} studies and truth.parquet to {out}")
    return EXIT_OK


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
    p.add_argument("--fwhm", type=float, default=11.0, help="PSF FWHM in mm (default 11)")
    p.add_argument("--voxel-size", type=float, default=4.8, help="voxel size in mm (default 4.8)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_phantom)
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
    except (CLIError, StudyError, CohortError, FileExistsError, FileNotFoundError) as exc:
        print(f"harmonize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as exc:
        print(f"harmonize {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
