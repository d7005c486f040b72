"""Section 6 of the report: dose–response per workflow (renders the ``outcome_*`` tables, computes none).

The tables are written by ``harmonize compare`` when the results hold a ``clinical`` table
(:mod:`harmonize.outcomes.dose_response`) and given to the report with
``--agreement DIR``. This module formats and draws them: "Table 1" of the baseline
characteristics, the published cutoffs on each workflow's doses (raw and translated), a
forest plot of the hazard ratio per 10 Gy, the optimal cutoffs beside the published ones,
and Kaplan–Meier curves below/above each cutoff per workflow.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harmonize.report.figures import _new_figure, _png_img, _style
from harmonize.report.html import _ci, _details, _finite, _note, _num, _p, _table

__all__ = ["OUTCOME_TABLES", "outcome_tables"]

#: Stems of the tables this section renders (files ``<stem>.parquet`` of the compare output).
OUTCOME_TABLES = (
    "outcome_table1",
    "outcome_cutoffs",
    "outcome_cox",
    "outcome_optimal_cutoffs",
    "outcome_km",
)


def outcome_tables(stored: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Pick the ``outcome_*`` tables out of the delivered comparison tables (by file stem)."""
    out = {}
    for name, frame in stored.items():
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem in OUTCOME_TABLES:
            out[stem] = frame
    return out


def _table1(t1: pd.DataFrame) -> str:
    wide = t1.pivot_table(
        index=["characteristic", "level"],
        columns="group",
        values="value",
        aggfunc="first",
        sort=False,
    ).reset_index()
    wide.columns.name = None
    return _table(wide.fillna("–"))


def _cutoffs(table: pd.DataFrame) -> str:
    rows = pd.DataFrame(
        {
            "cutoff": table["cutoff_key"],
            "endpoint": table["endpoint"].str.upper(),
            "workflow": table["workflow"],
            "variant": table["variant"],
            "cutoff (Gy)": table["cutoff_gy"].map(_num),
            "below / above": [
                f"{b} / {a}" for b, a in zip(table["n_below"], table["n_above"], strict=True)
            ],
            "HR below vs above [95 % CI]": [
                _ci(h, lo, hi)
                for h, lo, hi in zip(
                    table["hr_below"], table["ci_low"], table["ci_high"], strict=True
                )
            ],
            "log-rank p": table["logrank_p"].map(lambda v: _num(v, 2)),
            "median below / above (months)": [
                f"{_num(b)} / {_num(a)}"
                for b, a in zip(
                    table["median_below_months"], table["median_above_months"], strict=True
                )
            ],
            "landmark (months)": table["landmark_months"].map(_num),
            "note": table["note"],
        }
    )
    return _table(rows, numeric=("cutoff (Gy)", "log-rank p"))


_OPTIMAL_COLUMNS = (
    "cutoff_gy", "ci_low_gy", "ci_high_gy", "pvalue_adjusted", "pvalue_permutation", "n_low",
    "n_high",
)  # fmt: skip


def _optimal(table: pd.DataFrame) -> str:
    # a cutoff that could not be searched (too few patients) has only its note: its
    # numeric columns are absent, shown as "–"
    table = table.reindex(columns=[*table.columns.drop(list(_OPTIMAL_COLUMNS), errors="ignore"),
                                   *_OPTIMAL_COLUMNS])  # fmt: skip
    has = table["cutoff_gy"].notna()
    rows = pd.DataFrame(
        {
            "index": table["index"],
            "workflow": table["workflow"],
            "published (Gy)": table["published_gy"].map(_num),
            "optimal cutoff [95 % bootstrap CI] (Gy)": [
                _ci(c, lo, hi) if ok else "–"
                for c, lo, hi, ok in zip(
                    table["cutoff_gy"],
                    table["ci_low_gy"],
                    table["ci_high_gy"],
                    has,
                    strict=True,
                )
            ],
            "p corrected (Lausen–Schumacher)": table["pvalue_adjusted"].map(
                lambda v: _num(v, 2)
            ),
            "p permutation": table["pvalue_permutation"].map(lambda v: _num(v, 2)),
            "n low / high": [
                f"{int(a)} / {int(b)}" if _finite(a) and _finite(b) else "–"
                for a, b in zip(
                    table["n_low"], table["n_high"], strict=True
                )
            ],
            "note": table.get("note", ""),
        }
    )
    return _table(rows)


def _forest(cox: pd.DataFrame, colours: Mapping[str, str]) -> str:
    part = cox[cox["model"] == "unadjusted"].reset_index(drop=True)
    if part.empty:
        return ""
    labels = [f"{r.index} ({r.cycle}) · {r.workflow}" for r in part.itertuples()]
    with _style():
        fig = _new_figure(7.0, 0.28 * len(part) + 1.2)
        ax = fig.add_subplot()
        y = np.arange(len(part))[::-1]
        for yi, r in zip(y, part.itertuples(), strict=True):
            colour = colours.get(str(r.workflow), "#555555")
            ax.plot([r.ci_low, r.ci_high], [yi, yi], color=colour, lw=1.5)
            ax.plot([r.hr], [yi], "o", color=colour, ms=5)
        ax.axvline(1.0, color="#888888", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yticks(y, labels)
        ax.set_xlabel("hazard ratio per 10 Gy (95 % CI), unadjusted Cox, Efron ties")
        return _png_img(
            fig,
            "Forest plot of the hazard ratio per 10 Gy of each dose index and workflow",
            "Hazard ratio per 10 Gy of each published dose index, per workflow (table outcome_cox).",
        )


def _optimal_figure(table: pd.DataFrame, colours: Mapping[str, str]) -> str:
    if "cutoff_gy" not in table:
        return ""
    part = table[table["cutoff_gy"].notna()].reset_index(drop=True)
    if part.empty:
        return ""
    with _style():
        fig = _new_figure(7.0, 0.28 * len(part) + 1.2)
        ax = fig.add_subplot()
        y = np.arange(len(part))[::-1]
        for yi, r in zip(y, part.itertuples(), strict=True):
            colour = colours.get(str(r.workflow), "#555555")
            ax.plot([r.ci_low_gy, r.ci_high_gy], [yi, yi], color=colour, lw=1.5)
            ax.plot([r.cutoff_gy], [yi], "o", color=colour, ms=5)
            ax.plot([r.published_gy], [yi], "|", color="#000000", ms=12, mew=2)
        ax.set_yticks(y, [f"{r.cutoff_key} · {r.workflow}" for r in part.itertuples()])
        ax.set_xlabel("dose (Gy): optimal cutoff with 95 % bootstrap CI; black bar: published")
        return _png_img(
            fig,
            "Optimal cutoffs per workflow with bootstrap intervals beside the published cutoffs",
            "Optimal cutoff of each index per workflow (maximally selected log-rank statistics) "
            "and the published cutoff (table outcome_optimal_cutoffs).",
        )


def _km_figure(km: pd.DataFrame, key: str, colours: Mapping[str, str]) -> str:
    part = km[km["cutoff_key"] == key]
    workflows = sorted(part["workflow"].unique())
    if not workflows:
        return ""
    with _style():
        fig = _new_figure(2.4 * len(workflows) + 0.6, 2.6)
        axes = fig.subplots(1, len(workflows), sharey=True, squeeze=False)[0]
        for ax, workflow in zip(axes, workflows, strict=True):
            colour = colours.get(str(workflow), "#555555")
            for side, style in (("above", "-"), ("below", "--")):
                steps = part[(part["workflow"] == workflow) & (part["side"] == side)]
                if steps.empty:
                    continue
                ax.step(
                    steps["time"],
                    steps["survival"],
                    where="post",
                    color=colour,
                    ls=style,
                    label=f"{side} (n={int(steps['n_risk'].iloc[0])})",
                )
            ax.set_title(str(workflow))
            ax.set_xlabel("months from landmark")
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=7, loc="lower left")
        axes[0].set_ylabel("survival")
        return _png_img(
            fig,
            f"Kaplan–Meier curves below and above the cutoff {key} per workflow",
            f"Kaplan–Meier curves below (dashed) and above (solid) the published cutoff {key}, "
            "per workflow, from the landmark (table outcome_km).",
        )


def _outcomes_section(stored: Mapping[str, pd.DataFrame], colours: Mapping[str, str]) -> str:
    """The section, or a note on how to obtain it when no outcome table was delivered."""
    head = '<section id="outcomes"><h2>6. Dose–response per workflow</h2>'
    tables = outcome_tables(stored)
    if not tables:
        return (
            head
            + _note(
                "No clinical data: add a clinical table to the results (harmonize clinical import "
                "FILE.csv --key KEY --out RESULTS), run harmonize compare, and pass its folder "
                "with --agreement to see whether each published cutoff separates outcomes with "
                "each workflow's doses."
            )
            + "</section>"
        )
    body = [
        _p(
            "Do the published cutoffs still separate outcomes with another workflow's doses? "
            "Each cutoff is applied to each workflow's doses as published (raw) and as "
            "translated into that workflow's scale; survival is counted from a landmark "
            "(end of cycle-1 dosimetry, or treatment end for cumulative doses) so that no "
            "immortal time enters. All statistics come from harmonize.outcomes (statsmodels)."
        )
    ]
    if "outcome_table1" in tables and len(tables["outcome_table1"]):
        body.append(
            "<h3>Baseline characteristics (Table 1)</h3>" + _table1(tables["outcome_table1"])
        )
    if "outcome_cutoffs" in tables and len(tables["outcome_cutoffs"]):
        body.append("<h3>Published cutoffs on each workflow's doses</h3>")
        body.append(_cutoffs(tables["outcome_cutoffs"]))
    km = tables.get("outcome_km")
    if km is not None and len(km):
        figures = "".join(_km_figure(km, key, colours) for key in sorted(km["cutoff_key"].unique()))
        body.append(_details("Kaplan–Meier curves per cutoff and workflow", figures))
    if "outcome_cox" in tables and len(tables["outcome_cox"]):
        body.append("<h3>Hazard ratio per 10 Gy</h3>" + _forest(tables["outcome_cox"], colours))
    if "outcome_optimal_cutoffs" in tables and len(tables["outcome_optimal_cutoffs"]):
        opt = tables["outcome_optimal_cutoffs"]
        body.append("<h3>Optimal cutoffs beside the published ones</h3>")
        body.append(_optimal_figure(opt, colours) + _optimal(opt))
        body.append(
            _note(
                "An optimal cutoff is searched over every split leaving 10–90 % of patients in "
                "each group; its p-value is corrected for that search (Lausen & Schumacher "
                "1992; permutation, Hothorn & Lausen 2003). The bootstrap interval shows how "
                "unstable a data-derived cutoff is."
            )
        )
    return head + "".join(body) + "</section>"
