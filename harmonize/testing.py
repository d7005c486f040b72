"""Conformance suite for workflow adapters (built-in and third-party).

Two ways to use it, after pandas' extension tests and scikit-learn's estimator checks:

* ``check_workflow(adapter)`` runs every check outside pytest and returns one
  :class:`CheckResult` per check (``passed``, ``message``);
* subclass :class:`WorkflowConformance` in a test module (the class name must start with
  ``Test``) and provide the ``adapter`` fixture — every check becomes a pytest test::

      class TestMyCentre(WorkflowConformance):
          @pytest.fixture
          def adapter(self):
              return MyCentreWorkflow()

The checks run on a small synthetic study. Truth recovery uses a **noise-free, unblurred**
phantom (perfect resolution), so an adapter with partial-volume correction should be given
with that correction off through the ``truth_adapter`` fixture.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from harmonize import schema
from harmonize.study import voi_table
from harmonize.workflow import WorkflowAdapter, WorkflowResult

if TYPE_CHECKING:
    from harmonize.phantom import PhantomConfig

__all__ = [
    "CONFORMANCE_PHANTOM",
    "FUZZ_CASES",
    "CheckResult",
    "WorkflowConformance",
    "check_fuzz",
    "check_workflow",
    "conformance_study",
]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one conformance check."""

    name: str
    passed: bool
    message: str


def _config(noise: bool, psf_fwhm_mm: float) -> PhantomConfig:
    from harmonize.phantom import PhantomConfig

    return PhantomConfig(
        voxel_size_mm=6.8,  # a tabulated Lanconelli voxel size
        fov_mm=(210.0, 258.0, 360.0),
        noise=noise,
        psf_fwhm_mm=psf_fwhm_mm,
        n_lesions=(3, 4),
        lesion_volume_ml=(20.0, 150.0),
        cycles=(1,),
    )


#: Description of the conformance phantom (for messages and docs).
CONFORMANCE_PHANTOM = "seed 7, 6.8 mm voxels, 3–4 lesions of 20–150 mL, cycle 1"


@functools.cache
def _study(noise: bool, psf_fwhm_mm: float) -> tuple[xr.Dataset, pd.DataFrame]:
    from harmonize.phantom import make_patient, simulate_study

    config = _config(noise, psf_fwhm_mm)
    patient = make_patient(0, 7, config)
    return simulate_study(patient, 1, 7, config)


def conformance_study(
    *, noise: bool = True, psf_fwhm_mm: float = 11.0
) -> tuple[xr.Dataset, pd.DataFrame]:
    """The small phantom study the checks use, and its truth table (cached, copies returned)."""
    study, truth = _study(noise, float(psf_fwhm_mm))
    return study.copy(deep=True), truth.copy()


# -- the checks -------------------------------------------------------------------------
def check_deterministic(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """Two runs on the same study give identical tables."""
    a, b = adapter.run(study), adapter.run(study)
    pd.testing.assert_frame_equal(a.voi_dose, b.voi_dose)
    pd.testing.assert_frame_equal(a.tac, b.tac)
    pd.testing.assert_frame_equal(a.dvh, b.dvh)


def check_schema_valid(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """The tables conform to the results schema."""
    result = adapter.run(study)
    schema.to_arrow_table(result.voi_dose, "voi_dose")
    schema.to_arrow_table(result.tac, "tac")
    if len(result.dvh):
        schema.to_arrow_table(result.dvh, "dvh")


def check_every_voi_once(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """Every VOI of the study appears exactly once in ``voi_dose``, with its name and kind."""
    result = adapter.run(study)
    expected = voi_table(study).sort_values("voi_id")
    got = result.voi_dose.sort_values("voi_id")
    assert got["voi_id"].tolist() == expected["voi_id"].tolist(), (
        f"VOIs out {got['voi_id'].tolist()} != VOIs in {expected['voi_id'].tolist()}"
    )
    assert got["voi_kind"].tolist() == expected["kind"].tolist()
    assert got["voi_name"].tolist() == expected["name"].tolist()


def check_finite_positive_doses(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """Mean dose, TIA and mass are finite and > 0 for every VOI."""
    result = adapter.run(study)
    for column in ("dose_mean_gy", "tia_mbq_h", "mass_g", "volume_ml"):
        values = result.voi_dose[column].to_numpy(np.float64)
        bad = result.voi_dose.loc[~(np.isfinite(values) & (values > 0)), "voi_name"].tolist()
        assert not bad, f"{column} not finite and positive for VOIs {bad}"
    if adapter.tags.voxel_dose_indices:
        d = result.voi_dose
        assert (d["dose_min_gy"] <= d["dose_mean_gy"] + 1e-9).all()
        assert (d["dose_max_gy"] >= d["dose_mean_gy"] - 1e-9).all()
        assert (d["dose_d2_gy"] >= d["dose_d98_gy"]).all()


#: voi_dose columns that the DVH rows at these volume percentages must equal (SPEC.md §2).
_DVH_ROWS = {
    0.0: "dose_max_gy",
    2.0: "dose_d2_gy",
    50.0: "dose_d50_gy",
    98.0: "dose_d98_gy",
    100.0: "dose_min_gy",
}


def check_dvh(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """With voxel doses, ``dvh`` has 101 non-increasing rows per VOI that agree with voi_dose.

    When ``tags.voxel_dose_indices`` is true: every VOI of ``voi_dose`` has exactly the rows
    ``volume_pct`` = 0, 1, ..., 100, ``dose_gy`` is finite and non-increasing in volume, and
    the rows at 0, 2, 50, 98 and 100 % equal ``dose_max_gy``, ``dose_d2_gy``,
    ``dose_d50_gy``, ``dose_d98_gy`` and ``dose_min_gy`` (exactly: both are read from the
    same voxel doses by the same rule). When it is false the adapter has no voxel doses and
    must return no DVH.
    """
    result = adapter.run(study)
    dvh = result.dvh
    if not adapter.tags.voxel_dose_indices:
        assert dvh.empty, "an adapter without voxel dose indices must return no dvh rows"
        return
    assert not dvh.empty, "an adapter with voxel dose indices must return a dvh table"
    voi = result.voi_dose.set_index("voi_id")
    dvh = dvh.sort_values(["voi_id", "volume_pct"], kind="stable")
    assert sorted(dvh["voi_id"].unique().tolist()) == sorted(voi.index.tolist()), (
        f"dvh VOIs {sorted(dvh['voi_id'].unique().tolist())} != voi_dose VOIs "
        f"{sorted(voi.index.tolist())}"
    )
    counts = dvh.groupby("voi_id")["volume_pct"].agg(["size", "nunique"])
    bad = counts.index[(counts["size"] != 101) | (counts["nunique"] != 101)].tolist()
    assert not bad, f"VOIs {bad} do not have 101 distinct volume percentages"
    wide = dvh.pivot(index="voi_id", columns="volume_pct", values="dose_gy")
    assert wide.columns.tolist() == [float(x) for x in range(101)], (
        "dvh volume_pct must be 0, 1, ..., 100"
    )
    values = wide.to_numpy(np.float64)
    assert np.isfinite(values).all(), "dvh dose_gy must be finite"
    rising = wide.index[(np.diff(values, axis=1) > 0).any(axis=1)].tolist()
    assert not rising, f"dvh dose_gy increases with volume_pct for VOIs {rising}"
    for pct, column in _DVH_ROWS.items():
        expected = voi.loc[wide.index, column].to_numpy(np.float64)
        off = wide.index[wide[pct].to_numpy() != expected].tolist()
        assert not off, f"dvh at {pct:g} % differs from voi_dose {column} for VOIs {off}"


def check_provenance(adapter: WorkflowAdapter, study: xr.Dataset) -> None:
    """Provenance names the workflow, every parameter with a source, the input hash, software."""
    result: WorkflowResult = adapter.run(study)
    prov = result.provenance
    wf = prov["workflow"]
    assert wf["name"] == adapter.name and wf["version"] == adapter.version
    assert set(wf["parameters"]) == set(wf["parameter_sources"])
    missing = [k for k, v in wf["parameter_sources"].items() if not v]
    assert not missing, f"parameters without a source: {missing}"
    assert len(prov["input_sha256"]) == 64
    assert prov["software"].get("numpy")
    assert adapter.references, "an adapter must cite at least one reference"


def check_truth_recovery(adapter: WorkflowAdapter, study: xr.Dataset, truth: pd.DataFrame) -> None:
    """On a noise-free unblurred phantom, lesion mean doses match the truth within tolerance."""
    result = adapter.run(study)
    tol = adapter.tags.truth_tolerance
    big = truth[
        (truth["voi_kind"] == "lesion") & (truth["volume_ml"] >= adapter.tags.truth_min_volume_ml)
    ]
    assert len(big), "the conformance phantom has no lesion large enough"
    got = result.voi_dose.set_index("voi_id").loc[big["voi_id"], "dose_mean_gy"].to_numpy()
    rel = got / big["dose_mean_gy"].to_numpy() - 1.0
    worst = float(np.max(np.abs(rel)))
    assert worst <= tol, (
        f"lesion mean dose error up to {worst:.1%} vs truth (declared tolerance {tol:.0%}); "
        f"errors {np.round(rel, 3).tolist()}"
    )


#: Number of mutated studies :func:`check_fuzz` feeds an adapter by default.
FUZZ_CASES = 34  # each mutation of harmonize._fuzz.MUTATIONS once


def check_fuzz(adapter: WorkflowAdapter, n_cases: int = FUZZ_CASES, seed: int = 0) -> None:
    """Seeded mutations of a valid study: the adapter processes or refuses, never crashes.

    Each case is a small valid study with one mutation (:mod:`harmonize._fuzz`: the faults
    of the issue-12 campaign — empty VOI or grid, parent cycle, all-zero or NaN frame, times
    in seconds, air in a lesion … — and perturbations that stay valid). Whatever
    :func:`~harmonize.study.validate_study` accepts, ``adapter.run`` must either return
    results whose TIA, mass and mean dose are finite (and ≥ 0) or raise a
    :class:`~harmonize.study.StudyError` / :class:`~harmonize.workflow.WorkflowError`.
    Any other exception type fails the check, naming the case and the exception.
    """
    from harmonize._fuzz import mutated_studies
    from harmonize.study import StudyError, validate_study
    from harmonize.workflow import WorkflowError

    crashes: list[str] = []
    for i, (name, study) in enumerate(mutated_studies(n_cases, seed)):
        try:
            validate_study(study)
        except StudyError:
            continue
        except Exception as exc:  # validate_study itself must not crash either
            crashes.append(f"case {i} ({name}): validate_study raised {type(exc).__name__}: {exc}")
            continue
        try:
            result = adapter.run(study)
        except (StudyError, WorkflowError):
            continue
        except Exception as exc:
            crashes.append(f"case {i} ({name}): {type(exc).__name__}: {exc}")
            continue
        for column in ("tia_mbq_h", "mass_g", "dose_mean_gy"):
            values = result.voi_dose[column].to_numpy(np.float64)
            if not np.all(np.isfinite(values) & (values >= 0)):
                crashes.append(f"case {i} ({name}): {column} not finite and ≥ 0: {values}")
    assert not crashes, (
        f"{len(crashes)} of {n_cases} fuzz cases (seed {seed}) crashed:\n" + "\n".join(crashes)
    )


_STUDY_CHECKS: dict[str, Callable[[WorkflowAdapter, xr.Dataset], None]] = {
    "deterministic": check_deterministic,
    "schema_valid": check_schema_valid,
    "every_voi_once": check_every_voi_once,
    "finite_positive_doses": check_finite_positive_doses,
    "dvh": check_dvh,
    "provenance": check_provenance,
}


def check_workflow(
    adapter: WorkflowAdapter, truth_adapter: WorkflowAdapter | None = None
) -> list[CheckResult]:
    """Run every conformance check on ``adapter``; one result per check (never raises)."""
    out = []
    noisy, _ = conformance_study(noise=True)
    clean, truth = conformance_study(noise=False, psf_fwhm_mm=0.0)
    checks: list[tuple[str, Callable[[], None]]] = [
        (name, functools.partial(func, adapter, noisy)) for name, func in _STUDY_CHECKS.items()
    ]
    checks.append(
        (
            "truth_recovery",
            functools.partial(check_truth_recovery, truth_adapter or adapter, clean, truth),
        )
    )
    checks.append(("fuzz", functools.partial(check_fuzz, adapter)))
    for name, func in checks:
        try:
            func()
            out.append(CheckResult(name, True, "ok"))
        except Exception as exc:  # a failing check is a result, not a crash
            out.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return out


class WorkflowConformance:
    """Base class of an adapter's conformance tests (subclass as ``TestSomething``).

    Required fixture
    ----------------
    adapter
        An instance of the adapter under test, with its default (published/assumed)
        parameters. Raises ``NotImplementedError`` until the subclass provides it.

    Optional fixture
    ----------------
    truth_adapter
        The adapter configured for perfect-resolution noise-free images (e.g. with
        partial-volume correction off). Defaults to ``adapter``.
    """

    @pytest.fixture
    def adapter(self) -> WorkflowAdapter:
        raise NotImplementedError(
            "subclasses of WorkflowConformance must provide an 'adapter' fixture"
        )

    @pytest.fixture
    def truth_adapter(self, adapter: WorkflowAdapter) -> WorkflowAdapter:
        return adapter

    @pytest.fixture
    def noisy_study(self) -> xr.Dataset:
        return conformance_study(noise=True)[0]

    def test_deterministic(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_deterministic(adapter, noisy_study)

    def test_schema_valid(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_schema_valid(adapter, noisy_study)

    def test_every_voi_once(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_every_voi_once(adapter, noisy_study)

    def test_finite_positive_doses(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_finite_positive_doses(adapter, noisy_study)

    def test_dvh(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_dvh(adapter, noisy_study)

    def test_provenance(self, adapter: WorkflowAdapter, noisy_study: xr.Dataset) -> None:
        check_provenance(adapter, noisy_study)

    def test_truth_recovery(self, truth_adapter: WorkflowAdapter) -> None:
        study, truth = conformance_study(noise=False, psf_fwhm_mm=0.0)
        check_truth_recovery(truth_adapter, study, truth)

    def test_fuzz(self, adapter: WorkflowAdapter) -> None:
        check_fuzz(adapter)

    def test_check_workflow_agrees(
        self, adapter: WorkflowAdapter, truth_adapter: WorkflowAdapter
    ) -> None:
        results = check_workflow(adapter, truth_adapter)
        failed = [r for r in results if not r.passed]
        assert not failed, failed
        assert {r.name for r in results} >= {"deterministic", "truth_recovery"}
