"""Image noise of the full imaging chain against a published Lu-177 SPECT/CT measurement.

Run: ``python benchmarks/bench_noise_reference.py [--write] [--profiles bordet,milan]``.

The reference: PMC5206851, Table 2 (https://pmc.ncbi.nlm.nih.gov/articles/PMC5206851/table/tab2)
— four Lu-177 SPECT/CT acquisitions of the NEMA/IEC NU2 body phantom with the background
concentrations (Ac,bg) 23.27, 18.30, 12.32 and 1.46 and spheres at 196.87, 154.82, 104.20
and 12.36 (the same unit; kBq/mL by the magnitudes, the unit itself is not in the table),
each with the coefficient of variation (COV) of the background: 20, 24, 28 and 55 %.
Only that table of the article could be read with our tools: the article's acquisition
(views, time per view) and reconstruction are not in our hands, so the comparison below
fixes the phantom and the concentrations, not the protocol; each profile keeps its own
(``harmonize/imaging/profiles``).

What is measured, per centre profile and per scan: the NEMA IEC phantom of
:func:`harmonize.imaging.nema.calibration_phantom` filled at the table's concentrations
(sphere-to-background ratio of each scan), imaged by the **full** chain (projection with
attenuation and the collimator–detector response, Poisson noise on the projections, OSEM)
with noise and without; in the background region the calibration uses (water ≥ 30 mm from
the spheres and the lung insert, ≥ 40 mm from the wall, |z| < 60 mm) the voxel CoV of the
noisy image (``total``) and of its noise alone (noisy − noise-free, over the noise-free
mean). Also printed: the liver concentration of the default phantom cohort at 168 h, the
time point the issue's clinical-range check is made at, so the reader can place the
patient liver among the table's four concentrations.

Prints the machine and the load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from harmonize._fs import write_bytes_atomic
from harmonize.imaging.chain import image_activity
from harmonize.imaging.nema import BACKGROUND_BQ_ML, calibration_phantom
from harmonize.imaging.profile import load_profile
from harmonize.phantom import PhantomConfig, _concentration_mbq_ml, make_patient

#: PMC5206851 Table 2: (scan, background, spheres, background COV %) — concentrations in
#: the table's unit (kBq/mL by their magnitude; the table does not print it).
REFERENCE_SCANS = (
    (1, 23.27, 196.87, 20.0),
    (2, 18.30, 154.82, 24.0),
    (3, 12.32, 104.20, 28.0),
    (4, 1.46, 12.36, 55.0),
)
REFERENCE = (
    "PMC5206851, Table 2 (https://pmc.ncbi.nlm.nih.gov/articles/PMC5206851/table/tab2): "
    "Lu-177 SPECT/CT of the NEMA/IEC NU2 phantom, background COV"
)
PROFILES = ("bordet", "montpellier", "milan")
VOXEL_MM = 4.8
RESULTS = Path(__file__).parent / "results" / "imaging_noise.md"


def _machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}"
    )


def background_mask(labels: np.ndarray, voxel_size_mm: float) -> np.ndarray:
    """The calibration's background region (see :func:`harmonize.imaging.nema.measure_calibration`)."""
    hot = (labels > 0) | (labels == -2)
    far = ndimage.distance_transform_edt(~hot, sampling=voxel_size_mm) > 30.0
    far &= ndimage.distance_transform_edt(labels != -1, sampling=voxel_size_mm) > 40.0
    zc = (np.arange(labels.shape[0]) - (labels.shape[0] - 1) / 2.0) * voxel_size_mm
    return (labels == 0) & far & (np.abs(zc) < 60.0)[:, None, None]


def phantom_liver_kbq_ml(times_h: tuple[float, ...] = (24.0, 168.0), n: int = 6) -> np.ndarray:
    """Liver concentration (kBq/mL) of the default cohort's patients (seed 2024), cycle 1."""
    out = []
    for index in range(1, n + 1):
        patient = make_patient(index, 2024, PhantomConfig())
        conc = _concentration_mbq_ml(patient.kinetics[1], np.asarray(times_h))
        row = int(np.flatnonzero(patient.vois["name"].to_numpy() == "liver")[0])
        out.append(conc[row] * 1e3)
    return np.asarray(out)


def measure(profile_name: str, seed: int = 0) -> list[dict[str, float]]:
    """Background CoV of the full chain at the reference's four concentrations."""
    profile = load_profile(profile_name)
    conc, density, labels = calibration_phantom(VOXEL_MM, contrast=10.0)
    bg = background_mask(labels, VOXEL_MM)
    rows = []
    for scan, c_bg, c_sph, cov_ref in REFERENCE_SCANS:
        frame = np.where(labels > 0, c_sph * 1e3, np.where(conc > 0, c_bg * 1e3, 0.0))
        assert np.allclose(frame[bg], c_bg * 1e3) and conc[bg].min() == BACKGROUND_BQ_ML
        rng = np.random.default_rng(np.random.SeedSequence([seed, 17, scan]))
        t0 = time.perf_counter()
        noisy = image_activity(frame[None], density, VOXEL_MM, profile, "full", rng)[0]
        clean = image_activity(frame[None], density, VOXEL_MM, profile, "full", None)[0]
        seconds = time.perf_counter() - t0
        noisy64, clean64 = noisy[bg].astype(np.float64), clean[bg].astype(np.float64)
        rows.append(
            {
                "scan": scan,
                "background_kbq_ml": c_bg,
                "reference_cov_pct": cov_ref,
                "total_cov_pct": 100.0 * float(noisy64.std() / noisy64.mean()),
                "noise_cov_pct": 100.0 * float((noisy64 - clean64).std() / clean64.mean()),
                "structure_cov_pct": 100.0 * float(clean64.std() / clean64.mean()),
                "seconds": seconds,
            }
        )
        print(
            f"{profile_name:12s} scan {scan}: bg {c_bg:6.2f} → CoV total "
            f"{rows[-1]['total_cov_pct']:5.1f} % (noise {rows[-1]['noise_cov_pct']:5.1f} %, "
            f"noise-free {rows[-1]['structure_cov_pct']:4.1f} %) vs published {cov_ref:g} % "
            f"[{seconds:.0f} s]",
            flush=True,
        )
    return rows


def _markdown(
    results: dict[str, list[dict[str, float]]], liver: np.ndarray, loads: tuple[float, float]
) -> str:
    lines = [
        "# Image noise of the full chain against a published Lu-177 measurement",
        "",
        f"Generated by `python benchmarks/bench_noise_reference.py --write` on "
        f"{datetime.date.today().isoformat()}; machine: {_machine()}; load average "
        f"{loads[0]:.1f} → {loads[1]:.1f}.",
        "",
        f"Reference: {REFERENCE}. Each profile keeps its own acquisition and reconstruction "
        "(harmonize/imaging/profiles); the article's protocol is not in our hands, so the "
        "phantom and the concentrations are matched, not the protocol. Voxel 4.8 mm, one "
        "noise realisation per scan (seed 0).",
        "",
        "| profile | scan | background | published COV % | counting-statistics "
        "scaling of scan 1, % | full chain CoV % (noise only) | ratio to published | "
        "noise-free CoV % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    _, c1, _, cov1 = REFERENCE_SCANS[0]
    for name, rows in results.items():
        for r in rows:
            poisson = cov1 * (c1 / r["background_kbq_ml"]) ** 0.5
            lines.append(
                f"| {name} | {int(r['scan'])} | {r['background_kbq_ml']:.2f} | "
                f"{r['reference_cov_pct']:g} | {poisson:.0f} | {r['total_cov_pct']:.1f} "
                f"({r['noise_cov_pct']:.1f}) | {r['total_cov_pct'] / r['reference_cov_pct']:.2f} "
                f"| {r['structure_cov_pct']:.1f} |"
            )
    lines += [
        "",
        "The counting-statistics column scales the published scan 1 by √(c₁/c) — what the "
        "same acquisition would give at each concentration if only the counts changed.",
    ]
    med24, med168 = np.median(liver, axis=0)
    lines += [
        "",
        f"Liver of the default phantom cohort (seed 2024, patients 1–{liver.shape[0]}, "
        f"cycle 1): median {med24:.0f} kBq/mL at 24 h and {med168:.0f} kBq/mL at 168 h "
        f"(range {liver[:, 1].min():.0f}–{liver[:, 1].max():.0f} at 168 h).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    parser.add_argument("--profiles", default=",".join(PROFILES))
    args = parser.parse_args(argv)
    load0 = os.getloadavg()[0]
    print(f"machine: {_machine()}; load average at start {load0:.1f}", flush=True)
    liver = phantom_liver_kbq_ml()
    print(
        "phantom liver, kBq/mL (24 h, 168 h) per patient: "
        + "; ".join(f"{a:.0f}, {b:.0f}" for a, b in liver),
        flush=True,
    )
    results = {name: measure(name) for name in args.profiles.split(",")}
    loads = (load0, os.getloadavg()[0])
    if args.write:
        write_bytes_atomic(RESULTS, _markdown(results, liver, loads).encode(), overwrite=True)
        print(f"wrote {RESULTS}")
    figures = {
        f"{name}.scan{int(r['scan'])}.total_cov_pct": r["total_cov_pct"]
        for name, rows in results.items()
        for r in rows
    }
    figures["liver_168h_median_kbq_ml"] = float(np.median(liver[:, 1]))
    return figures


if __name__ == "__main__":
    main()
