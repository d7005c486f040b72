"""Cohort runner: all workflows → Parquet; identical across runs and worker counts."""

from __future__ import annotations

import hashlib

import pytest

from harmonize import schema
from harmonize.cli import main
from harmonize.phantom import PhantomConfig, write_cohort
from harmonize.runner import run_cohort

SMALL = PhantomConfig(
    voxel_size_mm=9.28, fov_mm=(185.6, 259.84, 371.2), cycles=(1, 4), n_lesions=(2, 3)
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return write_cohort(tmp_path_factory.mktemp("cohort"), n_patients=2, seed=0, config=SMALL)


def _digests(root):
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_all_workflows_one_vs_two_workers_identical(cohort, tmp_path):
    one = run_cohort(cohort, "all", tmp_path / "one", workers=1)
    two = run_cohort(cohort, "all", tmp_path / "two", workers=2)
    assert one.ok and two.ok
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    results = schema.read_results(tmp_path / "one")
    voi = results["voi_dose"]
    assert set(voi["workflow"]) >= {"truth", "montpellier", "bordet", "milan"}
    # every study × workflow has every VOI once
    counts = voi.groupby(["workflow", "patient_id", "cycle"]).size().unstack("workflow")
    assert (counts.nunique(axis=1) == 1).all()
    pindex = results["patient_index"]
    assert len(pindex) == 2 * 2 * voi["workflow"].nunique()
    assert schema.validate_path(tmp_path / "one") == []
    # DVHs: written by the adapters with voxel doses only, 101 rows per VOI, whose 2/50/98 %
    # rows survive the Parquet round trip as voi_dose's D2/D50/D98
    dvh = results["dvh"]
    assert set(dvh["workflow"]) == {"montpellier", "bordet"}
    keys = ["workflow", "patient_id", "cycle", "voi_id"]
    assert (dvh.groupby(keys).size() == 101).all()
    assert len(dvh) == 101 * len(voi[voi["workflow"].isin(["montpellier", "bordet"])])
    for pct, column in [(2.0, "dose_d2_gy"), (50.0, "dose_d50_gy"), (98.0, "dose_d98_gy")]:
        rows = dvh[dvh["volume_pct"] == pct].merge(voi, on=keys)
        assert len(rows) and (rows["dose_gy"] == rows[column]).all()
    # uncertainty (1.2.0): every adapter writes its budget, whose contributions add in
    # quadrature to voi_dose.dose_mean_u_gy; patient indices carry *_u_gy (not the truth);
    # the digests above show the Monte Carlo of the indices is seeded (same bytes)
    budget = results["uncertainty"]
    assert set(budget["workflow"]) == {"montpellier", "bordet", "milan"}
    rss = budget.groupby(keys)["dose_u_rel"].apply(lambda s: float((s**2).sum() ** 0.5))
    rel = voi.set_index(keys).loc[rss.index]
    assert ((rss - rel["dose_mean_u_gy"] / rel["dose_mean_gy"]).abs() < 1e-9).all()
    u_min = pindex.set_index("workflow")["lesion_dose_min_u_gy"]
    assert u_min.drop("truth").gt(0).all() and u_min.loc["truth"].isna().all()
    # a re-run writes the same files: no duplicated rows
    again = run_cohort(cohort, "all", tmp_path / "one", workers=1)
    assert again.ok and _digests(tmp_path / "one") == _digests(tmp_path / "two")
    assert len(schema.read_results(tmp_path / "one")["voi_dose"]) == len(voi)


def test_failing_study_is_reported_others_complete(cohort, tmp_path, capsys):
    out = tmp_path / "res"
    code = main(
        [
            "run",
            "--workflow",
            "bordet",
            "--cohort",
            str(cohort),
            "--out",
            str(out),
            "--quiet",
            "--set",
            "time_points_h=24,72,500",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED patient P001 cycle 1 workflow bordet" in err and "lacks time point" in err
    code = main(
        ["run", "--workflow", "nope", "--cohort", str(cohort), "--out", str(out), "--quiet"]
    )
    assert code == 2
    assert "unknown workflow 'nope'; installed workflows:" in capsys.readouterr().err


def test_cli_validate_and_compare(cohort, tmp_path, capsys):
    res = tmp_path / "res"
    assert (
        main(["run", "--workflow", "all", "--cohort", str(cohort), "--out", str(res), "--quiet"])
        == 0
    )
    assert main(["validate", str(res)]) == 0
    assert (
        main(["compare", str(res), "--out", str(tmp_path / "agree"), "--n-boot", "50", "--quiet"])
        == 0
    )
    agreement = schema.read_results(tmp_path / "agree" / "agreement.parquet")["agreement"]
    assert {"bias", "ccc"} <= set(agreement["statistic"])
    assert main(["validate", str(tmp_path / "missing")]) == 2


def test_milan_cumulative_uses_cycles_one_and_four(tmp_path):
    # LUTADOSE images after cycles 1 and 4 only: GTD_TOT = 4 × (GTD1 + GTD4) / 2
    # (Maccauro 2024, cycles 2-3 interpolated), even when the cohort has all four cycles
    config = PhantomConfig(**{**SMALL.__dict__, "cycles": (1, 2, 3, 4)})
    cohort = write_cohort(tmp_path / "c", n_patients=1, seed=4, config=config)
    assert run_cohort(cohort, ["milan"], tmp_path / "r", include_truth=False).ok
    pindex = schema.read_results(tmp_path / "r")["patient_index"].set_index("cycle")
    assert sorted(pindex.index) == [1, 4]
    gtd1, gtd4 = pindex.loc[1, "global_mean_dose_gy"], pindex.loc[4, "global_mean_dose_gy"]
    assert pindex.loc[4, "cum_global_mean_dose_gy"] == pytest.approx(
        4 * (gtd1 + gtd4) / 2, rel=1e-12
    )
