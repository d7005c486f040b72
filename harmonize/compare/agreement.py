"""Align workflows' results and tabulate every agreement statistic in one tidy table.

Sign convention: every pair statistic is of ``workflow_a − workflow_b`` (ratios
``workflow_a / workflow_b``; regressions ``workflow_a = intercept + slope ·
workflow_b``). With ``reference=`` given, ``workflow_b`` is the reference (e.g. "truth"),
so a positive bias means the workflow reads higher than the reference.
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from harmonize.compare._common import (
    MIN_PAIRS,
    CompareError,
    UnpairedRowsWarning,
    check_ci_level,
)
from harmonize.compare.blandaltman import bland_altman, repeated_from_codes
from harmonize.compare.concordance import ccc_from_arrays
from harmonize.compare.icc import icc_from_matrix
from harmonize.compare.regression import deming, passing_bablok
from harmonize.compare.variance import within_subject

__all__ = [
    "AGREEMENT_COLUMNS",
    "AGREEMENT_SCHEMA_VERSION",
    "LESION_KEYS",
    "PATIENT_KEYS",
    "PB_AGREEMENT_MAX_N",
    "agreement",
    "align",
    "write_agreement",
]

#: Columns of the tidy agreement table, in order.
AGREEMENT_COLUMNS = (
    "index",
    "level",
    "cycle",
    "workflow_a",
    "workflow_b",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "ci_level",
    "n_pairs",
    "unit",
    "method",
)
#: Version written into the Parquet key-value metadata of :func:`write_agreement`.
AGREEMENT_SCHEMA_VERSION = "1.0.0"
#: Alignment keys of the two levels.
LESION_KEYS = ("patient_id", "cycle", "voi_id")
PATIENT_KEYS = ("patient_id", "cycle")
#: Passing–Bablok is skipped in :func:`agreement` above this many pairs (O(n²) slopes;
#: 2000 pairs = 2 M slopes ≈ 0.3 s per pair); the row says so in ``method``.
PB_AGREEMENT_MAX_N = 2000

Level = Literal["lesion", "patient"]


def _table(results: pd.DataFrame | Mapping[str, pd.DataFrame], level: str) -> pd.DataFrame:
    if isinstance(results, pd.DataFrame):
        return results
    if isinstance(results, Mapping):
        key = "voi_dose" if level == "lesion" else "patient_index"
        if key not in results:
            raise CompareError(
                f"results has no {key!r} table (needed for level={level!r}); "
                f"keys: {sorted(results)}"
            )
        return results[key]
    raise CompareError(
        "results must be a DataFrame or a mapping {'voi_dose': ..., 'patient_index': ...}, "
        f"got {type(results).__name__}"
    )


def align(
    results: pd.DataFrame | Mapping[str, pd.DataFrame],
    index: str,
    level: Level = "lesion",
    *,
    workflows: Sequence[str] | None = None,
    cycle: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Pivot one index to one column per workflow, rows aligned on the level's keys.

    Parameters
    ----------
    results : DataFrame or mapping
        ``voi_dose`` (lesion level; only ``voi_kind == "lesion"`` rows are used) or
        ``patient_index`` (patient level), or a mapping holding them.
    index : str
        Value column, e.g. ``"dose_mean_gy"``.
    level : {"lesion", "patient"}
    workflows : sequence of str, optional
        Keep only these workflows (in this order); default all, sorted.
    cycle : int, optional
        Keep only this cycle; default all cycles.

    Returns
    -------
    wide : pandas.DataFrame
        Indexed by the keys (``LESION_KEYS`` or ``PATIENT_KEYS``), one column per workflow
        (NaN where a workflow lacks the row).
    unpaired : pandas.DataFrame
        Keys of rows missing in at least one workflow, with ``missing_workflows`` (a
        comma-separated string).
    """
    if level not in ("lesion", "patient"):
        raise CompareError(f"level must be 'lesion' or 'patient', got {level!r}")
    df = _table(results, level)
    keys = list(LESION_KEYS if level == "lesion" else PATIENT_KEYS)
    needed = [*keys, "workflow", index] + (["voi_kind"] if level == "lesion" else [])
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise CompareError(
            f"column(s) {missing} not in the {level}-level table (columns: {list(df.columns)})"
        )
    if level == "lesion":
        df = df.loc[df["voi_kind"] == "lesion"]
    if cycle is not None:
        df = df.loc[df["cycle"] == cycle]
    if workflows is not None:
        unknown = sorted(set(workflows) - set(df["workflow"].unique()))
        if unknown:
            raise CompareError(
                f"workflow(s) {unknown} not in the table (present: "
                f"{sorted(df['workflow'].unique())})"
            )
        df = df.loc[df["workflow"].isin(list(workflows))]
    sub = df[[*keys, "workflow", index]]
    dup = sub.duplicated([*keys, "workflow"])
    if dup.any():
        first = sub.loc[dup].iloc[0]
        raise CompareError(
            f"{int(dup.sum())} duplicate row(s) for the same {tuple(keys)} and workflow, "
            f"e.g. {tuple(first[[*keys, 'workflow']])}"
        )
    wide = sub.pivot(index=keys, columns="workflow", values=index)
    wide.columns.name = None
    order = list(workflows) if workflows is not None else sorted(wide.columns)
    wide = wide.reindex(columns=order).astype(np.float64)
    absent = wide.isna()
    bad = absent.any(axis=1)
    if bad.any():
        miss = absent.loc[bad]
        names = np.array(miss.columns, dtype=object)
        labels = [",".join(names[row]) for row in miss.to_numpy()]
        unpaired = miss.index.to_frame(index=False)
        unpaired["missing_workflows"] = labels
    else:
        unpaired = pd.DataFrame({k: [] for k in keys} | {"missing_workflows": []})
    return wide, unpaired


def _pairs(names: Sequence[str], reference: str | None) -> list[tuple[str, str]]:
    if reference is None:
        return list(itertools.combinations(names, 2))
    if reference not in names:
        raise CompareError(f"reference {reference!r} is not among the workflows {list(names)}")
    return [(w, reference) for w in names if w != reference]


def _row(
    rows: list[dict],
    base: dict,
    statistic: str,
    est: float,
    ci: tuple[float, float] | None,
    n: int,
    unit: str,
    method: str,
) -> None:
    lo, hi = (math.nan, math.nan) if ci is None else ci
    rows.append(
        base
        | dict(
            statistic=statistic,
            estimate=float(est),
            ci_low=float(lo),
            ci_high=float(hi),
            n_pairs=int(n),
            unit=unit,
            method=method,
        )
    )


def _pair_stats(
    rows: list[dict],
    base: dict,
    a: NDArray[np.float64],
    b: NDArray[np.float64],
    subject_codes: NDArray[np.intp] | None,
    level_ci: float,
    log: bool | None,
    pb_max_n: int,
) -> None:
    n = a.size
    ba = bland_altman(a, b, ci_level=level_ci)
    m = "Bland-Altman 1986/1999 (a-b; LoA CI exact, Carkeet 2015)"
    _row(rows, base, "bias", ba.bias, ba.bias_ci, n, "Gy", m)
    _row(rows, base, "sd", ba.sd, None, n, "Gy", m)
    _row(rows, base, "loa_lower", ba.loa_lower, ba.loa_lower_ci, n, "Gy", m)
    _row(rows, base, "loa_upper", ba.loa_upper, ba.loa_upper_ci, n, "Gy", m)
    positive = bool(np.all(a > 0) and np.all(b > 0))
    if log is True and not positive:
        raise CompareError(
            f"log=True but {base['workflow_a']} or {base['workflow_b']} has zero or negative "
            f"{base['index']} values"
        )
    if log is None or log:
        mr = "Bland-Altman 1999 §3.1 ratio a/b (log scale, back-transformed; LoA CI exact)"
        if positive:
            br = bland_altman(a, b, log=True, ci_level=level_ci)
            _row(rows, base, "ratio_bias", br.bias, br.bias_ci, n, "1", mr)
            _row(rows, base, "ratio_loa_lower", br.loa_lower, br.loa_lower_ci, n, "1", mr)
            _row(rows, base, "ratio_loa_upper", br.loa_upper, br.loa_upper_ci, n, "1", mr)
        else:
            skip = "skipped: zero or negative values (ratio undefined)"
            for st in ("ratio_bias", "ratio_loa_lower", "ratio_loa_upper"):
                _row(rows, base, st, math.nan, None, n, "1", skip)
    rc, lo, hi, _ = ccc_from_arrays(a, b, level_ci)
    _row(rows, base, "ccc", rc, (lo, hi), n, "1", "Lin 1989/2000 CCC, Fisher-Z CI")
    tab = icc_from_matrix(np.column_stack([a, b]), level_ci)
    for form in ("ICC(2,1)", "ICC(3,1)"):
        r = tab.loc[form]
        _row(
            rows,
            base,
            form,
            r["icc"],
            (r["ci_low"], r["ci_high"]),
            n,
            "1",
            f"Shrout-Fleiss 1979 {form} = McGraw-Wong {r['mcgraw_wong']}, F-based CI",
        )
    ws = within_subject(np.column_stack([a, b]), ci_level=level_ci)
    _row(rows, base, "wsd", ws.wsd, ws.wsd_ci, n, "Gy", "within-subject SD, Bland-Altman 1996")
    _row(rows, base, "wcv", 100.0 * ws.wcv, None, n, "%", "within-subject CV, RMS method")
    _row(
        rows,
        base,
        "repeatability_coefficient",
        ws.repeatability,
        None,
        n,
        "Gy",
        "1.96*sqrt(2)*wSD, Bland-Altman 1996",
    )
    dm = deming(b, a, 1.0, ci_level=level_ci)
    md = "Deming (error ratio 1), a = intercept + slope*b, jackknife CI (Linnet 1990)"
    _row(rows, base, "deming_slope", dm.slope, dm.slope_ci, n, "1", md)
    _row(rows, base, "deming_intercept", dm.intercept, dm.intercept_ci, n, "Gy", md)
    skip = ""
    if n <= pb_max_n:
        try:
            pb = passing_bablok(b, a, ci_level=level_ci)
        except CompareError as exc:  # e.g. too few pairs for its rank CI: the rest stands
            skip = f"skipped: {exc}"
        else:
            mp = "Passing-Bablok 1983, a = intercept + slope*b, PB1983 rank CI"
            _row(rows, base, "passing_bablok_slope", pb.slope, pb.slope_ci, n, "1", mp)
            _row(rows, base, "passing_bablok_intercept", pb.intercept, pb.intercept_ci, n, "Gy", mp)
    else:
        skip = f"skipped: n_pairs > {pb_max_n} (Passing-Bablok is O(n^2))"
    if skip:
        _row(rows, base, "passing_bablok_slope", math.nan, None, n, "1", skip)
        _row(rows, base, "passing_bablok_intercept", math.nan, None, n, "Gy", skip)
    if subject_codes is not None:
        n_sub = int(np.unique(subject_codes).size)
        if n_sub >= 2 and n_sub < n:
            rm = repeated_from_codes(a - b, subject_codes, ci_level=level_ci)
            mm = "Bland-Altman 2007 §3 repeated pairs per patient (true value varies)"
            _row(rows, base, "rm_bias", rm.bias, rm.bias_ci, n, "Gy", mm)
            _row(rows, base, "rm_sd", rm.sd, None, n, "Gy", mm)
            _row(rows, base, "rm_loa_lower", rm.loa_lower, None, n, "Gy", mm + "; no LoA CI")
            _row(rows, base, "rm_loa_upper", rm.loa_upper, None, n, "Gy", mm + "; no LoA CI")


def agreement(
    results: pd.DataFrame | Mapping[str, pd.DataFrame],
    index: str = "dose_mean_gy",
    level: Level = "lesion",
    workflows: Sequence[str] | None = None,
    reference: str | None = None,
    cycle: int | Literal["each"] | None = None,
    log: bool | None = None,
    ci_level: float = 0.95,
    *,
    pb_max_n: int = PB_AGREEMENT_MAX_N,
) -> pd.DataFrame:
    """Agreement statistics of one dose index between workflows, as one tidy table.

    Rows are aligned on (patient_id, cycle, voi_id) at lesion level (``voi_kind ==
    "lesion"`` rows of ``voi_dose``) or on (patient_id, cycle) at patient level
    (``patient_index``) by a pivot. Each workflow pair uses the rows both have; rows
    missing in some workflow are listed in ``attrs["unpaired"]`` and announced by an
    :class:`UnpairedRowsWarning`.

    For each pair (``workflow_a − workflow_b``): bias, sd, loa_lower, loa_upper
    (Bland–Altman, exact LoA CIs), ratio_bias / ratio_loa_lower / ratio_loa_upper
    (ratio version), ccc, ICC(2,1), ICC(3,1), wsd, wcv (%), repeatability_coefficient,
    deming_slope/intercept, passing_bablok_slope/intercept (skipped above ``pb_max_n``
    pairs, stated in ``method``) and, at lesion level when patients have several lesions,
    rm_bias / rm_sd / rm_loa_lower / rm_loa_upper (BA2007, subject = patient). With three
    or more workflows, the six ICC forms over all workflows (complete rows only) are added
    with ``workflow_b = ""``.

    Parameters
    ----------
    results : DataFrame or mapping
        ``voi_dose`` / ``patient_index`` or ``{"voi_dose": ..., "patient_index": ...}``.
    index : str, default "dose_mean_gy"
        Dose index column (lesion: dose_mean_gy, dose_min_gy, dose_median_gy,
        dose_max_gy, dose_d2_gy, dose_d50_gy, dose_d98_gy; patient: lesion_dose_*_gy,
        global_mean_dose_gy, cum_*).
    level : {"lesion", "patient"}
    workflows : sequence of str, optional
        Workflows to compare (default all).
    reference : str, optional
        Compare each workflow with this one (e.g. ``"truth"``) instead of all pairs.
    cycle : int, "each" or None
        One cycle; ``"each"`` for one block per cycle; None pools all cycles
        (``cycle`` column NA).
    log : bool or None
        Ratio statistics: None (default) — when all values of the pair are positive,
        otherwise rows with NaN and the reason in ``method``; True — required (error on
        non-positive values); False — left out.
    ci_level : float, default 0.95
    pb_max_n : int, default PB_AGREEMENT_MAX_N

    Returns
    -------
    pandas.DataFrame
        Columns ``AGREEMENT_COLUMNS``; ``attrs["unpaired"]`` the unpaired keys.
    """
    level_ci = check_ci_level(ci_level)
    wide, unpaired = align(
        results, index, level, workflows=workflows, cycle=cycle if isinstance(cycle, int) else None
    )
    names = list(wide.columns)
    if len(names) < 2:
        raise CompareError(f"need at least 2 workflows to compare, found {names}")
    pairs = _pairs(names, reference)
    if len(unpaired):
        warnings.warn(
            f"{len(unpaired)} {level}-level row(s) of {index!r} are missing in some workflow "
            "and were left out of the pairs that lack them (see attrs['unpaired'])",
            UnpairedRowsWarning,
            stacklevel=2,
        )
    blocks: list[tuple[int | None, pd.DataFrame]]
    if cycle == "each":
        blocks = [
            (int(c), wide.xs(c, level="cycle", drop_level=False))
            for c in sorted(wide.index.get_level_values("cycle").unique())
        ]
    elif isinstance(cycle, int) or cycle is None:
        blocks = [(cycle, wide)]
    else:
        raise CompareError(f"cycle must be an int, 'each' or None, got {cycle!r}")
    rows: list[dict] = []
    for cyc, block in blocks:
        values = block.to_numpy(dtype=np.float64)
        patients = pd.factorize(block.index.get_level_values("patient_id"))[0]
        col = {w: i for i, w in enumerate(names)}
        for wa, wb in pairs:
            a, b = values[:, col[wa]], values[:, col[wb]]
            ok = np.isfinite(a) & np.isfinite(b)
            base = dict(
                index=index, level=level, cycle=cyc, workflow_a=wa, workflow_b=wb, ci_level=level_ci
            )
            if np.count_nonzero(ok) < MIN_PAIRS:
                raise CompareError(
                    f"{wa} vs {wb}: only {int(np.count_nonzero(ok))} paired {level} rows of "
                    f"{index!r} (need ≥ {MIN_PAIRS})"
                )
            codes = patients[ok] if level == "lesion" else None
            _pair_stats(rows, base, a[ok], b[ok], codes, level_ci, log, pb_max_n)
        if len(names) >= 3:
            complete = np.all(np.isfinite(values), axis=1)
            if np.count_nonzero(complete) >= MIN_PAIRS:
                tab = icc_from_matrix(values[complete], level_ci)
                base = dict(
                    index=index,
                    level=level,
                    cycle=cyc,
                    workflow_a="all",
                    workflow_b="",
                    ci_level=level_ci,
                )
                for form, r in tab.iterrows():
                    label = str(form).replace(",k)", f",{len(names)})")
                    _row(
                        rows,
                        base,
                        label,
                        r["icc"],
                        (r["ci_low"], r["ci_high"]),
                        int(np.count_nonzero(complete)),
                        "1",
                        f"Shrout-Fleiss 1979 {form} = McGraw-Wong {r['mcgraw_wong']}, "
                        f"k={len(names)} workflows, complete rows only",
                    )
    out = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS))
    out["cycle"] = out["cycle"].astype("Int64")
    out["n_pairs"] = out["n_pairs"].astype(np.int64)
    for c in ("estimate", "ci_low", "ci_high", "ci_level"):
        out[c] = out[c].astype(np.float64)
    out.attrs["unpaired"] = unpaired
    return out


def write_agreement(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write an agreement table to Parquet atomically (temporary file + ``os.replace``).

    The file's key-value metadata carries ``harmonize`` = JSON
    ``{"schema_version": AGREEMENT_SCHEMA_VERSION, "table": "agreement"}``.

    Parameters
    ----------
    df : pandas.DataFrame
        Output of :func:`agreement` (columns ``AGREEMENT_COLUMNS``).
    path : path-like
        Destination file; its directory must exist.

    Returns
    -------
    pathlib.Path
    """
    from harmonize import schema

    missing = [c for c in AGREEMENT_COLUMNS if c not in df.columns]
    if missing:
        raise CompareError(f"df lacks agreement column(s) {missing}")
    dest = Path(path)
    if not dest.parent.is_dir():
        raise CompareError(f"directory {dest.parent} does not exist")
    frame = df[list(AGREEMENT_COLUMNS)].copy()
    frame.attrs = {}  # attrs (the unpaired table) are not part of the file
    # through the common schema: units in the field metadata, atomic, deterministic
    return schema.write_table(frame, dest, "agreement", overwrite=True)
