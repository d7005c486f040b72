"""Section 8 of the report: each centre's calibration phantom (RC curve, calibration factor).

Renders the calibration tables the run wrote (:mod:`harmonize.calibration`,
``RESULTS/calibration/``): per centre profile, the recovery coefficient of each NEMA IEC
sphere, the fitted RC(volume) curve, the calibration factor against the profile's nominal
sensitivity, the mode of the imaging chain and the profile's sources. Nothing is measured
or fitted here.
"""

from __future__ import annotations

import re

import pandas as pd

from harmonize.report.figures import _PALETTE, _new_figure, _plain_log_ticks, _png_img, _style
from harmonize.report.html import _esc, _note, _num, _p, _slug, _table

_HEADING = '<h2 id="calibration">{number}. Calibration phantom: each centre\'s recovery curve</h2>'
_KEYS = ["profile", "mode", "voxel_size_mm"]
#: A calendar date (with its brackets) — the report carries none (privacy rule); the date a
#: profile's fast mode was measured stays in the profile file and the calibration table.
_DATE = re.compile(r"\s*\(?\b\d{4}-\d{2}-\d{2}\b\)?")


def _undated(text: str) -> str:
    return _DATE.sub("", str(text))


def _label(row: pd.Series) -> str:
    return f"{row['profile']} ({row['mode']}, {row['voxel_size_mm']:g} mm)"


def _summary(table: pd.DataFrame) -> str:
    first = table.drop_duplicates(_KEYS).sort_values(_KEYS)
    cells = pd.DataFrame(
        {
            "profile": first["profile"],
            "centre": first["centre"],
            "mode": first["mode"],
            "voxel (mm)": [_num(v) for v in first["voxel_size_mm"]],
            "used by": [u or "— (for comparison)" for u in first["used_by"]],
            "calibration factor (cps/MBq)": [_num(v) for v in first["calibration_cps_per_mbq"]],
            "nominal sensitivity (cps/MBq)": [
                _num(v) for v in first["nominal_sensitivity_cps_per_mbq"]
            ],
            "factor / nominal": [
                _num(a / b)
                for a, b in zip(
                    first["calibration_cps_per_mbq"],
                    first["nominal_sensitivity_cps_per_mbq"],
                    strict=True,
                )
            ],
            "fit V½ (mL)": [_num(v) for v in first["fit_v_half_ml"]],
            "fit n": [_num(v) for v in first["fit_n"]],
            "sensitivity source": [_undated(s) for s in first["sensitivity_source"]],
            "fast mode measured": [_undated(s) or "—" for s in first["fast_mode_source"]],
        }
    )
    return _table(
        cells,
        numeric=[
            "voxel (mm)",
            "calibration factor (cps/MBq)",
            "nominal sensitivity (cps/MBq)",
            "factor / nominal",
            "fit V½ (mL)",
            "fit n",
        ],
    )


def _rc_tables(table: pd.DataFrame) -> str:
    parts = []
    spheres = table.loc[table["kind"] == "sphere"]
    for _, group in spheres.groupby(_KEYS, sort=True):
        group = group.sort_values("diameter_mm")
        first = group.iloc[0]
        cells = pd.DataFrame(
            {
                "sphere diameter (mm)": [_num(v) for v in group["diameter_mm"]],
                "volume (mL)": [_num(v) for v in group["volume_ml"]],
                "RC measured": [_num(v) for v in group["rc"]],
                "RC of the fitted curve": [_num(v) for v in group["rc_fit"]],
            }
        )
        parts.append(
            f'<h4 id="{_slug("rc", first["profile"], first["mode"], first["voxel_size_mm"])}">'
            f"RC of the NEMA spheres — {_esc(_label(first))}</h4>"
            + _table(cells, numeric=list(cells.columns))
            + _note(f"Curve: {_undated(first['curve_source'])}.")
        )
    return "".join(parts)


def _figure(table: pd.DataFrame) -> str:
    groups = list(table.groupby(_KEYS, sort=True))
    with _style():
        fig = _new_figure(8.0, 4.2)
        ax = fig.subplots()
        for i, (_, group) in enumerate(groups):
            first = group.iloc[0]
            colour = _PALETTE[i % len(_PALETTE)]
            used = bool(first["used_by"])
            curve = group.loc[group["kind"] == "curve"].sort_values("volume_ml")
            spheres = group.loc[group["kind"] == "sphere"].sort_values("volume_ml")
            ax.plot(
                curve["volume_ml"],
                curve["rc_fit"],
                color=colour,
                linestyle="-" if used else "--",
                linewidth=1.6 if used else 1.0,
                label=_label(first) + ("" if used else ", not used"),
            )
            ax.plot(
                spheres["volume_ml"],
                spheres["rc"],
                linestyle="none",
                marker="o",
                color=colour,
            )
        ax.axhline(1.0, color="#888888", linewidth=0.8)
        ax.set_xscale("log")
        _plain_log_ticks(ax, "x")
        ax.set_ylim(0.0, 1.05)
        ax.set_xlabel("volume (mL)")
        ax.set_ylabel("recovery coefficient")
        ax.legend(loc="lower right")
        return _png_img(
            fig,
            "recovery coefficient against volume for each centre profile",
            "Recovery coefficient of the six NEMA IEC spheres (points) and the fitted RC(volume) "
            "curve (lines; dashed: profiles the run did not use) of each centre profile. "
            "Outside 0.52–26.5 mL the curve is extrapolated by its parametric form.",
        )


def _calibration_section(table: pd.DataFrame | None, number: str) -> str:
    """The section's HTML, from the run's calibration tables (a note when there are none)."""
    parts = [_HEADING.format(number=number)]
    if table is None or table.empty:
        return "".join(parts) + _note(
            "The run recorded no calibration phantom: its studies were not imaged with a "
            "centre profile (ideal scanner) and no workflow took its recovery curve from a "
            "simulated calibration phantom (a measured rc_table is listed with the workflow's "
            "parameters), or the results were written before harmonize recorded them "
            "(RESULTS/calibration/)."
        )
    parts.append(
        _p(
            "A centre measures its recovery coefficients (RC) and calibration factor on its own "
            "camera with a NEMA IEC body phantom (six spheres of 10–37 mm, 10:1 contrast): the "
            "phantom goes through the same imaging chain as the patients, each sphere's RC is "
            "the mean image value over its physical volume divided by its true concentration, "
            "and the calibration factor is the image/true ratio of the background times the "
            "profile's nominal sensitivity. Workflows that correct for partial volume take "
            "their curve from here, unless given the curve a centre measured on its own camera "
            "(Milan's rc_table: its file name and SHA-256 are among the workflow's parameters, "
            "section 2). Every shipped profile is shown at the studies' voxel size; "
            "'used by' names the workflows that applied the curve and 'studies' the camera "
            "that imaged the cohort (calibrated in fast mode). Values are those of the tables "
            "the run wrote (RESULTS/calibration/)."
        )
    )
    parts.append(_summary(table))
    parts.append(_figure(table))
    parts.append(_rc_tables(table))
    return "".join(parts)
