"""Proficiency statistics of an intercomparison, after ISO 13528:2015.

Every VOI of every patient-cycle is one *proficiency-test item*; each participating
workflow (a centre's software, imported, or a built-in adapter) reports one value of a dose
index for it. Per item:

* **assigned value** ``x_pt``: the phantom truth when the results hold the reference
  workflow (``truth``, ISO 13528 §7.4-7.5: a known value, standard uncertainty
  ``u(x_pt) = 0`` here because it is computed, not measured), else the robust mean ``x*``
  of the participants by Algorithm A (§7.7, Annex C.3.1) with
  ``u(x_pt) = 1.25 s* / sqrt(p)`` (§7.7.3, eq. 7);
* **standard deviation for proficiency assessment** ``sigma_pt``: the robust standard
  deviation ``s*`` of the participants' values for that item (§8.7: "from the data of the
  round");
* **z-score** ``z = (x - x_pt) / sigma_pt`` (§9.4) — |z| <= 2 satisfactory, 2 < |z| < 3
  questionable, |z| >= 3 unsatisfactory (§9.4.3);
* **z'-score** ``z' = (x - x_pt) / sqrt(sigma_pt^2 + u(x_pt)^2)`` (§9.5), which ISO 13528
  recommends when ``u(x_pt) > 0.3 sigma_pt``;
* **En number** ``En = (x - x_pt) / sqrt(U(x)^2 + U(x_pt)^2)`` with expanded
  uncertainties ``U = k u``, ``k = 2`` (§9.7) — only where the results carry the
  participant's standard uncertainty ``<index>_u_gy``; |En| <= 1 satisfactory.

Algorithm A (Annex C.3.1) is Huber's M-estimator with iterated scale: start from the median
and ``1.483 × MAD``, winsorise at ``x* ± 1.5 s*``, update ``x*`` as the mean and ``s*`` as
``1.134 ×`` the standard deviation of the winsorised values, repeat until nothing changes.
It is vectorised here over all items at once (values in a NaN-padded matrix).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "ALGORITHM_A_K",
    "EN_COVERAGE_FACTOR",
    "MAD_FACTOR",
    "SD_FACTOR",
    "AlgorithmA",
    "algorithm_a",
    "participant_report",
    "proficiency_scores",
    "proficiency_summary",
    "write_participant_reports",
]

#: Winsorisation at x* ± 1.5 s* (ISO 13528:2015, C.3.1, eq. C.3).
ALGORITHM_A_K = 1.5
#: Initial s* = 1.483 × median |x_i − x*| (ISO 13528:2015, C.3.1, eq. C.2).
MAD_FACTOR = 1.483
#: s* = 1.134 × SD of the winsorised values (ISO 13528:2015, C.3.1, eq. C.6).
SD_FACTOR = 1.134
#: u(x_pt) = 1.25 s* / sqrt(p) for a consensus value (ISO 13528:2015, 7.7.3, eq. 7).
CONSENSUS_U_FACTOR = 1.25
#: Coverage factor of the expanded uncertainties in En numbers (ISO 13528:2015, 9.7).
EN_COVERAGE_FACTOR = 2.0
#: z-score classes (ISO 13528:2015, 9.4.3).
Z_SATISFACTORY, Z_UNSATISFACTORY = 2.0, 3.0


@dataclass(frozen=True)
class AlgorithmA:
    """Robust mean and SD of each set of values, and how Algorithm A got there.

    Attributes
    ----------
    x_star, s_star : numpy.ndarray
        Robust mean and robust standard deviation per set (NaN for a set with no value).
    n : numpy.ndarray
        Number of values per set.
    n_iter : int
        Iterations until no value of any set changed (or ``max_iter``).
    trace : list of (numpy.ndarray, numpy.ndarray)
        ``(x*, s*)`` after the start (median, 1.483 MAD) and after each iteration.
    """

    x_star: np.ndarray
    s_star: np.ndarray
    n: np.ndarray
    n_iter: int
    trace: list[tuple[np.ndarray, np.ndarray]]


def algorithm_a(values: npt.ArrayLike, *, max_iter: int = 200, rtol: float = 1e-12) -> AlgorithmA:
    """ISO 13528:2015 Algorithm A (Annex C.3.1) on each row of ``values``.

    Parameters
    ----------
    values : array_like, shape (n_sets, p) or (p,)
        One set of participant values per row; NaN pads rows with fewer values.
    max_iter : int, default 200
        Upper bound on the iterations (the standard iterates "until the process
        converges"; a few tens suffice in practice).
    rtol : float, default 1e-12
        Stop when ``x*`` and ``s*`` of every set change by less than ``rtol`` relative
        (a numerical fixed point; ISO 13528 accepts stopping at three significant figures).

    Returns
    -------
    AlgorithmA

    Examples
    --------
    The worked example of ISO 13528:2015 Annex E.3 (12 results; first iteration
    x* = 1.475, s* = 0.4072 as published):

    >>> data = [1.69, 0.74, 2.05, 1.14, 2.19, 1.39, 1.52, 1.50, 1.58, 0.80, 1.21, 1.63]
    >>> x1, s1 = algorithm_a(data).trace[1]
    >>> round(float(x1[0]), 3), round(float(s1[0]), 4)
    (1.475, 0.4072)
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2:
        raise ValueError(f"values must be 1-D or 2-D, got shape {data.shape}")
    present = np.isfinite(data)
    n = present.sum(axis=1)
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        x = np.nanmedian(np.where(present, data, np.nan), axis=1)
        s = MAD_FACTOR * np.nanmedian(np.abs(data - x[:, None]), axis=1)
    trace = [(x.copy(), s.copy())]
    active = np.ones(x.size, dtype=bool)  # sets still moving; the others are final
    for _ in range(max_iter):  # iterations, not data: vectorised over the active sets
        idx = np.flatnonzero(active)
        xa, sa, delta = x[idx], s[idx], ALGORITHM_A_K * s[idx]
        clipped = np.clip(data[idx], (xa - delta)[:, None], (xa + delta)[:, None])
        clipped = np.where(present[idx], clipped, np.nan)
        with np.errstate(all="ignore"), _quiet_nan_warnings():
            new_x = np.nanmean(clipped, axis=1)
            new_s = SD_FACTOR * np.nanstd(clipped, axis=1, ddof=1)
        new_s = np.where(n[idx] > 1, new_s, 0.0)
        still = ~(
            np.isclose(new_x, xa, rtol=rtol, atol=0.0, equal_nan=True)
            & np.isclose(new_s, sa, rtol=rtol, atol=0.0, equal_nan=True)
        )
        x, s = x.copy(), s.copy()
        x[idx], s[idx] = new_x, new_s
        trace.append((x, s))
        active[idx[~still]] = False
        if not active.any():
            break
    return AlgorithmA(x_star=x, s_star=s, n=n, n_iter=len(trace) - 1, trace=trace)


@contextlib.contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """Silence numpy's all-NaN-slice RuntimeWarnings (empty sets give NaN by design)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


_ITEM = ["patient_id", "cycle", "voi_id"]


def proficiency_scores(
    voi_dose: pd.DataFrame,
    *,
    index: str = "dose_mean_gy",
    reference: str | None = "truth",
    kinds: tuple[str, ...] = ("lesion",),
) -> pd.DataFrame:
    """z-scores, z'-scores and En numbers of every participant for every item.

    Parameters
    ----------
    voi_dose : pandas.DataFrame
        Merged ``voi_dose`` rows of the participants (and of ``reference`` if present).
    index : str, default "dose_mean_gy"
        The dose index assessed.
    reference : str or None, default "truth"
        Workflow whose value is the assigned value where it reports the item (the phantom
        truth); ``None`` or absent → the Algorithm A consensus of the participants.
    kinds : tuple of str, default ("lesion",)
        VOI kinds assessed.

    Returns
    -------
    pandas.DataFrame
        One row per participant × item: ``patient_id, cycle, voi_id, voi_name, workflow,
        value, assigned_value, assigned_source`` ("reference" or "consensus"),
        ``u_assigned, sigma_pt, n_participants, z, z_prime, en, u_value, z_class``, in Gy
        for the dose columns. ``sigma_pt`` is Algorithm A's s* of the participants;
        ``z``/``z_prime`` are NaN where it is 0 (all participants equal) and ``en`` where
        no uncertainty ``<index>_u_gy`` is given.
    """
    if index not in voi_dose.columns:
        raise ValueError(f"voi_dose has no column {index!r}")
    rows = voi_dose[voi_dose["voi_kind"].isin(kinds)].dropna(subset=[index])
    is_ref = rows["workflow"] == reference if reference else pd.Series(False, index=rows.index)
    participants = rows[~is_ref]
    if participants.empty:
        raise ValueError("no participant reports the index for any item")
    u_col = index.removesuffix("_gy") + "_u_gy"
    wide = participants.pivot_table(index=_ITEM, columns="workflow", values=index, aggfunc="first")
    robust = algorithm_a(wide.to_numpy())
    items = pd.DataFrame(
        {"x_star": robust.x_star, "s_star": robust.s_star, "p": robust.n}, index=wide.index
    )
    ref_values = rows[is_ref].set_index(_ITEM)[index]
    items["assigned_value"] = ref_values.reindex(items.index)
    has_ref = items["assigned_value"].notna()
    items["assigned_source"] = np.where(has_ref, "reference", "consensus")
    items.loc[~has_ref, "assigned_value"] = items.loc[~has_ref, "x_star"]
    items["u_assigned"] = np.where(
        has_ref, 0.0, CONSENSUS_U_FACTOR * items["s_star"] / np.sqrt(items["p"])
    )
    out = participants.merge(items.reset_index(), on=_ITEM, how="left")
    sigma = out["s_star"].where(out["s_star"] > 0)
    diff = out[index] - out["assigned_value"]
    u_value = (
        out[u_col].astype(np.float64)
        if u_col in out.columns
        else pd.Series(np.nan, index=out.index)
    )
    z = diff / sigma
    expanded = EN_COVERAGE_FACTOR * np.sqrt(u_value**2 + out["u_assigned"] ** 2)
    result = pd.DataFrame(
        {
            "patient_id": out["patient_id"],
            "cycle": out["cycle"].astype(np.int64),
            "voi_id": out["voi_id"].astype(np.int64),
            "voi_name": out["voi_name"] if "voi_name" in out.columns else "",
            "workflow": out["workflow"],
            "value": out[index].astype(np.float64),
            "assigned_value": out["assigned_value"].astype(np.float64),
            "assigned_source": out["assigned_source"],
            "u_assigned": out["u_assigned"].astype(np.float64),
            "sigma_pt": out["s_star"].astype(np.float64),
            "n_participants": out["p"].astype(np.int64),
            "z": z,
            "z_prime": diff / np.sqrt(sigma**2 + out["u_assigned"] ** 2),
            "en": diff / expanded.where(expanded > 0),
            "u_value": u_value,
        }
    )
    absz = result["z"].abs()
    result["z_class"] = np.select(
        [absz.isna(), absz <= Z_SATISFACTORY, absz < Z_UNSATISFACTORY],
        ["undefined", "satisfactory", "questionable"],
        "unsatisfactory",
    )
    result.attrs = {"index": index}
    return result.sort_values(["workflow", *_ITEM], kind="stable").reset_index(drop=True)


def proficiency_summary(scores: pd.DataFrame, index: str = "dose_mean_gy") -> pd.DataFrame:
    """Per participant, rows in the ``agreement`` table's form (workflow_b = the assigned value).

    Statistics: ``z_satisfactory_fraction``, ``z_unsatisfactory_fraction`` (§9.4.3),
    ``z_rms`` (root mean square of z), ``en_satisfactory_fraction`` (|En| <= 1, where
    uncertainties were given).
    """
    rows = []
    for workflow, part in scores.groupby("workflow", sort=True):  # one row per participant
        z = part["z"].dropna()
        en = part["en"].dropna()
        source = "truth" if (part["assigned_source"] == "reference").all() else "assigned"
        common = {
            "index": index,
            "level": "lesion",
            "cycle": pd.NA,
            "workflow_a": str(workflow),
            "workflow_b": source,
            "ci_low": np.nan,
            "ci_high": np.nan,
            "ci_level": np.nan,
            "unit": "1",
            "method": "ISO 13528:2015 9.4 (z, sigma_pt = Algorithm A s*), 9.7 (En, k = 2)",
        }
        for statistic, estimate, n in (
            ("z_satisfactory_fraction", float((z.abs() <= Z_SATISFACTORY).mean()), len(z)),
            ("z_unsatisfactory_fraction", float((z.abs() >= Z_UNSATISFACTORY).mean()), len(z)),
            ("z_rms", float(np.sqrt((z**2).mean())), len(z)),
            ("en_satisfactory_fraction", float((en.abs() <= 1).mean()), len(en)),
        ):
            rows.append(
                {
                    **common,
                    "statistic": statistic,
                    "estimate": estimate if n else np.nan,
                    "n_pairs": n,
                }
            )
    return pd.DataFrame(rows)


def participant_report(scores: pd.DataFrame, workflow: str) -> str:
    """A short Markdown report for one participant: scores per item, counts by class."""
    part = scores[scores["workflow"] == workflow]
    if part.empty:
        raise ValueError(f"no scores for workflow {workflow!r}")
    index = scores.attrs.get("index", "dose_mean_gy")
    counts = part["z_class"].value_counts()
    source = sorted(set(part["assigned_source"]))
    lines = [
        f"# Intercomparison — participant report: {workflow}",
        "",
        f"Index assessed: `{index}` of {len(part)} lesion(s). Assigned value: "
        + (
            "the phantom truth (ISO 13528:2015 §7.5)"
            if source == ["reference"]
            else "the robust mean of the participants, Algorithm A (ISO 13528:2015 §7.7, C.3.1)"
            if source == ["consensus"]
            else "the phantom truth where known, else the Algorithm A robust mean"
        )
        + "; sigma_pt = Algorithm A robust SD of the participants (§8.7).",
        "",
        "| z class (§9.4.3) | items |",
        "|---|---|",
        *(
            f"| {c} | {int(counts.get(c, 0))} |"
            for c in ("satisfactory", "questionable", "unsatisfactory", "undefined")
        ),
        "",
        "| patient | cycle | VOI | value (Gy) | assigned (Gy) | sigma_pt (Gy) | z | En |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in part.itertuples(index=False):  # one line per lesion of the report
        en = "—" if pd.isna(row.en) else f"{row.en:.2f}"
        z = "—" if pd.isna(row.z) else f"{row.z:.2f}"
        lines.append(
            f"| {row.patient_id} | {row.cycle} | {row.voi_name} | {row.value:.2f} | "
            f"{row.assigned_value:.2f} | {row.sigma_pt:.2f} | {z} | {en} |"
        )
    p_min = int(part["n_participants"].min())
    if p_min < 3:
        lines += [
            "",
            f"Note: sigma_pt is the robust SD of as few as {p_min} participants' values, "
            "so it is poorly determined and the z-scores must be read with care (ISO "
            "13528:2022 §5.4, small numbers of participants).",
        ]
    lines += [
        "",
        "|z| <= 2 satisfactory, 2 < |z| < 3 questionable, |z| >= 3 unsatisfactory; "
        "|En| <= 1 satisfactory (En only where your standard uncertainty was reported).",
        "",
    ]
    return "\n".join(lines)


def write_participant_reports(
    scores: pd.DataFrame, out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> list[Path]:
    """One ``<workflow>.md`` report per participant (atomic writes)."""
    from harmonize._fs import write_bytes_atomic

    out = Path(out_dir)
    return [
        write_bytes_atomic(
            out / f"{workflow}.md",
            participant_report(scores, str(workflow)).encode("utf-8"),
            overwrite,
        )
        for workflow in sorted(scores["workflow"].unique())
    ]
