"""Sections 4 and 5 of the report: agreement at the published cutoffs, and their translation.

Each workflow classifies every patient at each published cutoff (Cohen's and Fleiss'
kappa); each cutoff is then translated from its centre's workflow to every other one by
Deming regression on log doses with a seeded bootstrap CI (same bytes every run).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from harmonize import compare
from harmonize.compare import CompareError
from harmonize.report._data import TRUTH, _AdapterInfo, _captured, _Data, _last_cycle
from harmonize.report.html import _ci, _details, _esc, _finite, _fixed, _note, _num, _p, _table

__all__ = [
    "TRANSLATION_N_BOOT",
    "TRANSLATION_SEED",
    "UNSTABLE_CI_FACTOR",
]

#: Bootstrap replicates and seed of the cutoff translations (seeded: same bytes every run).
TRANSLATION_N_BOOT = 2000
TRANSLATION_SEED = 0
#: A translated cutoff whose CI upper/lower limits differ by more than this factor is
#: flagged as uninformative (a bootstrap over very few patients) [assumed threshold].
UNSTABLE_CI_FACTOR = 10.0


def _cutoff_tables(data: _Data, workflows: Sequence[str]) -> tuple[Any, list[str]]:
    return _captured(lambda: compare.cutoff_agreement(data.patient, workflows=list(workflows)))


_OPERATOR_TEXT = {">=": "≥", ">": ">"}


def _kappa_text(row: pd.Series) -> str:
    """Kappa with its CI, or 'undefined' with the short reason."""
    if _finite(row["estimate"]):
        return _ci(row["estimate"], row["ci_low"], row["ci_high"], fmt=_fixed)
    return "undefined (one class only)" if "same" in str(row["note"]) else "undefined"


def _cutoff_summary(result: Any, workflows: Sequence[str]) -> pd.DataFrame:
    """One row per cutoff: classes per workflow, pairwise and overall kappa, discordance."""
    cls, summary = result.classifications, result.summary
    rows = []
    for key in sorted(set(summary["cutoff_key"])):
        sub = summary.loc[summary["cutoff_key"] == key]
        c = cls.loc[cls["cutoff_key"] == key]
        above = c.groupby("workflow")["above"].agg(["sum", "size"])
        above_html = "<br>".join(
            f"{_esc(w)}: {int(above.loc[w, 'sum'])}/{int(above.loc[w, 'size'])}"
            for w in workflows
            if w in above.index
        )
        pairs = []
        for (wa, wb), ps in sub.loc[sub["workflow_b"] != ""].groupby(
            ["workflow_a", "workflow_b"], sort=True
        ):
            st = ps.set_index("statistic")
            pairs.append(
                f"{_esc(wa)}–{_esc(wb)}: {_esc(_kappa_text(st.loc['cohen_kappa']))} "
                f"({_esc(_fixed(st.loc['raw_agreement', 'estimate']))})"
            )
        fleiss = sub.loc[sub["statistic"] == "fleiss_kappa"]
        cut = c.iloc[0] if len(c) else None
        rows.append(
            {
                "cutoff": key,
                "index": str(cut["index"]) if cut is not None else "–",
                "cutoff (Gy)": f"{_OPERATOR_TEXT.get(str(cut['operator']), cut['operator'])} "
                f"{_num(cut['cutoff_gy'])}"
                if cut is not None
                else "–",
                "patients": str(int(sub["n_patients"].max())),
                "above the cutoff": above_html,
                "Cohen κ per pair (raw agreement)": "<br>".join(pairs),
                "Fleiss κ": _kappa_text(fleiss.iloc[0]) if len(fleiss) else "–",
                "discordant patients": str(int((result.discordant["cutoff_key"] == key).sum())),
            }
        )
    return pd.DataFrame(rows)


def _cutoffs_section(data: _Data) -> tuple[str, Any]:
    parts = ['<h2 id="cutoffs">4. Agreement at the published cutoffs</h2>']
    cuts = compare.load_cutoffs()
    parts.append(
        _p(
            "Each workflow classifies every patient as above or below each published "
            "dose–outcome cutoff, on the cutoff's own index and cycle ('last' = the patient's "
            "last cycle). Agreement: raw proportion classified alike and Cohen's kappa (Wald "
            "CI); Fleiss' kappa over all workflows when there are three or more. A cutoff "
            "marked 'assumed' is an interpretation of its paper (see CUTOFFS.md)."
        )
    )
    show = cuts[
        [
            "key",
            "study",
            "centre",
            "index",
            "cycle",
            "operator",
            "cutoff_gy",
            "interpretation",
            "source_doi",
        ]
    ].copy()
    show["cutoff_gy"] = [_num(v) for v in show["cutoff_gy"]]
    parts.append(
        _table(
            show.rename(columns={"cutoff_gy": "cutoff (Gy)", "source_doi": "doi"}),
            numeric=["cutoff (Gy)"],
        )
    )
    if len(data.compared) < 2:
        return "".join(parts) + _p("Fewer than two workflows: no cutoff agreement."), None
    try:
        result, notes = _cutoff_tables(data, data.compared)
    except CompareError as exc:
        return "".join(parts) + _note(f"Not computed: {exc}"), None
    parts += [_note(n) for n in notes]
    parts.append("<h3>4.1 Classification agreement</h3>")
    parts.append(
        _p(
            "One row per cutoff: how many patients each workflow puts above the cutoff, "
            "Cohen's kappa [95 % CI] and raw agreement for every pair, Fleiss' kappa over all "
            "workflows, and the number of patients not classified alike by every workflow. "
            "Kappa is undefined when every patient falls in the same class in both workflows "
            "(raw agreement is then 1)."
        )
    )
    parts.append(
        _table(
            _cutoff_summary(result, data.compared),
            numeric=["cutoff (Gy)", "patients", "discordant patients"],
            raw=["above the cutoff", "Cohen κ per pair (raw agreement)"],
        )
    )
    parts.append("<h3>4.2 Discordant patients</h3>")
    disc = result.discordant
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
    cls = result.classifications
    if data.has_truth and "cutoff_key" in cls.columns:
        # the truth's class is shown next to the workflows' (not part of their agreement)
        truth_cls, _ = _captured(
            lambda: compare.cutoff_agreement(data.patient, workflows=[data.compared[0], TRUTH])
        )
        truth_part = truth_cls.classifications
        cls = pd.concat([cls, truth_part.loc[truth_part["workflow"] == TRUTH]], ignore_index=True)
    wide = cls.assign(
        text=[
            f"{_num(v)} {'▲' if a else '▽'}"
            for v, a in zip(cls["value_gy"], cls["above"], strict=True)
        ]
    )
    wide = (
        wide.pivot(index=["cutoff_key", "patient_id", "cycle"], columns="workflow", values="text")
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
    return "".join(parts), result


def _centre_workflow(
    centre: str, workflows: Sequence[str], infos: Mapping[str, _AdapterInfo]
) -> str | None:
    name = centre.strip().lower()
    if name in workflows:
        return name
    for w in workflows:
        if name and name in infos[w].center.lower():
            return w
    return None


def _translation_section(data: _Data, infos: Mapping[str, _AdapterInfo]) -> tuple[str, list[Any]]:
    parts = ['<h2 id="translation">5. Cutoffs translated between workflows</h2>']
    parts.append(
        _p(
            f"Each published cutoff is mapped from the workflow of its centre to every other "
            f"workflow through a Deming regression (error ratio 1) of the paired index values on "
            f"log doses (to = e^a · from^b: errors are multiplicative), with a percentile "
            f"bootstrap CI over patients ({TRANSLATION_N_BOOT} replicates, seed "
            f"{TRANSLATION_SEED}). The cutoff's cycle is used (cycle 1, or each patient's last "
            f"cycle)."
        )
    )
    rows, done = [], []
    for cut in compare.load_cutoffs().itertuples(index=False):
        source = _centre_workflow(str(cut.centre), data.compared, infos)
        if source is None:
            rows.append(
                {
                    "cutoff": cut.key,
                    "from": f"({cut.centre}: no such workflow)",
                    "to": "–",
                    "cutoff (Gy)": _num(cut.cutoff_gy),
                    "translated (Gy) [95 % CI]": "–",
                    "pairs / patients": "–",
                    "note": "source workflow not in the results",
                }
            )
            continue
        table = _last_cycle(data.patient) if cut.cycle == "last" else data.patient
        cycle = None if cut.cycle == "last" else int(cut.cycle)
        for target in data.compared:
            if target == source:
                continue
            try:
                with warnings.catch_warnings():
                    # degenerate bootstrap replicates (one patient drawn) give NaN with a
                    # numpy RuntimeWarning; translate_cutoff drops them and refuses > 10 %
                    warnings.simplefilter("ignore", RuntimeWarning)
                    tr = compare.translate_cutoff(
                        table,
                        source,
                        target,
                        float(cut.cutoff_gy),
                        str(cut.index),
                        method="deming",
                        n_boot=TRANSLATION_N_BOOT,
                        seed=TRANSLATION_SEED,
                        cycle=cycle,
                    )
            except CompareError as exc:
                rows.append(
                    {
                        "cutoff": cut.key,
                        "from": source,
                        "to": target,
                        "cutoff (Gy)": _num(cut.cutoff_gy),
                        "translated (Gy) [95 % CI]": "–",
                        "pairs / patients": "–",
                        "note": f"not computed: {exc}",
                    }
                )
                continue
            done.append(tr)
            rows.append(
                {
                    "cutoff": cut.key,
                    "from": source,
                    "to": target,
                    "cutoff (Gy)": _num(cut.cutoff_gy),
                    "translated (Gy) [95 % CI]": _ci(tr.estimate_gy, tr.ci_low_gy, tr.ci_high_gy),
                    "pairs / patients": f"{tr.n_pairs} / {tr.n_patients}",
                    "note": f"ln(to) = {_num(tr.intercept)} + {_num(tr.slope)}·ln(from)"
                    + (
                        f"; the CI spans more than a factor {UNSTABLE_CI_FACTOR:g}: not "
                        f"informative with {tr.n_patients} patients"
                        if tr.ci_high_gy > UNSTABLE_CI_FACTOR * tr.ci_low_gy
                        else ""
                    ),
                }
            )
    if done:
        parts.append(
            "<ul>"
            + "".join(f"<li>{_esc(t.sentence)} (index {_esc(t.index)})</li>" for t in done)
            + "</ul>"
        )
    parts.append(_table(pd.DataFrame(rows), numeric=["cutoff (Gy)", "pairs / patients"]))
    parts.append(
        _p(
            "Read with care: with few patients the bootstrap CI is wide, and a translation is "
            "only as good as the agreement of the two workflows on the index it uses."
        )
    )
    return "".join(parts), done
