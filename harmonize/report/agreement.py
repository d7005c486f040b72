"""Section 3 of the report: agreement between workflows, one block per dose index.

Ratio Bland–Altman (BA1999 §3.1) is the primary analysis; absolute statistics,
concordance and Passing–Bablok regression are shown next to it, every one with its 95 %
CI, read from the agreement table ``harmonize compare`` writes (the report computes none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pandas as pd

from harmonize.compare import CompareError
from harmonize.report._data import (
    DOSE_INDICES,
    DoseIndex,
    _agreement_rows,
    _Data,
    _index_table,
    _reporting,
)
from harmonize.report.figures import _pair_figure
from harmonize.report.html import _ci, _details, _esc, _fixed, _note, _num, _p, _slug, _table

#: No public names: :mod:`harmonize.report` re-exports the package's public API.
__all__: list[str] = []

#: Columns of the two compact agreement tables: (header, statistic, formatter).
_RATIO_COLUMNS: tuple[tuple[str, str, Callable[[object], str]], ...] = (
    ("ratio bias a/b", "ratio_bias", _num),
    ("ratio LoA lower", "ratio_loa_lower", _num),
    ("ratio LoA upper", "ratio_loa_upper", _num),
    ("wCV (%)", "wcv", lambda v: _num(v, 2)),
)
_ABSOLUTE_COLUMNS: tuple[tuple[str, str, Callable[[object], str]], ...] = (
    ("bias (Gy)", "bias", _num),
    ("LoA lower (Gy)", "loa_lower", _num),
    ("LoA upper (Gy)", "loa_upper", _num),
    ("CCC", "ccc", _fixed),
    ("ICC(2,1)", "ICC(2,1)", _fixed),
    ("PB slope", "passing_bablok_slope", _num),
    ("PB intercept (Gy)", "passing_bablok_intercept", _num),
)


def _compact(
    agr: pd.DataFrame, columns: Sequence[tuple[str, str, Callable[[object], str]]]
) -> pd.DataFrame:
    """One row per workflow pair with the chosen statistics and their CIs."""
    rows = []
    pairs = agr.loc[agr["workflow_b"] != "", ["workflow_a", "workflow_b"]].drop_duplicates()
    for wa, wb in pairs.itertuples(index=False):
        sub = agr.loc[(agr["workflow_a"] == wa) & (agr["workflow_b"] == wb)].set_index("statistic")
        row = {"a vs b": f"{wa} vs {wb}", "n": str(int(sub["n_pairs"].max()))}
        for label, stat, fmt in columns:
            if stat in sub.index:
                r = sub.loc[stat]
                row[label] = _ci(r["estimate"], r["ci_low"], r["ci_high"], fmt=fmt)
            else:
                row[label] = "–"
        rows.append(row)
    return pd.DataFrame(rows)


def _compact_tables(agr: pd.DataFrame) -> str:
    """The ratio-scale (primary) and the absolute-scale agreement tables, with 95 % CIs."""
    ratio = _compact(agr, _RATIO_COLUMNS)
    absolute = _compact(agr, _ABSOLUTE_COLUMNS).drop(columns="n")
    return (
        "<h4>Ratio scale (primary analysis), estimate [95 % CI]</h4>"
        + _table(ratio, numeric=["n", *[c for c, _, _ in _RATIO_COLUMNS]])
        + "<h4>Absolute scale and concordance, estimate [95 % CI]</h4>"
        + _table(absolute, numeric=[c for c, _, _ in _ABSOLUTE_COLUMNS])
    )


def _full(agr: pd.DataFrame) -> pd.DataFrame:
    out = agr[
        [
            "workflow_a",
            "workflow_b",
            "statistic",
            "estimate",
            "ci_low",
            "ci_high",
            "n_pairs",
            "unit",
            "method",
        ]
    ].copy()
    for c in ("estimate", "ci_low", "ci_high"):
        out[c] = [_num(v, 4) for v in out[c]]
    out["n_pairs"] = out["n_pairs"].astype(int).astype(str)
    return out


def _index_block(
    data: _Data, spec: DoseIndex, colours: Mapping[str, str], number: str
) -> tuple[str, pd.DataFrame | None]:
    scope = (
        "every cycle, pooled (pairs: patient × cycle × lesion)"
        if spec.level == "lesion"
        else (
            "every cycle, pooled (pairs: patient × cycle; a patient contributes one pair per cycle)"
            if spec.cycles == "each"
            else "the total over the planned treatment, once per patient"
        )
    )
    head = f'<h3 id="{_slug("index", spec.column)}">{number} {_esc(spec.label)} (<code>{_esc(spec.column)}</code>)</h3>'
    try:
        table = _index_table(data, spec)
    except CompareError as exc:
        return head + _note(f"Not compared: {exc}"), None
    workflows = _reporting(table, spec.column, data.compared)
    head += _p(
        f"Level: {spec.level}; cycles: {scope}. Workflows reporting it: {', '.join(workflows) or 'none'}."
    )
    agr = _agreement_rows(data, spec.column, spec.level)
    if len(workflows) < 2 or len(agr) == 0:
        return head + _p("Fewer than two workflows report this index: no comparison."), None
    body = _compact_tables(agr)
    pairs = [
        tuple(p)
        for p in agr.loc[agr["workflow_b"] != "", ["workflow_a", "workflow_b"]]
        .drop_duplicates()
        .itertuples(index=False)
    ]
    try:
        body += _pair_figure(table, spec, pairs, colours, agr)
    except CompareError as exc:
        body += _note(f"Figure not drawn: {exc}")
    body += _details(
        f"All agreement statistics of {spec.column} ({len(agr)} rows, with methods)",
        _table(_full(agr), numeric=["estimate", "ci_low", "ci_high", "n_pairs"]),
    )
    return head + body, agr


def _agreement_section(
    data: _Data, colours: Mapping[str, str]
) -> tuple[str, dict[str, pd.DataFrame]]:
    parts = ['<h2 id="agreement">3. Agreement between workflows</h2>']
    parts.append(
        _p(
            "Sign convention: differences are a − b and ratios a / b, with a and b as named "
            "in each row. The ratio Bland–Altman analysis (BA1999 §3.1: statistics of ln a − "
            "ln b, back-transformed) is the primary analysis: absorbed doses span two decades "
            "and dosimetry errors are proportional (calibration, recovery and S-value errors "
            "multiply the dose), so absolute differences grow with the dose and absolute limits "
            "of agreement would not hold over the range. Absolute statistics are shown next to "
            "them. CIs are 95 %; limits-of-agreement CIs are exact (Carkeet 2015). CCC: Lin (Lin1989); "
            "ICC(2,1): two-way random, absolute agreement (SF1979; MW1996); wCV: within-subject "
            "coefficient of variation; PB: Passing–Bablok regression a = intercept + slope · b "
            "(PB1983); Deming regression with jackknife CIs (Deming1943; Linnet1990)."
        )
    )
    computed: dict[str, pd.DataFrame] = {}
    for i, spec in enumerate(DOSE_INDICES, start=1):
        block, agr = _index_block(data, spec, colours, f"3.{i}")
        parts.append(block)
        if agr is not None:
            computed[spec.column] = agr
    return "".join(parts), computed
