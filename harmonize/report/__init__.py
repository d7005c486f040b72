"""One self-contained, reproducible HTML report of a harmonize results dataset.

:func:`write_report` reads a results directory (the hive-partitioned Parquet dataset of
:func:`harmonize.runner.run_cohort`) and the tables ``harmonize compare`` wrote, renders
them — it computes no statistic of its own, so the page and the tables cannot disagree
(without a comparison folder the tables are produced by the same engine,
:func:`harmonize.pipeline.compare_results`, with ``compare``'s defaults) — and writes
**one** HTML file: inline CSS, figures embedded as
base64 PNG, no script, no font or stylesheet from the network, so it opens offline and can
be mailed to a colleague. :func:`build_report` does the same from tables in memory and
returns the text.

What the report holds: the cohort; the workflows with every parameter and its source; per
dose index (lesion mean dose; patient-level minimum lesion dose, global mean dose and the
cumulative indices of the published cutoffs) ratio Bland–Altman plots, scatter plots with
the identity and the Passing–Bablok line and the agreement table with confidence
intervals; classification agreement at the five published cutoffs with the discordant
patients; the cutoffs translated between workflows; accuracy against the phantom truth
(workflow ``"truth"``) when present; each centre profile's recovery curve and
calibration factor from its NEMA IEC calibration phantom (the tables the run wrote in
``calibration/``); the cumulative DVHs of two lesions (the ``dvh`` table;
for results without one, a summary through their dose indices); for each workflow the EANM dosimetry reporting checklist (Lassmann2011,
Stokke2024 Table 4), every item filled from the data or marked "not reported by this
workflow"; and the provenance of every input (file and study hashes, software and schema
versions).

Why ratio Bland–Altman is the primary analysis: lesion doses span two decades (≈ 1 to
> 100 Gy) and dosimetry errors are proportional (a workflow that reads 10 % high at 10 Gy
reads about 10 % high at 100 Gy: calibration, recovery and S-value errors all multiply the
dose), so differences in Gy grow with the dose and absolute limits of agreement are not
constant over the range, which BA1999 §3.1 resolves by analysing log ratios. Absolute
statistics are given next to them.

Determinism: the same tables give the same bytes. Figures are drawn with the Agg renderer
on :class:`matplotlib.figure.Figure` (no pyplot state) under the explicit style
:data:`REPORT_RCPARAMS` applied on top of matplotlib's defaults (the user's matplotlibrc
is ignored), saved as PNG without the ``Software`` text chunk and without a time chunk;
every iteration is sorted; the bootstrap of the cutoff translation (in ``compare``) is
seeded; nothing in
the report depends on the clock, the host or the absolute paths of the inputs.

Modules: :mod:`._data` reads, checks and sorts the tables (and defines
:data:`DOSE_INDICES`); :mod:`.html` escapes, formats numbers, builds tables and the page
shell; :mod:`.figures` draws every matplotlib figure as a deterministic PNG;
:mod:`.overview` (sections 1–2, cohort and workflows), :mod:`.agreement` (3),
:mod:`.cutoffs` (4–5, cutoff agreement and translation), :mod:`.outcomes` (6,
dose–response), :mod:`.truth` (7), :mod:`.calibration` (8, each centre's calibration
phantom: RC curve and calibration factor, from the tables the run wrote),
:mod:`.uncertainty` (9), :mod:`.dvh` (10), :mod:`.checklist` (11, the EANM checklist) and
:mod:`.provenance` (12–13) build the numbered sections; :mod:`.document` assembles the page, the key
findings and the file.

Privacy: the report shows the pseudonymous ``patient_id`` and no other identifier, no
date and no absolute path; times are hours after injection.

References
----------
- Lassmann2011: Lassmann M, Chiesa C, Flux G, Bardiès M. EANM Dosimetry Committee guidance
  document: good practice of clinical dosimetry reporting. Eur J Nucl Med Mol Imaging
  2011;38:192–200, doi:10.1007/s00259-010-1549-3.
- Stokke2024: Stokke C, Gnesin S, Tran-Gia J, et al. EANM guidance document: dosimetry for
  first-in-human studies and early phase clinical trials. Eur J Nucl Med Mol Imaging
  2024;51:1268–1286, doi:10.1007/s00259-024-06640-x (Table 4: parameters to report).
- BA1999: Bland JM, Altman DG. Measuring agreement in method comparison studies. Stat
  Methods Med Res 1999;8:135–160, doi:10.1177/096228029900800204.

Examples
--------
>>> from harmonize.schema import example_frames
>>> frames = example_frames()
>>> text = build_report(frames, title="example")
>>> text.startswith("<!DOCTYPE html>") and "not reported by this workflow" in text
True
"""

from __future__ import annotations

# the package namespace, as before the split into modules: the tests reach the comparison
# engine and a few private helpers through it
from harmonize import compare as compare
from harmonize.report._data import DOSE_INDICES, DoseIndex, ReportError
from harmonize.report._data import DVH_POINTS as DVH_POINTS
from harmonize.report._data import TRUTH as TRUTH
from harmonize.report._data import _prepare as _prepare
from harmonize.report.checklist import CHECKLIST_ITEMS, NOT_REPORTED, ChecklistItem
from harmonize.report.checklist import LASSMANN2011 as LASSMANN2011
from harmonize.report.checklist import STOKKE2024 as STOKKE2024
from harmonize.report.cutoffs import UNSTABLE_CI_FACTOR
from harmonize.report.document import build_report, key_findings, write_report
from harmonize.report.dvh import _dvh_lesions as _dvh_lesions
from harmonize.report.figures import REPORT_RCPARAMS
from harmonize.report.html import _ci as _ci
from harmonize.report.html import _num as _num
from harmonize.report.truth import LESION_SIZE_BANDS_ML, truth_error_by_size

__all__ = [
    "CHECKLIST_ITEMS",
    "DOSE_INDICES",
    "LESION_SIZE_BANDS_ML",
    "NOT_REPORTED",
    "REPORT_RCPARAMS",
    "UNSTABLE_CI_FACTOR",
    "ChecklistItem",
    "DoseIndex",
    "ReportError",
    "build_report",
    "key_findings",
    "truth_error_by_size",
    "write_report",
]
