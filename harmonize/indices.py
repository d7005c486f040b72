"""Dose indices: per-VOI statistics of a dose map, DVHs and patient-level lesion aggregates.

VOI level
---------
:func:`voi_dose_indices` reduces a voxel dose map to one row per VOI: mean (voxel mean, or
mass-weighted when voxel masses are given), minimum, median, maximum and the DVH indices
D2, D50 and D98, with one sort of the VOI voxels by (label, dose) and no Python loop over
voxels or VOIs. :func:`dvh_table` reads the whole cumulative DVH from the same sort, in
"dose at volume" form (``D_x`` at ``x`` = 0, 1, ..., 100 %: the ``dvh`` table of the results
schema), so that D2, D50 and D98 are three of its rows.

**Dx convention.** ``D_x`` is the minimum dose received by the hottest ``x`` % of the VOI
volume, read from the *step* cumulative DVH of the voxels (every voxel has the same volume;
no interpolation between voxels). With the ``n`` voxel doses sorted in decreasing order
``d_(1) >= d_(2) >= ... >= d_(n)`` and ``k = ceil(x * n / 100)``, ``D_x = d_(k)``. Equivalently
``D_x`` is the largest dose ``D`` such that at least ``x`` % of the voxels receive ``>= D``.
D2 is therefore the maximum for VOIs under 50 voxels, D98 the minimum for VOIs under 50
voxels, and D50 is the *upper* middle voxel (the median averages the two middle voxels
when ``n`` is even). Dx is volume-based even when voxel masses are given.

Patient level
-------------
:func:`patient_index` turns ``voi_dose`` rows into the ``patient_index`` table of the
results schema: per patient x cycle x workflow, the minimum / median / arithmetic mean /
maximum over lesions of the lesion mean dose and the mass-weighted global mean dose
``GMD = sum(D_i m_i) / sum(m_i)`` over lesions (Maccauro 2024, "GTD"), plus cumulative
indices: the **total over the planned treatment** (default 4 cycles), formed from the
cycles measured under the adapter's declared rule, with ``cum_basis`` saying how
(``measured_sum``, ``interpolated``, ``extrapolated`` or ``incomplete``). It is built in
named steps: per-cycle indices, treatment totals, assembly.

Examples
--------
>>> import numpy as np
>>> dose = np.array([[1.0, 2.0, 3.0], [10.0, 20.0, 40.0]])
>>> labels = np.array([[1, 1, 1], [2, 2, 2]])
>>> table = voi_dose_indices(dose, labels)
>>> table.index.tolist(), table["dose_mean_gy"].round(4).tolist()
([1, 2], [2.0, 23.3333])
>>> table.loc[2, ["dose_min_gy", "dose_median_gy", "dose_max_gy", "dose_d98_gy"]].tolist()
[10.0, 20.0, 40.0, 10.0]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pandas as pd
else:
    from harmonize._lazy import lazy_module

    pd = lazy_module("pandas")

__all__ = [
    "CUMULATIVE_BASES",
    "CUMULATIVE_RULES",
    "DEFAULT_PLANNED_CYCLES",
    "DVH",
    "DVH_VOLUME_PCT",
    "DX_PERCENTS",
    "MILAN_N_CYCLES",
    "PATIENT_INDEX_COLUMNS",
    "dvh",
    "dvh_table",
    "fill_cumulative_basis",
    "patient_index",
    "voi_dose_indices",
]

#: Volume percentages of the Dx indices reported by :func:`voi_dose_indices`.
DX_PERCENTS: tuple[int, ...] = (2, 50, 98)

#: Volume percentages of the ``dvh`` table of the results schema: 0, 1, ..., 100 %.
DVH_VOLUME_PCT: np.ndarray = np.arange(101, dtype=np.float64)
DVH_VOLUME_PCT.flags.writeable = False

#: Number of planned cycles in the LUTADOSE cumulative rule GTD_TOT = 4 x (GTD1 + GTD4) / 2
#: (Maccauro 2024, Eur J Nucl Med Mol Imaging 52:291-304; the formula is [inferred] in
#: METHODS.md from "cycles 2-3 interpolated").
MILAN_N_CYCLES = 4

#: Default number of planned cycles of a treatment: 4 x 7.4 GBq (Lutathera SmPC; NETTER-1,
#: Strosberg 2017 N Engl J Med 376:125-135).
DEFAULT_PLANNED_CYCLES = 4

#: Rules accepted by :func:`patient_index` for cumulative indices.
CUMULATIVE_RULES: tuple[str, ...] = (
    "sum",
    "sum_interpolated",
    "sum_extrapolated",
    "milan_interpolated",
)

#: Values of the ``cum_basis`` column: how a treatment total was obtained.
CUMULATIVE_BASES: tuple[str, ...] = ("measured_sum", "interpolated", "extrapolated", "incomplete")

_KEYS = ["patient_id", "cycle", "workflow"]
_PAIR = ["patient_id", "workflow"]
_REQUIRED_VOI_DOSE = (
    "patient_id",
    "cycle",
    "center",
    "workflow",
    "workflow_version",
    "voi_id",
    "voi_kind",
    "dose_mean_gy",
    "mass_g",
)
_LESION_STATS = ("min", "median", "mean", "max")


class DVH(NamedTuple):
    """A cumulative dose-volume histogram.

    Attributes
    ----------
    dose_gy : numpy.ndarray
        Dose levels (Gy), strictly increasing.
    volume_fraction : numpy.ndarray
        Fraction of the VOI volume receiving a dose ``>=`` each level, non-increasing,
        in [0, 1].
    """

    dose_gy: np.ndarray
    volume_fraction: np.ndarray


def _dose_array(dose_gy: npt.ArrayLike, name: str = "dose_gy") -> np.ndarray:
    dose = np.asarray(dose_gy)
    if dose.dtype.kind not in "fiu" or dose.dtype == np.bool_:
        raise ValueError(f"{name} must be a numeric array, got dtype {dose.dtype}")
    return dose.astype(np.float64, copy=False)


def _check_finite(values: np.ndarray, name: str, where: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} non-finite value(s) (NaN or inf) {where}")


class _SortedVoxels(NamedTuple):
    """The voxels of the reported VOIs sorted by (VOI, dose), and where each VOI sits."""

    ids: np.ndarray  # reported VOI ids, in output order
    sorted_dose: np.ndarray  # doses sorted by (label, dose), ascending within each VOI
    sorted_mass: np.ndarray | None  # voxel masses in the same order (None: equal masses)
    start: np.ndarray  # index in sorted_dose of each reported VOI's coldest voxel
    n: np.ndarray  # number of voxels of each reported VOI (int64)
    first: np.ndarray  # start of every VOI in sorted_dose order (ascending, for reduceat)
    pos: np.ndarray  # position of each reported VOI in ``first``


def _sorted_voxels(
    dose_gy: npt.ArrayLike,
    labels: npt.ArrayLike,
    voi_ids: npt.ArrayLike | None,
    voxel_mass_g: float | npt.ArrayLike | None,
) -> _SortedVoxels:
    """Validate the inputs and sort the voxels of the reported VOIs by (label, dose).

    One :func:`numpy.lexsort` over the selected voxels; no loop over voxels or VOIs. Shared
    by :func:`voi_dose_indices` and :func:`dvh_table`, so their Dx agree by construction.
    """
    dose = _dose_array(dose_gy)
    lab = np.asarray(labels)
    if lab.dtype.kind not in "iu":
        raise ValueError(f"labels must be an integer array, got dtype {lab.dtype}")
    if dose.shape != lab.shape:
        raise ValueError(f"dose_gy shape {dose.shape} differs from labels shape {lab.shape}")
    flat_lab = lab.ravel()
    if voi_ids is None:
        ids = np.unique(flat_lab)
        ids = ids[ids != 0]
        if ids.size == 0:
            raise ValueError("labels has no non-zero label: no VOI to report")
    else:
        ids = np.atleast_1d(np.asarray(voi_ids))
        if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
            raise ValueError(f"voi_ids must be a non-empty 1-D integer sequence, got {voi_ids!r}")
        if np.unique(ids).size != ids.size:
            raise ValueError(f"voi_ids must be unique, got {ids.tolist()}")
    selected = np.isin(flat_lab, ids)
    lab_sel = flat_lab[selected]
    dose_sel = dose.ravel()[selected]
    _check_finite(dose_sel, "dose_gy", "inside the reported VOIs")
    mass_sel = None
    if voxel_mass_g is not None:
        mass = np.asarray(voxel_mass_g, dtype=np.float64)
        if mass.ndim == 0:
            if not (np.isfinite(mass) and mass > 0):
                raise ValueError(f"voxel_mass_g must be finite and > 0, got {float(mass)}")
        else:
            if mass.shape != dose.shape:
                raise ValueError(
                    f"voxel_mass_g shape {mass.shape} differs from dose_gy shape {dose.shape}"
                )
            mass_sel = mass.ravel()[selected]
            bad = ~(np.isfinite(mass_sel) & (mass_sel > 0))
            if bad.any():
                raise ValueError(
                    f"voxel_mass_g has {int(bad.sum())} voxel(s) in the reported VOIs that "
                    "are not finite and > 0"
                )
    order = np.lexsort((dose_sel, lab_sel))
    sorted_lab = lab_sel[order]
    present, first, counts = np.unique(sorted_lab, return_index=True, return_counts=True)
    absent = np.setdiff1d(ids, present)
    if absent.size:
        raise ValueError(f"voi_ids {absent.tolist()} have no voxel in labels")
    pos = np.searchsorted(present, ids)
    return _SortedVoxels(
        ids=ids,
        sorted_dose=dose_sel[order],
        sorted_mass=None if mass_sel is None else mass_sel[order],
        start=first[pos].astype(np.int64),
        n=counts[pos].astype(np.int64),
        first=first,
        pos=pos,
    )


def _hottest_count(volume_pct: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``k = ceil(x n / 100)``, at least 1: how many of the hottest voxels make ``x`` %.

    Shape ``(n_voi, n_pct)``. Integral percentages use exact integer arithmetic; others
    are resolved to 1e-9 of a voxel (so that e.g. 0.1 % of 1000 voxels is 1 voxel, not 2
    from the rounding of 0.1 in binary floating point).
    """
    if np.all(volume_pct == np.round(volume_pct)):
        percent = volume_pct.astype(np.int64)
        k = (percent[None, :] * n[:, None] + 99) // 100  # ceil in exact integers
    else:
        k = np.ceil(np.round(volume_pct[None, :] * n[:, None] / 100.0, 9)).astype(np.int64)
    return np.maximum(k, 1)


def _dose_at_volume(voxels: _SortedVoxels, volume_pct: np.ndarray) -> np.ndarray:
    """Dose at volume ``D_x`` of every reported VOI at every percentage, ``(n_voi, n_pct)``."""
    k = _hottest_count(volume_pct, voxels.n)
    last = voxels.start + voxels.n  # one past the hottest voxel of each VOI
    return voxels.sorted_dose[last[:, None] - k]


def voi_dose_indices(
    dose_gy: npt.ArrayLike,
    labels: npt.ArrayLike,
    voi_ids: npt.ArrayLike | None = None,
    voxel_mass_g: float | npt.ArrayLike | None = None,
) -> pd.DataFrame:
    """Compute dose statistics of every VOI of a label map, vectorised over VOIs.

    Parameters
    ----------
    dose_gy : array_like of float
        Absorbed dose per voxel (Gy), any shape.
    labels : array_like of int
        Integer VOI label per voxel, same shape as ``dose_gy``; 0 means "no VOI".
    voi_ids : array_like of int, optional
        VOIs to report, in output order. Default: every non-zero label present, ascending.
    voxel_mass_g : float or array_like of float, optional
        Mass of each voxel (g), a positive scalar or an array of the shape of ``dose_gy``.
        When given, ``dose_mean_gy`` is the mass-weighted mean ``sum(D m) / sum(m)``
        (energy over mass); otherwise it is the voxel mean.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``voi_id`` (int64), columns ``dose_mean_gy``, ``dose_min_gy``,
        ``dose_median_gy``, ``dose_max_gy``, ``dose_d2_gy``, ``dose_d50_gy``, ``dose_d98_gy``
        (float64, Gy) and ``n_voxels`` (int64). Dx follows the step-DVH convention of the
        module docstring (no interpolation).

    Raises
    ------
    ValueError
        If shapes differ, ``labels`` is not an integer array, ``voi_ids`` are not unique
        integers, a requested VOI has no voxel, a dose in a reported VOI is NaN or
        infinite, or a voxel mass is not finite and positive.

    See Also
    --------
    dvh_table : the whole cumulative DVH in the same convention (its 2, 50 and 98 % rows
        are ``dose_d2_gy``, ``dose_d50_gy`` and ``dose_d98_gy``).

    Examples
    --------
    >>> import numpy as np
    >>> dose = np.arange(1.0, 101.0)  # one VOI of 100 voxels with doses 1..100 Gy
    >>> row = voi_dose_indices(dose, np.ones(100, dtype=int)).loc[1]
    >>> row[["dose_d2_gy", "dose_d50_gy", "dose_d98_gy", "dose_median_gy"]].tolist()
    [99.0, 51.0, 3.0, 50.5]
    """
    voxels = _sorted_voxels(dose_gy, labels, voi_ids, voxel_mass_g)
    sorted_dose, start, n = voxels.sorted_dose, voxels.start, voxels.n
    first, pos = voxels.first, voxels.pos  # reduceat needs the VOI starts in ascending order
    if voxels.sorted_mass is None:
        means = (np.add.reduceat(sorted_dose, first) / np.diff(first, append=sorted_dose.size))[pos]
    else:
        mass = voxels.sorted_mass
        means = (np.add.reduceat(sorted_dose * mass, first) / np.add.reduceat(mass, first))[pos]
    last = start + n - 1
    columns = {
        "dose_mean_gy": means,
        "dose_min_gy": sorted_dose[start],
        "dose_median_gy": 0.5 * (sorted_dose[start + (n - 1) // 2] + sorted_dose[start + n // 2]),
        "dose_max_gy": sorted_dose[last],
    }
    dx = _dose_at_volume(voxels, np.asarray(DX_PERCENTS, dtype=np.float64))
    for j, percent in enumerate(DX_PERCENTS):
        columns[f"dose_d{percent}_gy"] = dx[:, j]
    columns["n_voxels"] = n
    return pd.DataFrame(columns, index=pd.Index(voxels.ids.astype(np.int64), name="voi_id"))


def dvh_table(
    dose_gy: npt.ArrayLike,
    labels: npt.ArrayLike,
    voi_ids: npt.ArrayLike | None = None,
    volume_pct: npt.ArrayLike = DVH_VOLUME_PCT,
) -> pd.DataFrame:
    """Cumulative DVH of every VOI in "dose at volume" form, vectorised over VOIs.

    ``dose_gy`` at ``volume_pct = x`` is ``D_x``, the minimum dose received by the hottest
    ``x`` % of the VOI volume, read from the step cumulative DVH of the voxels without
    interpolation (the convention of the module docstring): with the ``n`` voxel doses
    sorted in decreasing order and ``k = max(1, ceil(x n / 100))``, ``D_x = d_(k)``. So
    ``D_0`` is the maximum, ``D_100`` the minimum, and the rows at 2, 50 and 98 % are the
    ``dose_d2_gy``, ``dose_d50_gy`` and ``dose_d98_gy`` of :func:`voi_dose_indices` (same
    sort, same index arithmetic).

    Parameters
    ----------
    dose_gy : array_like of float
        Absorbed dose per voxel (Gy), any shape.
    labels : array_like of int
        Integer VOI label per voxel, same shape as ``dose_gy``; 0 means "no VOI".
    voi_ids : array_like of int, optional
        VOIs to report, in output order. Default: every non-zero label present, ascending.
    volume_pct : array_like of float, default 0, 1, ..., 100
        Volume percentages at which to read the DVH: 1-D, unique, each in [0, 100].

    Like Dx, the DVH is volume-based (every voxel has the same volume), so it takes no
    voxel masses.

    Returns
    -------
    pandas.DataFrame
        One row per VOI and percentage, VOIs in ``voi_ids`` order and percentages in
        ``volume_pct`` order within each VOI, RangeIndex; columns ``voi_id`` (int64),
        ``volume_pct`` (float64, %) and ``dose_gy`` (float64, Gy). ``dose_gy`` is
        non-increasing in ``volume_pct`` within each VOI.

    Raises
    ------
    ValueError
        On the inputs :func:`voi_dose_indices` refuses, or if ``volume_pct`` is empty, not
        1-D, not unique, not finite or outside [0, 100].

    Examples
    --------
    >>> import numpy as np
    >>> dose = np.array([4.0, 1.0, 3.0, 2.0, 10.0, 20.0])
    >>> labels = np.array([1, 1, 1, 1, 2, 2])
    >>> dvh_table(dose, labels, volume_pct=[0, 25, 50, 100])
       voi_id  volume_pct  dose_gy
    0       1         0.0      4.0
    1       1        25.0      4.0
    2       1        50.0      3.0
    3       1       100.0      1.0
    4       2         0.0     20.0
    5       2        25.0     20.0
    6       2        50.0     20.0
    7       2       100.0     10.0
    """
    pct = np.asarray(volume_pct)
    if pct.dtype.kind not in "fiu" or pct.dtype == np.bool_:
        raise ValueError(f"volume_pct must be numeric, got dtype {pct.dtype}")
    pct = pct.astype(np.float64)
    if pct.ndim != 1 or pct.size == 0:
        raise ValueError(f"volume_pct must be a non-empty 1-D sequence, got shape {pct.shape}")
    if not np.all(np.isfinite(pct)) or np.any((pct < 0) | (pct > 100)):
        raise ValueError("volume_pct must hold finite percentages in [0, 100]")
    if np.unique(pct).size != pct.size:
        raise ValueError("volume_pct must not repeat a percentage")
    voxels = _sorted_voxels(dose_gy, labels, voi_ids, None)
    dose_at = _dose_at_volume(voxels, pct)
    return pd.DataFrame(
        {
            "voi_id": np.repeat(voxels.ids.astype(np.int64), pct.size),
            "volume_pct": np.tile(pct, voxels.ids.size),
            "dose_gy": dose_at.ravel(),
        }
    )


def dvh(dose_gy: npt.ArrayLike, mask: npt.ArrayLike, bins: int | npt.ArrayLike = 256) -> DVH:
    """Cumulative dose-volume histogram of the voxels selected by a mask.

    Parameters
    ----------
    dose_gy : array_like of float
        Absorbed dose per voxel (Gy).
    mask : array_like of bool
        Voxels of the VOI, same shape as ``dose_gy``; at least one voxel.
    bins : int or array_like of float, default 256
        Number of dose levels (>= 2), spread evenly from ``min(0, lowest dose)`` to the
        highest dose; or the dose levels themselves (1-D, finite, strictly increasing).

    Returns
    -------
    DVH
        ``volume_fraction[i]`` is the exact fraction of voxels with dose ``>= dose_gy[i]``
        (each voxel the same volume), so the first value is 1 with default levels and the
        curve is non-increasing; it is 0 beyond the highest dose.

    Raises
    ------
    ValueError
        If shapes differ, the mask is not boolean or empty, a dose in the mask is not
        finite, or ``bins`` is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> curve = dvh(np.array([1.0, 2.0, 3.0, 4.0]), np.ones(4, bool), bins=[0, 2, 4, 5])
    >>> curve.volume_fraction.tolist()
    [1.0, 0.75, 0.25, 0.0]
    """
    dose = _dose_array(dose_gy)
    sel = np.asarray(mask)
    if sel.dtype != np.bool_:
        raise ValueError(f"mask must be a boolean array, got dtype {sel.dtype}")
    if sel.shape != dose.shape:
        raise ValueError(f"mask shape {sel.shape} differs from dose_gy shape {dose.shape}")
    values = np.sort(dose[sel])
    if values.size == 0:
        raise ValueError("mask selects no voxel")
    _check_finite(values, "dose_gy", "inside the mask")
    if np.ndim(bins) == 0:
        n_levels = int(bins)  # type: ignore[arg-type]
        if n_levels != bins or n_levels < 2:
            raise ValueError(f"bins must be an integer >= 2 or an array of levels, got {bins!r}")
        levels = np.linspace(min(0.0, values[0]), values[-1], n_levels)
    else:
        levels = np.asarray(bins, dtype=np.float64)
        if levels.ndim != 1 or levels.size < 1 or not np.all(np.isfinite(levels)):
            raise ValueError("bins must be a 1-D array of finite dose levels")
        if np.any(np.diff(levels) <= 0):
            raise ValueError("bins must be strictly increasing")
    above = values.size - np.searchsorted(values, levels, side="left")
    return DVH(levels, above / values.size)


def _check_voi_dose(voi_dose: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(voi_dose, pd.DataFrame):
        raise ValueError(f"voi_dose must be a pandas DataFrame, got {type(voi_dose).__name__}")
    missing = [c for c in _REQUIRED_VOI_DOSE if c not in voi_dose.columns]
    if missing:
        raise ValueError(f"voi_dose lacks column(s) {missing}")
    df = voi_dose[list(_REQUIRED_VOI_DOSE)].reset_index(drop=True)
    for col in ("patient_id", "cycle", "workflow", "voi_id", "voi_kind"):
        if df[col].isna().any():
            raise ValueError(f"voi_dose column {col!r} has missing values")
    for col in ("cycle", "voi_id"):
        if not pd.api.types.is_integer_dtype(df[col]):
            raise ValueError(f"voi_dose column {col!r} must be integer, got {df[col].dtype}")
    df["cycle"] = df["cycle"].astype(np.int64)
    if (df["cycle"] < 1).any():
        raise ValueError("voi_dose column 'cycle' must be >= 1")
    kinds = {"lesion", "organ", "body", "background"}
    bad_kind = ~df["voi_kind"].isin(kinds)
    if bad_kind.any():
        raise ValueError(
            f"voi_dose column 'voi_kind' has values {sorted(set(df['voi_kind'][bad_kind]))} "
            f"outside {sorted(kinds)}"
        )
    dup = df.duplicated([*_KEYS, "voi_id"])
    if dup.any():
        raise ValueError(
            f"voi_dose has {int(dup.sum())} duplicated (patient_id, cycle, workflow, voi_id) rows"
        )
    varying = df.groupby(_KEYS, sort=False)[["center", "workflow_version"]].nunique(dropna=False)
    for col in ("center", "workflow_version"):
        if (varying[col] > 1).any():
            raise ValueError(f"voi_dose column {col!r} varies within a patient x cycle x workflow")
    lesion = df["voi_kind"] == "lesion"
    for col in ("dose_mean_gy", "mass_g"):
        values = pd.to_numeric(df.loc[lesion, col], errors="coerce").to_numpy(np.float64)
        ok = np.isfinite(values) & ((values > 0) if col == "mass_g" else True)
        if not ok.all():
            need = "finite and > 0" if col == "mass_g" else "finite"
            raise ValueError(
                f"voi_dose column {col!r} must be {need} for lesions; "
                f"{int((~ok).sum())} lesion row(s) are not"
            )
    return df


def _lesion_stats(frame: pd.DataFrame, by: list[str], value: str, prefix: str) -> pd.DataFrame:
    stats = frame.groupby(by, sort=True)[value].agg(list(_LESION_STATS))
    return stats.rename(columns={s: f"{prefix}_{s}_gy" for s in _LESION_STATS})


def _check_arguments(cumulative_rule: str, planned_cycles: int) -> None:
    if cumulative_rule not in CUMULATIVE_RULES:
        raise ValueError(
            f"cumulative_rule must be one of {list(CUMULATIVE_RULES)}, got {cumulative_rule!r}"
        )
    if (
        isinstance(planned_cycles, bool)
        or not isinstance(planned_cycles, int | np.integer)
        or planned_cycles < 1
    ):
        raise ValueError(f"planned_cycles must be an integer >= 1, got {planned_cycles!r}")


def _lesion_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The lesion rows of a checked ``voi_dose`` table, doses and masses as float64."""
    lesions = df[df["voi_kind"] == "lesion"].copy()
    lesions["dose_mean_gy"] = lesions["dose_mean_gy"].astype(np.float64)
    lesions["mass_g"] = lesions["mass_g"].astype(np.float64)
    return lesions


def _per_cycle_indices(df: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """Step 1: lesion statistics and global mean dose of every patient x cycle x workflow.

    Indexed by (patient_id, cycle, workflow); every group of ``df`` gets a row, with
    ``n_lesions`` 0 and null doses when it holds no lesion.
    """
    base = df.groupby(_KEYS, sort=True)[["center", "workflow_version"]].first()
    per_cycle = _lesion_stats(lesions, _KEYS, "dose_mean_gy", "lesion_dose")
    weighted = lesions.assign(dose_x_mass=lesions["dose_mean_gy"] * lesions["mass_g"])
    sums = weighted.groupby(_KEYS, sort=True)[["dose_x_mass", "mass_g"]].sum()
    per_cycle["global_mean_dose_gy"] = sums["dose_x_mass"] / sums["mass_g"]
    per_cycle["n_lesions"] = lesions.groupby(_KEYS, sort=True).size()
    out = base.join(per_cycle, how="left")
    out["n_lesions"] = out["n_lesions"].fillna(0)
    return out


def _by_planned_cycle(values: pd.Series, planned_cycles: int) -> pd.DataFrame:
    """Pivot a series indexed by (..., cycle) to one column per planned cycle 1..N (NaN: not
    measured)."""
    wide = values.unstack("cycle")
    return wide.reindex(columns=pd.RangeIndex(1, planned_cycles + 1, name="cycle"))


def _fill_inside(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each row's missing values between two present ones, interpolated linearly in ``x``.

    The numbers of pandas' ``DataFrame.interpolate(axis=1, method="index",
    limit_area="inside")``, which calls :func:`numpy.interp` once per row (a Python-level
    loop: 0.3-0.6 s per workflow on the Monte Carlo replicates of the patient indices),
    here as one :func:`numpy.interp` call over all rows: row ``r`` is shifted to
    ``x + r * span`` with ``span`` wider than ``x``'s range, so that every missing value
    lies between the present values of its own row. The shifted abscissae are integers
    exactly representable in float64 (cycle numbers), so the differences ``x - x_j`` and
    ``x_{j+1} - x_j`` that :func:`numpy.interp` forms are those of the row alone and every
    filled value is the same bits. Values before a row's first or after its last present
    value stay NaN.

    Parameters
    ----------
    values : numpy.ndarray
        (rows, columns) float64, NaN where missing.
    x : numpy.ndarray
        The columns' positions (increasing integers).

    Returns
    -------
    numpy.ndarray
        A filled copy of ``values``.
    """
    out = np.array(values, dtype=np.float64, copy=True)
    present = ~np.isnan(out)
    if out.size == 0:
        return out
    after_first = np.logical_or.accumulate(present, axis=1)
    before_last = np.logical_or.accumulate(present[:, ::-1], axis=1)[:, ::-1]
    inside = ~present & after_first & before_last
    if not inside.any():
        return out
    if not (np.all(np.diff(x) > 0) and np.all(x == np.round(x))):
        raise ValueError(f"column positions must be increasing integers, got {x.tolist()}")
    span = float(x[-1] - x[0] + 1)
    shifted = x[None, :] + span * np.arange(out.shape[0], dtype=np.float64)[:, None]
    if shifted.size and abs(float(shifted[-1, -1])) >= 2.0**52:
        raise ValueError("too many rows to interpolate exactly in float64")
    out[inside] = np.interp(shifted[inside], shifted[present], out[present])
    return out


def _fill_nearest(values: np.ndarray) -> np.ndarray:
    """Each row's leading and trailing NaNs filled with its nearest present value.

    pandas' ``ffill(axis=1).bfill(axis=1)``: copies, no arithmetic; a row with no
    present value stays NaN.
    """
    if values.size == 0:
        return values.copy()
    columns = np.arange(values.shape[1])
    rows = np.arange(values.shape[0])[:, None]
    present = ~np.isnan(values)
    last = np.maximum.accumulate(np.where(present, columns, 0), axis=1)
    forward = values[rows, last]  # a leading NaN points at column 0, itself NaN
    present = ~np.isnan(forward)
    n = values.shape[1] - 1
    nxt = np.minimum.accumulate(np.where(present, columns, n)[:, ::-1], axis=1)[:, ::-1]
    return forward[rows, nxt]


def _treatment_total(
    wide: pd.DataFrame, measured: pd.DataFrame, rule: str
) -> tuple[pd.Series, pd.Series]:
    """Step 2: total over the planned cycles of each row of ``wide``, and its basis.

    ``wide`` holds one column per planned cycle (NaN where the value is missing);
    ``measured`` (same shape, bool) says which cycles the row's patient x workflow
    measured. A row's values must be present exactly in its measured cycles, otherwise
    its total is incomplete (a lesion missing from a measured cycle is not guessed).
    Vectorised over rows (no loop).
    """
    values = wide.to_numpy(np.float64)
    meas = measured.to_numpy(bool)
    n_planned = values.shape[1]
    consistent = (np.isfinite(values) == meas).all(axis=1) & meas.any(axis=1)
    complete = consistent & meas.all(axis=1)
    ends = consistent & meas[:, 0] & meas[:, -1]
    total = np.full(values.shape[0], np.nan)
    basis = np.full(values.shape[0], "incomplete", dtype=object)
    if rule == "milan_interpolated":
        # LUTADOSE: GTD_TOT = N x (GTD_1 + GTD_N) / 2 (cycles between interpolated linearly;
        # the sum of the linear interpolation over 1..N is exactly this)
        total[ends] = n_planned * (values[ends, 0] + values[ends, -1]) / 2.0
        basis[ends] = "measured_sum" if n_planned <= 2 else "interpolated"
        return pd.Series(total, index=wide.index), pd.Series(basis, index=wide.index)
    total[complete] = values[complete].sum(axis=1)
    basis[complete] = "measured_sum"
    if rule in ("sum_interpolated", "sum_extrapolated"):
        x = wide.columns.to_numpy(np.float64)
        if rule == "sum_extrapolated":
            gap = consistent & ~complete
            extrap = gap & ~(meas[:, 0] & meas[:, -1])
        else:
            gap = ends & ~complete
            extrap = np.zeros_like(gap)
        # only the rows that use the filled values are filled (each row is filled alone)
        filled = _fill_inside(np.where(meas[gap], values[gap], np.nan), x)
        if rule == "sum_extrapolated":
            filled = _fill_nearest(filled)
        total[gap] = filled.sum(axis=1)
        basis[gap] = "interpolated"
        basis[extrap] = "extrapolated"
    return pd.Series(total, index=wide.index), pd.Series(basis, index=wide.index)


def _measured_cycles_text(measured: pd.DataFrame) -> pd.Series:
    """The measured cycles of each row as text ("1,2,4"), from a boolean row × cycle frame.

    Formed once per distinct pattern of measured cycles (at most 2^N), not once per row:
    the Monte Carlo of the index uncertainties calls this on hundreds of replicate rows.
    """
    flags = measured.to_numpy(dtype=bool)
    if not len(flags):
        return pd.Series([], index=measured.index, dtype=object)
    patterns, inverse = np.unique(flags, axis=0, return_inverse=True)
    cycles = measured.columns.to_numpy()
    texts = np.array([",".join(str(c) for c in cycles[row]) for row in patterns], dtype=object)
    return pd.Series(texts[inverse.reshape(-1)], index=measured.index)


def _cumulative_indices(
    per_cycle: pd.DataFrame, lesions: pd.DataFrame, rule: str, planned_cycles: int
) -> pd.DataFrame:
    """Step 3: the cumulative columns of every patient x workflow (total over the plan).

    The global mean dose is totalled from the per-cycle global mean doses; each lesion
    (matched across cycles by ``voi_id``) is totalled from its per-cycle doses, and the
    cumulative lesion statistics are taken over the lesions whose total is defined.
    """
    measured_cycles = per_cycle.index.to_frame(index=False)[_KEYS].assign(measured=True)
    measured = (
        _by_planned_cycle(measured_cycles.set_index(_KEYS)["measured"], planned_cycles)
        .reindex(columns=pd.RangeIndex(1, planned_cycles + 1, name="cycle"))
        .notna()
    )
    gmd = _by_planned_cycle(per_cycle["global_mean_dose_gy"], planned_cycles)
    gmd_total, basis = _treatment_total(gmd, measured.reindex(gmd.index), rule)
    lesion_dose = lesions.set_index([*_PAIR, "voi_id", "cycle"])["dose_mean_gy"]
    per_lesion = _by_planned_cycle(lesion_dose, planned_cycles)
    lesion_measured = measured.reindex(per_lesion.index.droplevel("voi_id"))
    lesion_measured.index = per_lesion.index
    lesion_total, _ = _treatment_total(per_lesion, lesion_measured, rule)
    defined = lesion_total.dropna().rename("dose_mean_gy").reset_index()
    out = pd.DataFrame(index=measured.index)
    out = out.join(_lesion_stats(defined, _PAIR, "dose_mean_gy", "cum_lesion_dose"))
    out["cum_global_mean_dose_gy"] = gmd_total
    out["cum_basis"] = basis.reindex(out.index).fillna("incomplete")
    out["cum_cycles_planned"] = planned_cycles
    out["cum_cycles_measured"] = measured.sum(axis=1)
    incomplete = out["cum_basis"] == "incomplete"
    cum_cols = [c for c in out.columns if c.startswith("cum_") and c.endswith("_gy")]
    out.loc[incomplete, cum_cols] = np.nan
    out["cum_n_cycles"] = np.where(incomplete, 0, planned_cycles)
    cycles_text = _measured_cycles_text(measured)
    # incomplete because a needed cycle is missing, or because a measured cycle has no
    # lesion dose (no lesion, or lesions not matched across the measured cycles)
    missing = gmd.isna().to_numpy() & measured.reindex(gmd.index).to_numpy()
    no_dose = pd.Series(missing.any(axis=1), index=gmd.index).reindex(out.index, fill_value=False)
    why = np.where(
        no_dose,
        ": incomplete, a measured cycle has no lesion dose (cycles ",
        ": incomplete, cycles ",
    )
    out["cum_rule"] = np.where(
        incomplete,
        rule
        + why
        + cycles_text.reindex(out.index).astype(str)
        + f" measured of 1-{planned_cycles} planned"
        + np.where(no_dose, ")", ""),
        rule,
    )
    return out


def patient_index(
    voi_dose: pd.DataFrame,
    cumulative_rule: str = "sum",
    planned_cycles: int = DEFAULT_PLANNED_CYCLES,
) -> pd.DataFrame:
    """Patient-level lesion dose indices per patient x cycle x workflow, with cumulatives.

    Three named steps: :func:`_per_cycle_indices` (lesion statistics and global mean dose
    of each cycle), :func:`_cumulative_indices` (the treatment totals, with
    :func:`_treatment_total` applying the rule), and the assembly in schema order.

    Parameters
    ----------
    voi_dose : pandas.DataFrame
        Rows of the ``voi_dose`` table (at least ``patient_id``, ``cycle``, ``center``,
        ``workflow``, ``workflow_version``, ``voi_id``, ``voi_kind``, ``dose_mean_gy``,
        ``mass_g``). Only lesions (``voi_kind == "lesion"``) enter the dose indices; every
        patient x cycle x workflow present gets a row, with ``n_lesions`` 0 and null lesion
        doses when it has no lesion.
    cumulative_rule : {"sum", "sum_interpolated", "sum_extrapolated", "milan_interpolated"}
        How the cumulative columns — always the **total over the planned treatment**,
        cycles ``1..planned_cycles`` — are formed from the cycles a patient x workflow
        measured (lesions matched across cycles by ``voi_id``). ``cum_basis`` records how:

        * every rule: all planned cycles measured → their sum (``measured_sum``);
        * ``"sum"``: otherwise ``incomplete`` (null);
        * ``"sum_interpolated"``: a missing cycle between two measured ones is linearly
          interpolated between them (``interpolated``); a missing first or last planned
          cycle leaves it ``incomplete``;
        * ``"sum_extrapolated"``: as ``"sum_interpolated"``, and a missing leading or
          trailing cycle takes the value of the nearest measured cycle (``extrapolated``);
        * ``"milan_interpolated"``: Maccauro 2024 (LUTADOSE), GTD_TOT = 4 x (GTD1 + GTD4)
          / 2 [inferred, METHODS.md], generalised to ``N x (x_1 + x_N) / 2`` — which is the
          sum over 1..N of the linear interpolation between cycles 1 and N — whatever
          other cycles were measured (``interpolated``; ``measured_sum`` when N <= 2);
          ``incomplete`` without cycle 1 or cycle N.

        A lesion enters the cumulative lesion statistics only when it is present in every
        cycle its patient x workflow measured (a lesion missing from a measured cycle is not
        guessed). The cumulative columns are the same on every row of a patient x workflow.
    planned_cycles : int, default 4
        Number of planned cycles N (Lutathera: 4 cycles, SmPC). A measured cycle above N
        is refused.

    Returns
    -------
    pandas.DataFrame
        The columns of the ``patient_index`` table of the results schema, in schema order,
        sorted by (patient_id, cycle, workflow), with a RangeIndex. The lesion statistics
        are taken over each lesion's ``dose_mean_gy``; ``global_mean_dose_gy`` is
        ``sum(D_i m_i) / sum(m_i)`` with ``m_i`` the lesion ``mass_g`` (Maccauro 2024).
        ``cum_cycles_planned`` is N, ``cum_cycles_measured`` the number of cycles measured
        within 1..N, ``cum_basis`` one of :data:`CUMULATIVE_BASES`, ``cum_n_cycles`` N
        when the total is defined (0 when incomplete) and ``cum_rule`` the rule (with
        the reason when incomplete).

    Raises
    ------
    ValueError
        If a required column is missing, keys are missing or duplicated, ``center`` or
        ``workflow_version`` vary within a group, a lesion dose is not finite or a lesion
        mass not positive, the rule is unknown, or a cycle exceeds ``planned_cycles``.

    Examples
    --------
    >>> import pandas as pd
    >>> rows = pd.DataFrame({
    ...     "patient_id": "P1", "cycle": [1, 1, 4, 4], "center": "C", "workflow": "milan",
    ...     "workflow_version": "1", "voi_id": [5, 6, 5, 6], "voi_kind": "lesion",
    ...     "dose_mean_gy": [10.0, 30.0, 6.0, 14.0], "mass_g": [3.0, 1.0, 3.0, 1.0]})
    >>> out = patient_index(rows, cumulative_rule="milan_interpolated")
    >>> out[["cycle", "global_mean_dose_gy", "cum_global_mean_dose_gy", "cum_basis"]]
       cycle  global_mean_dose_gy  cum_global_mean_dose_gy     cum_basis
    0      1                 15.0                     46.0  interpolated
    1      4                  8.0                     46.0  interpolated
    """
    _check_arguments(cumulative_rule, planned_cycles)
    df = _check_voi_dose(voi_dose)
    if (df["cycle"] > planned_cycles).any():
        raise ValueError(
            f"voi_dose has cycle {int(df['cycle'].max())} but the treatment plans "
            f"{planned_cycles} cycles: set planned_cycles (CLI: --planned-cycles) to the "
            "number of planned cycles"
        )
    lesions = _lesion_rows(df)
    per_cycle = _per_cycle_indices(df, lesions)
    cumulative = _cumulative_indices(per_cycle, lesions, cumulative_rule, int(planned_cycles))
    return _assemble(per_cycle, cumulative)


#: Columns of the ``patient_index`` table, in schema order.
PATIENT_INDEX_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "cycle",
    "center",
    "workflow",
    "workflow_version",
    "n_lesions",
    *(f"lesion_dose_{s}_gy" for s in _LESION_STATS),
    "global_mean_dose_gy",
    "cum_n_cycles",
    *(f"cum_lesion_dose_{s}_gy" for s in _LESION_STATS),
    "cum_global_mean_dose_gy",
    "cum_rule",
    "cum_cycles_planned",
    "cum_cycles_measured",
    "cum_basis",
)


def _assemble(per_cycle: pd.DataFrame, cumulative: pd.DataFrame) -> pd.DataFrame:
    """Step 4: per-cycle rows joined with their patient x workflow totals, schema order."""
    out = per_cycle.join(cumulative, on=_PAIR, how="left").reset_index()
    for col in ("cycle", "n_lesions", "cum_n_cycles", "cum_cycles_planned", "cum_cycles_measured"):
        out[col] = out[col].astype(np.int32)
    for col in PATIENT_INDEX_COLUMNS:
        if col.endswith("_gy"):
            out[col] = out[col].astype(np.float64)
    columns = list(PATIENT_INDEX_COLUMNS)
    return out[columns].sort_values(_KEYS, kind="stable").reset_index(drop=True)


def fill_cumulative_basis(patient_index: pd.DataFrame) -> pd.DataFrame:
    """Derive ``cum_cycles_planned``, ``cum_cycles_measured`` and ``cum_basis`` where null.

    Files written before schema 1.2.0 lack these columns (read as null). In them the
    cumulative columns of the row of cycle ``c`` covered cycles ``1..c``, so the derived
    values are: planned = ``c``; measured = ``cum_n_cycles`` (rule ``sum``) or the row's
    cycle count as recorded; basis ``measured_sum`` when rule ``sum`` covered every cycle
    ``1..c``, ``interpolated`` for a defined ``milan_interpolated`` total at ``c > 2``,
    otherwise ``incomplete`` — and the cumulative values of an incomplete row are set to
    null (a partial sum is not a treatment total). Rows that already have a basis are
    returned unchanged.

    Parameters
    ----------
    patient_index : pandas.DataFrame
        A ``patient_index`` table, possibly from older files.

    Returns
    -------
    pandas.DataFrame
        A copy with the three columns filled.
    """
    out = patient_index.copy()
    for col in ("cum_cycles_planned", "cum_cycles_measured", "cum_basis"):
        if col not in out.columns:
            out[col] = pd.NA
    old = out["cum_basis"].isna()
    if not old.any():
        return out
    cycle = out.loc[old, "cycle"].astype("int64")
    rule = out.loc[old, "cum_rule"].astype(str) if "cum_rule" in out else "sum"
    n_cov = out.loc[old, "cum_n_cycles"].astype("int64") if "cum_n_cycles" in out else cycle
    undefined = pd.Series(rule, index=cycle.index).str.contains(":")
    is_sum = pd.Series(rule, index=cycle.index).str.fullmatch("sum")
    basis = np.where(
        is_sum & (n_cov == cycle),
        "measured_sum",
        np.where(
            ~is_sum & ~undefined, np.where(cycle > 2, "interpolated", "measured_sum"), "incomplete"
        ),
    )
    out.loc[old, "cum_cycles_planned"] = cycle
    out.loc[old, "cum_cycles_measured"] = n_cov.where(is_sum, np.minimum(cycle, 2))
    out.loc[old, "cum_basis"] = basis
    cum_cols = [c for c in out.columns if c.startswith("cum_") and c.endswith("_gy")]
    out.loc[old & (out["cum_basis"] == "incomplete"), cum_cols] = np.nan
    out["cum_cycles_planned"] = out["cum_cycles_planned"].astype("Int32")
    out["cum_cycles_measured"] = out["cum_cycles_measured"].astype("Int32")
    return out
