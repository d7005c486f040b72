"""fit_tac and fit_voxels give main's numbers (issue #17: faster, same results).

``tests/data/kinetics/fit_tac_reference.json`` was written by main's ``fit_tac`` (commit
b966efc, three multi-start least-squares runs per fit) with the generator script beside it:
P004 phantom VOI TACs as the three adapters extract them, the phantom's noise-free curves and
seeded synthetic curves, every model and weighting. ``fit_voxels_reference.npz`` was written
by main's ``fit_voxels`` (commit 5bef566) with ``make_fit_voxels_reference.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harmonize import kinetics
from harmonize.kinetics.voxel import point_weights

REFERENCE = Path(__file__).parent / "data" / "kinetics" / "fit_tac_reference.json"
CASES = json.loads(REFERENCE.read_text(encoding="utf-8"))["cases"]

#: Both implementations converge to the same weighted least-squares optimum, and the weighted
#: RSS at the two solutions agrees to rounding (checked below, RSS_RTOL). But near an optimum
#: the RSS changes with the *square* of a parameter error, so in double precision (ε ≈ 2e-16)
#: the optimum itself -- and the TIA computed from it -- is only determined to about √ε times
#: the conditioning of the problem (≈ 1e-8 here; measured on these cases: median 1e-11,
#: maximum 2.5e-8 against main's solver, whose solutions are no better: equal RSS, lower in
#: only a third of the cases). 1e-7 is that limit with a margin and far below any dosimetric
#: meaning; a different local minimum or a lost digit of convergence would show as >> 1e-6.
TIA_RTOL = 1e-7
#: The new solution must be as good a least-squares fit as main's, up to rounding of the RSS
#: (relative to Σw·y², the scale of the RSS's round-off; exact fits leave RSS ~ 1e-30).
RSS_RTOL = 1e-12


def _rss(model: str, params: dict, t: np.ndarray, y: np.ndarray, weighting: str) -> float:
    w = point_weights(y, weighting)
    return float(np.sum(w * (y - kinetics.evaluate_model(model, params, t)) ** 2))


#: Every case of the mono-exponential, the trapezoid (its tail fit is the mono-exponential) and
#: the bi-exponential with uptake; every 3rd of the bi-exponential, every 6th of the
#: tri-exponential and every 8th of "auto" (most of their fits decline the first fit and run
#: main's multi-start least squares, ~20-50 ms per fit: all of them would take a minute on a
#: shared machine).
STRIDE = {"monoexp": 1, "trapezoid": 1, "biexp_uptake": 1, "biexp": 3, "triexp": 6, "auto": 8}


def _by_model(model: str) -> list[dict]:
    return [c for c in CASES if c["model"] == model][:: STRIDE[model]]


@pytest.mark.parametrize(
    "model", ["monoexp", "biexp_uptake", "biexp", "triexp", "trapezoid", "auto"]
)
def test_fit_tac_matches_main_implementation(model):
    cases = _by_model(model)
    assert len(cases) >= 15
    worst = 0.0
    for case in cases:
        t, y = np.array(case["times_h"]), np.array(case["activity"])
        if "error" in case:
            with pytest.raises(kinetics.KineticsError):
                kinetics.fit_tac(t, y, model=model, weighting=case["weighting"])
            continue
        fit = kinetics.fit_tac(t, y, model=model, weighting=case["weighting"])
        where = f"{case['label']} {model} {case['weighting']}"
        assert fit.model == case["model_selected"], where
        assert fit.fallback == case["fallback"], where
        assert list(fit.flags) == case["flags"], where
        rel = abs(fit.tia / case["tia"] - 1.0)
        worst = max(worst, rel)
        assert rel <= TIA_RTOL, f"{where}: TIA {fit.tia!r} vs {case['tia']!r} (rel {rel:.1e})"
        if case["aicc"] is None:
            assert math.isnan(fit.aicc), where
        if fit.fallback is None and fit.model in kinetics.PARAMETRIC_MODELS:
            old = _rss(fit.model, case["params"], t, y, case["weighting"])
            new = _rss(fit.model, fit.params, t, y, case["weighting"])
            scale = _rss(fit.model, dict.fromkeys(fit.params, 0.0), t, y, case["weighting"])
            assert new <= old + RSS_RTOL * scale, f"{where}: RSS {new!r} > {old!r}"
    print(f"{model}: {len(cases)} cases, worst relative TIA difference {worst:.1e}")


def test_single_tac_newton_equals_vectorised_solver():
    # fit_tac's plain-float Newton is the algorithm of fit_monoexp_columns (the voxel path):
    # same λ on every reference TAC up to summation-order rounding, amplified at most by
    # the last Newton step (relative 1e-7, quadratic convergence): 1e-10 is ample.
    from harmonize.kinetics.fit import _monoexp_newton
    from harmonize.kinetics.voxel import VoxelFlag, fit_monoexp_columns

    lam_phys = kinetics.fit_tac([1.0, 2.0], [2.0, 1.0], model="monoexp").lambda_phys_per_h
    compared = 0
    for case in _by_model("monoexp"):
        t, y = np.array(case["times_h"]), np.array(case["activity"])
        w = point_weights(y, case["weighting"])
        found = _monoexp_newton(t.tolist(), y.tolist(), w.tolist(), lam_phys)
        a, lam, flags = fit_monoexp_columns(t, y[:, None], lam_phys, case["weighting"])
        failed = bool(flags[0] & (VoxelFlag.FALLBACK | VoxelFlag.NOT_CONVERGED))
        assert (found is None) == failed, case["label"]
        if found is not None:
            compared += 1
            assert found[1] == pytest.approx(lam[0], rel=1e-10, abs=0), case["label"]
            assert found[0] == pytest.approx(a[0], rel=1e-10, abs=0), case["label"]
    assert compared >= 250


# --------------------------------------------------------------------------- first fit


def test_first_fit_is_main_optimum_or_declines(monkeypatch):
    # The multi-exponential fits start with one Levenberg-Marquardt run (fit._first_fit) and
    # keep it only when it passes its checks; otherwise main's multi-start runs unchanged.
    # Where the first fit is kept, the TIA is main's within TIA_RTOL (the check demands that
    # the TIA be determined to 1e-7 by the cost at the multi-start's ftol; measured on these
    # cases: at most 1.4e-8). Where it declines, the result is main's multi-start's, so the
    # TIA is main's to the last bit: this includes every P004 TAC whose uptake λ2 the
    # sampling does not determine (no point on the rise: the cost is flat in λ2 while the
    # TIA a1·(1/λ1 − 1/λ2) is not), where main's three starts end at different points of the
    # valley, with equal cost to 6 digits and TIAs up to 4e-3 apart, and main reports the
    # one whose cost is lowest in the last digits.
    from harmonize.kinetics import fit as fit_module

    taken: list[bool] = []
    first_fit = fit_module._first_fit

    def spy(*args, **kwargs):
        out = first_fit(*args, **kwargs)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(fit_module, "_first_fit", spy)
    kept = declined = 0
    for case in [c for c in CASES if c["model"] == "biexp_uptake" and "error" not in c]:
        t, y = np.array(case["times_h"]), np.array(case["activity"])
        taken.clear()
        fit = kinetics.fit_tac(t, y, model="biexp_uptake", weighting=case["weighting"])
        rel = abs(fit.tia / case["tia"] - 1.0)
        if taken == [True]:
            kept += 1
            assert rel <= TIA_RTOL, case["label"]
        elif taken == [False]:
            declined += 1
            assert fit.tia == case["tia"], case["label"]  # main's code path, same numbers
    # most fits take the fast path, and the ill-determined ones do not
    assert kept >= 150 and declined >= 50, (kept, declined)


def test_flat_uptake_valley_declines_first_fit():
    # P004/C1/bordet/voi1, unweighted: the three starts of main end at λ2 = 1.42, 1.45 and
    # 1.46 /h with the same cost; the first fit must not pick one of them by itself.
    from harmonize.kinetics import fit as fit_module
    from harmonize.kinetics._validate import physical_lambda_per_h

    case = next(
        c for c in CASES
        if c["label"] == "P004/C1/bordet/voi1" and c["model"] == "biexp_uptake"
        and c["weighting"] == "none"
    )  # fmt: skip
    t, y = np.array(case["times_h"]), np.array(case["activity"])
    w = point_weights(y, "none")
    ys = y / np.max(np.abs(y))
    lam_phys = physical_lambda_per_h("Lu-177")
    start = fit_module._best_grid_start("biexp_uptake", t, ys, w, lam_phys)
    assert fit_module._first_fit("biexp_uptake", t, ys, w, lam_phys, start) is None
    assert kinetics.fit_tac(t, y, model="biexp_uptake").tia == case["tia"]


# --------------------------------------------------------------------------- fit_voxels

VOXEL_REFERENCE = REFERENCE.parent / "fit_voxels_reference.npz"

#: fit_voxels stops each voxel's Newton iterations at a relative step of 1e-7, after which
#: (quadratic convergence) λ is exact to ~1e-14. The moments are matrix products whose
#: summation order depends on the shape of the arrays (BLAS kernels): main's own results move
#: by up to 9e-15 when only its chunk size changes, and such rounding can flip a voxel's stop
#: decision by one iteration. Measured against main on the 262 144 voxels of the benchmark
#: volume in every weighting and model: flags identical, TIAs bitwise identical on > 99.9 %
#: of voxels, largest relative difference 2e-13 (λ 8e-12, a voxel converging linearly at a
#: bound). 1e-10 bounds that with a margin; a changed algorithm would show as >> 1e-8.
VOXEL_RTOL = 1e-10


def test_fit_voxels_matches_main_implementation():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_fit_voxels_reference", REFERENCE.parent / "make_fit_voxels_reference.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    ref = np.load(VOXEL_REFERENCE)
    vols = gen.volumes()
    for name, vol in vols.items():  # the generator still draws the stored volumes
        assert np.array_equal(ref[f"volume_{name}"], vol), name
    bitwise = total = 0
    for i, (vol, n, kw) in enumerate(gen.configs()):
        for threads in (1, 2):
            res = kinetics.fit_voxels(
                gen.TIMES_H[:n], vols[vol][:n], return_details=True, n_threads=threads, **kw
            )
            where = f"{vol} n={n} {kw} threads={threads}"
            np.testing.assert_array_equal(res.flags, ref[f"{gen.key(i)}_flags"], err_msg=where)
            for field, got in (("tia", res.tia), ("lambda", res.lambda_eff_per_h)):
                np.testing.assert_allclose(
                    got, ref[f"{gen.key(i)}_{field}"], rtol=VOXEL_RTOL, atol=0, err_msg=where
                )
            bitwise += int(np.count_nonzero(res.tia == ref[f"{gen.key(i)}_tia"]))
            total += res.tia.size
    assert bitwise >= 0.99 * total  # the differences are rounding in a few voxels


def test_first_fit_at_physical_bound_is_multi_start_optimum():
    # TACs whose washout is slower than physical decay (λ1 fitted < λ_phys without bounds):
    # the first fit redoes the fit with λ1 = λ_phys and keeps it only at an active bound;
    # it must be the bounded optimum that main's multi-start (fit._multi_start, unchanged)
    # finds, within TIA_RTOL, with the no_washout flag.
    from harmonize.kinetics import fit as fit_module

    rng = np.random.default_rng(88)
    t = np.array([1.0, 4.0, 24.0, 48.0, 72.0, 120.0, 192.0])
    lam_phys = kinetics.fit_tac(t[:2], [2.0, 1.0], model="monoexp").lambda_phys_per_h
    at_bound = 0
    for _ in range(40):
        lam1 = lam_phys * rng.uniform(0.8, 1.05)  # around and below physical decay
        y = 80.0 * (np.exp(-lam1 * t) - np.exp(-0.3 * t)) * (1 + 0.03 * rng.standard_normal(7))
        w = point_weights(y, "none")
        ys = y / np.max(np.abs(y))
        start = fit_module._best_grid_start("biexp_uptake", t, ys, w, lam_phys)
        first = fit_module._first_fit("biexp_uptake", t, ys, w, lam_phys, start)
        starts = fit_module._grid_starts("biexp_uptake", t, ys, w, lam_phys)
        amps, lams, ok = fit_module._multi_start("biexp_uptake", t, ys, w, lam_phys, starts, 1.0)
        assert ok
        if first is None:
            continue
        tia_first = float(first[0][0] * (1 / first[1][0] - 1 / first[1][1]))
        tia_multi = float(amps[0] * (1 / lams[0] - 1 / lams[1]))
        assert tia_first == pytest.approx(tia_multi, rel=TIA_RTOL, abs=0)
        if first[1][0] == lam_phys:
            at_bound += 1
            assert lams[0] <= lam_phys * (1 + 1e-9)  # multi-start at the bound too
            fit = kinetics.fit_tac(t, y, model="biexp_uptake")
            assert "no_washout" in fit.flags
    assert at_bound >= 5  # the bound-active path was exercised
