"""Run every benchmark and the accuracy benchmark; write one Markdown page and its JSON.

Usage::

    python benchmarks/run.py --out bench-results
    python benchmarks/run.py --out bench-perf --skip-accuracy \
        --only bench_startup,bench_kinetics,bench_dose,bench_cohort

* every ``benchmarks/bench_*.py`` module is imported and its ``main([])`` called (default
  arguments); it returns a dict of figures, which is flattened into a table. A module that
  is missing, fails to import or raises is listed with the reason, and the others go on.
  The modules of :data:`EXCLUDED_BY_DEFAULT` (studies with their own results page) are
  listed with the reason they are not run; ``--only`` runs a named subset, excluded ones
  included. The load average before and after each module is written beside its figures:
  on a shared machine the timings are not the machine's own;
* the **accuracy benchmark**: a noisy phantom cohort (seeded) is run through every
  installed workflow adapter; each workflow's lesion mean-dose error against the phantom
  truth is tabulated per lesion-size band (:func:`harmonize.report.truth_error_by_size`),
  with the ratio bias and limits of agreement against truth
  (:func:`harmonize.compare.agreement`, ``reference="truth"``);
* the machine is described (platform, CPU model, core count, memory, Python, numpy, scipy,
  pandas, pyarrow, matplotlib versions, harmonize version and git commit when available).

``DIR/benchmarks.md`` is the human-readable page, ``DIR/benchmarks.json`` the same figures
for machines. No clock time or date is written: two runs differ only in measured timings.
With the defaults it finishes in a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = [
    "EXCLUDED_BY_DEFAULT",
    "EXPECTED_BENCHMARKS",
    "accuracy_benchmark",
    "machine_description",
    "main",
    "parse_only",
    "run_module_benchmarks",
]

HERE = Path(__file__).resolve().parent
#: Benchmarks the issues ask for; a missing one is reported, not an error. Every
#: ``bench_*.py`` found is run by default except :data:`EXCLUDED_BY_DEFAULT`.
EXPECTED_BENCHMARKS = (
    "cohort",
    "compare",
    "dose",
    "intercomparison",
    "io",
    "kinetics",
    "phantom",
    "startup",
    "uncertainty",
    "workflows",
)
#: Benchmarks not run by default, with the reason; ``--only`` naming one runs it.
EXCLUDED_BY_DEFAULT = {
    "accuracy_realistic": (
        "an accuracy study whose result is a Markdown page (benchmarks/results/"
        "accuracy_realistic.md, written with --write), not figures; this page's own accuracy "
        "benchmark covers the default phantom"
    ),
    "imaging": (
        "calibrates the centre imaging profiles (full-chain simulations of the NEMA phantom "
        "and a patient per profile) and keeps its own page, benchmarks/results/imaging.md "
        "(--write); run it alone"
    ),
    "noise_reference": (
        "compares the full imaging chain's background noise with a published Lu-177 NEMA "
        "phantom measurement (four full-chain images per profile); its page is "
        "benchmarks/results/imaging_noise.md (--write)"
    ),
    "outcomes": (
        "a statistical study (where each workflow's optimal cutoff lands, bootstrap coverage "
        "over replicate cohorts), no timing figure; its page is benchmarks/results/"
        "bench_outcomes.txt"
    ),
}


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_description() -> dict[str, Any]:
    """The machine and software the figures were measured on.

    Returns
    -------
    dict
        platform, machine, cpu_model, cpu_count (logical), cpu_affinity (usable cores),
        memory_gib, python and the versions of numpy, scipy, pandas, pyarrow, matplotlib,
        harmonize-dosimetry, the git commit of the checkout, and the load average (1, 5,
        15 min) when called: on a machine shared with other jobs timings are not its own.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count() or 0,
        "cpu_affinity": usable,
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        **{
            dist: _version(dist)
            for dist in ("numpy", "scipy", "pandas", "pyarrow", "matplotlib", "harmonize-dosimetry")
        },
        "git_commit": _git_commit(),
        "load_average_at_start": _load_average(),
    }


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars and arrays converted)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


def _flatten(figures: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            rows += _flatten(value, f"{name}.")
        else:
            rows.append((name, value))
    return rows


def _load_average() -> str:
    """The 1, 5 and 15-minute load averages, or "unknown" where the OS has none."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"_harmonize_bench_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_module_benchmarks(
    directory: Path = HERE, only: Sequence[str] | None = None, quiet: bool = False
) -> dict[str, dict[str, Any]]:
    """Call ``main([])`` of every ``bench_*.py`` in ``directory`` (sorted by name).

    Parameters
    ----------
    directory : pathlib.Path
        Folder of the benchmark modules.
    only : sequence of str, optional
        Topics to run (``"dose"`` for ``bench_dose.py``, see :func:`parse_only`); default
        every module found except :data:`EXCLUDED_BY_DEFAULT` (listed as ``"excluded"``
        with the reason).
    quiet : bool
        Do not echo progress.

    Returns
    -------
    dict
        Topic → ``{"status": "ok" | "failed" | "missing" | "excluded", "seconds": float,
        "figures": dict, "reason": str, "stdout": str}``; expected topics without a module
        are ``"missing"``.
    """
    found = {p.stem.removeprefix("bench_"): p for p in sorted(directory.glob("bench_*.py"))}
    topics = sorted(set(found) | set(EXPECTED_BENCHMARKS))
    out: dict[str, dict[str, Any]] = {}
    if only:
        topics = [t for t in topics if t in set(only)]
    else:
        for topic in sorted(set(topics) & set(EXCLUDED_BY_DEFAULT)):
            out[topic] = {"status": "excluded", "reason": EXCLUDED_BY_DEFAULT[topic]}
        topics = [t for t in topics if t not in EXCLUDED_BY_DEFAULT]
    for topic in topics:
        if topic not in found:
            out[topic] = {"status": "missing", "reason": f"benchmarks/bench_{topic}.py not found"}
            continue
        if not quiet:
            print(f"[bench] {topic} ...", file=sys.stderr, flush=True)
        captured = io.StringIO()
        load_before = _load_average()
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(captured), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                figures = _load(found[topic]).main([])
            status, reason = "ok", ""
        except Exception as exc:  # a failing benchmark is reported, the others go on
            figures = {}
            status = "failed"
            reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        seconds = time.perf_counter() - start
        load_after = _load_average()
        if not quiet:
            print(
                f"[bench] {topic}: {status} in {seconds:.1f} s (load average "
                f"{load_before} → {load_after})",
                file=sys.stderr,
                flush=True,
            )
        out[topic] = {
            "status": status,
            "seconds": seconds,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "figures": _jsonable(figures if isinstance(figures, Mapping) else {"result": figures}),
            "reason": reason,
            "stdout": captured.getvalue()[-4000:],
        }
    return out


def parse_only(values: Sequence[str], directory: Path = HERE) -> list[str]:
    """Topics named on the command line: ``dose``, ``bench_dose`` or ``bench_dose.py``.

    Several per argument, separated by commas (``--only bench_startup,bench_kinetics``) or
    as separate arguments. Raises ValueError naming an unknown one and the known ones.
    """
    known = sorted(
        {p.stem.removeprefix("bench_") for p in directory.glob("bench_*.py")}
        | set(EXPECTED_BENCHMARKS)
    )
    topics: list[str] = []
    for value in values:
        for item in value.split(","):
            name = item.strip().removesuffix(".py").removeprefix("bench_")
            if not name:
                continue
            if name not in known:
                raise ValueError(
                    f"--only: unknown benchmark {item.strip()!r}; known: {', '.join(known)}"
                )
            if name not in topics:
                topics.append(name)
    return topics


def accuracy_benchmark(
    n_patients: int = 5,
    seed: int = 2024,
    voxel_size_mm: float = 4.8,
    workers: int = 1,
    quiet: bool = False,
) -> dict[str, Any]:
    """Lesion mean-dose error of every installed workflow against a noisy phantom's truth.

    Parameters
    ----------
    n_patients : int
        Patients of the cohort (cycle 1 only; 2–8 lesions each, 1–200 mL).
    seed : int
        Phantom seed (the same seed gives the same cohort).
    voxel_size_mm : float
        Isotropic voxel size (a Lanconelli-tabulated size: 4.8 mm by default).
    workers : int
        Dask worker processes of the run.
    quiet : bool
        No progress output.

    Returns
    -------
    dict
        ``config``; ``seconds`` (phantom, run); ``failures``; ``by_size`` (one record per
        workflow × lesion-size band, from :func:`harmonize.report.truth_error_by_size`);
        ``vs_truth`` (ratio bias and 95 % limits of agreement with CIs per workflow).
    """
    from harmonize import compare
    from harmonize.phantom import PhantomConfig, write_cohort
    from harmonize.report import LESION_SIZE_BANDS_ML, truth_error_by_size
    from harmonize.runner import run_cohort
    from harmonize.schema import read_results

    config = PhantomConfig(voxel_size_mm=voxel_size_mm, cycles=(1,), noise=True)
    out: dict[str, Any] = {
        "status": "ok",
        "config": {
            "n_patients": n_patients,
            "seed": seed,
            "voxel_size_mm": voxel_size_mm,
            "psf_fwhm_mm": config.psf_fwhm_mm,
            "noise": config.noise,
            "cycles": list(config.cycles),
            "size_bands_ml": [b if math.isfinite(b) else None for b in LESION_SIZE_BANDS_ML],
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        cohort = write_cohort(Path(tmp) / "cohort", n_patients=n_patients, seed=seed, config=config)
        phantom_s = time.perf_counter() - start
        start = time.perf_counter()
        run = run_cohort(cohort, "all", Path(tmp) / "results", workers=workers, progress=not quiet)
        run_s = time.perf_counter() - start
        results = read_results(Path(tmp) / "results")
    out["seconds"] = {"phantom": phantom_s, "run_all_workflows": run_s}
    out["n_runs"] = run.n_runs
    out["failures"] = [f"{f.workflow} {f.patient_id} c{f.cycle}: {f.reason}" for f in run.failures]
    bands = truth_error_by_size(results["voi_dose"])
    out["by_size"] = _jsonable(
        bands.drop(columns=["band_low_ml", "band_high_ml"]).to_dict("records")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agr = compare.agreement(results, "dose_mean_gy", "lesion", reference="truth")
    keep = agr.loc[agr["statistic"].isin(["ratio_bias", "ratio_loa_lower", "ratio_loa_upper"])]
    out["vs_truth"] = _jsonable(
        keep[["workflow_a", "statistic", "estimate", "ci_low", "ci_high", "n_pairs"]].to_dict(
            "records"
        )
    )
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    if value is None:
        return "–"
    return str(value).replace("|", "\\|")


def _markdown(
    machine: Mapping[str, Any],
    modules: Mapping[str, Any],
    accuracy: Mapping[str, Any] | None,
    total_s: float,
) -> str:
    lines = [
        "# harmonize benchmarks",
        "",
        "Reproduce with `python benchmarks/run.py --out DIR` (every `benchmarks/bench_*.py` "
        "with its default arguments, plus the accuracy benchmark). Timings are wall-clock "
        "seconds on the machine below; they vary with the load of the machine.",
        "",
        "## Machine",
        "",
        "| property | value |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in machine.items()],
        "",
        f"Total run time: {total_s:.0f} s.",
        "",
    ]
    if accuracy is not None and accuracy.get("status") == "failed":
        lines += [
            "## Accuracy against phantom truth",
            "",
            f"**failed**: {_fmt(accuracy['reason'])}",
            "",
        ]
    elif accuracy is not None:
        cfg = accuracy["config"]
        lines += [
            "## Accuracy against phantom truth",
            "",
            f"Noisy phantom, {cfg['n_patients']} patients, cycle 1, seed {cfg['seed']}, "
            f"{cfg['voxel_size_mm']} mm voxels, PSF FWHM {cfg['psf_fwhm_mm']} mm; every "
            "installed workflow. Error of the lesion mean dose = 100 · (workflow / truth − 1), "
            "banded by true lesion volume. Phantom generation "
            f"{accuracy['seconds']['phantom']:.1f} s, run of all workflows "
            f"{accuracy['seconds']['run_all_workflows']:.1f} s ({accuracy['n_runs']} runs).",
            "",
        ]
        if accuracy["failures"]:
            lines += ["Failures:", "", *[f"- {f}" for f in accuracy["failures"]], ""]
        lines += [
            "| workflow | lesion volume | lesions | median error % | IQR % | mean abs error % | max abs error % |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for r in accuracy["by_size"]:
            lines.append(
                f"| {r['workflow']} | {r['band']} | {r['n_lesions']} | {_fmt(r['median_error_pct'])} | "
                f"{_fmt(r['q25_error_pct'])} to {_fmt(r['q75_error_pct'])} | "
                f"{_fmt(r['mean_abs_error_pct'])} | {_fmt(r['max_abs_error_pct'])} |"
            )
        lines += [
            "",
            "Ratio to truth (Bland–Altman on log doses, back-transformed; 95 % CI):",
            "",
            "| workflow | statistic | estimate | 95 % CI | lesions |",
            "|---|---|---:|---|---:|",
        ]
        for r in accuracy["vs_truth"]:
            lines.append(
                f"| {r['workflow_a']} | {r['statistic']} | {_fmt(r['estimate'])} | "
                f"{_fmt(r['ci_low'])} – {_fmt(r['ci_high'])} | {r['n_pairs']} |"
            )
        lines.append("")
    lines += ["## Performance benchmarks", ""]
    for topic, result in modules.items():
        lines.append(f"### `bench_{topic}.py`")
        lines.append("")
        if result["status"] != "ok":
            lines += [f"**{result['status']}**: {_fmt(result['reason'])}", ""]
            continue
        load = ""
        if "load_average_before" in result:
            load = (
                f" Load average (1, 5, 15 min) {result['load_average_before']} before, "
                f"{result['load_average_after']} after."
            )
        lines += [
            f"Ran in {result['seconds']:.1f} s.{load}",
            "",
            "| figure | value |",
            "|---|---:|",
        ]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in _flatten(result["figures"])]
        lines.append("")
    return "\n".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: run the benchmarks, write ``OUT/benchmarks.md`` and ``.json``.

    Parameters
    ----------
    argv : sequence of str, optional
        ``--out DIR`` (required), ``--only NAME[,NAME...]``, ``--skip-accuracy``,
        ``--skip-modules``, ``--patients N``, ``--seed N``, ``--voxel-size MM``,
        ``--workers N``, ``--quiet``.

    Returns
    -------
    dict
        Everything written to the JSON file.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        metavar="NAME[,NAME...]",
        help="run only these benchmarks (dose, bench_dose or bench_dose.py; comma-separated "
        "or several arguments), e.g. --only bench_startup,bench_kinetics,bench_cohort; "
        "also runs one excluded by default",
    )
    parser.add_argument("--skip-modules", action="store_true", help="only the accuracy benchmark")
    parser.add_argument("--skip-accuracy", action="store_true", help="no accuracy benchmark")
    parser.add_argument("--patients", type=int, default=5, help="accuracy cohort size (5)")
    parser.add_argument("--seed", type=int, default=2024, help="accuracy phantom seed (2024)")
    parser.add_argument("--voxel-size", type=float, default=4.8, help="phantom voxel, mm (4.8)")
    parser.add_argument("--workers", type=int, default=1, help="Dask workers of the run (1)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.patients < 1:
        parser.error(f"--patients must be ≥ 1, got {args.patients}")
    only = None
    if args.only is not None:
        try:
            only = parse_only(args.only)
        except ValueError as exc:
            parser.error(str(exc))
        if not only:
            parser.error("--only: no benchmark named")

    start = time.perf_counter()
    machine = machine_description()
    modules = {} if args.skip_modules else run_module_benchmarks(HERE, only, args.quiet)
    accuracy = None
    if not args.skip_accuracy:
        if not args.quiet:
            print("[bench] accuracy ...", file=sys.stderr, flush=True)
        try:
            accuracy = accuracy_benchmark(
                args.patients, args.seed, args.voxel_size, args.workers, args.quiet
            )
        except Exception as exc:  # reported in the page; the module figures are kept
            reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            accuracy = {"status": "failed", "reason": reason}
    total = time.perf_counter() - start
    machine["load_average_at_end"] = _load_average()
    payload = {
        "machine": machine,
        "total_seconds": total,
        "accuracy": accuracy,
        "benchmarks": modules,
    }
    payload = _jsonable(payload)
    _atomic_write(
        args.out / "benchmarks.json", json.dumps(payload, indent=2, sort_keys=True) + "\n"
    )
    _atomic_write(args.out / "benchmarks.md", _markdown(machine, modules, accuracy, total) + "\n")
    if not args.quiet:
        print(f"wrote {args.out / 'benchmarks.md'} and benchmarks.json in {total:.0f} s")
    return payload


if __name__ == "__main__":
    main()
