"""Published dose cutoffs as data: classification agreement and cutoff translation.

The packaged table is ``harmonize/data/cutoffs.csv``; its provenance (and the one assumed
interpretation, ``hebert2024_cum``) is documented in ``harmonize/data/CUTOFFS.md``.
"""

from __future__ import annotations

import itertools
import math
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from harmonize.compare._common import MIN_PAIRS, CompareError, check_ci_level
from harmonize.compare.agreement import LESION_KEYS, PATIENT_KEYS
from harmonize.compare.kappa import cohen_kappa, fleiss_kappa
from harmonize.compare.regression import deming_from_moments, passing_bablok

__all__ = [
    "CUTOFF_COLUMNS",
    "CutoffAgreement",
    "CutoffTranslation",
    "cutoff_agreement",
    "load_cutoffs",
    "translate_cutoff",
]

#: Required columns of a cutoff table.
CUTOFF_COLUMNS = (
    "key",
    "study",
    "centre",
    "source",
    "source_doi",
    "index",
    "cycle",
    "operator",
    "cutoff_gy",
    "interpretation",
    "note",
)
_OPS: dict[str, Callable[[NDArray[np.float64], float], NDArray[np.bool_]]] = {
    ">=": operator.ge,
    ">": operator.gt,
}


def load_cutoffs(path: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Read and validate a cutoff table (default: the packaged ``cutoffs.csv``).

    Parameters
    ----------
    path : path-like, optional
        A CSV with the columns ``CUTOFF_COLUMNS``.

    Returns
    -------
    pandas.DataFrame
        One row per cutoff; ``cutoff_gy`` float, ``cycle`` str ("1", … or "last").

    Raises
    ------
    CompareError
        Naming the file and the offending column/row.

    Examples
    --------
    >>> load_cutoffs().set_index("key").loc["mileva2024_min_c1", "cutoff_gy"]
    np.float64(35.0)
    """
    if path is None:
        src = resources.files("harmonize.data").joinpath("cutoffs.csv")
        name = "harmonize/data/cutoffs.csv"
        with resources.as_file(src) as p:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
    else:
        name = os.fspath(path)
        try:
            df = pd.read_csv(name, dtype=str, keep_default_na=False)
        except FileNotFoundError as exc:
            raise CompareError(f"cutoff file {name} not found") from exc
    missing = [c for c in CUTOFF_COLUMNS if c not in df.columns]
    if missing:
        raise CompareError(f"{name}: missing column(s) {missing}; expected {list(CUTOFF_COLUMNS)}")
    if df["key"].duplicated().any() or (df["key"] == "").any():
        raise CompareError(f"{name}: column 'key' must be unique and non-empty")
    bad_op = sorted(set(df["operator"]) - set(_OPS))
    if bad_op:
        raise CompareError(f"{name}: column 'operator' has {bad_op}; allowed: {list(_OPS)}")
    cyc_ok = df["cycle"].str.fullmatch(r"last|[1-9][0-9]*")
    if not cyc_ok.all():
        raise CompareError(
            f"{name}: column 'cycle' must be a positive integer or 'last', got "
            f"{df.loc[~cyc_ok, 'cycle'].tolist()}"
        )
    cut = pd.to_numeric(df["cutoff_gy"], errors="coerce")
    if cut.isna().any() or not np.all(np.isfinite(cut)):
        raise CompareError(f"{name}: column 'cutoff_gy' must be finite numbers")
    bad_int = sorted(set(df["interpretation"]) - {"pub", "assumed"})
    if bad_int:
        raise CompareError(
            f"{name}: column 'interpretation' must be 'pub' or 'assumed', got {bad_int}"
        )
    df["cutoff_gy"] = cut.astype(np.float64)
    return df


def _select_cycle(pi: pd.DataFrame, selector: str) -> pd.DataFrame:
    if selector == "last":
        last = pi.groupby(["patient_id", "workflow"])["cycle"].transform("max")
        return pi.loc[pi["cycle"] == last]
    return pi.loc[pi["cycle"] == int(selector)]


@dataclass(frozen=True)
class CutoffAgreement:
    """Classification agreement at published cutoffs.

    Attributes
    ----------
    classifications : pandas.DataFrame
        ``cutoff_key, index, cutoff_gy, operator, patient_id, cycle, workflow, value_gy,
        above`` — every workflow's class of every patient.
    summary : pandas.DataFrame
        One row per cutoff × workflow pair (``workflow_b == ""`` for Fleiss over all):
        ``cutoff_key, workflow_a, workflow_b, statistic, estimate, ci_low, ci_high,
        n_patients, note`` with statistics cohen_kappa / fleiss_kappa /
        raw_agreement / fraction_above_a / fraction_above_b.
    discordant : pandas.DataFrame
        ``cutoff_key, patient_id, above, below`` — patients classified differently by
        the workflows (comma-separated workflow names).
    """

    classifications: pd.DataFrame
    summary: pd.DataFrame
    discordant: pd.DataFrame


def cutoff_agreement(
    patient_index: pd.DataFrame,
    cutoffs: pd.DataFrame | None = None,
    workflows: Sequence[str] | None = None,
    *,
    ci_level: float = 0.95,
) -> CutoffAgreement:
    """Classify every patient at every cutoff by every workflow and measure agreement.

    A patient is "above" when ``value <operator> cutoff_gy`` on the cutoff's index at the
    selected cycle (``"last"`` = the patient's last cycle in that workflow). For each
    workflow pair, Cohen's kappa (CI: large-sample Wald) and raw agreement on the patients
    both classified; across all workflows, Fleiss' kappa on the patients every workflow
    classified. When kappa is undefined (every patient in one class in both workflows) the
    kappa row has NaN and the reason in ``note``; raw agreement is still given.

    Parameters
    ----------
    patient_index : pandas.DataFrame
        The ``patient_index`` table (columns patient_id, cycle, workflow and the indices).
    cutoffs : pandas.DataFrame, optional
        From :func:`load_cutoffs` (default: the packaged table).
    workflows : sequence of str, optional
        Default: all workflows in ``patient_index``.
    ci_level : float, default 0.95

    Returns
    -------
    CutoffAgreement
    """
    level = check_ci_level(ci_level)
    cuts = load_cutoffs() if cutoffs is None else cutoffs
    for col in ("patient_id", "cycle", "workflow"):
        if col not in patient_index.columns:
            raise CompareError(f"patient_index lacks column {col!r}")
    pi = patient_index
    if workflows is not None:
        pi = pi.loc[pi["workflow"].isin(list(workflows))]
    names = list(workflows) if workflows is not None else sorted(pi["workflow"].unique())
    if len(names) < 2:
        raise CompareError(f"need at least 2 workflows, found {names}")
    cls_parts, summ, disc_parts = [], [], []
    for cut in cuts.itertuples(index=False):
        if cut.index not in pi.columns:
            raise CompareError(
                f"cutoff {cut.key!r}: index column {cut.index!r} not in patient_index"
            )
        sel = _select_cycle(pi, str(cut.cycle))[["patient_id", "cycle", "workflow", cut.index]]
        sel = sel.rename(columns={cut.index: "value_gy"}).dropna(subset=["value_gy"])
        sel = sel.assign(
            cutoff_key=cut.key,
            index=cut.index,
            cutoff_gy=cut.cutoff_gy,
            operator=cut.operator,
            above=_OPS[cut.operator](sel["value_gy"].to_numpy(np.float64), cut.cutoff_gy),
        )
        cls_parts.append(sel)
        wide = sel.pivot(index="patient_id", columns="workflow", values="above").reindex(
            columns=names
        )
        for wa, wb in itertools.combinations(names, 2):
            both = wide[[wa, wb]].dropna()
            a, b = both[wa].astype(bool).to_numpy(), both[wb].astype(bool).to_numpy()
            n = int(a.size)
            base = dict(cutoff_key=cut.key, workflow_a=wa, workflow_b=wb, n_patients=n)
            raw = float(np.mean(a == b)) if n else math.nan
            summ.append(
                base
                | dict(
                    statistic="raw_agreement",
                    estimate=raw,
                    ci_low=math.nan,
                    ci_high=math.nan,
                    note="proportion classified alike",
                )
            )
            summ.append(
                base
                | dict(
                    statistic="fraction_above_a",
                    estimate=float(a.mean()) if n else math.nan,
                    ci_low=math.nan,
                    ci_high=math.nan,
                    note=f"fraction above in {wa}",
                )
            )
            summ.append(
                base
                | dict(
                    statistic="fraction_above_b",
                    estimate=float(b.mean()) if n else math.nan,
                    ci_low=math.nan,
                    ci_high=math.nan,
                    note=f"fraction above in {wb}",
                )
            )
            try:
                k = cohen_kappa(a, b, ci_level=level)
                summ.append(
                    base
                    | dict(
                        statistic="cohen_kappa",
                        estimate=k.kappa,
                        ci_low=k.ci[0],
                        ci_high=k.ci[1],
                        note="Cohen 1960, Wald CI",
                    )
                )
            except CompareError as exc:
                summ.append(
                    base
                    | dict(
                        statistic="cohen_kappa",
                        estimate=math.nan,
                        ci_low=math.nan,
                        ci_high=math.nan,
                        note=f"undefined: {exc}",
                    )
                )
        complete = wide.dropna()
        base = dict(cutoff_key=cut.key, workflow_a="all", workflow_b="", n_patients=len(complete))
        if len(names) >= 3:
            try:
                fk = fleiss_kappa(complete.astype(bool).to_numpy())
                summ.append(
                    base
                    | dict(
                        statistic="fleiss_kappa",
                        estimate=fk.kappa,
                        ci_low=math.nan,
                        ci_high=math.nan,
                        note="Fleiss 1971 (no CI)",
                    )
                )
            except CompareError as exc:
                summ.append(
                    base
                    | dict(
                        statistic="fleiss_kappa",
                        estimate=math.nan,
                        ci_low=math.nan,
                        ci_high=math.nan,
                        note=f"undefined: {exc}",
                    )
                )
        arr = complete.astype(bool).to_numpy()
        split = arr.any(axis=1) & ~arr.all(axis=1)
        if split.any():
            cols = np.array(names, dtype=object)
            disc_parts.append(
                pd.DataFrame(
                    {
                        "cutoff_key": cut.key,
                        "patient_id": complete.index[split],
                        "above": [",".join(cols[r]) for r in arr[split]],
                        "below": [",".join(cols[~r]) for r in arr[split]],
                    }
                )
            )
    classifications = pd.concat(cls_parts, ignore_index=True)[
        [
            "cutoff_key",
            "index",
            "cutoff_gy",
            "operator",
            "patient_id",
            "cycle",
            "workflow",
            "value_gy",
            "above",
        ]
    ]
    summary = pd.DataFrame(
        summ,
        columns=[
            "cutoff_key",
            "workflow_a",
            "workflow_b",
            "statistic",
            "estimate",
            "ci_low",
            "ci_high",
            "n_patients",
            "note",
        ],
    )
    discordant = (
        pd.concat(disc_parts, ignore_index=True)
        if disc_parts
        else pd.DataFrame(columns=["cutoff_key", "patient_id", "above", "below"])
    )
    return CutoffAgreement(classifications, summary, discordant)


@dataclass(frozen=True)
class CutoffTranslation:
    """A cutoff of one workflow expressed in another's dose scale.

    Attributes
    ----------
    estimate_gy, ci_low_gy, ci_high_gy : float
        Translated cutoff and its percentile bootstrap CI.
    sentence : str
        E.g. "35 Gy in bordet is 41.2 Gy [36.0, 47.9] in montpellier".
    slope, intercept : float
        Fitted ``to = intercept + slope · from`` (on ln doses when ``log``).
    n_pairs, n_patients, n_boot : int
    method : str
    log : bool
    """

    estimate_gy: float
    ci_low_gy: float
    ci_high_gy: float
    sentence: str
    from_workflow: str
    to_workflow: str
    cutoff_gy: float
    index: str
    slope: float
    intercept: float
    n_pairs: int
    n_patients: int
    n_boot: int
    method: str
    log: bool
    ci_level: float


def translate_cutoff(
    results: pd.DataFrame | Mapping[str, pd.DataFrame],
    from_workflow: str,
    to_workflow: str,
    cutoff_gy: float,
    index: str,
    method: Literal["deming", "passing_bablok"] = "deming",
    n_boot: int = 2000,
    seed: int = 0,
    *,
    log: bool = True,
    cycle: int | None = None,
    ci_level: float = 0.95,
) -> CutoffTranslation:
    """Dose in ``to_workflow`` that corresponds to ``cutoff_gy`` in ``from_workflow``.

    The paired index values are fitted as ``to = intercept + slope · from`` by Deming
    regression (error ratio 1) or Passing–Bablok; the cutoff is mapped through the line.
    With ``log=True`` (default) the fit is on ln doses, i.e. ``to = e^a · from^b``:
    dosimetry errors are multiplicative (a workflow off by x % at 10 Gy is off by about
    x % at 100 Gy), the residual scatter is then homogeneous, and the result is
    invariant to the dose unit; it needs positive doses. CI: percentile bootstrap with
    ``n_boot`` replicates resampling **patients** (with all their lesions/cycles), seeded
    (``numpy.random.default_rng(seed)``). Deming replicates are computed at once from
    per-patient sums (no loop); Passing–Bablok loops over replicates.

    Parameters
    ----------
    results : DataFrame or mapping
        ``patient_index`` (patient-level index such as ``lesion_dose_min_gy``) or
        ``voi_dose`` (lesion-level index such as ``dose_mean_gy``), or a mapping.
    from_workflow, to_workflow : str
    cutoff_gy : float
        Cutoff in ``from_workflow``'s scale (> 0 when ``log``).
    index : str
        Column holding the dose index.
    method : {"deming", "passing_bablok"}
    n_boot : int, default 2000
    seed : int, default 0
    log : bool, default True
    cycle : int, optional
        Use one cycle only (default: all cycles' pairs).
    ci_level : float, default 0.95

    Returns
    -------
    CutoffTranslation
    """
    level = check_ci_level(ci_level)
    if method not in ("deming", "passing_bablok"):
        raise CompareError(f"method must be 'deming' or 'passing_bablok', got {method!r}")
    if int(n_boot) < 100:
        raise CompareError(f"n_boot must be ≥ 100, got {n_boot}")
    cutoff = float(cutoff_gy)
    if log and not cutoff > 0:
        raise CompareError(f"cutoff_gy must be > 0 with log=True, got {cutoff_gy}")
    if isinstance(results, Mapping):
        pi = results.get("patient_index")
        table = pi if pi is not None and index in pi.columns else results.get("voi_dose")
        if table is None:
            raise CompareError(f"no table in results has column {index!r}")
    else:
        table = results
    if index not in table.columns:
        raise CompareError(f"column {index!r} not in results (columns: {list(table.columns)})")
    lesion = "voi_id" in table.columns and "voi_kind" in table.columns
    keys = list(LESION_KEYS if lesion else PATIENT_KEYS)
    df = table.loc[table["voi_kind"] == "lesion"] if lesion else table
    if cycle is not None:
        df = df.loc[df["cycle"] == cycle]
    for w in (from_workflow, to_workflow):
        if w not in set(df["workflow"]):
            raise CompareError(
                f"workflow {w!r} not in results (present: {sorted(set(df['workflow']))})"
            )
    df = df.loc[df["workflow"].isin([from_workflow, to_workflow]), [*keys, "workflow", index]]
    if df.duplicated([*keys, "workflow"]).any():
        raise CompareError(f"duplicate rows for the same {tuple(keys)} and workflow")
    wide = df.pivot(index=keys, columns="workflow", values=index).dropna()
    x = wide[from_workflow].to_numpy(np.float64)
    y = wide[to_workflow].to_numpy(np.float64)
    if x.size < MIN_PAIRS:
        raise CompareError(f"only {x.size} paired values of {index!r} (need ≥ {MIN_PAIRS})")
    if log:
        if np.any(x <= 0) or np.any(y <= 0):
            raise CompareError(f"log=True needs positive {index!r} values in both workflows")
        x, y, c = np.log(x), np.log(y), math.log(cutoff)
    else:
        c = cutoff
    pat = pd.factorize(wide.index.get_level_values("patient_id"))[0]
    n_pat = int(pat.max()) + 1
    if n_pat < 3:
        raise CompareError(f"bootstrap over patients needs ≥ 3 patients, got {n_pat}")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_pat, np.full(n_pat, 1.0 / n_pat), size=int(n_boot)).astype(
        np.float64
    )
    if method == "deming":
        cx, cy = float(x.mean()), float(y.mean())
        u, v = x - cx, y - cy
        per = np.column_stack([np.ones_like(u), u, v, u * u, v * v, u * v])
        sums = np.zeros((n_pat, 6))
        np.add.at(sums, pat, per)
        # Moments passed one by one: ``*moments, 1.0`` hides from a type checker that the
        # six sums fill the first six parameters and 1.0 is ``delta``.
        w0, wx, wy, wxx, wyy, wxy = sums.sum(axis=0)
        s_full, i_full = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, 1.0)
        w0, wx, wy, wxx, wyy, wxy = (counts @ sums).T
        # a replicate that draws one patient only has no spread: its fit is NaN (counted
        # as degenerate below), not a warning
        with np.errstate(divide="ignore", invalid="ignore"):
            bs, bi = deming_from_moments(w0, wx, wy, wxx, wyy, wxy, 1.0)
            boot = np.asarray(bi + cy - bs * cx + bs * c, dtype=np.float64)
        slope, icpt = float(s_full), float(i_full) + cy - float(s_full) * cx
    else:
        pb = passing_bablok(x, y)
        slope, icpt = pb.slope, pb.intercept
        members = [np.flatnonzero(pat == p) for p in range(n_pat)]
        boot = np.empty(int(n_boot))
        for i, row in enumerate(counts.astype(np.int64)):
            idx = np.concatenate([np.repeat(members[p], k) for p, k in enumerate(row) if k])
            try:
                r = passing_bablok(x[idx], y[idx])
                boot[i] = r.intercept + r.slope * c
            except CompareError:
                boot[i] = np.nan
    est = icpt + slope * c
    ok = np.isfinite(boot)
    if np.count_nonzero(ok) < 0.9 * boot.size:
        raise CompareError("more than 10 % of bootstrap fits were degenerate; too few patients")
    lo, hi = np.quantile(boot[ok], [(1 - level) / 2, (1 + level) / 2])
    if log:
        est, lo, hi = math.exp(est), math.exp(lo), math.exp(hi)
    sentence = (
        f"{cutoff:g} Gy in {from_workflow} is {est:.1f} Gy [{lo:.1f}, {hi:.1f}] in {to_workflow}"
    )
    return CutoffTranslation(
        estimate_gy=float(est),
        ci_low_gy=float(lo),
        ci_high_gy=float(hi),
        sentence=sentence,
        from_workflow=from_workflow,
        to_workflow=to_workflow,
        cutoff_gy=cutoff,
        index=index,
        slope=slope,
        intercept=icpt,
        n_pairs=int(x.size),
        n_patients=n_pat,
        n_boot=int(n_boot),
        method=method,
        log=bool(log),
        ci_level=level,
    )
