"""Write ``fit_voxels_reference.npz``: voxel TIAs, λ and flags of
:func:`harmonize.kinetics.fit_voxels` as computed by main's implementation (commit 5bef566)
before issue #17 changed how its iterations are organised.

Run from the repository root with that implementation importable, e.g.::

    git archive 5bef566 harmonize | tar -x -C /tmp/main
    PYTHONPATH=/tmp/main python tests/data/kinetics/make_fit_voxels_reference.py

The volumes (seeded, synthetic, no patient data):

* ``noisy``: 12³ voxels at 4, 24, 72, 192 h drawn like ``benchmarks/bench_kinetics.py``
  (log-normal amplitudes over three decades, effective half-lives 30–150 h, 10 %
  multiplicative and 0.002 additive noise: low voxels have zero or negative points);
* ``low``: 6 × 8 × 8 voxels of N(0.01, 0.02) at the same times (mostly non-positive points,
  fallbacks, bounds);

each with the mono-exponential in every weighting, the trapezoid with a mono-exponential
tail on 2 and 3 points (unweighted and Poisson) and with a physical tail; the noisy volume
also at its first 2 and 3 time points.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harmonize.kinetics import fit_voxels

OUT = Path(__file__).resolve().parent / "fit_voxels_reference.npz"
TIMES_H = np.array([4.0, 24.0, 72.0, 192.0])


def volumes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(17)
    shape = (12, 12, 12)
    a0 = np.exp(rng.normal(np.log(0.05), 1.2, shape))
    lam = np.log(2.0) / rng.uniform(30.0, 150.0, shape)
    noisy = np.empty((4, *shape), dtype=np.float32)
    for i, t in enumerate(TIMES_H):
        clean = a0 * np.exp(-lam * t)
        noisy[i] = clean * (1 + 0.1 * rng.standard_normal(shape)) + 0.002 * rng.standard_normal(
            shape
        )
    low = rng.normal(0.01, 0.02, (4, 6, 8, 8)).astype(np.float32)
    return {"noisy": noisy, "low": low}


def configs() -> list[tuple[str, int, dict]]:
    out: list[tuple[str, int, dict]] = []
    for vol in ("noisy", "low"):
        for wt in ("none", "relative", "poisson"):
            out.append((vol, 4, {"model": "monoexp", "weighting": wt}))
        for tp in (2, 3):
            for wt in ("none", "poisson"):
                out.append(
                    (vol, 4, {"model": "trapezoid", "tail": "monoexp", "tail_points": tp,
                              "weighting": wt})
                )  # fmt: skip
        out.append((vol, 4, {"model": "trapezoid", "tail": "physical"}))
    for n in (2, 3):
        out.append(("noisy", n, {"model": "monoexp", "weighting": "none"}))
        out.append(("noisy", n, {"model": "trapezoid", "tail": "monoexp", "tail_points": 2}))
    return out


def key(i: int) -> str:
    return f"case{i:02d}"


def main() -> None:
    vols = volumes()
    arrays: dict[str, np.ndarray] = {f"volume_{k}": v for k, v in vols.items()}
    for i, (vol, n, kw) in enumerate(configs()):
        res = fit_voxels(TIMES_H[:n], vols[vol][:n], return_details=True, n_threads=1, **kw)
        arrays[f"{key(i)}_tia"] = res.tia
        arrays[f"{key(i)}_lambda"] = res.lambda_eff_per_h
        arrays[f"{key(i)}_flags"] = res.flags
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({len(configs())} cases)")


if __name__ == "__main__":
    main()
