"""Alignment, the tidy agreement table, cutoffs as data, cutoff agreement and translation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harmonize import compare
from harmonize.compare import CompareError, UnpairedRowsWarning
from harmonize.compare.agreement import AGREEMENT_COLUMNS
from harmonize.schema import SCHEMA_VERSION

FACTORS = {"truth": 1.0, "bordet": 1.1, "milan": 0.9}


def voi_dose(
    n_patients: int = 12, lesions: int = 4, cycles: int = 2, seed: int = 0, noise: float = 0.05
) -> pd.DataFrame:
    """Synthetic voi_dose: each workflow = truth × factor × lognormal noise; plus organs."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for c in range(1, cycles + 1):
            true = rng.lognormal(np.log(30), 0.5, lesions)
            for w, f in FACTORS.items():
                eps = np.ones(lesions) if w == "truth" else rng.lognormal(0, noise, lesions)
                for v in range(lesions):
                    rows.append(
                        (
                            f"P{p:02d}",
                            c,
                            "X",
                            w,
                            "1",
                            v + 1,
                            f"L{v + 1}",
                            "lesion",
                            true[v] * f * eps[v],
                        )
                    )
                rows.append((f"P{p:02d}", c, "X", w, "1", 99, "liver", "organ", 5.0))
    return pd.DataFrame(
        rows,
        columns=[
            "patient_id",
            "cycle",
            "center",
            "workflow",
            "workflow_version",
            "voi_id",
            "voi_name",
            "voi_kind",
            "dose_mean_gy",
        ],
    )


def patient_index(vd: pd.DataFrame) -> pd.DataFrame:
    les = vd[vd["voi_kind"] == "lesion"]
    g = les.groupby(["patient_id", "cycle", "workflow"])["dose_mean_gy"]
    out = pd.DataFrame(
        {
            "lesion_dose_min_gy": g.min(),
            "lesion_dose_mean_gy": g.mean(),
            "global_mean_dose_gy": g.mean(),
        }
    ).reset_index()
    out = out.sort_values(["patient_id", "workflow", "cycle"])
    for col in ("lesion_dose_mean_gy", "lesion_dose_min_gy", "global_mean_dose_gy"):
        out["cum_" + col] = out.groupby(["patient_id", "workflow"])[col].cumsum()
    return out.reset_index(drop=True)


def test_table_shape_sign_and_values() -> None:
    vd = voi_dose()
    t = compare.agreement(vd, index="dose_mean_gy", level="lesion", reference="truth")
    assert tuple(t.columns) == AGREEMENT_COLUMNS
    assert str(t["cycle"].dtype) == "Int64" and t["cycle"].isna().all()
    assert set(t["workflow_b"]) == {"truth", ""}
    assert not t.duplicated(["workflow_a", "workflow_b", "statistic"]).any()
    bias = t.set_index(["workflow_a", "statistic"])["estimate"]
    assert bias[("bordet", "bias")] > 0 > bias[("milan", "bias")]  # a − b, b = truth
    assert bias[("bordet", "ratio_bias")] == pytest.approx(1.1, rel=0.02)  # noise SD 5 %/√96
    les = vd[vd["voi_kind"] == "lesion"].pivot(
        index=["patient_id", "cycle", "voi_id"], columns="workflow", values="dose_mean_gy"
    )
    direct = compare.bland_altman(les["bordet"], les["truth"])
    assert bias[("bordet", "loa_upper")] == pytest.approx(direct.loa_upper, rel=1e-12)
    assert bias[("bordet", "ccc")] == pytest.approx(
        compare.lin_ccc(les["bordet"], les["truth"]).ccc, rel=1e-12
    )
    assert t.loc[t["statistic"] == "bias", "n_pairs"].eq(12 * 4 * 2).all()
    assert {"rm_bias", "ICC(2,1)", "deming_slope", "passing_bablok_slope", "wcv"} <= set(
        t["statistic"]
    )
    assert set(t.loc[t["workflow_b"] == "", "statistic"]) == {
        "ICC(1,1)",
        "ICC(2,1)",
        "ICC(3,1)",
        "ICC(1,3)",
        "ICC(2,3)",
        "ICC(3,3)",
    }
    assert set(t["unit"]) <= {"Gy", "1", "%"}


def test_all_pairs_antisymmetric_order() -> None:
    vd = voi_dose()
    t1 = compare.agreement(vd, workflows=["bordet", "milan"])
    t2 = compare.agreement(vd, workflows=["milan", "bordet"])
    b1 = t1.set_index("statistic").loc["bias", "estimate"]
    b2 = t2.set_index("statistic").loc["bias", "estimate"]
    assert b1 == pytest.approx(-b2, rel=1e-12)
    ccc = [t.set_index("statistic").loc["ccc", "estimate"] for t in (t1, t2)]
    assert ccc[0] == pytest.approx(ccc[1], rel=1e-12)


def test_unpaired_rows_reported_and_warned() -> None:
    vd = voi_dose()
    drop = (vd["workflow"] == "milan") & (vd["patient_id"] == "P03") & (vd["voi_id"] == 2)
    with pytest.warns(UnpairedRowsWarning, match="2 lesion-level"):
        t = compare.agreement(vd[~drop], reference="truth")
    un = t.attrs["unpaired"]
    assert len(un) == 2 and set(un["missing_workflows"]) == {"milan"}
    n = t.set_index(["workflow_a", "statistic"])["n_pairs"]
    assert n[("milan", "bias")] == 94 and n[("bordet", "bias")] == 96


def test_patient_level_each_cycle_and_cycle_filter() -> None:
    pi = patient_index(voi_dose())
    t = compare.agreement(
        {"patient_index": pi},
        index="lesion_dose_min_gy",
        level="patient",
        reference="truth",
        cycle="each",
    )
    assert sorted(t["cycle"].unique()) == [1, 2]
    assert t.loc[t["statistic"] == "bias", "n_pairs"].eq(12).all()
    assert "rm_bias" not in set(t["statistic"])
    t1 = compare.agreement(pi, index="lesion_dose_min_gy", level="patient", cycle=1)
    assert t1["cycle"].eq(1).all()


def test_log_handling_and_pb_limit() -> None:
    vd = voi_dose()
    vd.loc[(vd["workflow"] == "bordet") & (vd["voi_id"] == 1), "dose_mean_gy"] = 0.0
    t = compare.agreement(vd, reference="truth", pb_max_n=5)
    r = t.set_index(["workflow_a", "statistic"])
    assert math.isnan(r.loc[("bordet", "ratio_bias"), "estimate"])
    assert "zero or negative" in r.loc[("bordet", "ratio_bias"), "method"]
    assert not math.isnan(r.loc[("milan", "ratio_bias"), "estimate"])
    assert "O(n^2)" in r.loc[("milan", "passing_bablok_slope"), "method"]
    with pytest.raises(CompareError, match="log=True"):
        compare.agreement(vd, reference="truth", log=True)
    t0 = compare.agreement(vd, reference="truth", log=False)
    assert "ratio_bias" not in set(t0["statistic"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"index": "dose_nope_gy"}, "dose_nope_gy"),
        ({"workflows": ["bordet", "ghost"]}, "ghost"),
        ({"reference": "ghost"}, "reference"),
        ({"level": "voxel"}, "level"),
        ({"ci_level": 1.5}, "ci_level"),
    ],
)
def test_agreement_bad_input(kwargs: dict, match: str) -> None:
    with pytest.raises(CompareError, match=match):
        compare.agreement(voi_dose(), **kwargs)


def test_agreement_too_few_pairs_and_duplicates() -> None:
    vd = voi_dose(n_patients=1, lesions=2, cycles=1)
    with pytest.raises(CompareError, match="need ≥ 3"):
        compare.agreement(vd)
    vd = voi_dose()
    with pytest.raises(CompareError, match="duplicate"):
        compare.agreement(pd.concat([vd, vd.iloc[:1]]))
    with pytest.raises(CompareError, match="patient_index"):
        compare.agreement({"voi_dose": vd}, level="patient")


def test_write_agreement_atomic_with_metadata(tmp_path) -> None:
    t = compare.agreement(voi_dose(), reference="truth")
    path = compare.write_agreement(t, tmp_path / "agreement.parquet")
    back = pq.read_table(path)
    meta = json.loads(back.schema.metadata[b"harmonize"])
    assert meta == {"schema_version": SCHEMA_VERSION, "table": "agreement"}
    assert back.num_rows == len(t) and back.column_names == list(AGREEMENT_COLUMNS)
    assert [p.name for p in tmp_path.iterdir()] == ["agreement.parquet"]
    with pytest.raises(CompareError, match="does not exist"):
        compare.write_agreement(t, tmp_path / "nope" / "a.parquet")


def test_load_cutoffs_packaged_and_custom(tmp_path) -> None:
    c = compare.load_cutoffs().set_index("key")
    assert list(c.index) == [
        "mileva2024_min_c1",
        "hebert2024_cum",
        "hebert2024_min_cum",
        "maccauro2024_gmd_c1",
        "maccauro2024_gmd_cum",
    ]
    # METHODS.md cutoff table.
    assert c["cutoff_gy"].tolist() == [35.0, 91.4, 52.5, 10.6, 43.0]
    assert c["operator"].tolist() == [">=", ">", ">=", ">=", ">="]
    assert c.loc["hebert2024_cum", "interpretation"] == "assumed"
    assert c.loc["hebert2024_cum", "index"] == "cum_lesion_dose_mean_gy"
    # every cutoff is defined exactly (CUTOFFS.md): level, cycle 1 or end of treatment,
    # lesions counted (and whether the paper says so), unit and a readable label
    assert c["cycle"].tolist() == ["1", "end", "end", "1", "end"]
    assert set(c["level"]) == {"patient"} and set(c["unit"]) == {"Gy"}
    assert c.loc["mileva2024_min_c1", "eligibility"] == "target lesions"
    assert c.loc["hebert2024_cum", "eligibility_source"] == "assumed"
    assert c.loc["hebert2024_cum", "label"] == (
        "Hebert 2024 — cumulative mean lesion dose > 91.4 Gy"
    )
    bad = tmp_path / "mine.csv"
    c.reset_index().drop(columns=["operator", "direction"]).to_csv(bad, index=False)
    with pytest.raises(CompareError, match=r"mine\.csv.*direction"):
        compare.load_cutoffs(bad)
    # a table in the older layout (operator, cutoff_gy, cycle 'last') is still read
    old = c.reset_index()[["key", "study", "centre", "source", "source_doi", "index"]]
    old = old.assign(
        cycle=["1", "last", "last", "1", "last"],
        operator=c["operator"].to_numpy(),
        cutoff_gy=c["cutoff_gy"].to_numpy(),
        interpretation=c["interpretation"].to_numpy(),
        note="",
    )
    old.to_csv(bad, index=False)
    back = compare.load_cutoffs(bad).set_index("key")
    assert back["cycle"].tolist() == ["1", "end", "end", "1", "end"]
    assert back.loc["hebert2024_cum", "label"] == "Hebert 2024 — cum_lesion_dose_mean_gy > 91.4 Gy"
    # an end-of-treatment cutoff needs a cumulative index
    wrong = c.reset_index()
    wrong.loc[0, "cycle"] = "end"
    wrong.to_csv(bad, index=False)
    with pytest.raises(CompareError, match="cumulative index"):
        compare.load_cutoffs(bad)
    c2 = c.reset_index()
    c2.loc[0, "cycle"] = "first"
    c2.to_csv(bad, index=False)
    with pytest.raises(CompareError, match="'cycle'"):
        compare.load_cutoffs(bad)


def test_cutoff_agreement_known_classes() -> None:
    """Bordet reads 10 % high, Milan 10 % low: patients within 10 % of the cutoff split."""
    pi = patient_index(voi_dose(noise=0.0))
    res = compare.cutoff_agreement(pi)
    cls = res.classifications
    assert set(cls["cutoff_key"]) == set(compare.load_cutoffs()["key"])
    key = "mileva2024_min_c1"
    sub = cls[cls["cutoff_key"] == key].pivot(
        index="patient_id", columns="workflow", values="value_gy"
    )
    assert (cls.loc[cls["cutoff_key"] == key, "cycle"] == 1).all()
    expected_split = set(sub.index[(sub["bordet"] >= 35) & (sub["milan"] < 35)])
    disc = res.discordant[res.discordant["cutoff_key"] == key]
    assert set(disc["patient_id"]) == expected_split
    last = cls[cls["cutoff_key"] == "hebert2024_cum"]
    assert (last["cycle"] == 2).all()
    s = res.summary.set_index(["cutoff_key", "workflow_a", "workflow_b", "statistic"])
    raw = s.loc[(key, "bordet", "milan", "raw_agreement"), "estimate"]
    assert raw == pytest.approx(1 - len(expected_split) / 12)
    # the truth is paired with each workflow but is not a rater: two workflows, no Fleiss
    assert (key, "bordet", "truth", "cohen_kappa") in s.index
    assert (key, "all", "", "fleiss_kappa") not in s.index
    kappa = res.summary[res.summary["statistic"] == "cohen_kappa"]
    assert (kappa["ci_low"].dropna() >= -1).all() and (kappa["ci_high"].dropna() <= 1).all()


def test_cutoff_agreement_identical_workflows_kappa_one() -> None:
    pi = patient_index(voi_dose(noise=0.0))
    pi = pi[pi["workflow"] == "truth"]
    twin = pd.concat([pi, pi.assign(workflow="copy")])
    cut = compare.load_cutoffs()
    cut.loc[:, "cutoff_gy"] = (
        twin.groupby("workflow").get_group("truth")[cut["index"]].median().values
    )
    res = compare.cutoff_agreement(twin, cutoffs=cut)
    k = res.summary[res.summary["statistic"] == "cohen_kappa"]
    assert np.allclose(k["estimate"], 1.0)
    assert res.discordant.empty


def test_translate_cutoff_noise_free_power_law() -> None:
    """to = 1.2 · from exactly → 35 Gy maps to 42 Gy with a degenerate CI (log fit)."""
    pi = patient_index(voi_dose(noise=0.0))
    pi = pi[pi["workflow"] == "truth"]
    two = pd.concat(
        [pi, pi.assign(workflow="b", lesion_dose_min_gy=1.2 * pi["lesion_dose_min_gy"])]
    )
    tr = compare.translate_cutoff(two, "truth", "b", 35.0, "lesion_dose_min_gy", n_boot=200)
    assert tr.estimate_gy == pytest.approx(42.0, rel=1e-9)
    assert (tr.ci_low_gy, tr.ci_high_gy) == pytest.approx((42.0, 42.0), rel=1e-9)
    # the source's minimum lesion doses lie below 35 Gy: the translation is extrapolated,
    # and says so with the observed range
    lo, hi = pi["lesion_dose_min_gy"].min(), pi["lesion_dose_min_gy"].max()
    assert (tr.observed_min_gy, tr.observed_max_gy) == (lo, hi) and hi < 35.0
    assert tr.extrapolated
    assert tr.sentence == (
        f"35 Gy in truth is 42.0 Gy [42.0, 42.0] in b (extrapolated: truth observed "
        f"{lo:.1f}–{hi:.1f} Gy)"
    )
    inside = compare.translate_cutoff(two, "truth", "b", 20.0, "lesion_dose_min_gy", n_boot=200)
    assert not inside.extrapolated and "extrapolated" not in inside.sentence
    pb = compare.translate_cutoff(
        two, "truth", "b", 35.0, "lesion_dose_min_gy", method="passing_bablok", n_boot=100
    )
    assert pb.estimate_gy == pytest.approx(42.0, rel=1e-9)


def test_translate_cutoff_bootstrap_by_patient_seeded() -> None:
    vd = voi_dose(noise=0.15)
    tr = compare.translate_cutoff(vd, "milan", "bordet", 35.0, "dose_mean_gy", n_boot=500, seed=1)
    again = compare.translate_cutoff(
        vd, "milan", "bordet", 35.0, "dose_mean_gy", n_boot=500, seed=1
    )
    assert tr == again
    assert tr.n_patients == 12 and tr.n_pairs == 96
    assert tr.ci_low_gy < tr.estimate_gy < tr.ci_high_gy
    assert tr.estimate_gy == pytest.approx(35.0 * 1.1 / 0.9, rel=0.1)  # noise 15 %, 96 pairs
    with pytest.raises(CompareError, match="cutoff_gy"):
        compare.translate_cutoff(vd, "milan", "bordet", 0.0, "dose_mean_gy")
    with pytest.raises(CompareError, match="ghost"):
        compare.translate_cutoff(vd, "ghost", "bordet", 35.0, "dose_mean_gy")
