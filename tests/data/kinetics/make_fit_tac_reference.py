"""Write ``fit_tac_reference.json``: TIAs of :func:`harmonize.kinetics.fit_tac` as computed by
main's implementation (commit b966efc, three multi-start least-squares runs per fit) before
issue #17 changed how the fit is started.

Run from the repository root with that implementation installed::

    python tests/data/kinetics/make_fit_tac_reference.py

The TACs:

* **P004**: patient P004 (index 3) of the seeded phantom cohort (seed 0, default
  :class:`harmonize.phantom.PhantomConfig`, noisy images), cycles 1 and 2: every VOI's
  measured TAC as the Bordet, Milan and Montpellier adapters extract it (``tac`` table);
* **phantom truth**: the noise-free VOI curves of the same patient (the bi-exponential with
  uptake the phantom draws), at the phantom's 4 time points and at 7 time points;
* **synthetic**: seeded noisy curves of every model at 7 points (4 for the mono-exponential),
  so the bi- and tri-exponential fits and ``"auto"`` are covered too.

Each TAC is fitted with every model that has enough points and every weighting. Floats are
written in shortest round-trip form (``json`` uses ``repr``), so the values read back are the
values computed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from harmonize import kinetics
from harmonize.phantom import PhantomConfig, make_patient, simulate_study
from harmonize.registry import get_workflow

OUT = Path(__file__).resolve().parent / "fit_tac_reference.json"
T7 = np.array([1.0, 4.0, 24.0, 48.0, 72.0, 120.0, 192.0])


def p004_tacs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    config = PhantomConfig()
    patient = make_patient(3, seed=0, config=config)
    out = []
    for cycle in (1, 2):
        study, _ = simulate_study(patient, cycle, seed=0, config=config)
        for name in ("bordet", "milan", "montpellier"):
            tac = get_workflow(name)().run(study).tac
            for voi, rows in tac.groupby("voi_id", sort=True):
                t = rows["time_h"].to_numpy(float)
                y = rows["activity_measured_mbq"].to_numpy(float)
                out.append((f"P004/C{cycle}/{name}/voi{voi}", t, y))
    return out


def truth_tacs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    config = PhantomConfig()
    patient = make_patient(3, seed=0, config=config)
    kin = patient.kinetics[1]
    out = []
    for times, label in ((np.asarray(config.times_h, float), "t4"), (T7, "t7")):
        for i, row in enumerate(kin.itertuples()):
            params = {
                "a1": float(row.c0_mbq_ml),
                "lambda1_per_h": float(row.lambda_washout_per_h),
                "lambda2_per_h": float(row.lambda_uptake_per_h),
            }
            y = kinetics.evaluate_model("biexp_uptake", params, times)
            out.append((f"truth/{label}/voi{i}", times, y))
    return out


def synthetic_tacs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(17)
    truths = {
        "monoexp": {"a1": 50.0, "lambda1_per_h": 0.02},
        "biexp": {"a1": 30.0, "a2": 20.0, "lambda1_per_h": 0.012, "lambda2_per_h": 0.15},
        "biexp_uptake": {"a1": 80.0, "lambda1_per_h": 0.012, "lambda2_per_h": 0.3},
        "triexp": {"a1": 60.0, "a2": 30.0, "lambda1_per_h": 0.011, "lambda2_per_h": 0.08,
                   "lambda3_per_h": 0.5},
    }  # fmt: skip
    out = []
    for model, params in truths.items():
        clean = kinetics.evaluate_model(model, params, T7)
        for k in range(4):
            noise = 0.0 if k == 0 else 0.05 * k
            y = clean * (1.0 + noise * rng.standard_normal(T7.size))
            out.append((f"synthetic/{model}/noise{noise:.2f}", T7, y))
    return out


def main() -> None:
    cases = []
    for label, t, y in [*p004_tacs(), *truth_tacs(), *synthetic_tacs()]:
        models = ["monoexp", "biexp_uptake", "trapezoid"]
        if t.size >= 5:
            models += ["biexp", "triexp", "auto"]
        elif t.size >= 4:
            models += ["biexp", "auto"]
        for model in models:
            for weighting in ("none", "relative", "poisson"):
                try:
                    fit = kinetics.fit_tac(t, y, model=model, weighting=weighting)
                except kinetics.KineticsError as exc:
                    result: dict[str, object] = {"error": str(exc)}
                else:
                    result = {
                        "model_selected": fit.model,
                        "tia": fit.tia,
                        "params": fit.params,
                        "flags": list(fit.flags),
                        "fallback": fit.fallback,
                        "aicc": None if np.isnan(fit.aicc) else fit.aicc,
                    }
                cases.append(
                    {"label": label, "times_h": t.tolist(), "activity": y.tolist(),
                     "model": model, "weighting": weighting, **result}
                )  # fmt: skip
    text = json.dumps({"generator": "tests/data/kinetics/make_fit_tac_reference.py",
                       "implementation": "main b966efc (multi-start least squares)",
                       "cases": cases}, indent=0)  # fmt: skip
    OUT.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()
