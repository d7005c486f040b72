"""The whole report: key findings, the page assembled from its sections, and the file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from harmonize._fs import write_bytes_atomic
from harmonize.report._data import (
    COMPARISON_TABLES,
    TRUTH,
    ReportError,
    _adapter_info,
    _agreement_rows,
    _Data,
    _input_files,
    _prepare,
    _read_agreement_dir,
)
from harmonize.report.agreement import _agreement_section
from harmonize.report.calibration import _calibration_section
from harmonize.report.checklist import _checklist_section
from harmonize.report.cutoffs import (
    _cutoffs_section,
    _kappa_text,
    _translation_section,
    _unstable,
)
from harmonize.report.dvh import _dvh_section, _dvh_summary
from harmonize.report.figures import _colours
from harmonize.report.html import _esc, _finite, _num, _page, _toc
from harmonize.report.outcomes import _outcomes_section
from harmonize.report.overview import _cohort_section, _workflows_section
from harmonize.report.provenance import _provenance_section, _references_section
from harmonize.report.truth import _truth_section
from harmonize.report.uncertainty import uncertainty_section

__all__ = [
    "build_report",
    "key_findings",
    "write_report",
]

_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")


def _pair_finding(data: _Data) -> list[str]:
    """Plain sentences on lesion mean dose: how much one workflow reads relative to another."""
    agr = _agreement_rows(data, "dose_mean_gy", "lesion")
    lines = []
    for (wa, wb), sub in agr.loc[agr["workflow_b"] != ""].groupby(
        ["workflow_a", "workflow_b"], sort=True
    ):
        s = sub.set_index("statistic")
        if "ratio_bias" not in s.index or not _finite(s.loc["ratio_bias", "estimate"]):
            continue
        r = s.loc["ratio_bias"]
        lines.append(
            f"{wa} reads {_num(r['estimate'])}× {wb} on lesion mean dose "
            f"(95 % CI {_num(r['ci_low'])} to {_num(r['ci_high'])}; 95 % of lesions between "
            f"{_num(s.loc['ratio_loa_lower', 'estimate'])}× and "
            f"{_num(s.loc['ratio_loa_upper', 'estimate'])}×; {int(r['n_pairs'])} lesions)."
        )
    return lines


def _translation_findings(data: _Data) -> list[str]:
    """ "91.4 Gy in montpellier ≈ 78.0 Gy [69.0, 93.0] in bordet", grouped by cutoff."""
    tr = data.tables["cutoff_translation"]
    lines = []
    for key, sub in tr.groupby("cutoff_key", sort=False):
        first = sub.iloc[0]
        targets = []
        for r in sub.itertuples(index=False):
            text = f"{_num(r.estimate_gy)} Gy [{_num(r.ci_low_gy)}, {_num(r.ci_high_gy)}] in {r.to_workflow}"
            if _unstable(pd.Series(r._asdict())):
                text += " (CI not informative)"
            targets.append(text)
        extrapolated = bool(sub["extrapolated"].astype(bool).any())
        line = (
            f"{_num(first['cutoff_gy'])} Gy in {first['from_workflow']} ({key}) ≈ "
            + "; ".join(targets)
            + "."
        )
        if extrapolated:
            line += (
                f" Extrapolated: {first['from_workflow']} observed only "
                f"{_num(first['observed_min_gy'])}–{_num(first['observed_max_gy'])} Gy on this "
                "index, so no patient tests this cutoff."
            )
        lines.append(line)
    return lines


def _kappa_findings(data: _Data) -> list[str]:
    summary = data.tables["cutoff_summary"]
    disc = data.tables["cutoff_discordant"]
    lines = []
    for cut in data.cutoffs.itertuples(index=False):
        sub = summary.loc[summary["cutoff_key"] == cut.key]
        if len(sub) == 0:
            continue
        refused = sub.loc[sub["statistic"] == "not_compared"]
        if len(refused):
            lines.append(f"{cut.label}: not compared — {refused['note'].iloc[0]}")
            continue
        fleiss = sub.loc[sub["statistic"] == "fleiss_kappa"]
        pairs = sub.loc[(sub["statistic"] == "cohen_kappa") & (sub["workflow_b"] != TRUTH)]
        if len(fleiss):
            k, name = fleiss.iloc[0], "Fleiss κ"
        elif len(pairs):
            k = pairs.iloc[0]
            name = f"Cohen κ ({k['workflow_a']} vs {k['workflow_b']})"
        else:
            continue
        n_disc = int((disc["cutoff_key"] == cut.key).sum())
        lines.append(
            f"{cut.label}: {name} {_kappa_text(k)}; {n_disc} of {int(k['n_patients'])} "
            "patients classified differently by the workflows."
        )
    return lines


def _findings(data: _Data) -> list[str]:
    """The key findings: plain sentences, every number a cell of ``compare``'s tables."""
    if len(data.compared) < 2:
        return []
    return _pair_finding(data) + _translation_findings(data) + _kappa_findings(data)


def key_findings(
    results: Mapping[str, pd.DataFrame],
    comparison: Mapping[str, pd.DataFrame] | None = None,
) -> list[str]:
    """Short sentences summarising a results dataset (what a CLI prints after a run).

    Parameters
    ----------
    results : mapping of str to pandas.DataFrame
        Tables as returned by :func:`harmonize.schema.read_results` (``voi_dose`` and
        ``patient_index`` needed).
    comparison : mapping of str to pandas.DataFrame, optional
        The tables ``harmonize compare`` wrote (default: produced by the same engine with
        its defaults).

    Returns
    -------
    list of str
        For each pair of workflows (truth excluded) how much one reads relative to the
        other on lesion mean dose; each translated cutoff, said to be extrapolated when it
        is; for each published cutoff the kappa and the number of discordant patients.
        Empty when fewer than two workflows.

    Examples
    --------
    >>> from harmonize.schema import example_frames
    >>> key_findings(example_frames())
    []
    """
    return _findings(_prepare(results, comparison))


def build_report(
    results: Mapping[str, pd.DataFrame],
    *,
    title: str | None = None,
    agreement_tables: Mapping[str, pd.DataFrame] | None = None,
    input_files: Mapping[str, tuple[int, str]] | None = None,
    comparison: Mapping[str, pd.DataFrame] | None = None,
    cutoffs: pd.DataFrame | None = None,
    calibration: pd.DataFrame | None = None,
) -> str:
    """Build the HTML report of result tables in memory.

    Parameters
    ----------
    results : mapping of str to pandas.DataFrame
        Tables as returned by :func:`harmonize.schema.read_results`: ``voi_dose``
        (required), ``patient_index`` (computed with the 'sum' rule when absent), ``tac``,
        ``run`` and ``agreement`` (optional).
    title : str, optional
        Title of the page (default "harmonize — dosimetry workflow comparison").
    agreement_tables : mapping of str to pandas.DataFrame, optional
        Agreement tables delivered with the results (name → table), listed as delivered.
    input_files : mapping of str to (int, str), optional
        Relative file name → (size in bytes, SHA-256) of the inputs, for the provenance.
    comparison : mapping of str to pandas.DataFrame, optional
        The tables ``harmonize compare`` wrote (``agreement``, ``cutoff_summary``, ...),
        which the report renders. Default: produced by the same engine
        (:func:`harmonize.pipeline.compare_results`) with its defaults.
    cutoffs : pandas.DataFrame, optional
        The cutoff table (:func:`harmonize.compare.load_cutoffs`), default the packaged one.
    calibration : pandas.DataFrame, optional
        The calibration phantom tables the run wrote
        (:func:`harmonize.calibration.read_calibration`); without them the calibration
        section says the run recorded none.

    Returns
    -------
    str
        A complete HTML5 document (UTF-8 text), identical for identical inputs.

    Raises
    ------
    ReportError
        If ``results`` is not a mapping or has no ``voi_dose`` rows, or a needed column is
        missing.
    """
    data = _prepare(results, comparison, cutoffs)
    title = title or "harmonize — dosimetry workflow comparison"
    infos = {w: _adapter_info(w) for w in data.workflows}
    colours = _colours(data.workflows)
    stored = dict(sorted((agreement_tables or {}).items()))
    if len(data.stored_agreement):
        stored.setdefault("results/agreement", data.stored_agreement)

    sections = [_cohort_section(data), _workflows_section(data, infos)]
    agreement_html, _ = _agreement_section(data, colours)
    sections.append(agreement_html)
    sections.append(_cutoffs_section(data))
    sections.append(_translation_section(data))
    sections.append(_outcomes_section({**stored, **data.tables}, colours))
    sections.append(_truth_section(data, colours))
    sections.append(_calibration_section(calibration, "8"))
    sections.append(uncertainty_section(results, colours, "9"))
    sections.append(_dvh_section(data, colours) if len(data.dvh) else _dvh_summary(data, colours))
    sections.append(_checklist_section(data, infos))
    sections.append(_provenance_section(data, input_files, stored))

    findings = _findings(data)
    toc = [
        ("cohort", "Cohort"),
        ("workflows", "Workflows and parameters"),
        ("agreement", "Agreement between workflows"),
        ("cutoffs", "Agreement at the published cutoffs"),
        ("translation", "Cutoffs translated between workflows"),
        ("outcomes", "Dose–response per workflow"),
        ("truth", "Accuracy against the phantom truth"),
        ("calibration", "Calibration phantom: each centre's recovery curve"),
        ("uncertainty", "Uncertainty of the doses"),
        ("dvh", "Lesion dose–volume histograms"),
        ("checklist", "EANM reporting checklist"),
        ("provenance", "Provenance"),
        ("references", "References"),
    ]
    nav = _toc(toc)
    lead = (
        f"{data.voi['patient_id'].nunique()} patients · workflows: {', '.join(data.workflows)}. "
        "Every statistic on this page is a cell of the tables harmonize compare writes "
        f"({data.tables_source}). "
        "All times are hours after injection; patients are identified by their pseudonymous id "
        "only. This page is self-contained: it loads nothing from the network."
    )
    head = f'<h1>{_esc(title)}</h1><p class="lead">{_esc(lead)}</p>'
    if findings:
        head += (
            '<h3>Key findings</h3><ul class="findings">'
            + "".join(f"<li>{_esc(f)}</li>" for f in findings)
            + "</ul>"
        )
    body = head + nav + "".join(sections)
    body += _references_section(body)
    body += "<footer>Generated by harmonize.report from the tables listed under Provenance. Same inputs, same bytes.</footer>"
    document = _page(title, body)
    leaked = _DATE.search(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", document))
    if leaked:
        raise ReportError(
            f"the report would contain a calendar date ({leaked.group(0)!r}); results must not "
            "carry dates (schema privacy rule)"
        )
    return document


def write_report(
    results_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    agreement_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    overwrite: bool = False,
    cutoffs: pd.DataFrame | None = None,
) -> Path:
    """Read a results dataset and write its self-contained HTML report, atomically.

    Parameters
    ----------
    results_dir : path-like
        Root of the results dataset (``voi_dose/``, ``patient_index/``, ``tac/``, ``run/``),
        read and validated by :func:`harmonize.schema.read_results`.
    out_path : path-like
        The HTML file to write; its folder must exist.
    agreement_dir : path-like, optional
        The folder ``harmonize compare`` wrote. The report renders its tables
        (``agreement``, ``cutoff_summary``, ...), listed with their hashes. Without it
        the same tables are produced by the same engine with ``compare``'s defaults.
    title : str, optional
        Page title.
    overwrite : bool, default False
        Replace an existing file with different content (an identical file is left as is).
    cutoffs : pandas.DataFrame, optional
        The cutoff table (:func:`harmonize.compare.load_cutoffs`, e.g. ``--cutoffs``).

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    FileExistsError
        If ``out_path`` exists with different content and ``overwrite`` is false.
    ReportError
        If the results cannot make a report (see :func:`build_report`).
    harmonize.schema.SchemaError
        If a results file does not conform to the schema.
    """
    from harmonize.schema import read_results

    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(f"results_dir {root} is not a directory")
    out = Path(out_path)
    if not out.parent.is_dir():
        raise ReportError(
            f"--out {out}: the folder {out.parent} does not exist (create it first; the report "
            "does not create folders)"
        )
    from harmonize.calibration import read_calibration

    results = read_results(root)
    try:
        calibration = read_calibration(root)
    except (ValueError, OSError) as exc:
        raise ReportError(f"{root}/calibration: {exc}") from exc
    files = _input_files(root)
    tables: dict[str, pd.DataFrame] = {}
    comparison = None
    if agreement_dir is not None:
        tables, more = _read_agreement_dir(Path(agreement_dir))
        files.update(more)
        found = {t: tables.get(f"agreement/{t}.parquet") for t in COMPARISON_TABLES}
        if all(v is not None for v in found.values()):
            comparison = {t: v for t, v in found.items() if v is not None}
    text = build_report(
        results,
        title=title,
        agreement_tables=tables,
        input_files=files,
        comparison=comparison,
        cutoffs=cutoffs,
        calibration=calibration,
    )
    return write_bytes_atomic(out, text.encode("utf-8"), overwrite)
