"""One source of numbers: the report's key findings are cells of the tables `compare` writes.

Synthetic results (no imaging, so the test is fast): a truth whose patients span the five
published cutoffs and three workflows reading it with a known factor and a seeded
log-normal error. Each key finding is parsed on its own (regular expressions, not the
report's code) and every number in it is checked against the corresponding cell of the
``agreement``, ``cutoff_translation`` or ``cutoff_summary`` table, read back from the
Parquet files ``harmonize compare`` wrote.
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest

from harmonize import compare, indices
from harmonize.pipeline import compare_results, write_comparison
from harmonize.report import build_report, key_findings

#: workflow -> (multiplicative bias, SD of ln error, cumulative rule)
WORKFLOWS = {
    "bordet": (0.7, 0.15, "sum"),
    "milan": (1.1, 0.15, "milan_interpolated"),
    "montpellier": (0.85, 0.1, "sum"),
}
#: per-patient lesion dose scale: truth on both sides of every cutoff
SCALES = (0.3, 0.5, 0.8, 1.3, 2.2, 3.6, 6.0, 1.0)
_NUMBER = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")


def _results() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(10)
    rows = []
    for p, scale in enumerate(SCALES):
        masses = rng.uniform(2.0, 80.0, size=3)
        dose_c1 = scale * 25.0 * np.exp(rng.normal(0.0, 0.4, size=3))
        for cycle in (1, 2, 3, 4):
            truth = dose_c1 * 0.9 ** (cycle - 1)
            for workflow, (bias, sd, _) in {"truth": (1.0, 0.0, "sum"), **WORKFLOWS}.items():
                if workflow == "milan" and cycle in (2, 3):
                    continue  # LUTADOSE images cycles 1 and 4
                dose = truth * bias * np.exp(rng.normal(0.0, sd, size=3))
                for v in range(3):
                    rows.append(
                        dict(
                            patient_id=f"P{p + 1:03d}", cycle=cycle, center="SYN",
                            workflow=workflow, workflow_version="1", voi_id=v + 10,
                            voi_kind="lesion", dose_mean_gy=float(dose[v]),
                            mass_g=float(masses[v]), volume_ml=float(masses[v]),
                            voi_name=f"lesion{v + 1}", tac_model="monoexp", n_time_points=3,
                            # local deposition, 0.0853 Gy g / (MBq h) (METHODS.md)
                            tia_mbq_h=float(dose[v] * masses[v] / 0.0853),
                            tia_coefficient_h=float(dose[v] * masses[v] / 0.0853 / 7400.0),
                        )
                    )  # fmt: skip
    voi = pd.DataFrame(rows)
    rules = {"truth": "sum", **{w: r for w, (_, _, r) in WORKFLOWS.items()}}
    pindex = pd.concat(
        [indices.patient_index(voi[voi.workflow == w], rules[w]) for w in sorted(rules)],
        ignore_index=True,
    )
    return {"voi_dose": voi, "patient_index": pindex}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    results = _results()
    out = tmp_path_factory.mktemp("compare")
    write_comparison(compare_results(results), out)  # compare's defaults: 1000 replicates, seed 0
    tables = {p.stem: pd.read_parquet(p) for p in out.glob("*.parquet")}
    return results, tables


@pytest.fixture(scope="module")
def page(written):
    results, tables = written
    return build_report(results, comparison=tables)


def _close(text: str, value: float, digits: int = 3) -> bool:
    """``text`` is ``value`` shown to ``digits`` significant figures (or 2 decimals)."""
    shown = float(text.replace(",", ""))
    if value == 0:
        return shown == 0
    step = 10 ** (math.floor(math.log10(abs(value))) - digits + 1)
    return abs(shown - value) <= 0.5 * step * (1 + 1e-9)


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def test_every_number_in_the_key_findings_is_a_table_cell(written):
    results, tables = written
    lines = key_findings(results, comparison=tables)
    assert lines
    agr, tr, summ = tables["agreement"], tables["cutoff_translation"], tables["cutoff_summary"]
    cuts = compare.load_cutoffs().set_index("label")
    kinds = {"ratio": 0, "translation": 0, "kappa": 0}
    for line in lines:
        checked: list[str] = []
        if m := re.fullmatch(
            r"(\w+) reads ([\d.,]+)× (\w+) on lesion mean dose \(95 % CI ([\d.,]+) to ([\d.,]+); "
            r"95 % of lesions between ([\d.,]+)× and ([\d.,]+)×; (\d+) lesions\)\.",
            line,
        ):
            kinds["ratio"] += 1
            wa, wb = m.group(1), m.group(3)
            rows = agr[(agr["index"] == "dose_mean_gy") & (agr["level"] == "lesion")]
            rows = rows[(rows["workflow_a"] == wa) & (rows["workflow_b"] == wb)]
            s = rows.set_index("statistic")
            cells = [
                s.loc["ratio_bias", "estimate"],
                s.loc["ratio_bias", "ci_low"],
                s.loc["ratio_bias", "ci_high"],
                s.loc["ratio_loa_lower", "estimate"],
                s.loc["ratio_loa_upper", "estimate"],
            ]
            texts = [m.group(i) for i in (2, 4, 5, 6, 7)]
            assert all(_close(t, c) for t, c in zip(texts, cells, strict=True)), line
            assert int(m.group(8)) == int(s.loc["ratio_bias", "n_pairs"])
            # "95 %": the CI level of the cells (the limits of agreement are 95 % by definition)
            assert s.loc["ratio_bias", "ci_level"] == 0.95
            checked = [*texts, m.group(8), "95", "95"]
        elif m := re.fullmatch(
            r"([\d.,]+) Gy in (\w+) \((\w+)\) ≈ (.*?)\.( Extrapolated: .*)?", line
        ):
            kinds["translation"] += 1
            rows = tr[(tr["cutoff_key"] == m.group(3)) & (tr["from_workflow"] == m.group(2))]
            assert _close(m.group(1), rows["cutoff_gy"].iloc[0])
            checked = [m.group(1), *_numbers(m.group(3))]  # the value and the key cells
            targets = m.group(4).split("; ")
            assert len(targets) == len(rows)
            for target, row in zip(targets, rows.itertuples(), strict=True):
                t = re.match(r"([\d.,]+) Gy \[([\d.,]+), ([\d.,]+)\] in (\w+)", target)
                assert t and t.group(4) == row.to_workflow, target
                cells = [row.estimate_gy, row.ci_low_gy, row.ci_high_gy]
                assert all(_close(t.group(i + 1), c) for i, c in enumerate(cells)), target
                checked += list(t.groups()[:3])
            # every extrapolated translation is flagged, with the observed range cells
            assert bool(m.group(5)) == bool(rows["extrapolated"].any()), line
            if m.group(5):
                lo, hi = re.search(r"observed only ([\d.,]+)–([\d.,]+) Gy", m.group(5)).groups()
                assert _close(lo, rows["observed_min_gy"].iloc[0])
                assert _close(hi, rows["observed_max_gy"].iloc[0])
                checked += [lo, hi]
        else:
            label, _, rest = line.partition(": ")
            assert label in cuts.index, line
            kinds["kappa"] += 1
            key = cuts.loc[label, "key"]
            checked = _numbers(label)  # the label is the cutoff table's cell
            sub = summ[summ["cutoff_key"] == key]
            m = re.fullmatch(
                r"(Fleiss κ|Cohen κ \((\w+) vs (\w+)\)) (-?[\d.]+)(?: \[(-?[\d.]+), (-?[\d.]+)\])?"
                r"(?: \(CI not estimable: [^)]*\))?; (\d+) of (\d+) patients classified "
                r"differently by the workflows\.",
                rest,
            )
            assert m, line  # a defined kappa: the demo-like cohort spans every cutoff
            if m.group(1) == "Fleiss κ":
                row = sub[sub["statistic"] == "fleiss_kappa"].iloc[0]
            else:
                row = sub[
                    (sub["statistic"] == "cohen_kappa")
                    & (sub["workflow_a"] == m.group(2))
                    & (sub["workflow_b"] == m.group(3))
                ].iloc[0]
            assert abs(float(m.group(4)) - row["estimate"]) <= 0.005 + 1e-12
            checked += [m.group(4)]
            for i, col in ((5, "ci_low"), (6, "ci_high")):
                if m.group(i):
                    assert abs(float(m.group(i)) - row[col]) <= 0.005 + 1e-12
                    checked.append(m.group(i))
            disc = tables["cutoff_discordant"]
            assert int(m.group(7)) == int((disc["cutoff_key"] == key).sum())
            assert int(m.group(8)) == int(row["n_patients"])
            checked += [m.group(7), m.group(8)]
        # nothing else: every number of the line was matched to a cell above
        assert sorted(_numbers(line)) == sorted(checked), line
    assert kinds["ratio"] == 3 and kinds["kappa"] == 5 and kinds["translation"] >= 3


def test_the_report_shows_the_same_findings_and_no_other_numbers(written, page):
    results, tables = written
    lines = key_findings(results, comparison=tables)
    for line in lines:
        assert html.escape(line) in page
    # the truth is not a rater: Fleiss kappa of the page equals the table's (workflows only)
    fleiss = tables["cutoff_summary"]
    fleiss = fleiss[fleiss["statistic"] == "fleiss_kappa"]
    assert (fleiss["note"].str.contains("truth excluded")).all()
    # kappa intervals stay within [-1, 1]; zero-width intervals are not shown as numbers
    kappa = tables["cutoff_summary"]
    kappa = kappa[kappa["statistic"] == "cohen_kappa"]
    assert ((kappa["ci_low"] >= -1) | kappa["ci_low"].isna()).all()
    assert ((kappa["ci_high"] <= 1) | kappa["ci_high"].isna()).all()
    assert "0.00 [0.00, 0.00]" not in page and "1.00 [1.00, 1.00]" not in page
    assert "attrs[" not in page


def test_report_without_comparison_uses_compare_defaults(written):
    # without the folder, the report's tables come from the same engine with compare's
    # defaults (1000 replicates, seed 0): the page says so, and its translation rows are
    # those of compare_results with the defaults
    results, tables = written
    page = build_report(results)
    assert "1000 bootstrap replicates, seed 0" in page
    for sentence in tables["cutoff_translation"]["sentence"]:
        assert html.escape(sentence) in page


def test_report_references_resolve_and_cohort_line_reads_plainly(page):
    from harmonize.report.provenance import _REFERENCES, cited_keys

    body, _, references = page.partition('<h2 id="references">')
    cited = cited_keys(body)
    # every key the page cites is resolved in its References section
    assert cited <= set(_REFERENCES), sorted(cited - set(_REFERENCES))
    assert "not in the bibliography" not in references
    for key in ("Mileva2024", "Hebert2024", "Maccauro2024", "Santoro2018", "Lanconelli2012",
                "Marin2017", "Carkeet2015", "Linnet1990", "Fleiss1971", "Cohen1960"):  # fmt: skip
        assert f"<b>{key}</b>" in references, key
    # 8 patients x cycles 1-4 (Milan imaged 1 and 4 only)
    assert "8 patients · cycles 1–4 · 32 patient-cycles" in page
