"""One self-contained, reproducible HTML report of a harmonize results dataset.

:func:`write_report` reads a results directory (the hive-partitioned Parquet dataset of
:func:`harmonize.runner.run_cohort`), recomputes every comparison with
:mod:`harmonize.compare` and writes **one** HTML file: inline CSS, figures embedded as
base64 PNG, no script, no font or stylesheet from the network, so it opens offline and can
be mailed to a colleague. :func:`build_report` does the same from tables in memory and
returns the text.

What the report holds: the cohort; the workflows with every parameter and its source; per
dose index (lesion mean dose; patient-level minimum lesion dose, global mean dose and the
cumulative indices of the published cutoffs) ratio Bland–Altman plots, scatter plots with
the identity and the Passing–Bablok line and the agreement table with confidence
intervals; classification agreement at the five published cutoffs with the discordant
patients; the cutoffs translated between workflows; accuracy against the phantom truth
(workflow ``"truth"``) when present; the cumulative DVHs of two lesions (the ``dvh`` table;
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
every iteration is sorted; the bootstrap of the cutoff translation is seeded; nothing in
the report depends on the clock, the host or the absolute paths of the inputs.

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

import base64
import contextlib
import functools
import hashlib
import html
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from harmonize import compare
from harmonize._fs import write_bytes_atomic
from harmonize.compare import CompareError

__all__ = [
    "CHECKLIST_ITEMS",
    "DOSE_INDICES",
    "LESION_SIZE_BANDS_ML",
    "NOT_REPORTED",
    "REPORT_RCPARAMS",
    "TRANSLATION_N_BOOT",
    "TRANSLATION_SEED",
    "UNSTABLE_CI_FACTOR",
    "ChecklistItem",
    "DoseIndex",
    "ReportError",
    "build_report",
    "key_findings",
    "truth_error_by_size",
    "write_report",
]

#: The workflow name of the phantom's ground truth (see harmonize.runner).
TRUTH = "truth"
#: The phrase used for every checklist item a workflow's results do not document.
NOT_REPORTED = "not reported by this workflow"
#: Bootstrap replicates and seed of the cutoff translations (seeded: same bytes every run).
TRANSLATION_N_BOOT = 2000
TRANSLATION_SEED = 0
#: A translated cutoff whose CI upper/lower limits differ by more than this factor is
#: flagged as uninformative (a bootstrap over very few patients) [assumed threshold].
UNSTABLE_CI_FACTOR = 10.0
#: Lesion-volume bands (mL) of the accuracy tables. 5 mL is a sphere of 2.1 cm diameter
#: (≈ 2 × the 11 mm FWHM of the phantom's SPECT PSF), 20 mL one of 3.4 cm (≈ 3 × FWHM, the
#: adapters' ``truth_min_volume_ml``); 100 mL separates the largest lesions [assumed
#: banding, chosen for readability, not from a publication].
LESION_SIZE_BANDS_ML: tuple[float, ...] = (0.0, 5.0, 20.0, 100.0, math.inf)
#: Volume fractions at which the dose indices sit on a cumulative DVH: the minimum dose is
#: received by 100 % of the volume, D98 by 98 %, D50 by 50 %, D2 by 2 % and the maximum by
#: (the limit) 0 % — by the definitions of the ``voi_dose`` columns.
DVH_POINTS: tuple[tuple[str, float], ...] = (
    ("dose_min_gy", 100.0),
    ("dose_d98_gy", 98.0),
    ("dose_d50_gy", 50.0),
    ("dose_d2_gy", 2.0),
    ("dose_max_gy", 0.0),
)
#: Matplotlib style of every figure, applied over matplotlib's defaults (not the user's rc).
REPORT_RCPARAMS: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 9.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 7.5,
    "legend.frameon": False,
    "figure.dpi": 100.0,
    "savefig.dpi": 100.0,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.bbox": None,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.3,
    "lines.markersize": 4.5,
    "svg.hashsalt": "harmonize-report",
    "svg.fonttype": "path",
    "path.simplify": True,
    "text.usetex": False,
}
#: Colour-blind-safe palette (Okabe & Ito 2008), assigned to workflows in sorted order.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#999933")
_TRUTH_COLOUR = "#222222"
_CYCLE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_DATE = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])")

LASSMANN2011 = "Lassmann2011"
STOKKE2024 = "Stokke2024 Table 4"
_REFERENCES = {
    "Lassmann2011": (
        "Lassmann M, Chiesa C, Flux G, Bardiès M. EANM Dosimetry Committee guidance document: "
        "good practice of clinical dosimetry reporting. Eur J Nucl Med Mol Imaging "
        "2011;38:192–200. doi:10.1007/s00259-010-1549-3"
    ),
    "Stokke2024": (
        "Stokke C, Gnesin S, Tran-Gia J, et al. EANM guidance document: dosimetry for "
        "first-in-human studies and early phase clinical trials. Eur J Nucl Med Mol Imaging "
        "2024;51:1268–1286. doi:10.1007/s00259-024-06640-x"
    ),
    "BA1999": (
        "Bland JM, Altman DG. Measuring agreement in method comparison studies. Stat Methods "
        "Med Res 1999;8:135–160. doi:10.1177/096228029900800204"
    ),
    "PB1983": (
        "Passing H, Bablok W. A new biometrical procedure for testing the equality of "
        "measurements from two different analytical methods. J Clin Chem Clin Biochem "
        "1983;21:709–720. doi:10.1515/cclm.1983.21.11.709"
    ),
    "Lin1989": (
        "Lin LI. A concordance correlation coefficient to evaluate reproducibility. "
        "Biometrics 1989;45:255–268. doi:10.2307/2532051"
    ),
    "Cohen1960": (
        "Cohen J. A coefficient of agreement for nominal scales. Educ Psychol Meas "
        "1960;20:37–46. doi:10.1177/001316446002000104"
    ),
}


class ReportError(ValueError):
    """The inputs of a report are unusable (missing table or column, bad argument)."""


@dataclass(frozen=True)
class DoseIndex:
    """A dose index compared between workflows.

    Attributes
    ----------
    column : str
        Column of ``voi_dose`` (``level == "lesion"``) or ``patient_index``.
    level : {"lesion", "patient"}
    cycles : {"each", "last"}
        ``"each"``: every cycle's value, pooled over cycles; ``"last"``: only the last
        cycle of each patient (cumulative indices at treatment end).
    label : str
        Human-readable name.
    """

    column: str
    level: Literal["lesion", "patient"]
    cycles: Literal["each", "last"]
    label: str


#: The dose indices the report compares, in report order.
DOSE_INDICES: tuple[DoseIndex, ...] = (
    DoseIndex("dose_mean_gy", "lesion", "each", "lesion mean absorbed dose"),
    DoseIndex("lesion_dose_min_gy", "patient", "each", "minimum lesion dose of a patient"),
    DoseIndex("global_mean_dose_gy", "patient", "each", "global mean lesion dose (GTD)"),
    DoseIndex("cum_lesion_dose_min_gy", "patient", "last", "cumulative minimum lesion dose (end)"),
    DoseIndex("cum_lesion_dose_mean_gy", "patient", "last", "cumulative mean lesion dose (end)"),
    DoseIndex("cum_global_mean_dose_gy", "patient", "last", "cumulative global mean dose (end)"),
)


@dataclass(frozen=True)
class ChecklistItem:
    """One item of the EANM dosimetry reporting checklist.

    Attributes
    ----------
    key : str
        Identifier.
    label : str
        What a reviewer looks for.
    references : str
        Where the item is asked for.
    parameter_pattern : str
        Regular expression matched (case-insensitive) against the workflow's parameter
        names; matching parameters are quoted with their values and sources.
    description_pattern : str
        Regular expression matched (case-insensitive) against the adapter's one-line
        method description; a match alone marks the item "described only" (the method
        is named but no data or parameter documents it).
    """

    key: str
    label: str
    references: str
    parameter_pattern: str
    description_pattern: str = r"$^"


_BOTH = f"{LASSMANN2011}; {STOKKE2024}"
#: The checklist items, in report order (Lassmann2011; Stokke2024 Table 4).
CHECKLIST_ITEMS: tuple[ChecklistItem, ...] = (
    ChecklistItem("activity", "Administered activity", _BOTH, r"activity|injected"),
    ChecklistItem("admin_time", "Time of administration (relative)", _BOTH, r"injection"),
    ChecklistItem("time_points", "Imaging time points", _BOTH, r"time_point|schedule"),
    ChecklistItem("tac", "Activity at each imaging time point", _BOTH, r"$^"),
    ChecklistItem("calibration", "Quantitative calibration", _BOTH, r"calib|sensitiv", r"calibrat"),
    ChecklistItem(
        "recovery",
        "Recovery (partial-volume) correction",
        _BOTH,
        r"recover|^rc_|pvc|partial",
        r"\bRC\b|recovery|partial.volume",
    ),
    ChecklistItem(
        "segmentation",
        "Segmentation (VOI definition)",
        _BOTH,
        r"segment|threshold|organ_includes|voi",
    ),
    ChecklistItem("registration", "Registration of time points", _BOTH, r"regist", r"regist"),
    ChecklistItem("volumes", "Volumes and masses", _BOTH, r"mass|density|volume"),
    ChecklistItem(
        "fit_model", "Time-activity fit model and integration", _BOTH, r"model|head|tail|fit|integr"
    ),
    ChecklistItem("fit_quality", "Fit weighting and goodness of fit", _BOTH, r"weight"),
    ChecklistItem("tia", "Time-integrated activity and TIA coefficient", _BOTH, r"tia"),
    ChecklistItem("dose_method", "Absorbed-dose calculation method", _BOTH, r"dose|engine|photon"),
    ChecklistItem(
        "s_values",
        "S-value / dose-kernel source",
        _BOTH,
        r"kernel|medium|s_value|sphere",
        r"kernel|s.value|sphere|local (energy )?deposition",
    ),
    ChecklistItem("mass_source", "Mass source (CT density or assumed)", _BOTH, r"mass|density"),
    ChecklistItem("lesion_doses", "Per-lesion absorbed doses, summary statistics", _BOTH, r"$^"),
    ChecklistItem("organ_doses", "Organ absorbed doses", _BOTH, r"$^"),
    ChecklistItem("uncertainty", "Uncertainty analysis", STOKKE2024, r"uncert"),
    ChecklistItem("software", "Software and versions", _BOTH, r"$^"),
)

_CSS = """
:root{--ink:#1d2733;--muted:#5b6775;--line:#d5dbe2;--band:#f3f6f9;--accent:#0b5394}
*{box-sizing:border-box}
body{font:14px/1.5 "DejaVu Sans",Helvetica,Arial,sans-serif;color:var(--ink);margin:0;
background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 28px 64px}
h1{font-size:26px;margin:8px 0 4px;color:var(--accent)}
h2{font-size:20px;margin:40px 0 8px;padding-top:12px;border-top:2px solid var(--accent)}
h3{font-size:16px;margin:28px 0 6px}
h4{font-size:14px;margin:18px 0 4px;color:var(--muted)}
p,li{max-width:980px}
.lead{color:var(--muted);margin-top:0}
nav.toc{background:var(--band);border:1px solid var(--line);padding:8px 16px;margin:16px 0;
columns:2;column-gap:32px}
nav.toc ol{margin:4px 0;padding-left:20px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:12.5px;max-width:100%}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--band);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.missing td.status{color:#a33}
td.status{white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:11.5px}
.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:10.5px;
word-break:break-all}
figure{margin:12px 0 20px}
figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{color:var(--muted);font-size:12.5px;max-width:980px}
details{margin:6px 0 14px}
details>summary{cursor:pointer;color:var(--accent)}
.note{background:#fff8e5;border-left:4px solid #e6a700;padding:6px 12px;margin:10px 0}
.findings{background:var(--band);border:1px solid var(--line);padding:8px 16px}
.findings li{margin:3px 0}
footer{margin-top:48px;color:var(--muted);font-size:12px}
"""


# ------------------------------------------------------------------------------------------
# Formatting helpers
# ------------------------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    """Format a number with ``digits`` significant figures (thousands separated); '–' if none."""
    if value is None or value is pd.NA:
        return "–"
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    if v == 0.0:
        return "0"
    magnitude = math.floor(math.log10(abs(v)))
    if magnitude >= digits - 1:
        text = f"{v:,.0f}"
    else:
        text = f"{v:.{digits - 1 - magnitude}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text


def _fixed(value: object, decimals: int = 2) -> str:
    """Format a number with a fixed number of decimals (for kappa, CCC, ICC); '–' if none."""
    if not _finite(value):
        return "–"
    text = f"{float(value):.{decimals}f}"  # type: ignore[arg-type]
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _ci(
    est: object, lo: object, hi: object, digits: int = 3, fmt: Callable[..., str] | None = None
) -> str:
    """``estimate [low, high]`` (the interval only when both limits are finite)."""
    f = fmt if fmt is not None else (lambda v: _num(v, digits))
    text = f(est)
    if _finite(lo) and _finite(hi):
        text += f" [{f(lo)}, {f(hi)}]"
    return text


def _finite(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _slug(*parts: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")


def _table(
    df: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    raw: Sequence[str] = (),
    row_class: Callable[[pd.Series], str] | None = None,
    cell_class: Mapping[str, str] | None = None,
) -> str:
    """An HTML table of already formatted cells (escaped unless the column is in ``raw``)."""
    cell_class = dict(cell_class or {})
    head = "".join(f"<th>{_esc(c)}</th>" for c in df.columns)
    rows = []
    for _, row in df.iterrows():
        cells = []
        for col in df.columns:
            classes = " ".join(
                c for c in ("num" if col in numeric else "", cell_class.get(col, "")) if c
            )
            attr = f' class="{classes}"' if classes else ""
            text = str(row[col]) if col in raw else _esc(row[col])
            cells.append(f"<td{attr}>{text}</td>")
        rc = row_class(row) if row_class is not None else ""
        rows.append(f'<tr class="{rc}">' if rc else "<tr>")
        rows[-1] += "".join(cells) + "</tr>"
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _details(summary: str, body: str) -> str:
    return f"<details><summary>{_esc(summary)}</summary>{body}</details>"


def _p(text: str) -> str:
    return f"<p>{_esc(text)}</p>"


def _note(text: str) -> str:
    return f'<p class="note">{_esc(text)}</p>'


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


# ------------------------------------------------------------------------------------------
# Figures (deterministic PNG)
# ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _style() -> Iterator[None]:
    import matplotlib.style

    with matplotlib.style.context(["default", REPORT_RCPARAMS]):
        yield


def _new_figure(width_in: float, height_in: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png_img(fig: Any, alt: str, caption: str) -> str:
    """Render a figure to an ``<figure>`` with an embedded PNG (no Software/time chunk)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    data = buffer.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" width="{width}" '
        f'height="{height}" alt="{_esc(alt)}"><figcaption>{_esc(caption)}</figcaption></figure>'
    )


def _colours(workflows: Sequence[str]) -> dict[str, str]:
    names = sorted(w for w in workflows if w != TRUTH)
    out = {w: _PALETTE[i % len(_PALETTE)] for i, w in enumerate(names)}
    out[TRUTH] = _TRUTH_COLOUR
    return out


def _log_limits(values: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(values)), float(np.max(values))
    return lo / 1.25, hi * 1.25


# ------------------------------------------------------------------------------------------
# Reading the tables
# ------------------------------------------------------------------------------------------


@dataclass
class _Data:
    voi: pd.DataFrame
    patient: pd.DataFrame
    tac: pd.DataFrame
    run: pd.DataFrame
    dvh: pd.DataFrame
    stored_agreement: pd.DataFrame
    workflows: list[str]
    compared: list[str]
    has_truth: bool
    notes: list[str]


def _prepare(results: Mapping[str, pd.DataFrame]) -> _Data:
    if not isinstance(results, Mapping):
        raise ReportError(
            f"results must be a mapping of table name to DataFrame, got {type(results).__name__}"
        )
    if "voi_dose" not in results or len(results["voi_dose"]) == 0:
        raise ReportError(
            f"results has no rows in table 'voi_dose' (tables given: {sorted(results)}); "
            "a report needs at least the voi_dose table"
        )
    voi = results["voi_dose"].copy()
    needed = ["patient_id", "cycle", "workflow", "voi_id", "voi_kind", "dose_mean_gy"]
    missing = [c for c in needed if c not in voi.columns]
    if missing:
        raise ReportError(f"table 'voi_dose' lacks column(s) {missing}")
    notes: list[str] = []
    patient = results.get("patient_index")
    if patient is None or len(patient) == 0:
        from harmonize.indices import patient_index

        patient = patient_index(voi, cumulative_rule="sum")
        notes.append(
            "The results hold no patient_index table; it was computed here from voi_dose with "
            "the cumulative rule 'sum' for every workflow."
        )
    empty = pd.DataFrame()
    tac = results.get("tac", empty)
    run = results.get("run", empty)
    stored = results.get("agreement", empty)
    sort = ["patient_id", "cycle", "workflow"]
    dvh = results.get("dvh", empty)
    if len(dvh):
        dvh_keys = [*sort, "voi_id", "volume_pct"]
        lacking = [c for c in [*dvh_keys, "dose_gy"] if c not in dvh.columns]
        if lacking:
            raise ReportError(f"table 'dvh' lacks column(s) {lacking}")
        dvh = dvh.sort_values(dvh_keys, kind="stable").reset_index(drop=True)
    voi = voi.sort_values([*sort, "voi_id"], kind="stable").reset_index(drop=True)
    patient = patient.sort_values(sort, kind="stable").reset_index(drop=True)
    workflows = sorted(str(w) for w in voi["workflow"].unique())
    compared = [w for w in workflows if w != TRUTH]
    return _Data(
        voi=voi,
        patient=patient,
        tac=tac,
        run=run,
        dvh=dvh,
        stored_agreement=stored,
        workflows=workflows,
        compared=compared,
        has_truth=TRUTH in workflows,
        notes=notes,
    )


def _last_cycle(patient: pd.DataFrame) -> pd.DataFrame:
    last = patient.groupby(["patient_id", "workflow"])["cycle"].transform("max")
    return patient.loc[patient["cycle"] == last]


def _index_table(data: _Data, spec: DoseIndex) -> pd.DataFrame:
    if spec.level == "lesion":
        return data.voi
    return _last_cycle(data.patient) if spec.cycles == "last" else data.patient


def _reporting(table: pd.DataFrame, column: str, workflows: Sequence[str]) -> list[str]:
    """Workflows with at least one finite value of ``column``."""
    if column not in table.columns:
        return []
    sub = table.loc[table["workflow"].isin(list(workflows))]
    finite = sub.groupby("workflow")[column].apply(
        lambda s: bool(np.isfinite(s.astype(float)).any())
    )
    return sorted(str(w) for w, ok in finite.items() if ok)


def _captured(func: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Call ``func`` recording harmonize warnings as text (they become notes)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = func()
    messages = sorted({str(w.message) for w in caught})
    return value, messages


def _parameters(run: pd.DataFrame, workflow: str) -> pd.DataFrame:
    """Distinct parameter values of a workflow's runs: parameter, value, overridden."""
    if len(run) == 0 or "parameters_json" not in run.columns:
        return pd.DataFrame(columns=["parameter", "value", "overridden"])
    rows = run.loc[run["workflow"] == workflow]
    values: dict[str, set[str]] = {}
    overridden: set[str] = set()
    for text in sorted(set(rows["parameters_json"].astype(str))):
        for key, value in json.loads(text).items():
            values.setdefault(key, set()).add(json.dumps(value, sort_keys=True))
    if "overrides_json" in rows.columns:
        for text in sorted(set(rows["overrides_json"].astype(str))):
            overridden |= set(json.loads(text or "{}"))
    return pd.DataFrame(
        {
            "parameter": sorted(values),
            "value": [" | ".join(sorted(values[k])) for k in sorted(values)],
            "overridden": ["yes" if k in overridden else "" for k in sorted(values)],
        }
    )


@dataclass(frozen=True)
class _AdapterInfo:
    installed: bool
    center: str
    version: str
    description: str
    references: str
    url: str
    cumulative_rule: str
    sources: dict[str, tuple[str, str]]


def _adapter_info(workflow: str) -> _AdapterInfo:
    """Metadata and parameter sources of an installed adapter (empty when not installed)."""
    from harmonize.registry import list_workflows

    installed, _ = _captured(list_workflows)
    cls = installed.get(workflow)
    if cls is None:
        return _AdapterInfo(False, "", "", "", "", "", "", {})
    table = cls.Config.describe()
    sources = {str(r.parameter): (str(r.source), str(r.description)) for r in table.itertuples()}
    return _AdapterInfo(
        True,
        str(cls.center),
        str(cls.version),
        str(cls.description),
        ", ".join(cls.references),
        str(cls.url),
        str(cls.cumulative_rule),
        sources,
    )


# ------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------


def _cohort_section(data: _Data) -> str:
    voi = data.voi
    ref = TRUTH if data.has_truth else data.workflows[0]
    lesions = voi.loc[(voi["workflow"] == ref) & (voi["voi_kind"] == "lesion")]
    studies = voi[["patient_id", "cycle"]].drop_duplicates()
    patients = sorted(str(p) for p in studies["patient_id"].unique())
    cycles = sorted(int(c) for c in studies["cycle"].unique())
    per = (
        studies.groupby("patient_id")["cycle"]
        .apply(lambda s: ", ".join(str(int(c)) for c in sorted(s)))
        .rename("cycles")
    )
    n_les = lesions.groupby("patient_id")["voi_id"].nunique().rename("lesions")
    vol = lesions.groupby("patient_id")["volume_ml"].agg(["min", "max"])
    activity = _administered(voi).groupby("patient_id")["activity_mbq"].agg(["min", "max"])
    rows = []
    for pid in patients:
        lo, hi = (vol.loc[pid, "min"], vol.loc[pid, "max"]) if pid in vol.index else (np.nan,) * 2
        alo, ahi = (
            (activity.loc[pid, "min"], activity.loc[pid, "max"])
            if pid in activity.index
            else (np.nan, np.nan)
        )
        rows.append(
            {
                "patient": pid,
                "cycles": per.get(pid, ""),
                "lesions": int(n_les.get(pid, 0)),
                "lesion volume range (mL)": f"{_num(lo)} – {_num(hi)}",
                "administered activity per cycle (MBq)": f"{_num(alo, 4)} – {_num(ahi, 4)}",
            }
        )
    kinds = voi.loc[voi["workflow"] == ref].groupby("voi_kind")["voi_id"].nunique()
    intro = (
        f"{len(patients)} patients, cycles {', '.join(map(str, cycles))}, {len(studies)} "
        f"patient-cycles; {int(lesions[['patient_id', 'voi_id']].drop_duplicates().shape[0])} "
        f"distinct lesions (counted in workflow '{ref}'). VOI kinds: "
        + ", ".join(f"{k} {int(v)}" for k, v in sorted(kinds.items()))
        + ". Administered activity is derived as TIA / TIA coefficient (the results hold no "
        "activity column); time zero is the injection."
    )
    return (
        '<h2 id="cohort">1. Cohort</h2>'
        + _p(intro)
        + _table(pd.DataFrame(rows), numeric=["lesions"])
    )


def _administered(voi: pd.DataFrame) -> pd.DataFrame:
    """Administered activity per study and workflow, derived as TIA / TIA coefficient."""
    if not {"tia_mbq_h", "tia_coefficient_h"} <= set(voi.columns):
        return pd.DataFrame(columns=["patient_id", "cycle", "workflow", "activity_mbq"])
    ok = (voi["tia_coefficient_h"] > 0) & np.isfinite(voi["tia_mbq_h"].astype(float))
    sub = voi.loc[ok].assign(activity_mbq=voi["tia_mbq_h"] / voi["tia_coefficient_h"])
    return sub.groupby(["patient_id", "cycle", "workflow"])["activity_mbq"].median().reset_index()


def _workflows_section(data: _Data, infos: Mapping[str, _AdapterInfo]) -> str:
    parts = ['<h2 id="workflows">2. Workflows and their parameters</h2>']
    parts.append(
        _p(
            "Each workflow reproduces one centre's method. Parameters are the effective values "
            "recorded in the run table (after overrides); the source of each is the "
            "publication key declared by the adapter, or 'assumed' when no source states it. "
            "Sources are read from the installed adapter; an adapter not installed where this "
            "report was built shows its recorded values without sources."
        )
    )
    rules = (
        data.patient.groupby("workflow")["cum_rule"].agg(
            lambda s: ", ".join(sorted({str(v).split(":")[0] for v in s}))
        )
        if "cum_rule" in data.patient.columns
        else pd.Series(dtype=object)
    )
    rows = []
    for w in data.workflows:
        info = infos[w]
        versions = (
            sorted(set(data.voi.loc[data.voi["workflow"] == w, "workflow_version"].astype(str)))
            if "workflow_version" in data.voi.columns
            else []
        )
        rows.append(
            {
                "workflow": w,
                "centre": info.center or ("phantom ground truth" if w == TRUTH else "–"),
                "version": ", ".join(versions) or "–",
                "method": info.description
                or (
                    "the phantom's known doses (noise-free TIA, same physics)"
                    if w == TRUTH
                    else "–"
                ),
                "references": info.references or "–",
                "cumulative rule": str(rules.get(w, "–")),
                "adapter installed here": "yes" if info.installed else "no",
            }
        )
    parts.append(_table(pd.DataFrame(rows)))
    for w in data.compared:
        info = infos[w]
        params = _parameters(data.run, w)
        if len(params) == 0:
            parts.append(f"<h4>{_esc(w)}</h4>" + _p("No run table rows: parameters not recorded."))
            continue
        params["source"] = [info.sources.get(p, ("–", ""))[0] for p in params["parameter"]]
        params["description"] = [info.sources.get(p, ("", "–"))[1] for p in params["parameter"]]
        parts.append(f"<h4>{_esc(w)}: parameters</h4>" + _table(params))
    return "".join(parts)


def _ba_axes(
    ax: Any, a: np.ndarray, b: np.ndarray, wa: str, wb: str, colour: str, cycles: np.ndarray
) -> None:
    positive = bool(np.all(a > 0) and np.all(b > 0))
    res = compare.bland_altman(a, b, log=positive)
    if positive:
        x, y = np.sqrt(a * b), a / b
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"geometric mean of {wa} and {wb} (Gy)")
        ax.set_ylabel(f"ratio {wa} / {wb}")
        ax.axhline(1.0, color="#888888", linewidth=0.8)
    else:
        x, y = (a + b) / 2.0, a - b
        ax.set_xlabel(f"mean of {wa} and {wb} (Gy)")
        ax.set_ylabel(f"{wa} − {wb} (Gy)")
        ax.axhline(0.0, color="#888888", linewidth=0.8)
    _scatter_by_cycle(ax, x, y, colour, cycles)
    if len(set(cycles.tolist())) > 1:
        ax.legend(loc="upper right", ncols=len(set(cycles.tolist())))
    for value, ci, style in (
        (res.bias, res.bias_ci, "-"),
        (res.loa_lower, res.loa_lower_ci, "--"),
        (res.loa_upper, res.loa_upper_ci, "--"),
    ):
        ax.axhline(value, color=colour, linestyle=style, linewidth=1.1)
        ax.axhspan(ci[0], ci[1], color=colour, alpha=0.12, linewidth=0)
    kind = "ratio" if positive else "difference"
    ax.set_title(
        f"{kind} bias {_num(res.bias)}, 95 % LoA {_num(res.loa_lower)} to {_num(res.loa_upper)}"
    )
    if positive:
        # symmetric log range around 1 that holds every point and both LoA intervals
        extremes = np.log([*y, res.loa_lower_ci[0], res.loa_upper_ci[1]])
        half = 1.15 * float(np.max(np.abs(extremes)))
        ax.set_ylim(math.exp(-half), math.exp(half))
        _plain_log_ticks(ax, "y")
        _plain_log_ticks(ax, "x")


#: Mantissa sets for log-axis ticks, from sparse to dense; the densest set giving at most
#: eight ticks in the axis range is used, so narrow ratio axes get 0.8, 0.9, 1, 1.1, ...
_TICK_MANTISSAS: tuple[tuple[float, ...], ...] = (
    (1.0,),
    (1.0, 2.0, 5.0),
    (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
    (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0),
    tuple(round(1.0 + 0.1 * i, 1) for i in range(90)),
)


def _log_ticks(low: float, high: float, max_ticks: int = 8) -> list[float]:
    """Readable tick values for a log axis spanning ``[low, high]`` (both > 0)."""
    decades = range(math.floor(math.log10(low)) - 1, math.floor(math.log10(high)) + 1)
    best: list[float] = []
    for mantissas in _TICK_MANTISSAS:
        candidates = sorted({round(m * 10.0**d, 10) for d in decades for m in mantissas})
        ticks = [t for t in candidates if low <= t <= high]
        if len(ticks) > max_ticks:
            break
        best = ticks
        if len(ticks) >= 4:
            break
    return best


def _plain_log_ticks(ax: Any, axis: str) -> None:
    """Fixed, plainly labelled ticks on a log axis (call after the limits are final)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    target.set_major_locator(FixedLocator(_log_ticks(low, high)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(NullLocator())


def _scatter_by_cycle(
    ax: Any, x: np.ndarray, y: np.ndarray, colour: str, cycles: np.ndarray
) -> None:
    values = sorted(set(int(c) for c in cycles))
    for i, c in enumerate(values):
        sel = cycles == c
        ax.plot(
            x[sel],
            y[sel],
            linestyle="none",
            marker=_CYCLE_MARKERS[i % len(_CYCLE_MARKERS)],
            markerfacecolor=colour,
            markeredgecolor="white",
            markeredgewidth=0.5,
            alpha=0.85,
            label=f"cycle {c}" if len(values) > 1 else None,
        )


def _scatter_axes(
    ax: Any, a: np.ndarray, b: np.ndarray, wa: str, wb: str, colour: str, cycles: np.ndarray
) -> str:
    positive = bool(np.all(a > 0) and np.all(b > 0))
    _scatter_by_cycle(ax, b, a, colour, cycles)
    both = np.concatenate([a, b])
    if positive:
        lo, hi = _log_limits(both)
        ax.set_xscale("log")
        ax.set_yscale("log")
        grid = np.geomspace(lo, hi, 200)
    else:
        span = float(np.ptp(both)) or 1.0
        lo, hi = float(np.min(both)) - 0.05 * span, float(np.max(both)) + 0.05 * span
        grid = np.linspace(lo, hi, 200)
    ax.plot(grid, grid, color="#888888", linestyle=":", linewidth=1.0, label="identity")
    fit: compare.PassingBablokResult | compare.DemingResult
    try:
        fit = compare.passing_bablok(b, a)
        name = "Passing–Bablok"
    except CompareError:
        fit = compare.deming(b, a, 1.0)
        name = "Deming"
    line = fit.intercept + fit.slope * grid
    keep = line > 0 if positive else np.ones_like(line, dtype=bool)
    ax.plot(grid[keep], line[keep], color=colour, linewidth=1.4, label=name)
    ax.set_title(f"{name}: {wa} = {_num(fit.intercept)} Gy + {_num(fit.slope)} · {wb}")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel(f"{wb} (Gy)")
    ax.set_ylabel(f"{wa} (Gy)")
    ax.set_aspect("equal", adjustable="box")
    if positive:
        _plain_log_ticks(ax, "x")
        _plain_log_ticks(ax, "y")
    ax.legend(loc="lower right")
    return name


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


def _pair_figure(
    table: pd.DataFrame,
    spec: DoseIndex,
    pairs: Sequence[tuple[str, str]],
    colours: Mapping[str, str],
) -> str:
    with _style():
        fig = _new_figure(10.0, 3.6 * len(pairs))
        axes = fig.subplots(len(pairs), 2, squeeze=False)
        names = []
        for row, (wa, wb) in enumerate(pairs):
            (wide, _), _ = _captured(
                functools.partial(compare.align, table, spec.column, spec.level, workflows=[wa, wb])
            )
            wide = wide.dropna()
            a, b = wide[wa].to_numpy(float), wide[wb].to_numpy(float)
            cycles = wide.index.get_level_values("cycle").to_numpy()
            _ba_axes(axes[row, 0], a, b, wa, wb, colours[wa], cycles)
            names.append(_scatter_axes(axes[row, 1], a, b, wa, wb, colours[wa], cycles))
        caption = (
            f"{spec.label}: left, ratio Bland–Altman plots (log scale; solid line bias, dashed "
            "lines 95 % limits of agreement, shaded bands their 95 % CIs); right, the same "
            "pairs with the identity line (dotted) and the "
            + " / ".join(sorted(set(names)))
            + " regression line. Markers distinguish cycles."
        )
        return _png_img(fig, f"Bland-Altman and scatter plots of {spec.column}", caption)


def _index_block(
    data: _Data, spec: DoseIndex, colours: Mapping[str, str], number: str
) -> tuple[str, pd.DataFrame | None]:
    table = _index_table(data, spec)
    workflows = _reporting(table, spec.column, data.compared)
    scope = (
        "every cycle, pooled (pairs: patient × cycle × lesion)"
        if spec.level == "lesion"
        else (
            "every cycle, pooled (pairs: patient × cycle; a patient contributes one pair per cycle)"
            if spec.cycles == "each"
            else "the last cycle of each patient (treatment end; one pair per patient)"
        )
    )
    head = f'<h3 id="{_slug("index", spec.column)}">{number} {_esc(spec.label)} (<code>{_esc(spec.column)}</code>)</h3>'
    head += _p(
        f"Level: {spec.level}; cycles: {scope}. Workflows reporting it: {', '.join(workflows) or 'none'}."
    )
    if len(workflows) < 2:
        return head + _p("Fewer than two workflows report this index: no comparison."), None
    try:
        agr, notes = _captured(
            lambda: compare.agreement(table, spec.column, spec.level, workflows=workflows)
        )
    except CompareError as exc:
        return head + _note(f"Not computed: {exc}"), None
    body = "".join(_note(n) for n in notes)
    body += _compact_tables(agr)
    pairs = [
        tuple(p)
        for p in agr.loc[agr["workflow_b"] != "", ["workflow_a", "workflow_b"]]
        .drop_duplicates()
        .itertuples(index=False)
    ]
    try:
        body += _pair_figure(table, spec, pairs, colours)
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
            "them. CIs are 95 %; limits-of-agreement CIs are exact (Carkeet 2015). CCC: Lin; "
            "ICC(2,1): two-way random, absolute agreement; wCV: within-subject coefficient of "
            "variation; PB: Passing–Bablok regression a = intercept + slope · b."
        )
    )
    computed: dict[str, pd.DataFrame] = {}
    for i, spec in enumerate(DOSE_INDICES, start=1):
        block, agr = _index_block(data, spec, colours, f"3.{i}")
        parts.append(block)
        if agr is not None:
            computed[spec.column] = agr
    return "".join(parts), computed


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


def truth_error_by_size(
    voi_dose: pd.DataFrame,
    *,
    reference: str = TRUTH,
    index: str = "dose_mean_gy",
    bands_ml: Sequence[float] = LESION_SIZE_BANDS_ML,
) -> pd.DataFrame:
    """Relative error of each workflow's lesion dose against a reference, by lesion size.

    Lesions are matched on (patient_id, cycle, voi_id) and banded by the reference's
    ``volume_ml`` (for the phantom, the true volume). The error of a lesion is
    ``100 · (D_workflow / D_reference − 1)`` in percent.

    Parameters
    ----------
    voi_dose : pandas.DataFrame
        The ``voi_dose`` table (columns patient_id, cycle, workflow, voi_id, voi_kind,
        volume_ml and ``index``).
    reference : str, default "truth"
        The reference workflow.
    index : str, default "dose_mean_gy"
        Dose column compared.
    bands_ml : sequence of float
        Increasing band edges in mL (left-closed bands ``[lo, hi)``).

    Returns
    -------
    pandas.DataFrame
        One row per workflow × band (bands without lesions are left out): ``workflow``,
        ``band`` ("5–20 mL"), ``band_low_ml``, ``band_high_ml``, ``n_lesions``,
        ``median_error_pct``, ``q25_error_pct``, ``q75_error_pct``,
        ``mean_abs_error_pct``, ``max_abs_error_pct``; sorted by workflow and band.

    Raises
    ------
    ReportError
        If a column is missing, the reference is absent, the edges are not increasing, or
        a reference dose is not positive.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({
    ...     "patient_id": ["P1"] * 4, "cycle": [1] * 4, "voi_id": [1, 2, 1, 2],
    ...     "workflow": ["truth", "truth", "w", "w"], "voi_kind": ["lesion"] * 4,
    ...     "volume_ml": [2.0, 50.0, 2.2, 49.0], "dose_mean_gy": [10.0, 20.0, 8.0, 21.0]})
    >>> t = truth_error_by_size(rows)
    >>> [(b, n, round(e, 6)) for b, n, e in t[["band", "n_lesions", "median_error_pct"]].to_numpy()]
    [('0–5 mL', 1, -20.0), ('20–100 mL', 1, 5.0)]
    """
    needed = ["patient_id", "cycle", "workflow", "voi_id", "voi_kind", "volume_ml", index]
    missing = [c for c in needed if c not in voi_dose.columns]
    if missing:
        raise ReportError(f"voi_dose lacks column(s) {missing}")
    edges = np.asarray(bands_ml, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ReportError(f"bands_ml must be at least two increasing edges, got {list(bands_ml)}")
    lesions = voi_dose.loc[voi_dose["voi_kind"] == "lesion"]
    keys = ["patient_id", "cycle", "voi_id"]
    ref = lesions.loc[lesions["workflow"] == reference, [*keys, "volume_ml", index]]
    if len(ref) == 0:
        raise ReportError(f"reference workflow {reference!r} has no lesion rows")
    if not np.all(ref[index].to_numpy(float) > 0):
        raise ReportError(f"reference {reference!r} has non-positive {index!r} values")
    ref = ref.rename(columns={index: "ref", "volume_ml": "ref_volume_ml"})
    other = lesions.loc[lesions["workflow"] != reference, [*keys, "workflow", index]]
    merged = other.merge(ref, on=keys, how="inner").dropna(subset=[index])
    merged["error_pct"] = 100.0 * (
        merged[index].to_numpy(float) / merged["ref"].to_numpy(float) - 1.0
    )
    position = np.searchsorted(edges, merged["ref_volume_ml"].to_numpy(float), side="right") - 1
    merged = merged.assign(band_i=position).loc[(position >= 0) & (position < edges.size - 1)]
    columns = [
        "workflow",
        "band",
        "band_low_ml",
        "band_high_ml",
        "n_lesions",
        "median_error_pct",
        "q25_error_pct",
        "q75_error_pct",
        "mean_abs_error_pct",
        "max_abs_error_pct",
    ]
    if len(merged) == 0:
        return pd.DataFrame(columns=columns)
    err = merged.groupby(["workflow", "band_i"], sort=True)["error_pct"]
    out = pd.DataFrame(
        {
            "n_lesions": err.size(),
            "median_error_pct": err.median(),
            "q25_error_pct": err.quantile(0.25),
            "q75_error_pct": err.quantile(0.75),
            "mean_abs_error_pct": err.apply(lambda s: float(np.mean(np.abs(s)))),
            "max_abs_error_pct": err.apply(lambda s: float(np.max(np.abs(s)))),
        }
    ).reset_index()
    lo = edges[out["band_i"].to_numpy()]
    hi = edges[out["band_i"].to_numpy() + 1]
    out["band_low_ml"], out["band_high_ml"] = lo, hi
    out["band"] = [
        f"≥ {a:g} mL" if not math.isfinite(b) else f"{a:g}–{b:g} mL"
        for a, b in zip(lo, hi, strict=True)
    ]
    out["n_lesions"] = out["n_lesions"].astype(int)
    return out[columns].reset_index(drop=True)


def _truth_section(data: _Data, colours: Mapping[str, str]) -> str:
    parts = ['<h2 id="truth">6. Each workflow against the phantom truth</h2>']
    if not data.has_truth:
        return "".join(parts) + _p(
            "The results hold no workflow named 'truth' (not a phantom cohort): accuracy cannot be assessed."
        )
    parts.append(
        _p(
            "The phantom's known doses are the workflow 'truth'; each workflow is compared with "
            "it by the same engine (reference = truth, so a ratio above 1 means the workflow "
            "reads high)."
        )
    )
    for spec in (DOSE_INDICES[0], DOSE_INDICES[1], DOSE_INDICES[2]):
        table = _index_table(data, spec)
        workflows = _reporting(table, spec.column, data.workflows)
        if TRUTH not in workflows or len(workflows) < 2:
            continue
        try:
            agr, notes = _captured(
                functools.partial(
                    compare.agreement,
                    table,
                    spec.column,
                    spec.level,
                    workflows=workflows,
                    reference=TRUTH,
                )
            )
        except CompareError as exc:
            parts.append(_note(f"{spec.column}: not computed: {exc}"))
            continue
        parts.append(f"<h3>{_esc(spec.label)} vs truth (<code>{_esc(spec.column)}</code>)</h3>")
        parts += [_note(n) for n in notes]
        parts.append(_compact_tables(agr))
    try:
        bands = truth_error_by_size(data.voi)
    except ReportError as exc:
        return "".join(parts) + _note(str(exc))
    show = bands.assign(
        **{
            "median error (%)": [_num(v, 2) for v in bands["median_error_pct"]],
            "IQR (%)": [
                f"{_num(a, 2)} to {_num(b, 2)}"
                for a, b in zip(bands["q25_error_pct"], bands["q75_error_pct"], strict=True)
            ],
            "mean |error| (%)": [_num(v, 2) for v in bands["mean_abs_error_pct"]],
            "max |error| (%)": [_num(v, 2) for v in bands["max_abs_error_pct"]],
            "lesions": bands["n_lesions"].astype(str),
        }
    )[
        [
            "workflow",
            "band",
            "lesions",
            "median error (%)",
            "IQR (%)",
            "mean |error| (%)",
            "max |error| (%)",
        ]
    ]
    parts.append("<h3>Lesion mean-dose error by lesion size</h3>")
    parts.append(
        _table(show, numeric=["lesions", "median error (%)", "mean |error| (%)", "max |error| (%)"])
    )
    parts.append(_truth_figure(data, colours))
    if len(data.compared) >= 1:
        try:
            res, notes = _captured(
                lambda: compare.cutoff_agreement(data.patient, workflows=[*data.compared, TRUTH])
            )
        except CompareError as exc:
            parts.append(_note(f"Cutoff classification vs truth not computed: {exc}"))
        else:
            summ = res.summary.loc[
                (res.summary["workflow_b"] == TRUTH) | (res.summary["workflow_a"] == TRUTH)
            ]
            rows = []
            for (key, wa, wb), sub in summ.groupby(
                ["cutoff_key", "workflow_a", "workflow_b"], sort=True
            ):
                s = sub.set_index("statistic")
                w = wb if wa == TRUTH else wa
                k = s.loc["cohen_kappa"]
                cls = res.classifications
                sel = cls.loc[(cls["cutoff_key"] == key) & cls["workflow"].isin([w, TRUTH])]
                wide = sel.pivot(index="patient_id", columns="workflow", values="above").dropna()
                wrong = int((wide[w] != wide[TRUTH]).sum()) if len(wide.columns) == 2 else 0
                n = int(sub["n_patients"].max())
                rows.append(
                    {
                        "cutoff": key,
                        "workflow": w,
                        "patients": str(n),
                        "misclassified vs truth": str(wrong),
                        "kappa vs truth": _kappa_text(k),
                    }
                )
            parts.append("<h3>Cutoff classification against truth</h3>")
            parts.append(_table(pd.DataFrame(rows), numeric=["patients", "misclassified vs truth"]))
    return "".join(parts)


def _truth_figure(data: _Data, colours: Mapping[str, str]) -> str:
    lesions = data.voi.loc[data.voi["voi_kind"] == "lesion"]
    keys = ["patient_id", "cycle", "voi_id"]
    ref = lesions.loc[lesions["workflow"] == TRUTH, [*keys, "volume_ml", "dose_mean_gy"]].rename(
        columns={"volume_ml": "v", "dose_mean_gy": "t"}
    )
    with _style():
        fig = _new_figure(10.0, 3.8)
        ax = fig.subplots()
        for w in data.compared:
            sub = (
                lesions.loc[lesions["workflow"] == w, [*keys, "dose_mean_gy"]]
                .merge(ref, on=keys)
                .dropna()
            )
            ax.plot(
                sub["v"],
                sub["dose_mean_gy"] / sub["t"],
                linestyle="none",
                marker="o",
                color=colours[w],
                alpha=0.8,
                label=w,
            )
        ax.axhline(1.0, color="#888888", linewidth=0.8)
        for edge in LESION_SIZE_BANDS_ML[1:-1]:
            ax.axvline(edge, color="#bbbbbb", linestyle=":", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax, "x")
        _plain_log_ticks(ax, "y")
        ax.set_xlabel("true lesion volume (mL)")
        ax.set_ylabel("lesion mean dose / true dose")
        ax.legend(loc="best")
        return _png_img(
            fig,
            "ratio of lesion dose to truth against lesion volume",
            "Ratio of each workflow's lesion mean dose to the true dose, against the true lesion volume (dotted lines: the size bands of the table). Partial-volume losses show as ratios below 1 for small lesions.",
        )


_DVH_HEADING = '<h2 id="dvh">7. Lesion dose–volume histograms</h2>'


def _dvh_lesions(data: _Data) -> pd.DataFrame:
    """The lesions whose DVHs are drawn: the smallest and the largest of one patient-cycle.

    The first patient (by id) that has a DVH of a lesion, at its first cycle with one
    (cycle 1 when measured); volumes from the ``voi_dose`` rows of the first workflow (by
    name) with a DVH there; ties by ``voi_id``. One row when the patient has one lesion.
    """
    keys = ["patient_id", "cycle", "workflow", "voi_id"]
    drawn = data.dvh[keys].drop_duplicates()
    lesions = data.voi.loc[data.voi["voi_kind"] == "lesion"].merge(drawn, on=keys)
    if lesions.empty:
        return lesions
    first = lesions.sort_values(["patient_id", "cycle", "workflow"], kind="stable").iloc[0]
    same = (
        (lesions["patient_id"] == first["patient_id"])
        & (lesions["cycle"] == first["cycle"])
        & (lesions["workflow"] == first["workflow"])
    )
    ordered = lesions.loc[same].sort_values(["volume_ml", "voi_id"], kind="stable")
    return ordered.iloc[sorted({0, len(ordered) - 1})].reset_index(drop=True)


def _dvh_section(data: _Data, colours: Mapping[str, str]) -> str:
    """Cumulative DVHs of two lesions from the ``dvh`` table, one curve per workflow."""
    parts = [_DVH_HEADING]
    picks = _dvh_lesions(data)
    if picks.empty:
        return "".join(parts) + _p(
            "The dvh table holds no lesion: no lesion dose–volume histogram drawn."
        )
    names = " and ".join(
        f"{row.get('voi_name', '')} ({_num(row['volume_ml'])} mL)" for _, row in picks.iterrows()
    )
    which = "the smallest and the largest lesion" if len(picks) > 1 else "the lesion"
    patient, cycle = str(picks.iloc[0]["patient_id"]), int(picks.iloc[0]["cycle"])
    parts.append(
        _p(
            f"Cumulative dose–volume histograms of {which} of patient {patient} at cycle "
            f"{cycle}: {names}, read from the results' dvh table. Each curve gives the "
            "percentage of the lesion volume that receives at least a dose, from the doses "
            "D_x at x = 0, 1, …, 100 % of the volume (the step DVH of the voxels, as the "
            "D2/D50/D98 of the lesion tables, which are points of these curves). "
            "Workflows without a DVH of the lesion (no voxel dose map, e.g. the sphere model, "
            "and the truth, which has a mean dose only) are drawn as a dashed vertical line "
            "at their mean dose."
        )
    )
    dvh = data.dvh
    with _style():
        fig = _new_figure(10.0, 3.4)
        axes = fig.subplots(1, len(picks), squeeze=False)[0]
        for ax, (_, lesion) in zip(axes, picks.iterrows(), strict=True):
            at = {k: lesion[k] for k in ("patient_id", "cycle", "voi_id")}
            rows = data.voi.loc[
                (data.voi["patient_id"] == at["patient_id"])
                & (data.voi["cycle"] == at["cycle"])
                & (data.voi["voi_id"] == at["voi_id"])
            ].sort_values("workflow", kind="stable")
            curves = dvh.loc[
                (dvh["patient_id"] == at["patient_id"])
                & (dvh["cycle"] == at["cycle"])
                & (dvh["voi_id"] == at["voi_id"])
            ]
            for _, r in rows.iterrows():
                w = str(r["workflow"])
                curve = curves.loc[curves["workflow"] == w].sort_values("volume_pct")
                if len(curve):
                    ax.plot(
                        curve["dose_gy"].to_numpy(float),
                        curve["volume_pct"].to_numpy(float),
                        color=colours[w],
                        label=w,
                    )
                else:
                    ax.axvline(
                        float(r["dose_mean_gy"]),
                        color=colours[w],
                        linestyle="--",
                        label=f"{w} (mean)",
                    )
            ax.set_xlabel("absorbed dose (Gy)")
            ax.set_ylabel("volume receiving ≥ dose (%)")
            ax.set_ylim(0, 102)
            ax.set_xlim(left=0)
            ax.set_title(
                f"{lesion['patient_id']} cycle {int(lesion['cycle'])} {lesion.get('voi_name', '')} ({_num(lesion['volume_ml'])} mL)"
            )
            ax.legend(loc="lower left")
        parts.append(
            _png_img(
                fig,
                "cumulative dose-volume histograms of two lesions",
                f"Cumulative DVHs of {which} of {patient} at cycle {cycle}, one curve per workflow with a voxel dose map (dvh table); dashed lines: mean dose of the workflows without one.",
            )
        )
    if len(data.tac):
        parts.append(_tac_figure(data, picks.iloc[len(picks) // 2], colours))
    return "".join(parts)


def _dvh_summary(data: _Data, colours: Mapping[str, str]) -> str:
    """Fallback without a ``dvh`` table: piecewise-linear summaries through the dose indices."""
    parts = [_DVH_HEADING]
    cols = [c for c, _ in DVH_POINTS]
    lesions = data.voi.loc[data.voi["voi_kind"] == "lesion"]
    have = [c for c in cols if c in lesions.columns]
    if len(have) < len(cols):
        return "".join(parts) + _p(
            "The results lack the voxel dose-index columns: no dose–volume summary."
        )
    complete = lesions.dropna(subset=cols)
    voxel_workflows = sorted(set(complete["workflow"]))
    parts.append(
        _p(
            "The results hold no dvh table (results written with schema 1.0.0, or by "
            "workflows without a voxel dose map), only dose indices per "
            "lesion. The curves below are therefore not DVHs: they join, by straight lines, the "
            "five points every cumulative DVH passes through by definition — 100 % of the volume "
            "at the minimum dose, 98 % at D98, 50 % at D50, 2 % at D2 and 0 % at the maximum. "
            "The true DVH lies between them, so read them as a summary of dose heterogeneity. "
            "Workflows without voxel doses (e.g. the sphere model) and the truth (mean dose only) "
            "are shown as a vertical line at their mean dose. Lesions: the smallest, a median "
            "and the largest lesion of the first cycle with voxel doses."
        )
    )
    if not voxel_workflows:
        return "".join(parts) + _p("No workflow reports voxel dose indices: no summary drawn.")
    first = complete.loc[complete["workflow"] == voxel_workflows[0]]
    first = first.loc[first["cycle"] == first["cycle"].min()].sort_values(
        ["volume_ml", "patient_id", "voi_id"], kind="stable"
    )
    picks = first.iloc[sorted({0, (len(first) - 1) // 2, len(first) - 1})]
    with _style():
        fig = _new_figure(10.0, 3.4)
        axes = fig.subplots(1, len(picks), squeeze=False)[0]
        for ax, (_, lesion) in zip(axes, picks.iterrows(), strict=True):
            sel = (
                (data.voi["patient_id"] == lesion["patient_id"])
                & (data.voi["cycle"] == lesion["cycle"])
                & (data.voi["voi_id"] == lesion["voi_id"])
            )
            rows = data.voi.loc[sel].sort_values("workflow")
            for _, r in rows.iterrows():
                w = str(r["workflow"])
                values = r[cols].to_numpy(dtype=float)
                if np.all(np.isfinite(values)):
                    ax.plot(
                        values, [v for _, v in DVH_POINTS], marker="o", color=colours[w], label=w
                    )
                else:
                    ax.axvline(
                        float(r["dose_mean_gy"]),
                        color=colours[w],
                        linestyle="--",
                        label=f"{w} (mean)",
                    )
            ax.set_xlabel("absorbed dose (Gy)")
            ax.set_ylabel("volume (%)")
            ax.set_ylim(0, 102)
            ax.set_xlim(left=0)
            ax.set_title(
                f"{lesion['patient_id']} cycle {int(lesion['cycle'])} {lesion.get('voi_name', '')} ({_num(lesion['volume_ml'])} mL)"
            )
            ax.legend(loc="lower left")
        parts.append(
            _png_img(
                fig,
                "lesion dose-volume summaries",
                "Piecewise-linear dose–volume summaries through (min, 100 %), (D98, 98 %), (D50, 50 %), (D2, 2 %), (max, 0 %) of three lesions.",
            )
        )
    if len(data.tac):
        parts.append(_tac_figure(data, picks.iloc[len(picks) // 2], colours))
    return "".join(parts)


def _tac_figure(data: _Data, lesion: pd.Series, colours: Mapping[str, str]) -> str:
    tac = data.tac
    sel = (
        (tac["patient_id"] == lesion["patient_id"])
        & (tac["cycle"] == lesion["cycle"])
        & (tac["voi_id"] == lesion["voi_id"])
    )
    rows = tac.loc[sel].sort_values(["workflow", "time_h"])
    with _style():
        fig = _new_figure(10.0, 3.2)
        ax = fig.subplots()
        for w, sub in rows.groupby("workflow", sort=True):
            c = colours.get(str(w), _TRUTH_COLOUR)
            ax.plot(
                sub["time_h"],
                sub["activity_measured_mbq"],
                linestyle="none",
                marker="o",
                color=c,
                label=f"{w} measured",
            )
            fitted = sub.dropna(subset=["activity_fitted_mbq"])
            if len(fitted):
                ax.plot(
                    fitted["time_h"],
                    fitted["activity_fitted_mbq"],
                    color=c,
                    linestyle="--",
                    label=f"{w} fitted (at the time points)",
                )
        ax.set_yscale("log")
        _plain_log_ticks(ax, "y")
        ax.set_xlim(left=0)
        ax.set_xlabel("time after injection (h)")
        ax.set_ylabel("activity in the lesion (MBq)")
        ax.legend(loc="upper right", ncols=2)
        return _png_img(
            fig,
            "time-activity data of one lesion",
            f"Time–activity data of {lesion['patient_id']} cycle {int(lesion['cycle'])} {lesion.get('voi_name', '')}: each workflow's measured activity (after recovery correction where flagged) and its fitted model at the imaging times.",
        )


def _param_lines(params: pd.DataFrame, info: _AdapterInfo, pattern: str) -> list[str]:
    rx = re.compile(pattern, re.IGNORECASE)
    out = []
    for r in params.itertuples(index=False):
        if rx.search(str(r.parameter)):
            src = info.sources.get(str(r.parameter), ("source unknown", ""))[0]
            out.append(f"{r.parameter} = {r.value} [{src}]")
    return out


def _summary(values: pd.Series, unit: str, digits: int = 3) -> str:
    v = values.astype(float).to_numpy()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ""
    q1, med, q3 = np.quantile(v, [0.25, 0.5, 0.75])
    u = f" {unit}" if unit else ""
    return (
        f"n = {v.size}; median {_num(med, digits)}{u} "
        f"(IQR {_num(q1, digits)}–{_num(q3, digits)}), "
        f"range {_num(v.min(), digits)}–{_num(v.max(), digits)}{u}"
    )


def _checklist(data: _Data, w: str, info: _AdapterInfo) -> tuple[pd.DataFrame, str]:
    voi = data.voi.loc[data.voi["workflow"] == w]
    lesions = voi.loc[voi["voi_kind"] == "lesion"]
    organs = voi.loc[voi["voi_kind"] == "organ"]
    tac = data.tac.loc[data.tac["workflow"] == w] if len(data.tac) else data.tac
    params = _parameters(data.run, w)
    runs = data.run.loc[data.run["workflow"] == w] if len(data.run) else data.run
    found: dict[str, list[str]] = {}

    act = _administered(voi)
    if len(act):
        found["activity"] = [
            _summary(act["activity_mbq"], "MBq", 4)
            + " per patient-cycle (derived: TIA / TIA coefficient)"
        ]
    found["admin_time"] = [
        "t = 0 h at injection; every time in hours after injection (results keep no calendar time by design)"
    ]
    if len(tac):
        times = sorted({float(t) for t in tac["time_h"]})
        found["time_points"] = [
            f"{len(times)} distinct times: {', '.join(_num(t) for t in times)} h p.i."
        ]
        found["tac"] = [
            f"{len(tac)} VOI × time rows; medians over patient-cycles in the table below"
        ]
    elif "n_time_points" in voi.columns and len(voi):
        found["time_points"] = [
            f"n_time_points = {', '.join(str(int(n)) for n in sorted(set(voi['n_time_points'])))} (times not in the results)"
        ]
    if "recovery_coefficient" in voi.columns:
        rc = voi["recovery_coefficient"].astype(float)
        if np.isfinite(rc).any():
            found.setdefault("recovery", []).append(
                f"RC applied to {int(np.isfinite(rc).sum())} VOI rows, {_summary(rc, '')}".replace(
                    " ,", ","
                )
            )
    if (
        len(tac)
        and "recovery_corrected" in tac.columns
        and bool(tac["recovery_corrected"].astype(bool).any())
    ):
        found.setdefault("recovery", []).append("TAC activities flagged as recovery-corrected")
    kinds = voi.groupby("voi_kind")["voi_id"].nunique() if len(voi) else pd.Series(dtype=int)
    if len(kinds):
        found["segmentation"] = [
            "VOIs per kind: "
            + ", ".join(f"{k} {int(n)}" for k, n in sorted(kinds.items()))
            + " (label maps supplied with the study)"
        ]
    if len(lesions) and "volume_ml" in lesions.columns:
        found["volumes"] = [
            "lesion volume: " + _summary(lesions["volume_ml"], "mL"),
            "lesion mass: " + _summary(lesions["mass_g"], "g"),
        ]
    if "tac_model" in voi.columns and len(voi):
        counts = voi["tac_model"].value_counts().sort_index()
        found["fit_model"] = [
            "tac_model: " + ", ".join(f"{m} ({int(n)} VOI rows)" for m, n in counts.items())
        ]
    quality = []
    if "fit_r2" in voi.columns and np.isfinite(voi["fit_r2"].astype(float)).any():
        quality.append("R²: " + _summary(voi["fit_r2"], "", 3).replace("  ", " "))
    if "fit_aicc" in voi.columns and np.isfinite(voi["fit_aicc"].astype(float)).any():
        quality.append(
            f"AICc reported for {int(np.isfinite(voi['fit_aicc'].astype(float)).sum())} VOI rows"
        )
    if "flags" in voi.columns:
        tokens = pd.Series(
            [t.split("=")[0] for f in voi["flags"].astype(str) for t in f.split(";") if t]
        )
        if len(tokens):
            quality.append(
                "flags: "
                + ", ".join(f"{k} ×{int(n)}" for k, n in tokens.value_counts().sort_index().items())
            )
    if quality:
        found["fit_quality"] = quality
    if len(lesions):
        found["tia"] = [
            "lesion TIA: " + _summary(lesions["tia_mbq_h"], "MBq·h"),
            "lesion TIA coefficient: " + _summary(lesions["tia_coefficient_h"], "h"),
        ]
    if info.description:
        found["dose_method"] = [f"{info.description} (references: {info.references or '–'})"]
    if len(lesions):
        voxel = [
            c
            for c, _ in DVH_POINTS
            if c in lesions.columns and np.isfinite(lesions[c].astype(float)).any()
        ]
        found["lesion_doses"] = [
            "lesion mean dose: "
            + _summary(lesions["dose_mean_gy"], "Gy")
            + (
                f"; voxel indices: {', '.join(voxel)}"
                if voxel
                else "; no voxel indices (min/D98/D50/D2/max)"
            )
            + (
                "; cumulative DVH of every VOI (dvh table)"
                if len(data.dvh) and bool((data.dvh["workflow"] == w).any())
                else ""
            )
            + "; per-lesion table below"
        ]
    if len(organs):
        per = organs.groupby("voi_name")["dose_mean_gy"].median().sort_index()
        found["organ_doses"] = [
            "median mean dose: " + ", ".join(f"{k} {_num(v)} Gy" for k, v in per.items())
        ]
    if len(runs) and "software_json" in runs.columns:
        soft: dict[str, set[str]] = {}
        for text in sorted(set(runs["software_json"].astype(str))):
            for k, v in json.loads(text).items():
                soft.setdefault(k, set()).add(str(v))
        versions = sorted(set(runs["workflow_version"].astype(str)))
        found["software"] = [
            f"workflow version {', '.join(versions)}; "
            + ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(soft.items()))
        ]

    rows = []
    for item in CHECKLIST_ITEMS:
        lines = list(found.get(item.key, []))
        lines += _param_lines(params, info, item.parameter_pattern)
        described = bool(
            info.description and re.search(item.description_pattern, info.description, re.I)
        )
        if lines:
            state, status, text = "reported", "✔ reported", "; ".join(lines)
        elif described:
            state, status = "described", "◐ described only"
            text = (
                f"{NOT_REPORTED} as data or parameter; the adapter's method description "
                f"says: “{info.description}”"
            )
        else:
            state, status, text = "missing", "✘ missing", NOT_REPORTED
        rows.append(
            {
                "item": item.label,
                "status": status,
                "from the data": text,
                "asked for by": item.references,
                "_state": state,
            }
        )
    table = pd.DataFrame(rows)
    extra = ""
    if len(tac):
        kinds_of = voi[["patient_id", "cycle", "voi_id", "voi_kind"]].drop_duplicates()
        t = tac.merge(kinds_of, on=["patient_id", "cycle", "voi_id"], how="left")
        per_study = (
            t.groupby(["patient_id", "cycle", "time_h", "voi_kind"], sort=True)[
                ["activity_measured_mbq", "activity_fitted_mbq"]
            ]
            .sum(min_count=1)
            .reset_index()
        )
        med = (
            per_study.groupby(["time_h", "voi_kind"], sort=True)[
                ["activity_measured_mbq", "activity_fitted_mbq"]
            ]
            .median()
            .reset_index()
        )
        show = pd.DataFrame(
            {
                "time (h p.i.)": [_num(v) for v in med["time_h"]],
                "VOI kind (summed)": med["voi_kind"].astype(str),
                "measured (MBq)": [_num(v) for v in med["activity_measured_mbq"]],
                "fitted (MBq)": [_num(v) for v in med["activity_fitted_mbq"]],
            }
        )
        extra += _details(
            f"{w}: activity at each imaging time point (sum over the VOIs of a kind, median over patient-cycles)",
            _table(show, numeric=["time (h p.i.)", "measured (MBq)", "fitted (MBq)"]),
        )
    if len(lesions):
        cols = [
            c
            for c in [
                "patient_id",
                "cycle",
                "voi_id",
                "voi_name",
                "volume_ml",
                "mass_g",
                "tia_mbq_h",
                "tia_coefficient_h",
                "dose_mean_gy",
                "dose_d98_gy",
                "dose_d50_gy",
                "dose_d2_gy",
                "recovery_coefficient",
                "fit_r2",
            ]
            if c in lesions.columns
        ]
        per = lesions[cols].copy()
        numeric = [c for c in cols if c not in ("patient_id", "voi_name")]
        for c in numeric:
            per[c] = [_num(v) if c not in ("cycle", "voi_id") else str(int(v)) for v in per[c]]
        extra += _details(
            f"{w}: per-lesion doses ({len(per)} lesion rows)", _table(per, numeric=numeric)
        )
    return table, extra


def _checklist_section(data: _Data, infos: Mapping[str, _AdapterInfo]) -> str:
    parts = ['<h2 id="checklist">8. EANM dosimetry reporting checklist, per workflow</h2>']
    parts.append(
        _p(
            "The items a dosimetry report should state (Lassmann2011; Stokke2024 Table 4), "
            "filled from the results of each workflow. Parameters are quoted as name = value "
            "[source]. An item the results do not document is marked "
            f"'{NOT_REPORTED}' — a reviewer can tick the list from this page alone."
        )
    )
    if not data.compared:
        return "".join(parts) + _p("No workflow other than truth in the results.")
    for w in data.compared:
        table, extra = _checklist(data, w, infos[w])
        n_ok = int((table["_state"] == "reported").sum())
        parts.append(
            f'<h3 id="{_slug("checklist", w)}">{_esc(w)}: {n_ok} of {len(table)} items reported</h3>'
        )
        parts.append(
            _table(
                table.drop(columns="_state"),
                row_class=lambda r: "missing" if not r["status"].startswith("✔") else "",
                cell_class={"status": "status"},
            )
        )
        parts.append(extra)
    return "".join(parts)


def _provenance_section(
    data: _Data,
    input_files: Mapping[str, tuple[int, str]] | None,
    stored: Mapping[str, pd.DataFrame],
) -> str:
    parts = ['<h2 id="provenance">9. Provenance</h2>']
    schema_versions = (
        sorted(set(data.run["schema_version"].astype(str)))
        if "schema_version" in data.run.columns
        else []
    )
    from harmonize.schema import SCHEMA_VERSION

    parts.append(
        _p(
            f"Results schema version(s) recorded by the runs: {', '.join(schema_versions) or 'not recorded'}; "
            f"read by harmonize schema {SCHEMA_VERSION}. Report built with harmonize-dosimetry "
            f"{_version('harmonize-dosimetry')}, numpy {_version('numpy')}, pandas {_version('pandas')}, "
            f"scipy {_version('scipy')}, matplotlib {_version('matplotlib')}."
        )
    )
    if input_files:
        rows = [
            {"file (relative to the results directory)": k, "bytes": f"{n:,}", "sha256": h}
            for k, (n, h) in sorted(input_files.items())
        ]
        parts.append("<h3>Input files</h3>")
        parts.append(
            _details(
                f"{len(rows)} Parquet files with their SHA-256",
                _table(pd.DataFrame(rows), numeric=["bytes"], cell_class={"sha256": "hash"}),
            )
        )
    if len(data.run) and "input_sha256" in data.run.columns:
        run = data.run.sort_values(["patient_id", "cycle", "workflow"])
        rows = []
        for (pid, cyc), sub in run.groupby(["patient_id", "cycle"], sort=True):
            hashes = sorted(set(sub["input_sha256"].astype(str)))
            rows.append(
                {
                    "patient": pid,
                    "cycle": str(int(cyc)),
                    "workflows": ", ".join(sorted(sub["workflow"].astype(str))),
                    "study content SHA-256": " / ".join(hashes),
                    "same input for every workflow": "yes"
                    if len(hashes) == 1
                    else f"NO ({len(hashes)} inputs)",
                }
            )
        same = all(r["same input for every workflow"] == "yes" for r in rows)
        parts.append("<h3>Study inputs</h3>")
        parts.append(
            _p(
                "Every workflow run records the SHA-256 of the study content it read (images, labels, times, grid; identifying attributes are not hashed). "
                + (
                    "All workflows read identical inputs for every patient-cycle."
                    if same
                    else "Some workflows read different inputs: see the rows marked NO."
                )
            )
        )
        parts.append(
            _details(
                f"{len(rows)} patient-cycles with their input hash",
                _table(pd.DataFrame(rows), cell_class={"study content SHA-256": "hash"}),
            )
        )
        soft_rows = []
        for w, sub in run.groupby("workflow", sort=True):
            merged: dict[str, set[str]] = {}
            for text in sorted(set(sub["software_json"].astype(str))):
                for k, v in json.loads(text).items():
                    merged.setdefault(k, set()).add(str(v))
            for k in sorted(merged):
                soft_rows.append(
                    {"workflow": w, "package": k, "version(s)": ", ".join(sorted(merged[k]))}
                )
        if soft_rows:
            parts.append("<h3>Software recorded by the runs</h3>")
            parts.append(
                _details(f"{len(soft_rows)} package versions", _table(pd.DataFrame(soft_rows)))
            )
    else:
        parts.append(
            _p("The results hold no run table: study hashes and software versions not recorded.")
        )
    for name, table in sorted(stored.items()):
        if len(table):
            show = table.copy()
            for c in ("estimate", "ci_low", "ci_high"):
                if c in show.columns:
                    show[c] = [_num(v, 4) for v in show[c]]
            parts.append(f"<h3>Stored agreement table: {_esc(name)}</h3>")
            parts.append(
                _details(
                    f"{len(show)} rows as delivered (not recomputed)", _table(show.astype(str))
                )
            )
    if data.notes:
        parts += [_note(n) for n in data.notes]
    return "".join(parts)


def _references_section() -> str:
    items = "".join(f"<li><b>{_esc(k)}</b>: {_esc(v)}</li>" for k, v in sorted(_REFERENCES.items()))
    return f'<h2 id="references">10. References</h2><ul>{items}</ul>'


# ------------------------------------------------------------------------------------------
# Key findings and the document
# ------------------------------------------------------------------------------------------


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
        pass
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
        ("truth", "Accuracy against the phantom truth"),
        ("dvh", "Lesion dose–volume histograms"),
        ("checklist", "EANM reporting checklist"),
        ("provenance", "Provenance"),
        ("references", "References"),
    ]
    nav = (
        '<nav class="toc"><b>Contents</b><ol>'
        + "".join(f'<li><a href="#{k}">{_esc(v)}</a></li>' for k, v in toc)
        + "</ol></nav>"
    )
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
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
    leaked = _DATE.search(re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", document))
    if leaked:
        raise ReportError(
            f"the report would contain a calendar date ({leaked.group(0)!r}); results must not "
            "carry dates (schema privacy rule)"
        )
    return document


def _input_files(results_dir: Path) -> dict[str, tuple[int, str]]:
    out = {}
    for path in sorted(results_dir.rglob("*.parquet")):
        if any(part.startswith(".") for part in path.relative_to(results_dir).parts):
            continue
        data = path.read_bytes()
        out[path.relative_to(results_dir).as_posix()] = (
            len(data),
            hashlib.sha256(data).hexdigest(),
        )
    return out


def _read_agreement_dir(
    directory: Path,
) -> tuple[dict[str, pd.DataFrame], dict[str, tuple[int, str]]]:
    if not directory.is_dir():
        raise ReportError(f"agreement_dir {directory} is not a directory")
    tables, files = {}, {}
    for path in sorted(directory.rglob("*.parquet")):
        rel = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        files[f"agreement/{rel}"] = (len(data), hashlib.sha256(data).hexdigest())
        tables[f"agreement/{rel}"] = pd.read_parquet(io.BytesIO(data))
    for path in sorted(directory.rglob("*.csv")):
        rel = path.relative_to(directory).as_posix()
        data = path.read_bytes()
        files[f"agreement/{rel}"] = (len(data), hashlib.sha256(data).hexdigest())
        tables[f"agreement/{rel}"] = pd.read_csv(io.BytesIO(data))
    return tables, files


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
