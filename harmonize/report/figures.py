"""The report's matplotlib figures, encoded as deterministic PNG.

Figures are drawn with the Agg renderer on :class:`matplotlib.figure.Figure` (no pyplot
state) under :data:`REPORT_RCPARAMS` applied on top of matplotlib's defaults (the user's
matplotlibrc is ignored) and saved as PNG without the ``Software`` text chunk and
without a time chunk, so the same tables give the same bytes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from harmonize import compare
from harmonize.report._data import DVH_POINTS, TRUTH, DoseIndex, _captured, _Data
from harmonize.report.html import _esc, _num

__all__ = [
    "REPORT_RCPARAMS",
]

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


class _Line(NamedTuple):
    """A statistic of ``compare``'s agreement table: estimate and its CI."""

    value: float
    ci: tuple[float, float]


class _PairStats(NamedTuple):
    """The rows of the agreement table one pair's figure draws (nothing is computed here)."""

    bias: _Line
    loa_lower: _Line
    loa_upper: _Line


def _pair_stats(agr: pd.DataFrame, prefix: str) -> _PairStats:
    s = agr.set_index("statistic")

    def line(name: str) -> _Line:
        row = s.loc[f"{prefix}{name}"]
        return _Line(float(row["estimate"]), (float(row["ci_low"]), float(row["ci_high"])))

    return _PairStats(line("bias"), line("loa_lower"), line("loa_upper"))


def _ba_axes(
    ax: Any,
    a: np.ndarray,
    b: np.ndarray,
    wa: str,
    wb: str,
    colour: str,
    cycles: np.ndarray,
    agr: pd.DataFrame,
) -> None:
    ratio = agr.set_index("statistic")
    positive = bool(
        np.all(a > 0)
        and np.all(b > 0)
        and "ratio_bias" in ratio.index
        and math.isfinite(float(ratio.loc["ratio_bias", "estimate"]))
    )
    res = _pair_stats(agr, "ratio_" if positive else "")
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
    for stat, style in ((res.bias, "-"), (res.loa_lower, "--"), (res.loa_upper, "--")):
        ax.axhline(stat.value, color=colour, linestyle=style, linewidth=1.1)
        if all(math.isfinite(c) for c in stat.ci):
            ax.axhspan(stat.ci[0], stat.ci[1], color=colour, alpha=0.12, linewidth=0)
    kind = "ratio" if positive else "difference"
    ax.set_title(
        f"{kind} bias {_num(res.bias.value)}, 95 % LoA {_num(res.loa_lower.value)} to "
        f"{_num(res.loa_upper.value)}"
    )
    if positive:
        # symmetric log range around 1 that holds every point and both LoA intervals
        limits = [v for v in (res.loa_lower.ci[0], res.loa_upper.ci[1]) if math.isfinite(v)]
        extremes = np.log([*y, *limits])
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
    ax: Any,
    a: np.ndarray,
    b: np.ndarray,
    wa: str,
    wb: str,
    colour: str,
    cycles: np.ndarray,
    agr: pd.DataFrame,
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
    # the regression line of compare's table: Passing–Bablok, or Deming where it was skipped
    s = agr.set_index("statistic")["estimate"].astype(float)
    name, slope, intercept = "Passing–Bablok", np.nan, np.nan
    if {"passing_bablok_slope", "passing_bablok_intercept"} <= set(s.index):
        slope, intercept = s["passing_bablok_slope"], s["passing_bablok_intercept"]
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        name = "Deming"
        slope, intercept = s.get("deming_slope", np.nan), s.get("deming_intercept", np.nan)
    slope, intercept = float(slope), float(intercept)
    line = intercept + slope * grid
    keep = line > 0 if positive else np.ones_like(line, dtype=bool)
    ax.plot(grid[keep], line[keep], color=colour, linewidth=1.4, label=name)
    ax.set_title(f"{name}: {wa} = {_num(intercept)} Gy + {_num(slope)} · {wb}")
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


def _pair_figure(
    table: pd.DataFrame,
    spec: DoseIndex,
    pairs: Sequence[tuple[str, str]],
    colours: Mapping[str, str],
    agr: pd.DataFrame,
) -> str:
    """Bland–Altman and scatter plots of each pair: the points are the paired values, every
    line and band a row of ``compare``'s agreement table ``agr`` (nothing computed here)."""
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
            rows = agr.loc[(agr["workflow_a"] == wa) & (agr["workflow_b"] == wb)]
            _ba_axes(axes[row, 0], a, b, wa, wb, colours[wa], cycles, rows)
            names.append(_scatter_axes(axes[row, 1], a, b, wa, wb, colours[wa], cycles, rows))
        caption = (
            f"{spec.label}: left, ratio Bland–Altman plots (log scale; solid line bias, dashed "
            "lines 95 % limits of agreement, shaded bands their 95 % CIs); right, the same "
            "pairs with the identity line (dotted) and the "
            + " / ".join(sorted(set(names)))
            + " regression line. Markers distinguish cycles."
        )
        return _png_img(fig, f"Bland-Altman and scatter plots of {spec.column}", caption)


def _truth_figure(data: _Data, colours: Mapping[str, str], bands_ml: Sequence[float]) -> str:
    """Ratio of each workflow's lesion mean dose to the truth against the true volume.

    ``bands_ml`` are the edges of the size bands of the accuracy table; the inner edges
    are drawn as dotted vertical lines.
    """
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
        for edge in bands_ml[1:-1]:
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


def _lesion_panels(
    data: _Data,
    picks: pd.DataFrame,
    colours: Mapping[str, str],
    ylabel: str,
    curve_of: Callable[[pd.Series, pd.Series], tuple[np.ndarray, np.ndarray] | None],
    marker: str | None,
    alt: str,
    caption: str,
) -> str:
    """One panel per lesion of ``picks``: a dose–volume curve per workflow.

    ``curve_of(lesion, voi_row)`` gives (dose, volume %) for a workflow's row, or None, in
    which case the workflow is drawn as a dashed vertical line at its mean dose.
    """
    with _style():
        fig = _new_figure(10.0, 3.4)
        axes = fig.subplots(1, len(picks), squeeze=False)[0]
        for ax, (_, lesion) in zip(axes, picks.iterrows(), strict=True):
            rows = data.voi.loc[
                (data.voi["patient_id"] == lesion["patient_id"])
                & (data.voi["cycle"] == lesion["cycle"])
                & (data.voi["voi_id"] == lesion["voi_id"])
            ].sort_values("workflow", kind="stable")
            for _, r in rows.iterrows():
                w = str(r["workflow"])
                curve = curve_of(lesion, r)
                if curve is not None:
                    ax.plot(curve[0], curve[1], marker=marker, color=colours[w], label=w)
                else:
                    ax.axvline(
                        float(r["dose_mean_gy"]),
                        color=colours[w],
                        linestyle="--",
                        label=f"{w} (mean)",
                    )
            ax.set_xlabel("absorbed dose (Gy)")
            ax.set_ylabel(ylabel)
            ax.set_ylim(0, 102)
            ax.set_xlim(left=0)
            ax.set_title(
                f"{lesion['patient_id']} cycle {int(lesion['cycle'])} {lesion.get('voi_name', '')} ({_num(lesion['volume_ml'])} mL)"
            )
            ax.legend(loc="lower left")
        return _png_img(fig, alt, caption)


def _dvh_figure(
    data: _Data,
    picks: pd.DataFrame,
    colours: Mapping[str, str],
    which: str,
    patient: str,
    cycle: int,
) -> str:
    """Cumulative DVHs of the lesions ``picks`` from the ``dvh`` table, one panel each.

    ``which``, ``patient`` and ``cycle`` name the lesions in the caption. Workflows
    without a DVH of a lesion are drawn as a dashed vertical line at their mean dose.
    """
    dvh = data.dvh

    def curve_of(lesion: pd.Series, row: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
        curve = dvh.loc[
            (dvh["patient_id"] == lesion["patient_id"])
            & (dvh["cycle"] == lesion["cycle"])
            & (dvh["voi_id"] == lesion["voi_id"])
            & (dvh["workflow"] == row["workflow"])
        ].sort_values("volume_pct")
        if not len(curve):
            return None
        return curve["dose_gy"].to_numpy(float), curve["volume_pct"].to_numpy(float)

    return _lesion_panels(
        data,
        picks,
        colours,
        "volume receiving ≥ dose (%)",
        curve_of,
        None,
        "cumulative dose-volume histograms of two lesions",
        f"Cumulative DVHs of {which} of {patient} at cycle {cycle}, one curve per workflow with a voxel dose map (dvh table); dashed lines: mean dose of the workflows without one.",
    )


def _dvh_summary_figure(data: _Data, picks: pd.DataFrame, colours: Mapping[str, str]) -> str:
    """Piecewise-linear dose–volume summaries of the lesions ``picks`` (no ``dvh`` table).

    Each workflow with every voxel index is drawn through the points :data:`DVH_POINTS`;
    the others as a dashed vertical line at their mean dose.
    """
    cols = [c for c, _ in DVH_POINTS]
    volumes = np.array([v for _, v in DVH_POINTS], dtype=float)

    def curve_of(lesion: pd.Series, row: pd.Series) -> tuple[np.ndarray, np.ndarray] | None:
        values = row[cols].to_numpy(dtype=float)
        return (values, volumes) if np.all(np.isfinite(values)) else None

    return _lesion_panels(
        data,
        picks,
        colours,
        "volume (%)",
        curve_of,
        "o",
        "lesion dose-volume summaries",
        "Piecewise-linear dose–volume summaries through (min, 100 %), (D98, 98 %), (D50, 50 %), (D2, 2 %), (max, 0 %) of three lesions.",
    )


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
