"""Section 9 of the report, uncertainty: budget per workflow, coverage of the truth, error bars, cutoffs.

Renders what :mod:`harmonize.compare.uncertain` computes from the tables
(``uncertainty``, ``voi_dose.dose_mean_u_gy``, ``patient_index.*_u_gy``); nothing here
estimates an uncertainty of its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from harmonize.compare import uncertain
from harmonize.compare._common import CompareError
from harmonize.report._data import TRUTH, _captured
from harmonize.report.figures import _new_figure, _png_img, _style
from harmonize.report.html import _esc, _fixed, _note, _p, _table

__all__ = ["uncertainty_section"]

_ANCHOR = "uncertainty"


def _budget_table(budget: pd.DataFrame) -> str:
    shares = budget.pivot(index="component", columns="workflow", values="mean_share")
    contrib = budget.pivot(index="component", columns="workflow", values="median_dose_u_rel")
    order = [c for c in uncertain_components() if c in shares.index]
    cells = pd.DataFrame({"component": order})
    for workflow in shares.columns:
        cells[workflow] = [
            "—"
            if np.isnan(shares.loc[c, workflow])
            else f"{_fixed(100 * shares.loc[c, workflow], 0)} % ({_fixed(100 * contrib.loc[c, workflow], 1)} %)"
            for c in order
        ]
    return _table(cells, numeric=list(shares.columns))


def uncertain_components() -> tuple[str, ...]:
    """Components in the order of the chain."""
    from harmonize.uncertainty import COMPONENTS

    return COMPONENTS


def _coverage(voi: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    nd, _ = _captured(
        lambda: uncertain.normalised_differences(voi, "dose_mean_gy", "lesion", reference=TRUTH)
    )
    summary = nd.summary.rename(columns={"workflow_a": "workflow"})
    cells = pd.DataFrame(
        {
            "workflow": summary["workflow"],
            "lesions": summary["n_pairs"].astype(int).astype(str),
            "k = 2 coverage": [f"{_fixed(100 * v, 0)} %" for v in summary["share_en_within_1"]],
            "median |dose − truth| / 2u": [_fixed(v, 2) for v in summary["median_abs_en"]],
        }
    )
    return _table(
        cells, numeric=["lesions", "k = 2 coverage", "median |dose − truth| / 2u"]
    ), nd.pairs


def _error_bar_figure(pairs: pd.DataFrame, colours: Mapping[str, str]) -> str:
    combos = pairs[["workflow_a", "workflow_b"]].drop_duplicates().to_numpy().tolist()
    with _style():
        fig = _new_figure(4.2 * len(combos), 4.0)
        axes = fig.subplots(1, len(combos), squeeze=False)[0]
        for ax, (workflow, reference) in zip(axes, combos, strict=True):
            sub = pairs.loc[(pairs["workflow_a"] == workflow) & (pairs["workflow_b"] == reference)]
            x, y = sub["x_b"].to_numpy(float), sub["x_a"].to_numpy(float)
            ax.errorbar(
                x, y, yerr=2.0 * sub["u_a"].to_numpy(float), xerr=2.0 * sub["u_b"].to_numpy(float),
                fmt="o", markersize=3, color=colours.get(workflow, "#0072B2"), elinewidth=0.8,
            )  # fmt: skip
            both = np.concatenate([x, y])
            both = both[both > 0]
            if both.size:
                lo, hi = both.min() / 1.5, both.max() * 1.5
                ax.plot([lo, hi], [lo, hi], color="#888888", linestyle=":", linewidth=1.0)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlim(lo, hi)
                ax.set_ylim(lo, hi)
            ax.set_xlabel(f"{reference} (Gy)")
            ax.set_ylabel(f"{workflow} (Gy)")
            ax.set_title(f"{workflow} vs {reference}")
        caption = (
            "Lesion mean doses of each workflow pair, with error bars ±2u (k = 2, the "
            "expanded uncertainties of ISO 13528's En); dotted line: identity. A point whose "
            "error bars cannot reach the identity line is a difference beyond uncertainty."
        )
        return _png_img(fig, "lesion doses with k = 2 error bars", caption)


def _en_table(voi: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    workflows = sorted(w for w in voi["workflow"].unique() if w != TRUTH)
    nd, _ = _captured(
        lambda: uncertain.normalised_differences(voi, "dose_mean_gy", "lesion", workflows=workflows)
    )
    s = nd.summary
    cells = pd.DataFrame(
        {
            "pair": s["workflow_a"] + " vs " + s["workflow_b"],
            "lesions": s["n_pairs"].astype(int).astype(str),
            "share |En| ≤ 1": [f"{_fixed(100 * v, 0)} %" for v in s["share_en_within_1"]],
            "median |En|": [_fixed(v, 2) for v in s["median_abs_en"]],
        }
    )
    return _table(cells, numeric=["lesions", "share |En| ≤ 1", "median |En|"]), nd.pairs


def _cutoff_table(patient: pd.DataFrame) -> str:
    probabilities, _ = _captured(lambda: uncertain.cutoff_probabilities(patient))
    counts = uncertain.uncertain_discordance(probabilities)
    if counts.empty:
        return ""
    cells = counts.rename(
        columns={
            "cutoff_key": "cutoff",
            "n_patients": "patients",
            "n_discordant": "discordant",
            "n_discordant_beyond_uncertainty": "beyond uncertainty",
            "n_uncertain_a": "uncertain in a",
            "n_uncertain_b": "uncertain in b",
        }
    ).astype(str)
    return _table(cells, numeric=["patients", "discordant", "beyond uncertainty"])


def uncertainty_section(
    results: Mapping[str, pd.DataFrame], colours: Mapping[str, str], number: str
) -> str:
    """The HTML of the uncertainty section (empty note when the results carry none)."""
    parts = [f'<h2 id="{_ANCHOR}">{number}. Uncertainty of the doses (EANM 2018 chain)</h2>']
    voi = results.get("voi_dose", pd.DataFrame())
    budget_rows = results.get("uncertainty", pd.DataFrame())
    if "dose_mean_u_gy" not in voi.columns or not voi["dose_mean_u_gy"].notna().any():
        return "".join(parts) + _note(
            "The results carry no uncertainty (written before schema 1.2.0, or with the "
            "budget switched off)."
        )
    parts.append(
        _p(
            "Standard uncertainties (k = 1) of every VOI's TIA and mean dose through the chain "
            "A = C/(Q·R), Ã = ∫A dt, D = Ã·S (Gear et al., EJNMMI 2018;45:2456), by the GUM "
            "law of propagation, each workflow declaring the components of its method and "
            "their values (source or 'assumed' in its parameters). The budget: each "
            "component's mean share of the lesion dose variance (its median relative "
            "contribution in brackets)."
        )
    )
    if len(budget_rows):
        budget = uncertain.budget_shares(budget_rows, voi)
        if len(budget):
            parts.append(_budget_table(budget))
    if (voi["workflow"] == TRUTH).any():
        try:
            table, pairs = _coverage(voi)
            parts.append(
                _p(
                    "Coverage of the phantom truth: the share of lesions whose |dose − truth| "
                    "≤ 2u. An honest uncertainty covers about 95 %; far less means a "
                    "component is missing or a bias is uncorrected (e.g. the partial-volume "
                    "loss of a workflow without recovery correction), far more that a "
                    "component is overstated."
                )
            )
            parts.append(table)
            if len(pairs):
                parts.append(_error_bar_figure(pairs, colours))
        except CompareError as exc:
            parts.append(_note(f"coverage not computed: {_esc(exc)}"))
    if (voi["workflow"] != TRUTH).sum() and voi.loc[
        voi["workflow"] != TRUTH, "workflow"
    ].nunique() >= 2:
        try:
            table, pairs = _en_table(voi)
            parts.append(
                _p(
                    "Between workflows, per lesion: En = (x_a − x_b)/√(U_a² + U_b²) with "
                    "U = 2u (ISO 13528); |En| ≤ 1 means the two doses agree within their "
                    "uncertainties."
                )
            )
            parts.append(table)
            if len(pairs):
                parts.append(_error_bar_figure(pairs, colours))
        except CompareError as exc:
            parts.append(_note(f"En not computed: {_esc(exc)}"))
    patient = results.get("patient_index", pd.DataFrame())
    if "lesion_dose_min_u_gy" in patient.columns and patient["lesion_dose_min_u_gy"].notna().any():
        try:
            table = _cutoff_table(patient)
        except CompareError as exc:
            table = _note(f"cutoff probabilities not computed: {_esc(exc)}")
        if table:
            parts.append(
                _p(
                    "At each published cutoff: patients classified differently by two "
                    "workflows, and how many of them differ beyond uncertainty (one workflow "
                    "> 95 % sure the patient is above, the other > 95 % sure below; a "
                    "probability between 5 % and 95 % is 'uncertain')."
                )
            )
            parts.append(table)
    return "".join(parts)
