"""The whole report: key findings, the page assembled from its sections, and the file."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harmonize import compare
from harmonize._fs import write_bytes_atomic
from harmonize.compare import CompareError
from harmonize.report._data import (
    ReportError,
    _adapter_info,
    _captured,
    _Data,
    _input_files,
    _prepare,
    _read_agreement_dir,
)
from harmonize.report.agreement import _agreement_section
from harmonize.report.checklist import _checklist_section
from harmonize.report.cutoffs import (
    UNSTABLE_CI_FACTOR,
    _cutoff_tables,
    _cutoffs_section,
    _kappa_text,
    _translation_section,
)
from harmonize.report.dvh import _dvh_section, _dvh_summary
from harmonize.report.figures import _colours
from harmonize.report.html import _ci, _esc, _finite, _num, _page, _toc
from harmonize.report.outcomes import _outcomes_section
from harmonize.report.overview import _cohort_section, _workflows_section
from harmonize.report.provenance import _provenance_section, _references_section
from harmonize.report.truth import _truth_section

__all__ = [
    "build_report",
    "key_findings",
    "write_report",
]

_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")


def _findings(
    data: _Data, computed: Mapping[str, pd.DataFrame], cutoffs: Any, translations: Sequence[Any]
) -> list[str]:
    lines = []
    agr = computed.get("dose_mean_gy")
    if agr is not None:
        for (wa, wb), sub in agr.loc[agr["workflow_b"] != ""].groupby(
            ["workflow_a", "workflow_b"], sort=True
        ):
            s = sub.set_index("statistic")
            if "ratio_bias" in s.index and _finite(s.loc["ratio_bias", "estimate"]):
                r = s.loc["ratio_bias"]
                lines.append(
                    f"{wa} vs {wb}, lesion mean dose: ratio bias {_ci(r['estimate'], r['ci_low'], r['ci_high'])}, "
                    f"95 % LoA {_num(s.loc['ratio_loa_lower', 'estimate'])} to {_num(s.loc['ratio_loa_upper', 'estimate'])} "
                    f"(n = {int(r['n_pairs'])} lesions)"
                )
    if cutoffs is not None:
        summ = cutoffs.summary
        for key, sub in summ.groupby("cutoff_key", sort=True):
            s = sub.loc[sub["statistic"].isin(["fleiss_kappa", "cohen_kappa"])]
            overall = s.loc[s["workflow_b"] == ""] if (s["workflow_b"] == "").any() else s
            k = overall.iloc[0]
            n_disc = int((cutoffs.discordant["cutoff_key"] == key).sum())
            kname = (
                "Fleiss κ"
                if k["statistic"] == "fleiss_kappa"
                else f"Cohen κ ({k['workflow_a']} vs {k['workflow_b']})"
            )
            lines.append(
                f"cutoff {key}: {kname} = {_kappa_text(k)}, {n_disc} discordant patient(s) "
                f"of {int(k['n_patients'])}"
            )
    by_cutoff: dict[tuple[float, str, str], list[str]] = {}
    for t in translations:
        head = (t.cutoff_gy, t.from_workflow, t.index)
        by_cutoff.setdefault(head, []).append(
            f"{t.estimate_gy:.1f} Gy [{t.ci_low_gy:.1f}, {t.ci_high_gy:.1f}] in {t.to_workflow}"
            + (" (CI not informative)" if t.ci_high_gy > UNSTABLE_CI_FACTOR * t.ci_low_gy else "")
        )
    for (cutoff, source, index), targets in sorted(by_cutoff.items(), key=lambda kv: kv[0][2]):
        lines.append(f"{cutoff:g} Gy in {source} ({index}) corresponds to " + "; ".join(targets))
    return lines


def key_findings(results: Mapping[str, pd.DataFrame]) -> list[str]:
    """Short sentences summarising a results dataset (what a CLI prints after a run).

    Parameters
    ----------
    results : mapping of str to pandas.DataFrame
        Tables as returned by :func:`harmonize.schema.read_results` (``voi_dose`` needed).

    Returns
    -------
    list of str
        For each pair of workflows (truth excluded) the ratio bias and limits of agreement
        of lesion mean dose; for each published cutoff the kappa and the number of
        discordant patients; the translated cutoffs. Empty when fewer than two workflows.

    Examples
    --------
    >>> from harmonize.schema import example_frames
    >>> key_findings(example_frames())
    []
    """
    data = _prepare(results)
    if len(data.compared) < 2:
        return []
    infos = {w: _adapter_info(w) for w in data.workflows}
    computed: dict[str, pd.DataFrame] = {}
    try:
        computed["dose_mean_gy"], _ = _captured(
            lambda: compare.agreement(data.voi, "dose_mean_gy", "lesion", workflows=data.compared)
        )
    except CompareError:
        computed.clear()  # too few pairs for any statistic: the findings then omit agreement
    try:
        cut, _ = _cutoff_tables(data, data.compared)
    except CompareError:
        cut = None
    _, translations = _translation_section(data, infos)
    return _findings(data, computed, cut, translations)


def build_report(
    results: Mapping[str, pd.DataFrame],
    *,
    title: str | None = None,
    agreement_tables: Mapping[str, pd.DataFrame] | None = None,
    input_files: Mapping[str, tuple[int, str]] | None = None,
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
    data = _prepare(results)
    title = title or "harmonize — dosimetry workflow comparison"
    infos = {w: _adapter_info(w) for w in data.workflows}
    colours = _colours(data.workflows)
    stored = dict(sorted((agreement_tables or {}).items()))
    if len(data.stored_agreement):
        stored.setdefault("results/agreement", data.stored_agreement)

    sections = [_cohort_section(data), _workflows_section(data, infos)]
    agreement_html, computed = _agreement_section(data, colours)
    sections.append(agreement_html)
    cut_html, cut = _cutoffs_section(data)
    sections.append(cut_html)
    tr_html, translations = _translation_section(data, infos)
    sections.append(tr_html)
    sections.append(_outcomes_section(stored, colours))
    sections.append(_truth_section(data, colours))
    sections.append(_dvh_section(data, colours) if len(data.dvh) else _dvh_summary(data, colours))
    sections.append(_checklist_section(data, infos))
    sections.append(_provenance_section(data, input_files, stored))
    sections.append(_references_section())

    findings = _findings(data, computed, cut, translations)
    toc = [
        ("cohort", "Cohort"),
        ("workflows", "Workflows and parameters"),
        ("agreement", "Agreement between workflows"),
        ("cutoffs", "Agreement at the published cutoffs"),
        ("translation", "Cutoffs translated between workflows"),
        ("outcomes", "Dose–response per workflow"),
        ("truth", "Accuracy against the phantom truth"),
        ("dvh", "Lesion dose–volume histograms"),
        ("checklist", "EANM reporting checklist"),
        ("provenance", "Provenance"),
        ("references", "References"),
    ]
    nav = _toc(toc)
    lead = (
        f"{data.voi['patient_id'].nunique()} patients · workflows: {', '.join(data.workflows)}. "
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
) -> Path:
    """Read a results dataset and write its self-contained HTML report, atomically.

    Parameters
    ----------
    results_dir : path-like
        Root of the results dataset (``voi_dose/``, ``patient_index/``, ``tac/``, ``run/``),
        read and validated by :func:`harmonize.schema.read_results`.
    out_path : path-like
        The HTML file to write (parent directories are created).
    agreement_dir : path-like, optional
        A directory of agreement tables (Parquet or CSV, e.g. written by
        :func:`harmonize.compare.write_agreement`) to list in the report as delivered,
        with their hashes. The report's own statistics are always recomputed from the
        results, so the report stands alone.
    title : str, optional
        Page title.
    overwrite : bool, default False
        Replace an existing file with different content (an identical file is left as is).

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
    results = read_results(root)
    files = _input_files(root)
    tables: dict[str, pd.DataFrame] = {}
    if agreement_dir is not None:
        tables, more = _read_agreement_dir(Path(agreement_dir))
        files.update(more)
    text = build_report(results, title=title, agreement_tables=tables, input_files=files)
    return write_bytes_atomic(Path(out_path), text.encode("utf-8"), overwrite)
