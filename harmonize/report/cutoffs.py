"""Sections 4 and 5 of the report: agreement at the published cutoffs, and their translation.

Both render the tables ``harmonize compare`` writes (``cutoff_summary``,
``cutoff_classifications``, ``cutoff_discordant``, ``cutoff_translation``): the same rater
set (the phantom truth beside the workflows, never a rater of Fleiss' kappa), the same
bootstrap replicates and seed. Nothing here computes a statistic.
"""

from __future__ import annotations

import math

import pandas as pd

from harmonize.report._data import TRUTH, _Data
from harmonize.report.html import _ci, _details, _esc, _finite, _fixed, _note, _num, _p, _table

__all__ = ["UNSTABLE_CI_FACTOR"]

#: A translated cutoff whose CI upper/lower limits differ by more than this factor is
#: flagged as uninformative (a bootstrap over very few patients) [assumed threshold].
UNSTABLE_CI_FACTOR = 10.0

_OPERATOR_TEXT = {">=": "≥", ">": ">"}


def _reason(note: object) -> str:
    """The reason of a 'not estimable' note ("Cohen 1960; not estimable: <reason>")."""
    text = str(note)
    _, found, reason = text.partition("not estimable: ")
    return reason if found else text


def _kappa_text(row: pd.Series) -> str:
    """Kappa with its CI; 'not estimable' with the reason when the kappa or its CI is not."""
    if not _finite(row["estimate"]):
        return f"not estimable ({_reason(row['note'])})"
    text = _ci(row["estimate"], row["ci_low"], row["ci_high"], fmt=_fixed)
    statistic = row["statistic"] if "statistic" in row.index else row.name
    if statistic == "cohen_kappa" and not (_finite(row["ci_low"]) and _finite(row["ci_high"])):
        text += f" (CI not estimable: {_reason(row['note'])})"
    return text


def _pair_text(sub: pd.DataFrame) -> str:
    st = sub.set_index("statistic")
    return (
        f"{_kappa_text(st.loc['cohen_kappa'])} "
        f"(raw agreement {_fixed(st.loc['raw_agreement', 'estimate'])})"
    )


def _definitions(cuts: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cutoff": cuts["key"],
            "definition": cuts["label"],
            "index": cuts["index"],
            "cycle": cuts["cycle"].replace({"end": "end of treatment"}),
            "lesions": [
                f"{e} ({s})"
                for e, s in zip(cuts["eligibility"], cuts["eligibility_source"], strict=True)
            ],
            "interpretation": cuts["interpretation"],
            "source": [
                f"{s}" + (f", doi:{d}" if d else "")
                for s, d in zip(cuts["source"], cuts["source_doi"], strict=True)
            ],
        }
    )


def _cutoff_summary(data: _Data) -> pd.DataFrame:
    """One row per cutoff: classes per workflow, pairwise and overall kappa, discordance."""
    summary = data.tables["cutoff_summary"]
    cls = data.tables["cutoff_classifications"]
    disc = data.tables["cutoff_discordant"]
    rows = []
    for cut in data.cutoffs.itertuples(index=False):
        sub = summary.loc[summary["cutoff_key"] == cut.key]
        row = {
            "cutoff": cut.key,
            "cutoff (Gy)": f"{_OPERATOR_TEXT.get(cut.direction, cut.direction)} {_num(cut.value)}",
        }
        refused = sub.loc[sub["statistic"] == "not_compared"]
        if len(refused):
            row["patients"] = "–"
            row["above the cutoff"] = "–"
            row["Cohen κ per pair [95 % CI]"] = _esc(f"not compared: {refused['note'].iloc[0]}")
            row["Fleiss κ"] = "–"
            row["discordant patients"] = "–"
            rows.append(row)
            continue
        c = cls.loc[(cls["cutoff_key"] == cut.key) & (cls["workflow"] != TRUTH)]
        above = c.groupby("workflow")["above"].agg(["sum", "size"])
        pairs = sub.loc[(sub["workflow_b"] != "") & (sub["workflow_b"] != TRUTH)]
        fleiss = sub.loc[sub["statistic"] == "fleiss_kappa"]
        row["patients"] = str(int(sub["n_patients"].max())) if len(sub) else "0"
        row["above the cutoff"] = "<br>".join(
            f"{_esc(w)}: {int(above.loc[w, 'sum'])}/{int(above.loc[w, 'size'])}"
            for w in data.compared
            if w in above.index
        )
        row["Cohen κ per pair [95 % CI]"] = "<br>".join(
            f"{_esc(wa)}–{_esc(wb)}: {_esc(_pair_text(ps))}"
            for (wa, wb), ps in pairs.groupby(["workflow_a", "workflow_b"], sort=True)
        )
        row["Fleiss κ"] = _kappa_text(fleiss.iloc[0]) if len(fleiss) else "–"
        row["discordant patients"] = str(int((disc["cutoff_key"] == cut.key).sum()))
        rows.append(row)
    return pd.DataFrame(rows)


def _truth_rows(data: _Data) -> pd.DataFrame:
    """Each workflow's classification against the truth, from the same tables."""
    summary = data.tables["cutoff_summary"]
    cls = data.tables["cutoff_classifications"]
    rows = []
    vs = summary.loc[(summary["workflow_b"] == TRUTH) & (summary["statistic"] == "cohen_kappa")]
    for r in vs.itertuples(index=False):
        sel = cls.loc[
            (cls["cutoff_key"] == r.cutoff_key) & cls["workflow"].isin([r.workflow_a, TRUTH])
        ]
        wide = sel.pivot(index="patient_id", columns="workflow", values="above").dropna()
        wrong = int((wide[r.workflow_a] != wide[TRUTH]).sum()) if wide.shape[1] == 2 else 0
        rows.append(
            {
                "cutoff": r.cutoff_key,
                "workflow": r.workflow_a,
                "patients": str(int(r.n_patients)),
                "misclassified vs truth": str(wrong),
                "kappa vs truth": _kappa_text(pd.Series(r._asdict())),
            }
        )
    return pd.DataFrame(rows)


def _cutoffs_section(data: _Data) -> str:
    parts = ['<h2 id="cutoffs">4. Agreement at the published cutoffs</h2>']
    parts.append(
        _p(
            "Each workflow classifies every patient as above or below each published "
            "dose–outcome cutoff, on the cutoff's own index: at cycle 1, or at the end of "
            "treatment on the total over the planned cycles (compared only when every workflow "
            "totals the same planned treatment). Agreement: raw proportion classified alike and "
            "Cohen's kappa (Cohen1960; Wald CI clipped to [−1, 1]); Fleiss' kappa (Fleiss1971) "
            "over the workflows when there are three or more. The phantom truth is not a rater: "
            "each workflow's agreement with it is in section 7. The cutoffs are defined in "
            "harmonize/data/CUTOFFS.md; 'assumed' marks our reading where the paper does not "
            f"say. Tables {data.tables_source}."
        )
    )
    parts.append(_table(_definitions(data.cutoffs)))
    if len(data.compared) < 2:
        return "".join(parts) + _p("Fewer than two workflows: no cutoff agreement.")
    parts.append("<h3>4.1 Classification agreement</h3>")
    parts.append(
        _p(
            "One row per cutoff: how many patients each workflow puts above the cutoff, "
            "Cohen's kappa [95 % CI] and raw agreement for every pair, Fleiss' kappa over all "
            "workflows, and the number of patients not classified alike by every workflow. "
            "A kappa is not estimable when every patient falls on the same side in both "
            "workflows; its CI is not estimable when its standard error is zero."
        )
    )
    parts.append(
        _table(
            _cutoff_summary(data),
            numeric=["cutoff (Gy)", "patients", "discordant patients"],
            raw=["above the cutoff", "Cohen κ per pair [95 % CI]"],
        )
    )
    parts.append("<h3>4.2 Discordant patients</h3>")
    disc = data.tables["cutoff_discordant"]
    if len(disc):
        parts.append(
            _p("Patients the workflows classify differently (workflows above / below the cutoff):")
        )
        parts.append(
            _table(
                disc.assign(
                    above=disc["above"].str.replace(",", ", "),
                    below=disc["below"].str.replace(",", ", "),
                ).rename(
                    columns={
                        "cutoff_key": "cutoff",
                        "patient_id": "patient",
                        "above": "above (workflows)",
                        "below": "below (workflows)",
                    }
                )
            )
        )
    else:
        parts.append(_p("No patient is classified differently by the workflows at any cutoff."))
    cls = data.tables["cutoff_classifications"]
    if len(cls):
        wide = cls.assign(
            text=[
                f"{_num(v)} {'▲' if a else '▽'}"
                for v, a in zip(cls["value_gy"], cls["above"], strict=True)
            ]
        )
        wide = (
            wide.pivot(
                index=["cutoff_key", "patient_id", "cycle"], columns="workflow", values="text"
            )
            .fillna("–")
            .reset_index()
        )
        wide.columns.name = None
        parts.append(
            _details(
                "Every patient's value and class (▲ above, ▽ below the cutoff), per cutoff",
                _table(wide.rename(columns={"cutoff_key": "cutoff", "patient_id": "patient"})),
            )
        )
    return "".join(parts)


def _unstable(row: pd.Series) -> bool:
    lo, hi = float(row["ci_low_gy"]), float(row["ci_high_gy"])
    return not (lo > 0 and math.isfinite(hi)) or hi > UNSTABLE_CI_FACTOR * lo


def _translation_section(data: _Data) -> str:
    parts = ['<h2 id="translation">5. Cutoffs translated between workflows</h2>']
    tr = data.tables["cutoff_translation"]
    n_boot = sorted({int(v) for v in tr["n_boot"]}) if len(tr) else []
    seeds = sorted({int(v) for v in tr["seed"]}) if len(tr) else []
    parts.append(
        _p(
            "Each published cutoff is mapped from the workflow of its centre to every other "
            "workflow through a Deming regression (error ratio 1) of the paired index values on "
            "log doses (to = e^a · from^b: errors are multiplicative), with a percentile "
            "bootstrap CI over patients"
            + (
                f" ({', '.join(map(str, n_boot))} replicates, seed {', '.join(map(str, seeds))})"
                if n_boot
                else ""
            )
            + ". A translation is extrapolated when the cutoff lies outside the range the source "
            "workflow observed on that index: it then rests on the fitted line beyond the data "
            "and is indicative only."
        )
    )
    if len(tr) == 0:
        return "".join(parts) + _p("No cutoff could be translated (see the notes of compare).")
    rows = []
    for r in tr.itertuples(index=False):
        row = pd.Series(r._asdict())
        observed = f"{_num(r.observed_min_gy)} – {_num(r.observed_max_gy)}"
        note = f"ln(to) = {_num(r.intercept)} + {_num(r.slope)}·ln(from)"
        if _unstable(row):
            note += f"; the CI spans more than a factor {UNSTABLE_CI_FACTOR:g}: not informative"
        rows.append(
            {
                "cutoff": r.cutoff_key,
                "from": r.from_workflow,
                "to": r.to_workflow,
                "cutoff (Gy)": _num(r.cutoff_gy),
                "translated (Gy) [95 % CI]": _ci(r.estimate_gy, r.ci_low_gy, r.ci_high_gy),
                "observed in source (Gy)": observed,
                "extrapolated": (
                    f"yes: {_num(r.cutoff_gy)} Gy is outside {observed} Gy"
                    if bool(r.extrapolated)
                    else "no"
                ),
                "pairs / patients": f"{int(r.n_pairs)} / {int(r.n_patients)}",
                "note": note,
            }
        )
    parts.append(
        "<ul>"
        + "".join(
            f"<li>{_esc(s)} (index {_esc(i)})</li>"
            for s, i in zip(tr["sentence"], tr["index"], strict=True)
        )
        + "</ul>"
    )
    parts.append(_table(pd.DataFrame(rows), numeric=["cutoff (Gy)", "pairs / patients"]))
    n_extra = int(tr["extrapolated"].astype(bool).sum())
    if n_extra:
        parts.append(
            _note(
                f"{n_extra} of {len(tr)} translations are extrapolated beyond the source "
                "workflow's observed range; no patient of this cohort tests them."
            )
        )
    return "".join(parts)
